"""The deliverability guard's rule: pause before a rate passes its limit, over a minimum sample.

The engine's use of it is tested in tests/delivery/test_batches.py (hard bounces at SMTP time),
tests/inbound/test_processing.py (complaints reported later) and
tests/integration/test_dispatch.py (a real worker).
"""

from __future__ import annotations

import random

import pytest

from newsletter.inbound.guard import Guard, at_limit, pause_reason
from newsletter.settings import Settings


def test_nothing_is_judged_before_the_first_event_or_with_the_guard_off() -> None:
    assert not at_limit(0, 0, 0.05, 0)
    assert not at_limit(0, 5000, 0.05, 1000)
    assert not at_limit(900, 1000, 0.0, 1000)  # 0 turns it off


def test_within_the_sample_the_limit_allows_rate_times_sample() -> None:
    # 5% of at least 1000 mails: 50 hard bounces may happen, the 50th pauses the send.
    assert not at_limit(49, 49, 0.05, 1000)
    assert at_limit(50, 50, 0.05, 1000)
    assert at_limit(50, 999, 0.05, 1000)
    # Past the sample the allowance grows with the mails: 60 of 1200 is at 5%.
    assert not at_limit(59, 1200, 0.05, 1000)
    assert at_limit(60, 1200, 0.05, 1000)


@pytest.mark.parametrize("seed", range(20))
def test_a_send_stopped_at_the_first_trip_never_passes_the_limit(seed: int) -> None:
    rnd = random.Random(seed)
    limit, sample = rnd.choice([0.05, 0.1, 0.003]), rnd.choice([20, 200, 1000])
    share = rnd.choice([0.02, 0.08, 0.2, 0.5])  # how bad the list is
    count = mails = 0
    tripped = False
    for _ in range(5000):
        mails += 1
        if rnd.random() < share:
            count += 1
            # The invariant at every event, the one that trips included.
            assert count <= max(1, limit * max(mails, sample))
            if at_limit(count, mails, limit, sample):
                tripped = True
                break
    if tripped:
        # And it did not pause early: the next mail bouncing would have passed the limit.
        assert count + 1 > limit * max(mails + 1, sample)
    else:
        assert count <= limit * max(mails, sample)


def test_the_reason_names_the_rate_the_limit_and_what_to_do() -> None:
    settings = Settings(guard_bounce_rate=0.05, guard_min_sample=200)
    reason = pause_reason(settings, Guard.BOUNCE, 23, 460)
    assert reason.startswith(
        "auto-paused: 23 of 460 mails (5%) hard-bounced, one more would pass the 5% limit "
        "(NEWSLETTER_GUARD_BOUNCE_RATE). Those addresses are suppressed already;"
    )
    assert "newsletter subscribers export ADDRESS" in reason
    assert reason.endswith(
        "its next hard bounce pauses it again while the rate is still at the limit."
    )


def test_the_reason_within_the_sample_says_what_the_sample_allows() -> None:
    settings = Settings(guard_bounce_rate=0.05, guard_min_sample=200)
    reason = pause_reason(settings, Guard.BOUNCE, 10, 70)
    assert reason.startswith(
        "auto-paused: 10 of the first 70 mails hard-bounced: as many as the 5% limit "
        "(NEWSLETTER_GUARD_BOUNCE_RATE) allows in the first 200 (NEWSLETTER_GUARD_MIN_SAMPLE)."
    )


def test_a_complaint_past_the_limit_says_over_it() -> None:
    settings = Settings(guard_complaint_rate=0.003, guard_min_sample=200)
    # 0.3% of 200 is 0.6: the first complaint cannot be stopped, only reported.
    reason = pause_reason(settings, Guard.COMPLAINT, 1, 150)
    assert reason.startswith(
        "auto-paused: 1 of the first 150 mails were reported as spam: more than the 0.3% limit "
        "(NEWSLETTER_GUARD_COMPLAINT_RATE) allows in the first 200"
    )
    assert "Gmail and Yahoo" in reason
    over = pause_reason(settings, Guard.COMPLAINT, 5, 1000)
    assert over.startswith(
        "auto-paused: 5 of 1000 mails (0.5%) were reported as spam, over the 0.3% limit"
    )
