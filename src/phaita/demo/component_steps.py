"""Steps 5-7 of `phaita demo`: PHAITA end to end on the models the loader just fetched."""

from __future__ import annotations

import time

from rich.table import Table

from phaita.demo.session import ENCODER, GENERATOR, GGUF, Demo
from phaita.domain import get_domain
from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, QuestionGenerator, RealismScorer

DEMO_CODES = ("J45.9", "J18.9", "J44.1", "J20.9", "J21.9")


def components_part(demo: Demo) -> None:
    c = demo.console
    domain = get_domain()
    loader = {"backoff_base": demo.backoff}

    demo.step("5. PHAITA components, every model through the loader")
    started = time.monotonic()
    generator = ComplaintGenerator(GENERATOR, use_4bit=True, seed=7, max_new_tokens=40,
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

    demo.step("6. Train the diagnosis head on generated complaints")
    n = 15 if demo.short else 40
    texts, codes = generator.generate_dataset(n_per_condition=n, seed=1)
    held_texts, held_codes = generator.generate_dataset(n_per_condition=5, seed=99)
    started = time.monotonic()
    discriminator.fit(texts, codes)
    metrics = discriminator.evaluate(held_texts, held_codes, top_k=3)
    c.print(f"  trained on {len(texts)} template complaints in {time.monotonic() - started:.1f} s; "
            f"held-out top-1 {metrics['top1']:.0%}, top-3 {metrics['top3']:.0%}")

    demo.step("7. Triage: complaint -> diagnosis -> next question -> realism")
    table = Table(show_lines=True)
    for col in ("condition", "what the patient says (LM)", "top 3 diagnoses", "next question", "realism"):
        table.add_column(col, overflow="fold")
    for code in DEMO_CODES[: 3 if demo.short else 5]:
        symptoms = generator.sample_symptoms(code)
        complaint = generator.generate_complaint(symptoms, code)
        top = discriminator.predict_diagnosis([complaint], top_k=3)[0]
        probabilities = {icd: p for icd, _, p in discriminator.predict_diagnosis([complaint], top_k=10)[0]}
        question = questions.generate_question(probabilities, confirmed_symptoms=[])
        realism = scorer.score(complaint)
        table.add_row(
            f"{code} {domain.condition(code).name}",
            complaint,
            "\n".join(f"{icd} {name} {p:.0%}" for icd, name, p in top),
            f"{question.text} ({question.source}, {question.information_gain:.2f} bits)" if question else "-",
            f"{realism:.2f}",
        )
    c.print(table)
