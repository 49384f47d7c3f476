"""The counter's own tally of failed tries, and how it plans a batch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counting_core.constants import IMAGE_WORST_CASE_SECONDS
from counting_core.uploads.delivery import (
    CRASHES_ATTRIBUTE,
    FAILURES_ATTRIBUTE,
    NotEnoughTime,
    Tally,
    TimeBudget,
    plan_batch,
)
from counting_core.uploads.failures import Fate

# The plan's fates; None: the message is counted.
COUNT, AGAIN, DEAD = None, Fate.HANDED_BACK, Fate.DEAD_LETTERED


def attributes(failures: str, crashes: str) -> dict:
    return {
        FAILURES_ATTRIBUTE: {"stringValue": failures, "dataType": "Number"},
        CRASHES_ATTRIBUTE: {"stringValue": crashes, "dataType": "Number"},
    }


def test_a_first_receive_has_failed_nothing():
    assert Tally.of(1, {}) == Tally(0, 0)


def test_unreported_receives_count_as_crashes():
    assert Tally.of(3, {}) == Tally(0, 2)
    assert Tally.of(2, attributes("1", "1")) == Tally(1, 2)


@pytest.mark.parametrize(
    "attrs",
    [
        {FAILURES_ATTRIBUTE: {"stringValue": "many"}},
        {FAILURES_ATTRIBUTE: "3"},
        {FAILURES_ATTRIBUTE: {"stringValue": "-4"}},
        {FAILURES_ATTRIBUTE: None},
        {},
    ],
)
def test_unreadable_attributes_count_as_zero(attrs):
    assert Tally.of(1, attrs).failures == 0


def test_carried_counts_are_capped():
    # At most the 5 failures after which a message is dead-lettered.
    assert Tally.of(1, attributes("99999", "0")).failures == 5


def test_the_tally_round_trips_through_sendmessage_attributes():
    tally = Tally(2, 1)
    sent = {
        name: {"stringValue": value["StringValue"]} for name, value in tally.attributes().items()
    }

    assert Tally.of(1, sent) == tally


def test_retries_wait_longer_each_time_up_to_sqs_maximum():
    assert [Tally(n, 0).retry_delay_seconds() for n in range(6)] == [0, 30, 60, 120, 240, 480]
    assert Tally(20, 0).retry_delay_seconds() == 900


def test_five_failed_tries_exhaust_a_message():
    assert not Tally(3, 1).exhausted
    assert Tally(4, 1).exhausted
    assert Tally(0, 5).exhausted
    assert Tally(4, 0).failed().exhausted


def test_a_batch_without_suspects_is_counted_whole():
    assert plan_batch([Tally(), Tally(2, 0), Tally()]) == [COUNT, COUNT, COUNT]


def test_a_suspect_is_counted_alone_and_the_others_sent_again():
    plan = plan_batch([Tally(), Tally(0, 1), Tally(1, 0), Tally(0, 2)])

    assert plan == [AGAIN, COUNT, AGAIN, AGAIN]


def test_a_suspect_alone_is_counted():
    assert plan_batch([Tally(0, 3)]) == [COUNT]


def test_exhausted_messages_are_dead_lettered_and_do_not_hide_a_suspect():
    assert plan_batch([Tally(0, 5), Tally(0, 1)]) == [DEAD, COUNT]
    assert plan_batch([Tally(5, 0), Tally(), Tally(0, 1)]) == [DEAD, AGAIN, COUNT]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=10))
def test_every_plan_counts_at_most_one_suspect_and_makes_progress(pairs):
    tallies = [Tally(failures, crashes) for failures, crashes in pairs]

    plan = plan_batch(tallies)

    counted = [tally for tally, action in zip(tallies, plan, strict=True) if action is COUNT]
    if any(tally.suspect for tally in counted):
        assert len(counted) == 1
    live = [tally for tally in tallies if not tally.exhausted]
    assert bool(counted) == bool(live)
    assert all(
        (action is DEAD) == tally.exhausted for tally, action in zip(tallies, plan, strict=True)
    )


def test_the_first_image_always_starts_and_later_ones_need_a_worst_case():
    remaining = [1000]
    budget = TimeBudget()
    budget.new_invocation(lambda: remaining[0])
    budget.start_image()
    remaining[0] = IMAGE_WORST_CASE_SECONDS * 1000
    budget.start_image()
    remaining[0] -= 1
    with pytest.raises(NotEnoughTime, match=r"not started: 366\.0 s left .* it is sent again"):
        budget.start_image()
    budget.new_invocation(lambda: 1)
    budget.start_image()


def test_a_call_that_waited_for_its_slot_needs_a_worst_case_too():
    # Admitted at its start with a worst case and a minute left, an image that then waited
    # two minutes for an endpoint slot has less than a worst case left: it must not call.
    remaining = [IMAGE_WORST_CASE_SECONDS * 1000 + 60_000]
    budget = TimeBudget()
    budget.new_invocation(lambda: remaining[0])
    budget.start_image()
    budget.start_image()
    budget.start_call()  # the first call of the invocation always goes
    remaining[0] -= 120_000
    with pytest.raises(NotEnoughTime, match=r"not sent to the endpoint: 306\.0 s left"):
        budget.start_call()
