"""Batches bounded by mails and by bytes: what a poller holds in memory does not grow with attachments."""

from __future__ import annotations

import pytest

from intake.batching import size_bounded_batches


def test_batches_close_at_the_mail_count() -> None:
    sized = [(name, 10) for name in "abcde"]
    assert size_bounded_batches(sized, max_count=2, max_bytes=1000) == [["a", "b"], ["c", "d"], ["e"]]


def test_batches_close_before_the_byte_budget_is_passed() -> None:
    sized = [("a", 300), ("b", 300), ("c", 300), ("d", 100)]
    assert size_bounded_batches(sized, max_count=50, max_bytes=600) == [["a", "b"], ["c", "d"]]


def test_a_mail_larger_than_the_budget_is_a_batch_of_its_own_and_order_is_kept() -> None:
    sized = [("small1", 10), ("huge", 5000), ("small2", 10), ("small3", 10)]
    assert size_bounded_batches(sized, max_count=50, max_bytes=1000) == [
        ["small1"],
        ["huge"],
        ["small2", "small3"],
    ]


def test_nothing_gives_no_batch_and_a_count_below_one_is_refused() -> None:
    assert size_bounded_batches([], max_count=5) == []
    with pytest.raises(ValueError, match="max_count"):
        size_bounded_batches([("a", 1)], max_count=0)
