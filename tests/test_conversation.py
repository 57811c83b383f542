"""Triage conversations a paramedic would accept, on real conversations (the featurizer head, template
wording; a tiny real LM for the fallback): questions that can change what happens, a stop with its
reason, red flags by danger that raise the result to URGENT, listening, and well-formed questions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from phaita.data.domain import get_domain
from phaita.models import QuestionGenerator
from phaita.models.conversation import converse, simulated_patient
from phaita.models.findings import Findings, extract_symptoms, implied_known, merge_findings
from phaita.models.policy import FLAG_PRESUPPOSES, GAIN_THRESHOLD
from phaita.models.question_check import check_question

DATA = Path(__file__).parent / "data"
# the read sets (dev); never the holdout
DEV_SETS = ("handwritten_complaints.yaml", "handwritten_dev2.yaml", "handwritten_dev3.yaml", "handwritten_dev4.yaml")
ASTHMA_URGENT = "My asthma is really bad tonight, I'm wheezing and I'm so breathless I can't finish a sentence"
ASTHMA = "My asthma is bad tonight, I'm wheezing and my chest is tight"


@pytest.fixture(scope="module")
def qg() -> QuestionGenerator:
    return QuestionGenerator(use_pretrained=False)


def _dev_sample(step: int) -> list[tuple[str, str]]:
    items = [i for f in DEV_SETS for i in yaml.safe_load((DATA / f).read_text())["complaints"]]
    return [(i["text"], str(i["code"])) for i in items[::step]]


def test_conversations_on_dev_complaints_keep_every_rule(head, qg):
    """Every 8th read complaint (40), answers simulated from its condition: the rules, audited from
    the transcript with the findings functions (not the policy's own bookkeeping)."""
    domain = get_domain()
    sample = _dev_sample(8)
    top1_before = top1_after = 0
    for text, code in sample:
        record = converse(text, head, qg, simulated_patient(code))
        answers: dict[str, bool] = {}
        asked: list[str] = []
        for turn in record.turns:
            q = turn.question
            assert (q.symptom_id or q.red_flag_id) not in asked, (text, q)  # never the same question twice
            asked.append(q.symptom_id or q.red_flag_id)
            if q.symptom_id is not None:
                heard = merge_findings(extract_symptoms(text), Findings(
                    frozenset(s for s, y in answers.items() if y), frozenset(s for s, y in answers.items() if not y)))
                assert q.symptom_id not in heard.known | implied_known(heard), (text, q)  # listening
                assert q.information_gain >= GAIN_THRESHOLD, (text, q)  # worth asking
                answers[q.symptom_id] = turn.answer == "yes"
            else:
                assert q.red_flag_id in domain.condition(turn.result.ranked[0][0]).red_flag_ids or \
                    record.before.ambiguous, (text, q)
            if q.symptom_id:
                template = domain.symptoms[q.symptom_id].question_for(q.speaker)
                assert check_question(q.text, q.symptom_id, q.speaker, domain, template=template) is None, q
        final = record.result
        assert final.stop_reason and final.stop_reason.startswith("stopped: "), (text, final)
        if not final.urgent:  # every red flag of the leader asked, or answered by the words
            known = {f.id for f in final.red_flags} | {f.id for f in final.denied_red_flags}
            denied = merge_findings(extract_symptoms(text), Findings(denied=frozenset(
                s for s, y in answers.items() if not y))).denied
            missing = [f for f in domain.condition(final.ranked[0][0]).red_flag_ids if f not in known
                       and not (FLAG_PRESUPPOSES.get(f) and set(FLAG_PRESUPPOSES[f]) <= denied)]
            assert not missing, (text, missing, final.stop_reason)
        top1_before += record.before.ranked[0][0] == code
        top1_after += final.ranked[0][0] == code
    print(f"\n{len(sample)} dev conversations: top-1 {top1_before} -> {top1_after}")
    assert top1_after >= top1_before


def test_the_issues_asthma_call_asks_danger_not_filler(head, qg):
    """Asthma settled and URGENT from the complaint: no symptom question (not "long-term lung
    disease?", not "tired?", not "more phlegm?"), only the life-threatening signs not yet known,
    most dangerous first; then it stops, saying why."""
    record = converse(ASTHMA_URGENT, head, qg, simulated_patient("J45.9"))
    assert record.before.headline == "URGENT: Too breathless to speak in sentences"
    asked = [t.question for t in record.turns]
    assert all(q.red_flag_id is not None for q in asked), [q.text for q in asked]
    dom = get_domain()
    assert [q.red_flag_id for q in asked] == [f for f in dom.condition("J45.9").red_flags_by_danger(dom.red_flags)
                                              if dom.red_flags[f].danger == 1]
    assert {q.red_flag_id for q in asked} >= {"blue_lips", "silent_chest", "exhaustion"}
    assert record.result.ranked[0][0] == "J45.9"
    assert record.stop_reason.startswith("stopped: URGENT (Too breathless to speak in sentences)")
    assert "no question left worth 0.10 bits" in record.stop_reason


def test_a_yes_to_a_red_flag_raises_the_result_to_urgent_and_ends_the_checks(head, qg):
    calm = converse(ASTHMA, head, qg, simulated_patient("J45.9"))
    assert not calm.result.urgent and "every red flag of J45.9" in calm.stop_reason
    checks = [t.question.red_flag_id for t in calm.turns if t.question.red_flag_id]
    dom = get_domain()
    assert checks == dom.condition("J45.9").red_flags_by_danger(dom.red_flags)  # all five, by danger
    assert [dom.red_flags[f].danger for f in checks] == sorted(dom.red_flags[f].danger for f in checks)
    blue = converse(ASTHMA, head, qg, simulated_patient("J45.9", red_flags={"blue_lips"}))
    assert blue.result.urgent and blue.result.headline == "URGENT: Lips or fingertips turning blue"
    assert blue.turns[-1].question.red_flag_id == "blue_lips"  # a life-threatening sign: no further check
    assert blue.stop_reason.startswith("stopped: URGENT (Lips or fingertips turning blue)")
    # a severe (not life-threatening) yes: the more dangerous checks were asked before it, none after
    speak = converse(ASTHMA, head, qg, simulated_patient("J45.9", red_flags={"too_breathless_to_speak"}))
    assert speak.result.urgent and speak.turns[-1].question.red_flag_id == "too_breathless_to_speak"


@pytest.mark.parametrize("code, text, never", [
    ("J45.9", ASTHMA, {"asthma_history", "copd_history", "wheezing", "chest_tightness", "night_symptoms"}),
    ("J44.0", "I've got COPD and I'm coughing up green stuff, I feel hot and cold",
     {"copd_history", "productive_cough", "dry_cough", "colored_phlegm", "fever", "chills"}),
    ("J12.9", "dry cough for a week, no fever, my whole body aches",
     {"dry_cough", "productive_cough", "colored_phlegm", "rusty_phlegm", "increased_phlegm", "fever", "high_fever"}),
])
def test_never_asks_what_was_stated_denied_or_implied(head, qg, code, text, never):
    record = converse(text, head, qg, simulated_patient(code))
    asked = {t.question.symptom_id for t in record.turns}
    assert not asked & never, [t.question.text for t in record.turns]
    if "fever" in extract_symptoms(text).denied:  # "no fever" answers "has the fever lasted 3 days?"
        assert "fever_3_days" not in {t.question.red_flag_id for t in record.turns}


def test_a_baby_is_asked_about_through_the_carer(head, qg):
    domain = get_domain()
    for text in ("baby 3 months, wheezy, won't feed", "My 4 month old has had a snotty nose for two days and now "
                 "she's not feeding properly, and her breathing looks fast."):
        record = converse(text, head, qg, simulated_patient("J21.9"))
        assert record.result.ranked[0][0] == "J21.9" and record.turns
        for t in record.turns:
            q = t.question
            assert q.speaker == "caregiver", q
            assert any(w in q.text.lower() for w in ("your baby", "your child")), q.text
            if q.symptom_id:
                template = domain.symptoms[q.symptom_id].caregiver_question
                assert template and check_question(q.text, q.symptom_id, "caregiver", domain, template=template) is None


def test_the_well_formedness_check():
    dom = get_domain()
    for sid, s in dom.symptoms.items():  # every template passes, in each voice it has
        assert check_question(s.question, sid, "patient", dom, template=s.question) is None, (sid, s.question)
        if s.caregiver_question:
            assert check_question(s.caregiver_question, sid, "caregiver", dom, template=s.caregiver_question) is None
    for text, sid, speaker, why in [
        ("Is the baby?", "infant", "caregiver", "no predicate"),
        ("Is the baby?", "feeding_difficulty", "caregiver", "no predicate"),
        ("Does your baby have a?", "fever", "caregiver", "cut off"),
        ("Do you have a fever?", "fever", "caregiver", "asks the carer about themselves"),
        ("Does your baby have a fever?", "fever", "patient", "asks about a child"),
        ("Is the baby okay?", "feeding_difficulty", "caregiver", "does not ask about poor feeding"),
        ("Do you have a fever and a cough with phlegm?", "fever", "patient", "also asks about"),
        ("Do you have pyrexia?", "fever", "patient", "clinical word"),
        ("Yes, I've had a fever!", "fever", "patient", "not one question"),
        ("Have you you had a fever?", "fever", "patient", "repeated"),
        ("Have you been feeling tired lately?", "fever", "patient", "does not ask about fever"),
    ]:
        got = check_question(text, sid, speaker, dom)
        assert got is not None and why in got, (text, got)
    assert check_question("Is your baby feeding less than usual?", "feeding_difficulty", "caregiver", dom) is None
    assert check_question("Has your temperature been over 38.5?", "fever", "patient", dom) is None  # not a full stop


def test_an_lm_wording_that_fails_the_check_falls_back_to_the_template(tmp_path):
    """A real (tiny, random) GPT-2 writes no usable question: the template is shown, and counted."""
    from phaita.testing import write_tiny_gpt2

    write_tiny_gpt2(tmp_path / "tiny-gpt2")
    qg = QuestionGenerator(str(tmp_path / "tiny-gpt2"), use_4bit=False, seed=0, max_new_tokens=12)
    assert qg.mode == "lm"
    dom = get_domain()
    q = qg.generate_question({"J21.9": 0.5, "J45.9": 0.3, "J20.9": 0.2}, complaint="my baby is 4 months old")
    assert q is not None and q.speaker == "caregiver"
    assert q.source == "template" and q.rejected, q
    assert q.text == dom.symptoms[q.symptom_id].question_for("caregiver")
    assert qg.stats["lm_tried"] == qg.stats["lm_rejected"] == 1 and qg.stats["lm_kept"] == 0
