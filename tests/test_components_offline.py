"""PHAITA components with no model (use_pretrained=False) and their pure logic; loader failures.

No network and no model downloads: loader failures are real ones (offline mode, empty cache).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from phaita.data.domain import get_domain
from phaita.models import ComplaintGenerator, DiagnosisDiscriminator, HashingFeaturizer, QuestionGenerator
from phaita.models._common import clean_generation, component_error
from phaita.models.featurizer import tokenize
from phaita.models.question_generator import expected_information_gain
from phaita.utils.model_loader import ModelDownloadError, OfflineModeError
from phaita.utils.realism_scorer import RealismScorer, heuristic_realism

HANDWRITTEN = Path(__file__).parent / "data" / "handwritten_complaints.yaml"


@pytest.fixture(scope="module")
def gen() -> ComplaintGenerator:
    return ComplaintGenerator(use_pretrained=False, seed=0)


@pytest.fixture(scope="module")
def trained(gen) -> DiagnosisDiscriminator:
    texts, codes = gen.generate_dataset(60, seed=1)
    return DiagnosisDiscriminator(use_pretrained=False).fit(texts, codes)


# -- featurizer ---------------------------------------------------------------------------------

def test_tokenize_negation_scope():
    assert "NOT_fever" in tokenize("No fever at all")
    assert not any(t.startswith("NOT_") for t in tokenize("I can't catch my breath"))
    assert tokenize("No fever", negation=False) == ["no", "fever"]


def test_featurizer_shapes_norms_and_stable_hashing():
    texts = ["I can't catch my breath", "my chest feels tight", ""]
    a = HashingFeaturizer(n_features=1024).fit(texts)
    X = a.transform(texts)
    assert X.shape == (3, 1024) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X[:2], axis=1), 1.0) and not X[2].any()
    b = HashingFeaturizer.from_state_dict(a.state_dict())  # a new instance hashes identically
    assert np.allclose(b.transform(texts), X)
    assert float(X[0] @ X[1]) < 0.5
    with pytest.raises(ValueError):
        HashingFeaturizer(n_features=4)


# -- complaint generator (templates) --------------------------------------------------------------

def test_sample_symptoms_seeded_and_bounded():
    dom = get_domain()
    g1, g2 = ComplaintGenerator(use_pretrained=False, seed=5), ComplaintGenerator(use_pretrained=False, seed=5)
    for code in dom.codes:
        s1 = g1.sample_symptoms(code)
        assert s1 == g2.sample_symptoms(code)
        assert 2 <= len(s1) <= 5 and len(set(s1)) == len(s1)
        assert set(s1) <= set(dom.condition(code).symptoms)
    many = [ComplaintGenerator(use_pretrained=False, seed=i).sample_symptoms("J21.9") for i in range(30)]
    assert all(s[0] == "infant" for s in many if "infant" in s)
    # frequent symptoms are sampled more often than rare ones
    counts = sum("wheezing" in ComplaintGenerator(use_pretrained=False, seed=i).sample_symptoms("J45.9")
                 for i in range(60))
    assert counts > 40


def test_template_complaint_uses_lay_phrasings(gen):
    dom = get_domain()
    syms = ["wheezing", "chest tightness", "dry_cough"]
    text = gen.generate_complaint(syms, "J45.9")
    assert gen.mode == "template" and gen.last_source == "template"
    for sid in ("wheezing", "chest_tightness", "dry_cough"):
        assert any(p.lower() in text.lower() for p in dom.symptoms[sid].phrasings), (sid, text)
    assert text[0].isupper() and text.rstrip()[-1] in ".?!"
    assert "  " not in text and ".." not in text
    assert "a weird rash" in gen.generate_complaint(["wheezing", "a weird rash"], "J45.9")
    with pytest.raises(KeyError):
        gen.generate_complaint(["wheezing"], "Z99.9")


def test_caregiver_complaints_are_gender_consistent():
    g = ComplaintGenerator(use_pretrained=False, seed=3)
    for _ in range(40):
        text = g.generate_complaint(None, "J21.9").lower()
        words = set(re.findall(r"[a-z']+", text))
        assert not ({"she", "she's", "her"} & words and {"he", "he's", "him", "his"} & words), text


def test_diverse_complaints_and_dataset(gen):
    variants = gen.generate_diverse_complaints(["shortness_of_breath", "fever", "productive_cough"], "J18.9", 5)
    assert len(variants) == 5 and len(set(variants)) == 5
    texts, codes = gen.generate_dataset(4, seed=9)
    assert len(texts) == len(codes) == 40 and set(codes) == set(get_domain().codes)
    assert gen.generate_dataset(4, seed=9) == (texts, codes)  # seeded: reproducible
    with pytest.raises(ValueError):
        gen.generate_diverse_complaints(None, "J18.9", 0)


# -- loader failures: ModelDownloadError naming the component, or one logged fallback -------------

def _offline(tmp_path) -> dict:
    return {"allow_offline": True, "max_retries": 1, "loader_kwargs": {"cache_dir": str(tmp_path / "empty-cache")}}


@pytest.mark.parametrize("factory, name", [
    (lambda kw: ComplaintGenerator("phaita-test/absent-lm", **kw), "ComplaintGenerator"),
    (lambda kw: QuestionGenerator("phaita-test/absent-lm", **kw), "QuestionGenerator"),
    (lambda kw: DiagnosisDiscriminator("phaita-test/absent-encoder", **kw), "DiagnosisDiscriminator"),
    (lambda kw: RealismScorer(["phaita-test/absent-a", "phaita-test/absent-b"], "phaita-test/absent-lm", **kw),
     "RealismScorer"),
])
def test_loader_failure_raises_error_naming_component(tmp_path, factory, name):
    with pytest.raises(ModelDownloadError) as info:
        factory(_offline(tmp_path))
    err = info.value
    assert isinstance(err, OfflineModeError)  # same class as the loader raised, attributes kept
    assert str(err).startswith(f"{name}: ") and err.component == name
    assert err.models_attempted and err.models_attempted[0].startswith("phaita-test/absent")
    assert err.cache_dir == str(tmp_path / "empty-cache")


def test_fallbacks_log_one_warning_each(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    kw = _offline(tmp_path)
    g = ComplaintGenerator("phaita-test/absent-lm", fallback_to_templates=True, **kw)
    q = QuestionGenerator("phaita-test/absent-lm", fallback_to_templates=True, **kw)
    d = DiagnosisDiscriminator("phaita-test/absent-encoder", fallback_to_featurizer=True, **kw)
    r = RealismScorer(["phaita-test/absent-a"], "phaita-test/absent-lm", fallback_to_heuristics=True, **kw)
    ours = [rec for rec in caplog.records if rec.name == "phaita.models"]
    assert len(ours) == 5  # one per component, two for the scorer (encoder and fluency model)
    assert all("falling back" in rec.getMessage() for rec in ours)
    assert (g.mode, q.mode, d.uses_pretrained, r.encoder, r.fluency_lm) == ("template", "template", False, None, None)
    assert g.generate_complaint(None, "J13")
    assert r.score("I can't catch my breath") == pytest.approx(heuristic_realism("I can't catch my breath"))


def test_component_error_keeps_class_and_attributes():
    err = OfflineModeError("not cached", model_name="a/b", models_attempted=["a/b"], attempts=0, cache_dir="/c")
    new = component_error("ComplaintGenerator", err)
    assert type(new) is OfflineModeError and new.models_attempted == ["a/b"] and new.cache_dir == "/c"
    assert str(new) == "ComplaintGenerator: not cached" and str(err) == "not cached"


def test_clean_generation():
    assert clean_generation('Patient: "I can\'t breathe. I can\'t breathe. My chest hurts."\n\nUser: more') == \
        "I can't breathe. My chest hurts."
    assert clean_generation("My chest is tight and") == "My chest is tight and."
    assert clean_generation("One. Two. Three four") == "One. Two."
    assert len(clean_generation("word " * 200).split()) <= 60


# -- discriminator (non-neural featurizer) ----------------------------------------------------------

def test_discriminator_shapes_and_ranking(trained):
    preds = trained.predict_diagnosis(["I'm wheezing and my chest is tight", "my baby won't feed"], top_k=3)
    assert len(preds) == 2 and all(len(p) == 3 for p in preds)
    dom = get_domain()
    for ranked in preds:
        probs = [p for _, _, p in ranked]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
        assert all(isinstance(c, str) and dom.condition_name(c) == n for c, n, _ in ranked)
    assert preds[0][0][0] == "J45.9" and preds[1][0][0] == "J21.9"
    assert len(trained.predict_diagnosis("one complaint", top_k=10)[0]) == 10
    assert np.allclose(trained.predict_proba(["x", "y"]).sum(axis=1), 1.0)
    assert trained.predict_diagnosis([]) == []
    with pytest.raises(ValueError):
        trained.predict_diagnosis(["x"], top_k=0)


def test_discriminator_held_out_top3_accuracy(trained):
    held_out, codes = ComplaintGenerator(use_pretrained=False, seed=123).generate_dataset(30, seed=77)
    metrics = trained.evaluate(held_out, codes)
    print(f"\nfeaturizer discriminator, held-out generated complaints: top-1 {metrics['top1']:.1%}, "
          f"top-3 {metrics['top3']:.1%} (n={metrics['n']})")
    assert metrics["top3"] >= 0.80
    assert trained.history["seconds"] < 60


def test_discriminator_handwritten_accuracy_is_reported(trained):
    items = yaml.safe_load(HANDWRITTEN.read_text())["complaints"]
    assert len(items) >= 30 and {i["code"] for i in items} == set(get_domain().codes)
    metrics = trained.evaluate([i["text"] for i in items], [i["code"] for i in items])
    print(f"\nfeaturizer discriminator, {metrics['n']} hand-written complaints: top-1 {metrics['top1']:.1%}, "
          f"top-3 {metrics['top3']:.1%}")
    assert metrics["top3"] > 0.3  # sanity only: better than chance (3 of 10); reported, not tuned


def test_discriminator_save_load_round_trip(trained, tmp_path):
    path = tmp_path / "head" / "disc.pt"
    trained.save(path)
    fresh = DiagnosisDiscriminator(use_pretrained=False).load(path)
    texts = ["I have a high fever and shaking chills", "my breathing has got worse for months"]
    assert np.allclose(fresh.predict_proba(texts), trained.predict_proba(texts))
    assert fresh.classes == trained.classes
    other = DiagnosisDiscriminator(use_pretrained=False)
    other.encoder_label = "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(ValueError, match="trained on"):
        other.load(path)


def test_discriminator_errors():
    d = DiagnosisDiscriminator(use_pretrained=False)
    with pytest.raises(RuntimeError, match="fit"):
        d.predict_diagnosis(["x"])
    with pytest.raises(RuntimeError):
        d.save("/tmp/never.pt")
    with pytest.raises(ValueError, match="unknown ICD-10"):
        d.fit(["a", "b"], ["J45.9", "X00"])
    with pytest.raises(ValueError):
        d.fit(["a"], ["J45.9", "J13"])


# -- question generator -------------------------------------------------------------------------

def test_expected_information_gain_bounds():
    assert expected_information_gain({"A": 0.5, "B": 0.5}, {"A": 1.0, "B": 0.0}) == pytest.approx(1.0)
    assert expected_information_gain({"A": 0.5, "B": 0.5}, {"A": 0.3, "B": 0.3}) == pytest.approx(0.0, abs=1e-12)
    assert expected_information_gain({"A": 1.0}, {"A": 0.7}) == pytest.approx(0.0, abs=1e-12)
    weak = expected_information_gain({"A": 0.5, "B": 0.5}, {"A": 0.6, "B": 0.4})
    assert 0 < weak < expected_information_gain({"A": 0.5, "B": 0.5}, {"A": 0.9, "B": 0.1}) < 1


def test_question_separates_the_leading_conditions():
    qg = QuestionGenerator(use_pretrained=False)
    dom = get_domain()
    probs = {"J44.1": 0.48, "J44.0": 0.47, "J45.9": 0.05}
    q = qg.generate_question(probs)
    assert q.source == "template" and q.text.endswith("?") and q.text == dom.symptoms[q.symptom_id].question
    p1, p0 = dom.probability("J44.1", q.symptom_id), dom.probability("J44.0", q.symptom_id)
    assert abs(p1 - p0) >= 0.4  # a symptom that tells the two COPD codes apart (fever / coloured phlegm)
    ranked = qg.rank_symptoms(probs)
    assert ranked[0] == (q.symptom_id, pytest.approx(q.information_gain))
    assert [g for _, g in ranked] == sorted((g for _, g in ranked), reverse=True)
    shared = dict(ranked)["shortness_of_breath"]  # similar in both: little information
    assert shared < ranked[0][1] / 4


def test_question_skips_asked_symptoms_and_uses_answers():
    qg = QuestionGenerator(use_pretrained=False)
    probs = [("J18.9", "Pneumonia", 0.4), ("J12.9", "Viral", 0.3), ("J13", "Pneumococcal", 0.2), ("J45.9", "A", 0.1)]
    first = qg.generate_question(probs)
    second = qg.generate_question(probs, denied_symptoms=[first.symptom_id])
    assert second.symptom_id != first.symptom_id
    assert all(s != first.symptom_id for s, _ in qg.rank_symptoms(probs, confirmed_symptoms=[first.symptom_id]))
    post = qg.update_probabilities(probs, confirmed=["rusty_phlegm"])
    assert max(post, key=post.get) == "J13" and math.isclose(sum(post.values()), 1.0)
    every = list(get_domain().symptoms)
    assert qg.generate_question(probs, confirmed_symptoms=every) is None
    baby = qg.generate_question({"J21.9": 0.6, "J45.9": 0.3, "J20.9": 0.1}, confirmed_symptoms=["infant"])
    assert baby.text == get_domain().symptoms[baby.symptom_id].question_for("caregiver")


def test_question_input_validation():
    qg = QuestionGenerator(use_pretrained=False)
    with pytest.raises(ValueError, match="unknown ICD-10"):
        qg.generate_question({"Z00": 1.0})
    with pytest.raises(ValueError):
        qg.generate_question({"J45.9": 0.0, "J13": 0.0})
    with pytest.raises(ValueError):
        QuestionGenerator(use_pretrained=False, top_n=1)


# -- realism heuristics ------------------------------------------------------------------------------

def test_realism_heuristics_order_plausible_texts():
    lay = "I can't catch my breath and my chest feels tight since last night."
    clinical = "Patient presents with acute dyspnea, productive sputum and bilateral crackles. J44.1"
    salad = "breath breath breath breath breath breath breath breath"
    offtopic = "Quarterly revenue increased by four percent compared with last year."
    scores = {t: heuristic_realism(t) for t in (lay, clinical, salad, offtopic)}
    assert scores[lay] > 0.8
    assert scores[lay] > scores[offtopic] > scores[clinical]
    assert scores[salad] < 0.5
    assert heuristic_realism("") == 0.0 and heuristic_realism("   ") == 0.0
    for text in ("cough", "?!", "I " * 300, "Mi pecho duele mucho"):
        assert 0.0 <= heuristic_realism(text) <= 1.0


def test_realism_scorer_without_models(gen):
    scorer = RealismScorer(use_pretrained=False)
    details = scorer.score_details("My baby is breathing really fast and won't feed.")
    assert details.fluency is None and details.closeness is None and details.score == pytest.approx(details.heuristic)
    generated = [gen.generate_complaint(None, c) for c in get_domain().codes]
    assert np.mean(scorer.score_batch(generated)) > 0.75
    with pytest.raises(TypeError):
        scorer.score(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RealismScorer(use_pretrained=False, weights=(0, 0, 0))


def test_lm_output_guards():
    """The checks that send an off-topic LM complaint or a non-question back to the templates."""
    g = ComplaintGenerator(use_pretrained=False)
    assert g._on_topic("I'm wheezing and I can't get any air in.", ["wheezing", "shortness_of_breath"])
    assert g._on_topic("I've been coughing up thick green mucus.", ["colored_phlegm", "productive_cough"])
    assert not g._on_topic("I'm so glad, I had an amazing day at the beach.", ["wheezing", "fever"])
    assert not g._on_topic("Your lungs are wheezing, you need to rest.", ["wheezing"])  # not the patient's voice
    q = QuestionGenerator(use_pretrained=False)
    tmpl = get_domain().symptoms["fever"].question
    assert q._usable("Have you had a fever today?", "fever", tmpl)
    assert not q._usable("Yes, I've had a fever!", "fever", tmpl)  # an answer, not a question
    assert not q._usable("Do you like the beach?", "fever", tmpl)  # off topic
