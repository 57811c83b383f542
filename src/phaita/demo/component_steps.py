"""Steps 5-8 of `phaita demo`: PHAITA end to end on the models the loader just fetched."""

from __future__ import annotations

import textwrap
import time

from phaita.demo.session import ENCODER, GENERATOR, GGUF, Demo
from phaita.data.domain import get_domain
from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, QuestionGenerator, RealismScorer
from phaita.models.conversation import converse, simulated_patient
from phaita.models.training_data import VariedComplaints, train_discriminator
from phaita.models.triage import triage

DEMO_CODES = ("J45.9", "J18.9", "J44.1", "J20.9", "J21.9")


def components_part(demo: Demo) -> None:
    c = demo.console
    domain = get_domain()
    loader = {"backoff_base": demo.backoff}

    demo.step("5. PHAITA components, every model through the loader")
    started = time.monotonic()
    generator = ComplaintGenerator(GENERATOR, use_4bit=True, seed=7, max_new_tokens=40,
                                   lm_attempts=1 if demo.short else 2,
                                   loader_kwargs={**loader, "gguf_file": GGUF})
    c.print(f"  ComplaintGenerator: {GENERATOR} ({generator.mode}) in {time.monotonic() - started:.1f} s "
            "(use_4bit falls back to full precision on a CPU, with one warning)")
    started = time.monotonic()
    discriminator = DiagnosisDiscriminator(ENCODER, loader_kwargs=loader)
    c.print(f"  DiagnosisDiscriminator: {ENCODER} in {time.monotonic() - started:.1f} s")
    # One 135M LM in memory is enough: the question generator and the scorer share the generator's.
    questions = QuestionGenerator(GENERATOR, model=generator.model, tokenizer=generator.tokenizer, seed=7)
    scorer = RealismScorer(ENCODER, GENERATOR, encoder=discriminator.encoder,
                           encoder_tokenizer=discriminator.tokenizer, fluency_lm=generator.model,
                           fluency_tokenizer=generator.tokenizer, n_calibration=5 if demo.short else 20)

    demo.step("6. Train the diagnosis head on varied generated complaints")
    n = 15 if demo.short else 40
    started = time.monotonic()
    train_discriminator(discriminator, n_per_condition=n, calibration_per_condition=5, epochs=200, lr=0.1)
    held_texts, held_codes = VariedComplaints(domain).dataset(5, seed=99)
    metrics = discriminator.evaluate(held_texts, held_codes, top_k=3)
    _say(demo, f"trained on {n * len(domain.codes)} varied complaints in {time.monotonic() - started:.1f} s "
               f"(features: {discriminator.feature_label}; calibrated, temperature {discriminator.temperature:.2f}); "
               f"held-out top-1 {metrics['top1']:.0%}, top-3 {metrics['top3']:.0%}", indent=2)

    demo.step("7. Triage: complaint -> red flags, diagnosis -> next question -> realism")
    for code in DEMO_CODES[: 3 if demo.short else 5]:
        symptoms = generator.sample_symptoms(code)
        complaint = generator.generate_complaint(symptoms, code)
        result = triage(complaint, discriminator, questions)
        realism = scorer.score_details(complaint, code)
        source = "LM" if generator.last_source == "lm" else "template: the LM's tries were off condition"
        c.print(f"  {code} {domain.condition(code).name}", style="bold")
        _say(demo, f"says ({source}): {complaint}")
        _say(demo, result.headline)
        _say(demo, "diagnosis: " + _ranked(result))
        if result.ambiguous:
            _say(demo, f"{result.ambiguous[0]} or {result.ambiguous[1]}: not told apart by these words")
        _say(demo, ("next: " + _question(result.question)) if result.question else f"next: none, {result.stop_reason}")
        _say(demo, f"realism: {realism.score:.2f}")

    demo.step("8. Triage conversations: ask until no answer can change the result")
    # short mode (CI): template wording here, so the LM runs only for step 7
    talk = QuestionGenerator(use_pretrained=False) if demo.short else questions
    for script in CONVERSATIONS:
        _conversation(demo, discriminator, talk, *script)


# Two calls, answered by a patient simulated from the true condition (yes to a symptom it has with
# probability >= 0.5; yes to the red flags named): the asthma call, URGENT from its first
# words, and a chest infection that says yes to one red-flag check.
CONVERSATIONS = (
    ("J45.9", "My asthma is really bad tonight, I'm wheezing and I'm so breathless I can't finish a sentence", ()),
    ("J18.9", "I've had a temperature and a chesty cough for four days and I've gone off my food",
     ("fast_breathing_30",)),
)


def _width(demo: Demo) -> int:
    return max(40, min(demo.console.width, 100))


def _say(demo: Demo, text: str, indent: int = 4) -> None:
    """One item, wrapped to the console (80 columns readable), continuation lines indented."""
    lines = textwrap.wrap(text, _width(demo) - 1, initial_indent=" " * indent, subsequent_indent=" " * (indent + 2),
                          break_on_hyphens=False)
    demo.console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _ranked(result) -> str:
    return ", ".join(f"{icd} {name} {p:.0%}" for icd, name, p in result.ranked)


def _why(q) -> str:
    return q.reason if q.red_flag_id else f"{q.source}, {q.information_gain:.2f} bits, about {_about(q)}"


def _question(q) -> str:
    return f"{q.text} ({_why(q)})"


def _about(q) -> str:
    return get_domain().symptoms[q.symptom_id].name


def _conversation(demo: Demo, discriminator: DiagnosisDiscriminator, questions: QuestionGenerator,
                  true_code: str, complaint: str, yes_flags: tuple[str, ...]) -> None:
    record = converse(complaint, discriminator, questions, simulated_patient(true_code, red_flags=yes_flags))
    _say(demo, f"patient: {complaint}", indent=2)
    _say(demo, record.before.headline)
    _say(demo, "diagnosis: " + _ranked(record.before))
    for n, turn in enumerate(record.turns, 1):
        q = turn.question
        _say(demo, f"Q{n} ({_why(q)})")
        _say(demo, f"{q.text} -> {turn.answer} (simulated answer)", indent=7)
    if record.turns:
        _say(demo, f"result: {record.result.headline}; {_ranked(record.result)}")
    _say(demo, record.stop_reason or "")
