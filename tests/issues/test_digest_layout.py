"""The digest reads as a news brand's: a lead story with its image, sections by category,
stories with thumbnails, the site's logo when configured, in both paths of the renderer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from newsletter.content.selection import Reader, plan_digest
from newsletter.issues.rendering import clear_cache, prepare_issue
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Issue, IssueStatus, Newsletter, NewsletterKind, Post
from tests.issues.test_rendering import Scene, bodies, crlf, parse, planned_scene, reader

IMG = re.compile(r"<img [^>]*>")
SECTION = re.compile(r'<td class="section-heading"[^>]*><h2[^>]*>([^<]+)</h2>')


@pytest.fixture
def scene(app: Flask, db: Session, settings: Settings) -> Iterator[Scene]:
    """The digest of tests/issues/test_rendering.py: three posts in three categories."""
    yield from planned_scene(app, db, settings)


def html_and_text(scene: Scene, who: Reader) -> tuple[str, str]:
    """The reader's HTML and text parts (fast path), checked against the plain render."""
    prepared = scene.prepared()
    assert prepared.fast
    mail = prepared.message_for(who)
    assert mail is not None
    text, html = bodies(parse(mail))
    expected = scene.reference(who)
    assert expected is not None
    assert crlf(text) == crlf(expected[1]) and crlf(html) == crlf(expected[2])
    return html, text.replace("\r\n", "\n")


def test_the_lead_has_a_large_image_the_others_sections_and_thumbnails(scene: Scene) -> None:
    vote, markets, match = scene.posts
    markets.image_url = "https://img.example.com/markets.png"  # no width or height known
    scene.issue.preheader = "changed"  # a new cache key
    scene.db.commit()
    html, _ = html_and_text(scene, reader())
    lead_image, thumb = IMG.findall(html)
    assert "vote.jpg" in lead_image and 'width="552"' in lead_image
    assert "markets.png" in thumb and 'width="96"' in thumb
    for image in (lead_image, thumb):  # a width attribute, and never wider than the column
        assert "max-width" in image and "height: auto" in image
    assert SECTION.findall(html) == ["Business", "Sport"]
    assert html.index(vote.title) < html.index("Business") < html.index(markets.title)
    assert html.index("Sport") < html.index(match.title)
    for post in scene.posts:
        assert html.count(f">{post.title}</a>") == 1  # every story once


def test_one_category_has_no_section_headings(scene: Scene) -> None:
    html, text = html_and_text(scene, reader(topics=("sport", "business"), sent=frozenset()))
    assert SECTION.findall(html) == ["Sport"]  # the lead is Business: two categories
    html, text = html_and_text(scene, reader(topics=("sport",)))
    assert SECTION.findall(html) == [] and "SPORT\n-----" not in text
    assert len(IMG.findall(html)) == 0


def test_sections_follow_the_newsletters_categories_for_every_selection(scene: Scene) -> None:
    now = utcnow()
    newsletter = Newsletter(slug="ordered", name="Ordered", categories=["Sport", "Business"])
    scene.db.add(newsletter)
    for i, categories in enumerate(
        [["Business"], ["Business", "Sport"], ["Sport"], ["business"], ["Politics", "Sport"]]
    ):
        scene.db.add(
            Post(
                guid=f"ordered-{i}",
                link=f"https://news.example.com/ordered-{i}",
                title=f"Ordered story {i}",
                categories=categories,
                published_at=now - timedelta(minutes=10 + i),
            )
        )
    scene.db.flush()
    issue = Issue(newsletter_id=newsletter.id, kind=NewsletterKind.DIGEST)
    scene.db.add(issue)
    scene.db.flush()
    assert plan_digest(scene.db, scene.settings, issue, now)
    issue.status = IssueStatus.SENDING
    scene.db.commit()
    scene.issue = issue
    ids = [int(i) for i in issue.post_ids]
    readers = [
        reader(),
        reader(name="", topics=("sport",)),
        reader(sent=frozenset(ids[:1])),
        reader(topics=("business",), sent=frozenset(ids[3:])),
        reader(name="Dr.", sent=frozenset(ids[:3])),
    ]
    layouts = []
    for who in readers:
        html, text = html_and_text(scene, who)
        layouts.append(SECTION.findall(html))
        for title in SECTION.findall(html):
            assert f"{title.upper()}\n{'-' * len(title)}" in text
    # Sport before Business, as the newsletter lists them. A post in both appears once, under
    # its own first category: the lead of the sport reader is a Business story, so their
    # other stories get a Sport heading; one reader's posts are all Business: no headings.
    assert layouts == [
        ["Sport", "Business"],
        ["Sport"],
        ["Sport", "Business"],
        [],
        ["Sport", "Business"],
    ]


@pytest.mark.parametrize(("width", "height"), [(180, 0), (240, 60)])
def test_the_logo_replaces_the_text_masthead_when_configured(
    scene: Scene, width: int, height: int
) -> None:
    html, text = html_and_text(scene, reader())
    assert '<td class="masthead"' in html and "<img" not in html.split("masthead", 2)[2][:200]
    clear_cache()
    scene.settings = replace(
        scene.settings,
        logo_url="https://news.example.com/logo.png",
        logo_width=width,
        logo_height=height,
    )
    html, text = html_and_text(scene, reader())
    masthead = html.split('<td class="masthead"', 1)[1].split("</td>", 1)[0]
    (logo,) = IMG.findall(masthead)
    assert 'src="https://news.example.com/logo.png"' in logo
    assert f'alt="{scene.settings.site_name}"' in logo and f'width="{width}"' in logo
    assert (f'height="{height}"' in logo) == bool(height)
    assert "max-width: 100%" in logo
    assert text.splitlines()[3] == scene.settings.site_name.upper()  # the text part keeps type


def test_an_image_without_dimensions_in_a_campaign_cannot_widen_the_mail(scene: Scene) -> None:
    offers = Newsletter(slug="offers", name="Offers", kind=NewsletterKind.CAMPAIGN)
    scene.db.add(offers)
    scene.db.flush()
    campaign = Issue(
        newsletter_id=offers.id,
        kind=NewsletterKind.CAMPAIGN,
        status=IssueStatus.SENDING,
        subject="Offer",
        body_html='<p><img src="https://news.example.com/huge.jpg" alt="Offer"></p>',
    )
    scene.db.add(campaign)
    scene.db.commit()
    with scene.app.app_context():
        prepared = prepare_issue(scene.db, scene.settings, campaign.id)
    mail = prepared.message_for(reader())
    assert mail is not None
    _, html = bodies(parse(mail))
    (image,) = IMG.findall(html.split('class="content"', 1)[1])
    assert "max-width: 100%" in image and "height: auto" in image
