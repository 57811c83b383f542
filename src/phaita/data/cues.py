"""The cue language of the domain data, and negation-aware matching of cues in lay text.

A cue is a short lay phrase that says a symptom or a red flag. In ``conditions.yaml``:

- words are matched whole and case-insensitively; apostrophes are ignored (write ``cant``, ``im``);
- ``*`` at the end of a word allows any ending (``wheez*``: wheeze, wheezing, wheezy);
- ``~`` skips up to three words (``chest ~ tight*``: "chest feels really tight");
- ``(a|b)`` is a choice, ``?`` makes the character before it optional, ``\\d`` is a digit.

:func:`find` reports each cue match as stated or denied. A match is *denied* when a negator ("no",
"not", "never", "without", "don't", "haven't" ...) stands within five words before it in the same
clause (a clause ends at ``. , ; ! ?`` or at "and", "but", "though", "however", "except", "now" ...); a
negator that is part of the cue itself ("can't catch my breath") does not count, and neither does
one followed by a verb of ability ("can't stop coughing" states the cough).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

__all__ = ["compile_cue", "normalize", "find", "CueMatch", "NEGATORS"]

NEGATORS = frozenset({
    "no", "not", "never", "without", "dont", "doesnt", "didnt", "havent", "hasnt", "hadnt", "isnt", "arent",
    "wasnt", "werent", "wont", "cant", "cannot", "couldnt", "denies", "deny", "denied", "nor", "none", "neither",
    "free", "nothing", "nae", "cannae", "dinnae", "didnae", "aint", "havnt",
})
# "can't stop coughing", "can't seem to get a breath": the negator belongs to the verb that follows.
_ABILITY = frozenset({"stop", "stopping", "catch", "get", "seem", "keep", "help", "shake", "shift", "settle", "sleep",
                      "breathe", "breath", "walk", "talk", "speak", "finish", "swallow",
                      "quit", "feed", "eat", "drink", "climb", "manage", "lie", "move"})
_CLAUSE_WORDS = frozenset({"but", "though", "although", "however", "except", "yet", "apart", "and", "now", "then"})
_WINDOW = 5
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|[.,;!?]")


def normalize(text: str) -> str:
    """Lower case, "'s" dropped, other apostrophes removed, other punctuation kept as clause marks, single
    spaces."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=[a-z])'s\b", "", text)  # "my COPD's worse", "chest's tight": the noun is the cue
    text = text.replace("'", "")
    text = re.sub(r"[-/_]", " ", text)
    return " ".join(_TOKEN.findall(text))


@functools.lru_cache(maxsize=4096)
def compile_cue(cue: str) -> re.Pattern[str]:
    """The regular expression of one cue (on :func:`normalize`-d text). Raises ``re.error``."""
    text = cue.lower().replace("'", "").replace("’", "")
    parts = []
    for word in text.split():
        if word == "~":
            parts.append(r"(?:[a-z0-9]+ ){0,3}")
            continue
        word = word.replace("*", r"[a-z0-9]*")
        parts.append(word + " ")
    body = "".join(parts).rstrip(" ")
    if body.endswith("{0,3}"):
        raise re.error("a cue cannot end with ~")
    return re.compile(r"(?<![a-z0-9])" + body + r"(?![a-z0-9])")


def _cue_has_negator(cue: str) -> bool:
    words = re.findall(r"[a-z]+", cue.lower().replace("'", ""))
    return any(w in NEGATORS for w in words)


@dataclass(frozen=True)
class CueMatch:
    """One cue found in a text: the words matched and whether they were negated."""

    cue: str
    text: str
    denied: bool


def _negated(tokens: list[str], end: int) -> bool:
    """Is there a negator within the window before token index ``end`` in the same clause?"""
    seen = 0
    i = end - 1
    while i >= 0 and seen < _WINDOW:
        tok = tokens[i]
        if tok in ".,;!?" or tok in _CLAUSE_WORDS:
            return False
        if tok in NEGATORS:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if nxt not in _ABILITY:
                return True
        seen += 1
        i -= 1
    return False


@functools.lru_cache(maxsize=1024)
def _combined(cues: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """Two patterns per cue list (with and without a negator of their own): one regex search each."""
    def join(group: list[str]) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{compile_cue(c).pattern})" for c in group)) if group else None

    return (join([c for c in cues if _cue_has_negator(c)]), join([c for c in cues if not _cue_has_negator(c)]))


def find(text: str, cues: Iterable[str], *, normalized: str | None = None) -> list[CueMatch]:
    """Every match of ``cues`` in ``text``, each stated or denied (see the module docstring)."""
    norm = normalized if normalized is not None else normalize(text)
    tokens = norm.split(" ")
    out: list[CueMatch] = []
    with_negator, plain = _combined(tuple(cues))
    for pattern, own_negator in ((with_negator, True), (plain, False)):
        if pattern is None:
            continue
        for m in pattern.finditer(norm):
            start_tok = norm.count(" ", 0, m.start())
            end_tok = start_tok + m.group(0).count(" ")
            # a negator inside the match ("cough but no phlegm") counts, unless the cue has its own
            denied = _negated(tokens, start_tok if own_negator else end_tok)
            out.append(CueMatch(cue=pattern.pattern if len(pattern.pattern) < 80 else "(cues)", text=m.group(0),
                                denied=denied))
    return out
