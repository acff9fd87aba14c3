"""The dashboard at /console/: subscriptions and growth, the last sends, what is next, feeds."""

from __future__ import annotations

from flask import render_template

from newsletter.access.roles import Role
from newsletter.ops.dashboard import daily_counts, feed_health, last_sends, list_counts, upcoming
from newsletter.web import db
from newsletter.web.console.charts import bar_chart, line_chart
from newsletter.web.console.guard import bp, role_required


@bp.get("/")
@role_required(Role.VIEWER)
def dashboard() -> str:
    """Every panel, read from the database on each visit."""
    session = db()
    days = daily_counts(session)
    dates = [d.day for d in days]
    movement = bar_chart(
        dates,
        [
            ("joined", "confirmations", [d.confirmations for d in days]),
            ("left", "unsubscribes", [d.unsubscribes for d in days]),
        ],
    )
    growth = line_chart(dates, [d.active for d in days])
    return render_template(
        "web/console/dashboard.html",
        lists=list_counts(session),
        days=days,
        movement=movement,
        growth=growth,
        sends=last_sends(session),
        upcoming=upcoming(session),
        feeds=feed_health(session),
    )
