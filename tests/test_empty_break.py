"""A break with no bytes is not a lost attempt: an answer that ends before its first byte is asked
again inside the attempt (a few times, short pauses, within the deadline) before the attempt fails.

Directly against the local hub here; behind olah (where upstream faults look like this) in
test_olah.py. The pauses are the module's own (0.5 s, 1 s, 2 s): no wall-clock asserts, the
warnings say whether an attempt was lost.
"""

from __future__ import annotations

import pytest

from loader_fixtures import BIG, warnings_of
from phaita.utils.model_loader import ModelDownloadError, prefetch_model


@pytest.mark.parametrize("fault", ["close@0x2", "reset@0x2"])
def test_empty_answers_are_retried_inside_the_attempt(big_hub, fault, caplog):
    big_hub.set_faults(fault)
    prefetch_model(BIG, max_retries=3)
    assert warnings_of(caplog) == []  # no attempt failed
    retried = [r.getMessage() for r in caplog.records if "ended before its first byte" in r.getMessage()]
    assert len(retried) == 2 and "(1/3)" in retried[0] and "(2/3)" in retried[1]
    assert len(big_hub.requests("/resolve/", method="GET")) == 3


def test_more_empty_answers_than_the_budget_fail_the_attempt(big_hub, caplog):
    big_hub.set_faults("close@0x4")
    prefetch_model(BIG, max_retries=3)
    failed = [w for w in warnings_of(caplog) if "attempt 1/3 failed" in w]
    assert len(failed) == 1 and len(warnings_of(caplog)) == 1  # the 4th empty answer ends attempt 1 only


def test_the_pause_never_outlasts_the_deadline(big_hub, caplog):
    """With less time left than the next pause, the attempt ends at once (and is reported)."""
    big_hub.set_faults("close@0")  # every answer empty
    with pytest.raises(ModelDownloadError) as info:
        prefetch_model(BIG, max_retries=1, timeout=1.2)
    assert info.value.attempts == 1
    retried = [r for r in caplog.records if "ended before its first byte" in r.getMessage()]
    assert len(retried) <= 1  # unbounded, it would pause 0.5 + 1 + 2 s; 1 s does not fit after 0.5 s


def test_no_answer_at_all_is_not_an_empty_answer(big_hub, caplog):
    """A hub that never answers (no status line) is the retry policy's case, with its backoff."""
    big_hub.set_faults("stall_headersx1:3")  # loader_env: 1 s of silence is a stall
    prefetch_model(BIG, max_retries=3)
    assert [w for w in warnings_of(caplog) if "attempt 1/3 failed" in w]
    assert not [r for r in caplog.records if "ended before its first byte" in r.getMessage()]
