"""Triage conversations on hand-written complaints, answered by a patient simulated from each
complaint's condition: the rules of ``phaita.models.policy`` measured, not assumed.

Run by ``benchmarks/triage_quality.py`` (``--only-conversations`` for this part alone). Every check
is recomputed here from the transcript with the findings functions, not read back from the policy:

- questions about a symptom the complaint or the answers so far stated, denied or implied;
- symptom questions asked below the gain threshold (red-flag checks are the only exception);
- LM questions shown that fail the well-formedness check (and the share of LM wordings that fell back);
- conversations that ended, not URGENT, with a red flag of the leading condition neither asked nor
  answered by the words;
- questions per conversation; top-1 before and after; why the conversations stopped;
- the gain distribution with no threshold (every question asked): how often an answer to a question
  worth less than the threshold changed the leading condition (the threshold's justification);
- a "yes" to the most dangerous red flag: URGENT at the end.
"""

from __future__ import annotations

import statistics
from collections import Counter

from phaita.data.domain import get_domain
from phaita.models.conversation import converse, simulated_patient
from phaita.models.findings import Findings, extract_symptoms, implied_known, merge_findings
from phaita.models.policy import FLAG_PRESUPPOSES, GAIN_THRESHOLD
from phaita.models.question_check import check_question

_BUCKETS = ((0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.5), (0.5, 99.0))


def _heard(text: str, answers: dict[str, bool]) -> Findings:
    return merge_findings(extract_symptoms(text), Findings(frozenset(s for s, y in answers.items() if y),
                                                           frozenset(s for s, y in answers.items() if not y)))


def _audit(text: str, code: str, record, threshold: float, tally: Counter) -> None:
    domain = get_domain()
    answers: dict[str, bool] = {}
    for turn in record.turns:
        q = turn.question
        if q.symptom_id is not None:
            heard = _heard(text, answers)
            tally["symptom_questions"] += 1
            tally["about_known"] += q.symptom_id in heard.known | implied_known(heard)
            tally["below_threshold"] += q.information_gain < threshold
            answers[q.symptom_id] = turn.answer == "yes"
        else:
            tally["red_flag_questions"] += 1
        if q.source == "lm":
            tally["lm_shown"] += 1
            template = domain.symptoms[q.symptom_id].question_for(q.speaker)
            tally["lm_shown_failing"] += check_question(q.text, q.symptom_id, q.speaker, domain,
                                                        template=template) is not None
    final = record.result
    if not final.urgent:
        leader = final.ranked[0][0]
        known = {f.id for f in final.red_flags} | {f.id for f in final.denied_red_flags}
        denied = _heard(text, answers).denied
        missing = [f for f in domain.condition(leader).red_flag_ids if f not in known
                   and not (FLAG_PRESUPPOSES.get(f) and set(FLAG_PRESUPPOSES[f]) <= denied)]
        tally["red_flags_missing"] += bool(missing)
    tally["urgent_end"] += final.urgent
    tally["top1_before"] += record.before.ranked[0][0] == code
    tally["top1_after"] += final.ranked[0][0] == code
    reason = record.stop_reason or ""
    tally["stop: " + ("URGENT" if "URGENT" in reason else "settled, red flags checked" if "every red flag" in reason
                      else "question limit" if "questions asked" in reason else reason[:40])] += 1


def measure(head, questions, sets: dict[str, tuple[list[str], list[str]]], *, threshold: float = GAIN_THRESHOLD,
            limit: int | None = None, no_threshold_pass: bool = True) -> dict:
    """Run and audit every conversation; returns the figures (also printed as a table)."""
    domain = get_domain()
    items = [(t, c) for texts, codes in sets.values() for t, c in zip(texts, codes)]
    if limit:
        items = items[::max(1, len(items) // limit)][:limit]
    tally: Counter = Counter()
    lengths: list[int] = []
    before = dict(questions.stats)
    for text, code in items:
        record = converse(text, head, questions, simulated_patient(code), gain_threshold=threshold)
        lengths.append(len(record.turns))
        _audit(text, code, record, threshold, tally)
    lm = {k: questions.stats[k] - before[k] for k in before}
    gains: dict[str, list[int]] = {f"{lo:.2f}-{hi:.2f}" if hi < 99 else f">= {lo:.2f}": [0, 0] for lo, hi in _BUCKETS}
    stress = Counter()  # the LM's wordings of every question asked with no threshold: the check under load
    start = dict(questions.stats)
    if no_threshold_pass:  # every question asked: does an answer below the threshold ever change the leader?
        for text, code in items:
            record = converse(text, head, questions, simulated_patient(code), gain_threshold=0.0)
            leader = record.before.ranked[0][0]
            for turn in record.turns:
                if turn.question.symptom_id is None:
                    continue
                q = turn.question
                if q.source == "lm":
                    stress["lm_shown"] += 1
                    stress["lm_shown_failing"] += check_question(
                        q.text, q.symptom_id, q.speaker, domain,
                        template=domain.symptoms[q.symptom_id].question_for(q.speaker)) is not None
                g = turn.question.information_gain
                key = next(k for (lo, hi), k in zip(_BUCKETS, gains) if lo <= g < hi)
                gains[key][0] += 1
                gains[key][1] += turn.result.ranked[0][0] != leader
                leader = turn.result.ranked[0][0]
    urgent_yes = 0
    for text, code in items:  # the most dangerous red flag of the true condition answered "yes"
        flag = domain.condition(code).red_flags_by_danger(domain.red_flags)[0]
        urgent_yes += converse(text, head, questions, simulated_patient(code, red_flags={flag}),
                               gain_threshold=threshold).result.urgent
    n = len(items)
    out = {"n": n, "threshold": threshold, **tally, "median_questions": statistics.median(lengths),
           "mean_questions": statistics.mean(lengths), "max_questions": max(lengths), "lm": lm,
           "gain_buckets": gains, "urgent_after_yes_to_worst_flag": urgent_yes,
           "no_threshold_lm": {**{k: questions.stats[k] - start[k] for k in start}, **stress},
           "stops": {k[6:]: v for k, v in tally.items() if k.startswith("stop: ")}}
    _print(out)
    return out


def _print(r: dict) -> None:
    n = r["n"]
    lm = r["lm"]
    print(f"\n## Triage conversations ({n} hand-written complaints, answers simulated from each one's condition)\n")
    print("| rule | result |")
    print("|---|---|")
    print(f"| questions about a stated, denied or implied symptom | {r.get('about_known', 0)} of "
          f"{r.get('symptom_questions', 0)} |")
    print(f"| symptom questions below {r['threshold']:.2f} bits | {r.get('below_threshold', 0)} |")
    print(f"| LM questions shown that fail the check | {r.get('lm_shown_failing', 0)} of {r.get('lm_shown', 0)} shown"
          + (f"; {lm['lm_rejected']} of {lm['lm_tried']} LM wordings ({lm['lm_rejected'] / lm['lm_tried']:.0%}) "
             "fell back to the template" if lm.get("lm_tried") else "; template wording (no LM)") + " |")
    print(f"| ended not URGENT with a red flag of the leader unasked | {r.get('red_flags_missing', 0)} |")
    print(f"| questions per conversation: median / mean / max | {r['median_questions']:g} / "
          f"{r['mean_questions']:.1f} / {r['max_questions']} ({r.get('symptom_questions', 0)} symptom, "
          f"{r.get('red_flag_questions', 0)} red-flag checks) |")
    print(f"| top-1 before / after the conversation | {r['top1_before'] / n:.1%} / {r['top1_after'] / n:.1%} |")
    print(f"| URGENT at the end / after a yes to the worst red flag | {r.get('urgent_end', 0)} / "
          f"{r['urgent_after_yes_to_worst_flag']} of {n} |")
    print("| stopped because | " + "; ".join(f"{k}: {v}" for k, v in sorted(r["stops"].items())) + " |")
    stress = r["no_threshold_lm"]
    if stress.get("lm_tried"):
        print(f"\nWith no threshold, the LM worded {stress['lm_tried']} questions: {stress['lm_rejected']} "
              f"({stress['lm_rejected'] / stress['lm_tried']:.0%}) failed the check and fell back to the template; "
              f"{stress.get('lm_shown_failing', 0)} of {stress.get('lm_shown', 0)} LM questions shown fail the check.")
    if any(v[0] for v in r["gain_buckets"].values()):
        print("\nWith no threshold (every question asked), the questions' gains and how often the simulated "
              "answer changed the leading condition:\n")
        print("| gain (bits) | questions | answer changed the leader |")
        print("|---|---|---|")
        for k, (asked, changed) in r["gain_buckets"].items():
            print(f"| {k} | {asked} | {changed} |")
