"""Domain data (conditions.yaml) and model manifest (manifest.yaml): content and validation."""

from __future__ import annotations

import copy

import pytest
import yaml

from phaita.data.domain import CONDITION_CODES, get_domain, load_domain, validate_domain_data
from phaita.data.manifest import get_manifest, gguf_file_for, load_manifest, parse_manifest


@pytest.fixture(scope="module")
def raw_domain() -> dict:
    from importlib import resources

    return yaml.safe_load(resources.files("phaita").joinpath("data/conditions.yaml").read_text())


def test_ten_conditions_with_names_red_flags_and_probabilities():
    dom = get_domain()
    assert sorted(dom.codes) == sorted(CONDITION_CODES)
    assert dom.condition("J44.1").name == "COPD with acute exacerbation"
    assert dom.condition("J21.9").speaker == "caregiver"
    for cond in dom.conditions.values():
        assert len(cond.red_flags) >= 2, cond.code
        assert len(cond.symptoms) >= 5, cond.code
        assert all(0 < p <= 1 for p in cond.symptoms.values()), cond.code
        assert cond.durations, cond.code
        for sid in cond.symptoms:  # several lay phrasings in the voice of who is speaking
            assert len(dom.symptoms[sid].phrasings_for(cond.speaker)) >= 2, (cond.code, sid)


def test_conditions_are_distinguishable():
    """No two conditions share the same symptom profile (else the discriminator cannot separate them)."""
    dom = get_domain()
    profiles = {code: frozenset(c.symptoms) for code, c in dom.conditions.items()}
    assert len(set(profiles.values())) == len(profiles)


def test_lookup_helpers():
    dom = get_domain()
    assert dom.probability("J45.9", "wheezing") == 0.9
    assert dom.probability("J45.9", "rusty_phlegm") == dom.absent_symptom_probability
    assert dom.symptom("Shortness of breath").id == "shortness_of_breath"
    assert dom.symptom("dry cough").id == "dry_cough"
    with pytest.raises(KeyError, match="unknown ICD-10 code"):
        dom.condition("X99.9")
    with pytest.raises(KeyError):
        dom.symptom("levitation")
    refs = dom.lay_references()
    assert "I can't catch my breath" in refs and "my chest feels tight" in refs


def _broken(raw: dict, edit) -> dict:
    data = copy.deepcopy(raw)
    edit(data)
    return data


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["conditions"]["J45.9"]["symptoms"].update(levitation=0.5), "conditions.J45.9.symptoms.levitation"),
    (lambda d: d["conditions"]["J45.9"]["symptoms"].update(wheezing=1.5), "conditions.J45.9.symptoms.wheezing"),
    (lambda d: d["conditions"]["J45.9"]["symptoms"].update(wheezing=0), "conditions.J45.9.symptoms.wheezing"),
    (lambda d: d["conditions"]["J45.9"]["symptoms"].update(wheezing="high"), "conditions.J45.9.symptoms.wheezing"),
    (lambda d: d["conditions"].update({"asthma": d["conditions"].pop("J45.9")}), "conditions.asthma"),
    (lambda d: d["conditions"]["J13"].pop("red_flags"), "conditions.J13.red_flags"),
    (lambda d: d["conditions"]["J13"].update(speaker="doctor"), "conditions.J13.speaker"),
    (lambda d: d["conditions"]["J13"].update(colour="red"), "conditions.J13"),
    (lambda d: d["symptoms"]["wheezing"].update(phrasings=[]), "symptoms.wheezing.phrasings"),
    (lambda d: d["symptoms"]["wheezing"]["phrasings"].append(" "), "symptoms.wheezing.phrasings[4]"),
    (lambda d: d["symptoms"]["fever"].pop("question"), "symptoms.fever.question"),
    (lambda d: d["symptoms"]["infant"].pop("caregiver_phrasings"), "conditions.J21.9.symptoms.infant"),
    (lambda d: d.update(absent_symptom_probability=2), "absent_symptom_probability"),
    (lambda d: d.update(version=9), "version"),
])
def test_validation_names_the_bad_entry(raw_domain, edit, where):
    with pytest.raises(ValueError) as info:
        validate_domain_data(_broken(raw_domain, edit), "test.yaml")
    assert where in str(info.value)


def test_required_codes_and_files(raw_domain, tmp_path):
    data = _broken(raw_domain, lambda d: d["conditions"].pop("R06.02"))
    with pytest.raises(ValueError, match=r"missing required conditions \['R06.02'\]"):
        validate_domain_data(data, require_codes=CONDITION_CODES)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    assert "R06.02" not in load_domain(path).conditions  # a custom file may hold fewer conditions
    path.write_text("conditions: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_domain(path)


# -- manifest ---------------------------------------------------------------------------------

def test_manifest_default_models_match_the_specification():
    man = get_manifest()
    assert man.get("DiagnosisDiscriminator").name == "microsoft/deberta-v3-base"
    gen = man.get("ComplaintGenerator", "generator")
    assert (gen.name, gen.model_type, gen.kwargs) == ("mistralai/Mistral-7B-Instruct-v0.2", "causal_lm", {"use_4bit": True})
    enc = man.get("RealismScorer", "encoder")
    assert enc.candidates[0].startswith("dmis-lab/biobert") and enc.candidates[-1] == "bert-base-uncased"
    assert isinstance(enc.model_name, list)
    assert man.get("RealismScorer", "fluency").name == "gpt2"
    with pytest.raises(KeyError, match="pass role"):
        man.get("RealismScorer")


def test_manifest_unique_models_sizes_and_gguf():
    man = get_manifest()
    names = [m.model_name for m in man.unique_models()]
    assert names.count("mistralai/Mistral-7B-Instruct-v0.2") == 1  # two components, one download
    assert len(names) == 4
    assert man.total_size_mb() == pytest.approx(sum(m.size_mb for m in man.unique_models()))
    assert man.total_size_mb() > 10_000
    small = man.get("ComplaintGenerator", "generator", profile="small")
    assert small.loader_kwargs() == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert gguf_file_for("HuggingFaceTB/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf_file_for("gpt2") is None
    assert man.total_size_mb("small") < 1000
    with pytest.raises(KeyError, match="unknown manifest profile"):
        man.models("huge")


@pytest.mark.parametrize("entry, where", [
    ({"component": "X", "role": "r", "name": "a/b", "candidates": ["a/b"]}, "exactly one of name or candidates"),
    ({"component": "X", "role": "r", "name": "a/b", "type": "vision"}, "unknown model type"),
    ({"component": "X", "role": "r", "name": "a/b", "gguf_file": "model.bin"}, "gguf_file"),
    ({"component": "X", "role": "r", "name": "a/b", "size_mb": -1}, "size_mb"),
    ({"component": "", "role": "r", "name": "a/b"}, "component"),
    ({"component": "X", "role": "r", "name": "a/b", "colour": 1}, "unknown keys"),
])
def test_manifest_validation(entry, where):
    with pytest.raises(ValueError, match=where) as info:
        parse_manifest({"profiles": {"default": {"models": [entry]}}})
    assert "profiles.default.models[0]" in str(info.value)


def test_manifest_file_round_trip(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "default_profile": "edge", "profiles": {"edge": {"models": [
        {"component": "DiagnosisDiscriminator", "role": "encoder", "name": "org/enc", "size_mb": 12}]}}}))
    man = load_manifest(path)
    assert man.default_profile == "edge" and man.get("DiagnosisDiscriminator").name == "org/enc"
    with pytest.raises(ValueError, match="default_profile"):
        parse_manifest({"default_profile": "x", "profiles": {"edge": {"models": [
            {"component": "A", "role": "r", "name": "o/n"}]}}})
