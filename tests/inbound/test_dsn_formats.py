"""Bounces in the formats real MTAs and mailbox providers send them, about mail we really sent.

Each sample (tests/data/inbound, its format per sender in the README there) is filled with a
reader's VERP address and the headers (or the whole copy) of the campaign our dispatch sent
them, then processed twice (the second time changes nothing). With VERP the envelope names the
reader; without it, the report must be read well enough to find the failed address and our
Message-ID in the quoted mail, in every format.
"""

from __future__ import annotations

import pytest

from newsletter.inbound.processing import Result
from newsletter.settings import Settings
from newsletter.store.models import DeliveryStatus, SubscriberStatus
from tests.support.inbound import ALICE, BOB, World, header_block, lf, sample, sending
from tests.support.smtp import SMTPSink

# sample → (the enhanced status it reports, the remote server's words we keep)
FORMATS = {
    "postfix-5.1.1.eml": ("5.1.1", "User unknown in virtual mailbox"),
    "exim-5.1.1.eml": ("5.1.1", "No such user here"),
    "gmail-5.1.1.eml": ("5.1.1", "does not exist"),
    "workspace-5.2.1.eml": ("5.2.1", "is disabled"),
    "exchange-5.1.10.eml": ("5.1.10", "RecipientNotFound"),
    "outlook-5.5.0.eml": ("5.5.0", "mailbox unavailable"),
    "yahoo-554.eml": ("554", "doesn't have a yahoo.com account"),  # no enhanced code
    "ses-5.1.1.eml": ("5.1.1", "user unknown"),
    "qmail-5.1.1.eml": ("5.1.1", "no mailbox here by that name"),
    "sendmail-5.1.1.eml": ("5.1.1", "User unknown"),
}


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings sending to the sink with a VERP bounce address."""
    return sending(settings, smtp_sink)


def report(world: World, name: str, issue_id: int, *, to: str) -> bytes:
    """A sample about Bob's mail in the issue, addressed to ``to``."""
    mail = world.mail_to(BOB, issue_id)
    return sample(
        name,
        verp=to,
        to=to,
        email=BOB,
        original_headers=header_block(mail.data),
        original_message=lf(mail.data),
    )


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("evidence", ["verp", "quoted message-id"])
def test_each_format_bounces_the_reader_it_is_about(world: World, name: str, evidence: str) -> None:
    issue_id = world.send()
    status, words = FORMATS[name]
    if evidence == "verp":
        to = world.mail_to(BOB, issue_id).mail_from
        outcome = world.twice(report(world, name, issue_id, to=to), recipient=to)
    else:  # a plain bounce address: only what the report quotes can tie it to our mail
        to = "newsletter@news.example.com"
        outcome = world.twice(report(world, name, issue_id, to=to))

    assert outcome.result == Result.BOUNCED, outcome.line()
    assert outcome.issue_id == issue_id and outcome.subscriber_id == world.reader(BOB).id
    delivery = world.delivery(BOB, issue_id)
    assert delivery.status == DeliveryStatus.BOUNCED
    assert status in delivery.smtp_response and words in delivery.smtp_response, (
        delivery.smtp_response
    )
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    assert world.reader(ALICE).status == SubscriberStatus.ACTIVE
