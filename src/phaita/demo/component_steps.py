"""Steps 5-7 of `phaita demo`: PHAITA end to end on the models the loader just fetched."""

from __future__ import annotations

import time

from rich.table import Table

from phaita.demo.session import ENCODER, GENERATOR, GGUF, Demo
from phaita.data.domain import get_domain
from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, QuestionGenerator, RealismScorer
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
    c.print(f"  trained on {n * len(domain.codes)} varied complaints in {time.monotonic() - started:.1f} s "
            f"(features: {discriminator.feature_label}; calibrated, temperature {discriminator.temperature:.2f}); "
            f"held-out top-1 {metrics['top1']:.0%}, top-3 {metrics['top3']:.0%}")

    demo.step("7. Triage: complaint -> red flags, diagnosis -> next question -> realism")
    table = Table(show_lines=True)
    for col in ("condition", "what the patient says (LM)", "top 3 diagnoses", "next question", "realism"):
        table.add_column(col, overflow="fold")
    for code in DEMO_CODES[: 3 if demo.short else 5]:
        symptoms = generator.sample_symptoms(code)
        complaint = generator.generate_complaint(symptoms, code)
        result = triage(complaint, discriminator, questions)
        question = result.question
        realism = scorer.score_details(complaint, code)
        table.add_row(
            f"{code} {domain.condition(code).name}",
            complaint + ("" if generator.last_source == "lm" else " (template: the LM's tries were off condition)"),
            "\n".join([result.headline] + [f"{icd} {name} {p:.0%}" for icd, name, p in result.ranked]
                       + ([f"{result.ambiguous[0]} or {result.ambiguous[1]}: not told apart by these words"]
                          if result.ambiguous else [])),
            f"{question.text} ({question.source}, {question.information_gain:.2f} bits)" if question else "-",
            f"{realism.score:.2f}",
        )
    c.print(table)

    demo.step("8. Triage conversation: complaint -> question -> answer -> updated diagnosis")
    # short mode (CI): template wording here, so the LM runs only for the table's rows
    talk = QuestionGenerator(use_pretrained=False) if demo.short else questions
    _conversation(demo, discriminator, talk, CONVERSATION, turns=2 if demo.short else 3)


# A paramedic's call, scripted so that the demo always shows a red flag; the answers are simulated
# from the true condition's symptom probabilities (yes when at least 0.5).
CONVERSATION = ("J45.9", "My asthma is really bad tonight, I'm wheezing and I'm so breathless I can't finish a sentence")


def _conversation(demo: Demo, discriminator: DiagnosisDiscriminator, questions: QuestionGenerator,
                  script: tuple[str, str], turns: int) -> None:
    c = demo.console
    true_code, complaint = script
    domain = discriminator.domain
    answers: dict[str, str] = {}
    result = triage(complaint, discriminator, questions)
    c.print(f"  patient: {complaint}")
    c.print(f"  {result.headline}")
    for turn in range(1, turns + 1):
        c.print("  diagnosis: " + ", ".join(f"{icd} {name} {p:.0%}" for icd, name, p in result.ranked))
        if result.note:
            c.print(f"  note: {result.note}")
        q = result.question
        if q is None:
            break
        answer = "yes" if domain.probability(true_code, q.symptom_id) >= 0.5 else "no"
        c.print(f"  Q{turn} ({q.source}, {q.information_gain:.2f} bits, about {domain.symptoms[q.symptom_id].name}): "
                f"{q.text}  -> simulated answer: {answer}")
        answers[q.symptom_id] = answer
        result = triage(complaint, discriminator, questions if turn < turns else None, answers=answers)
    c.print("  updated diagnosis: " + ", ".join(f"{icd} {name} {p:.0%}" for icd, name, p in result.ranked))
