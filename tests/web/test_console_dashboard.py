"""The dashboard page: real numbers, SVG charts with text alternatives, and their geometry."""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask import Flask
from sqlalchemy.orm import Session

from newsletter.access.console_sessions import start_session
from newsletter.access.roles import Role
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Feed,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.web.console.charts import HEIGHT, bar_chart, line_chart, nice_max
from newsletter.web.console.guard import COOKIE
from tests.support.console import make_user


def test_the_dashboard_shows_the_lists_the_charts_and_the_feeds(
    app: Flask, db: Session, settings: Settings
) -> None:
    daily = Newsletter(slug="daily", name="Daily digest")
    db.add(daily)
    db.flush()
    now = utcnow()
    for n in range(3):
        who = Subscriber(email=f"r{n}@example.com", email_key=f"r{n}@example.com")
        who.status = SubscriberStatus.ACTIVE
        db.add(who)
        db.flush()
        db.add(
            Subscription(
                subscriber_id=who.id,
                newsletter_id=daily.id,
                status=SubscriptionStatus.ACTIVE,
                confirmed_at=now - timedelta(days=n),
            )
        )
    db.add(Feed(url="https://b.example.com/rss", error_count=3, last_error="HTTP 503 <oops>"))
    viewer = make_user(db, "viewer@example.com", Role.VIEWER)
    _row, token = start_session(db, settings, viewer)
    db.commit()
    client = app.test_client()
    client.set_cookie(COOKIE, token, path="/console")

    html = client.get("/console/").get_data(as_text=True)
    assert "Daily digest" in html and "<strong>3</strong> now" in html
    assert html.count('<svg class="chart"') == 2
    assert '<title id="growth-chart-title">Active subscriptions per day</title>' in html
    assert re.search(r'<desc id="movement-chart-desc">3 confirmations and 0 unsubscribes', html)
    assert html.count("chart__bar--joined") == 30  # one bar a day, and each with its title
    assert f'<th scope="row">{now.date().isoformat()}</th><td>1</td>' in html
    assert "HTTP 503 &lt;oops&gt;" in html and "failing" in html  # escaped, and flagged
    assert "Nothing sent yet." in html and "Nothing scheduled." in html
    assert "<script" not in html  # no inline script: the CSP forbids it


def test_nice_maxima_and_bars_in_proportion() -> None:
    assert [nice_max(v) for v in (0, 1, 4, 5, 9, 37, 120, 999)] == [4, 4, 4, 8, 20, 40, 200, 2000]
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(4)]
    chart = bar_chart(
        days, [("joined", "confirmations", [0, 2, 4, 8]), ("left", "x", [1, 0, 0, 0])]
    )
    heights = [bar.height for bar in chart.bars if bar.series == "joined"]
    assert heights[0] == 0 and heights[2] == 2 * heights[1] and heights[3] == 2 * heights[2]
    assert all(bar.y + bar.height == chart.baseline for bar in chart.bars)
    assert chart.bars[1].title == "1 Mar: 1 x"
    assert [t.label for t in chart.ticks] == ["0", "2", "4", "6", "8"]


def test_a_line_through_each_day() -> None:
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(3)]
    chart = line_chart(days, [4, 2, 0])
    points = [tuple(map(float, p.split(","))) for p in chart.line.split()]
    assert len(points) == 3 and points[2][1] == chart.baseline and points[0][1] < points[1][1]
    assert chart.area.startswith("M") and chart.area.endswith("Z")
    assert 0 < chart.baseline < HEIGHT
