"""The demo digest as mail clients draw it, in real Chromium at 600 and 360 px, light and dark.

The app is served from a thread (tests/support/live_app.py) so the demo posts' images load from
/static/demo/ as they do under `newsletter dev`; the mail's HTML is what a reader receives (the
fast path), set as the page's content. The HTML and the screenshots land in tmp_path for people
to look at; the assertions are on the layout Chromium computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.selection import plan_digest
from newsletter.issues.rendering import clear_cache, prepare_issue
from newsletter.ops.demo import seed_newsletters
from newsletter.ops.devserver import ingest_demo_feed
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Issue, Newsletter, NewsletterKind
from tests.issues.test_rendering import bodies, parse, reader
from tests.support.live_app import live_app

pytestmark = [pytest.mark.browser]

# Every element that sticks out past the right edge of the viewport (a phone scrolls sideways).
TOO_WIDE = """() => Array.from(document.querySelectorAll("body *"))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .map(e => e.tagName.toLowerCase() + "." + e.className)"""
# The images of the mail: what they show, how wide they are drawn, whether they loaded.
IMAGES = """() => Array.from(document.images).map(i => ({
  src: i.getAttribute("src"), alt: i.alt, width: i.getBoundingClientRect().width,
  loaded: i.complete && i.naturalWidth > 0}))"""


def demo_digest_html(db: Session, settings: Settings, url: str, app: Any) -> str:
    """The weekly demo digest (four posts, three categories) as "Jane Reader" receives it."""
    clear_cache()
    seed_newsletters(db)
    db.commit()
    ingest_demo_feed(settings, url)
    weekly = db.scalars(select(Newsletter).where(Newsletter.slug == "weekly")).one()
    issue = Issue(newsletter_id=weekly.id, kind=NewsletterKind.DIGEST, frequency="weekly")
    db.add(issue)
    db.flush()
    assert plan_digest(db, settings, issue, utcnow())
    db.commit()
    with app.app_context():
        prepared = prepare_issue(db, app.extensions["newsletter.settings"], issue.id)
    assert prepared.fast
    mail = prepared.message_for(reader(name="Jane Reader"))
    assert mail is not None
    _, html = bodies(parse(mail))
    return html


def test_the_demo_digest_at_600_and_360_px(
    page: Page, db: Session, settings: Settings, tmp_path: Path
) -> None:
    with live_app(settings) as (app, url):
        html = demo_digest_html(db, settings, url, app)
        (tmp_path / "digest.html").write_text(html)
        widths = {}
        for width in (600, 360):
            page.set_viewport_size({"width": width, "height": 900})
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(tmp_path / f"digest-{width}.png"), full_page=True)
            images = page.evaluate(IMAGES)
            widths[width] = [image["width"] for image in images]
            assert page.evaluate(TOO_WIDE) == [], f"wider than {width} px"
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            # The demo images load from the app, and none of them has a height in the feed.
            assert len(images) == 4 and all(image["loaded"] for image in images), images
            assert all("/static/demo/" in image["src"] for image in images)
            lead, *others = widths[width]
            assert all(lead > 3 * other for other in others), widths
    assert widths[600][0] == 552  # the lead across the column
    assert 300 <= widths[360][0] <= 360 - 2 * 16  # the column of a phone, minus its padding
    text = page.inner_text("body")
    assert "Hi Jane, here are the latest stories" in text
    for heading in ("WORLD", "POLITICS", "OFFERS"):
        assert heading in text  # a heading per category (text-transform: uppercase)


# Every element with text of its own: its colour, and the background it is drawn on (the first
# ancestor's that is not transparent), as Chromium computed them.
TEXT_COLOURS = """() => {
  const opaque = c => c && c !== "transparent" && !/rgba\\(.*,\\s*0\\)$/.test(c);
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (opaque(c)) return c;
    }
    return "rgb(255, 255, 255)";
  };
  return Array.from(document.querySelectorAll("body *"))
    .filter(e => Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim()))
    .filter(e => e.getBoundingClientRect().width > 0 && getComputedStyle(e).opacity !== "0")
    .map(e => ({tag: e.tagName.toLowerCase() + "." + e.className,
                text: e.textContent.trim().slice(0, 40),
                colour: getComputedStyle(e).color, background: background(e)}));
}"""


def _luminance(rgb: str) -> float:
    """WCAG relative luminance of a CSS rgb()/rgba() colour."""
    channels = [int(float(v)) / 255 for v in rgb[rgb.index("(") + 1 : -1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_of_the_digest_is_legible_in_light_and_dark_mode(
    page: Page, db: Session, settings: Settings, tmp_path: Path, scheme: str
) -> None:
    with live_app(settings) as (app, url):
        html = demo_digest_html(db, settings, url, app)
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": 600, "height": 900})
        page.set_content(html, wait_until="load")
        page.screenshot(path=str(tmp_path / f"digest-{scheme}.png"), full_page=True)
        texts = page.evaluate(TEXT_COLOURS)
    page_background = texts[0]["background"] if texts else ""
    # Dark mode really is dark: the mail's own background turned, not left to the client.
    assert (_luminance(page_background) < 0.05) == (scheme == "dark"), page_background
    assert len(texts) > 20
    # WCAG AA: 4.5:1 for body text, which every text here is held to (the footer included).
    poor = [
        (t["tag"], t["text"], round(contrast(t["colour"], t["background"]), 2))
        for t in texts
        if contrast(t["colour"], t["background"]) < 4.5
    ]
    assert poor == [], poor
