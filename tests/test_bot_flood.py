"""Per-chat flood control: a token bucket per chat, one warning, then silence for a while."""

from __future__ import annotations

import pytest

from bot.flood import FloodGuard, Verdict

A, B = 1, 2


def test_a_chat_within_its_bucket_is_allowed_then_warned_once_then_ignored() -> None:
    guard = FloodGuard(capacity=3, refill_per_s=1.0, cooldown_s=30)

    verdicts = [guard.check(A, 0.0) for _ in range(6)]

    assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.WARN] + [Verdict.IGNORE] * 2


def test_other_chats_are_not_affected_by_a_flooding_chat() -> None:
    guard = FloodGuard(capacity=2, refill_per_s=1.0, cooldown_s=30)
    for _ in range(5):
        guard.check(A, 0.0)

    assert guard.check(B, 0.0) == Verdict.ALLOW


@pytest.mark.parametrize(
    ("later", "expected"),
    [(10.0, Verdict.IGNORE), (29.9, Verdict.IGNORE), (30.0, Verdict.ALLOW), (600.0, Verdict.ALLOW)],
)
def test_a_warned_chat_is_ignored_until_the_cooldown_ends(later: float, expected: Verdict) -> None:
    guard = FloodGuard(capacity=1, refill_per_s=1.0, cooldown_s=30)
    assert [guard.check(A, 0.0), guard.check(A, 0.0)] == [Verdict.ALLOW, Verdict.WARN]

    assert guard.check(A, later) == expected


def test_the_bucket_refills_with_time() -> None:
    guard = FloodGuard(capacity=2, refill_per_s=0.5, cooldown_s=0)
    assert [guard.check(A, 0.0), guard.check(A, 0.0)] == [Verdict.ALLOW, Verdict.ALLOW]

    assert guard.check(A, 2.0) == Verdict.ALLOW  # one token back after 2 s


def test_a_bucket_without_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FloodGuard(capacity=0)
