"""JSON API for editors and ops: issues (create, send, pause, resume, cancel, resend, test),
schedules and previews. Routes on the /api/v1 blueprint, each needing a token with its scope.

Illegal transitions answer 409, unknown ids 404, bad input 400, each with a message that says
what to do. Sending answers 202: the work continues in the workers; poll ``GET /issues/<id>``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

from flask import Response, jsonify, request

from newsletter.issues import lifecycle, rendering, schedules
from newsletter.issues.progress import progress
from newsletter.issues.summary import describe
from newsletter.store.db import utcnow
from newsletter.store.models import NewsletterKind
from newsletter.web import db, settings, task_queue
from newsletter.web.api import ApiError, bp, json_body, require_token

F = TypeVar("F", bound=Callable[..., Any])


def domain_errors(view: F) -> F:
    """Translate refusals of the domain core into JSON errors (404/409/400)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except (lifecycle.IssueNotFound, schedules.ScheduleNotFound) as exc:
            db().rollback()
            raise ApiError(404, str(exc)) from None
        except lifecycle.IllegalTransition as exc:
            db().rollback()
            raise ApiError(409, str(exc)) from None
        except lifecycle.CheckFailed as exc:
            db().rollback()
            findings = [{"check": f.name, "detail": f.detail} for f in exc.report.failures]
            raise ApiError(422, str(exc), failed_checks=findings) from None
        except (lifecycle.InvalidRequest, schedules.ScheduleError) as exc:
            db().rollback()
            raise ApiError(400, str(exc)) from None

    return wrapper  # type: ignore[return-value]


# --- Reading JSON fields -------------------------------------------------------------------------


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"'{name}' is required", field=name)
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a string", field=name)
    return value


def _flag(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false", field=name)
    return value


def _number(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be a whole number", field=name)
    return value


def _moment(data: dict[str, Any], name: str) -> datetime | None:
    raw = _text(data, name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"'{name}' must be an ISO 8601 date and time", field=name) from None
    if value.tzinfo is None:
        raise ApiError(
            400, f"'{name}' needs a time zone offset, e.g. 2030-01-01T08:00:00+01:00", field=name
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is after the last UTC day
        raise ApiError(400, f"'{name}' is out of range", field=name) from None


def _issue_body(issue_id: int) -> dict[str, Any]:
    issue = lifecycle.get_issue(db(), issue_id)
    return {
        "issue": describe(issue).to_json(),
        "progress": progress(db(), issue_id).to_json(),
    }


# --- Issues --------------------------------------------------------------------------------------


@bp.get("/issues")
@require_token("issues:read")
@domain_errors
def list_issues() -> Response:
    """Newest issues first: ?newsletter=SLUG&status=sending&limit=50."""
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "'limit' must be a whole number") from None
    issues = lifecycle.list_issues(
        db(),
        newsletter=request.args.get("newsletter") or None,
        status=request.args.get("status") or None,
        limit=limit,
    )
    return jsonify({"issues": [describe(i).to_json() for i in issues]})


@bp.post("/issues")
@require_token("issues:write")
@domain_errors
def create_issue() -> tuple[Response, int]:
    """Create a digest (planned from posts) or a campaign draft; ``send_at`` schedules it."""
    data = json_body()
    slug = _text(data, "newsletter", required=True) or ""
    newsletter = lifecycle.find_newsletter(db(), slug)
    kind = _text(data, "kind") or NewsletterKind(newsletter.kind).value
    send_at = _moment(data, "send_at")
    frequency = lifecycle.parse_frequency(_text(data, "frequency"))
    if kind == NewsletterKind.DIGEST.value:
        issue = lifecycle.create_digest(
            db(), settings(), newsletter, frequency=frequency, send_at=send_at
        )
    elif kind == NewsletterKind.CAMPAIGN.value:
        issue = lifecycle.create_campaign(
            db(),
            settings(),
            newsletter,
            subject=_text(data, "subject", required=True) or "",
            body_html=_text(data, "html") or "",
            body_text=_text(data, "text") or "",
            preheader=_text(data, "preheader") or "",
            frequency=frequency,
        )
        if send_at is not None:
            issue.status = lifecycle.S.SCHEDULED
            issue.send_at = send_at
    else:
        raise ApiError(400, "'kind' must be digest or campaign", field="kind")
    db().commit()
    return jsonify(_issue_body(issue.id)), 201


@bp.get("/issues/<int:issue_id>")
@require_token("issues:read")
@domain_errors
def show_issue(issue_id: int) -> Response:
    """One issue with its live progress (counts, rate, ETA)."""
    return jsonify(_issue_body(issue_id))


@bp.patch("/issues/<int:issue_id>")
@require_token("issues:write")
@domain_errors
def edit_issue(issue_id: int) -> Response:
    """Edit subject, preheader or a campaign's html/text before it goes out."""
    data = json_body()
    lifecycle.edit(
        db(),
        settings(),
        issue_id,
        subject=_text(data, "subject"),
        preheader=_text(data, "preheader"),
        body_html=_text(data, "html"),
        body_text=_text(data, "text"),
    )
    db().commit()
    return jsonify(_issue_body(issue_id))


@bp.post("/issues/<int:issue_id>/send")
@require_token("issues:send")
@domain_errors
def send_issue(issue_id: int) -> tuple[Response, int]:
    """Send now, or at ``send_at`` when it is in the future."""
    data = request.get_json(silent=True) if request.data else {}
    send_at = _moment(data if isinstance(data, dict) else {}, "send_at")
    if send_at is not None and send_at > utcnow():
        lifecycle.schedule(db(), issue_id, send_at)
        return jsonify(_issue_body(issue_id)), 200
    lifecycle.send(db(), settings(), issue_id, task_queue())
    return jsonify(_issue_body(issue_id)), 202


@bp.post("/issues/<int:issue_id>/pause")
@require_token("issues:send")
@domain_errors
def pause_issue(issue_id: int) -> Response:
    """Stop after the mail in flight; the rest stays queued."""
    lifecycle.pause(db(), issue_id)
    return jsonify(_issue_body(issue_id))


@bp.post("/issues/<int:issue_id>/resume")
@require_token("issues:send")
@domain_errors
def resume_issue(issue_id: int) -> tuple[Response, int]:
    """Continue a paused (or failed) send."""
    lifecycle.resume(db(), settings(), issue_id, task_queue())
    return jsonify(_issue_body(issue_id)), 202


@bp.post("/issues/<int:issue_id>/cancel")
@require_token("issues:send")
@domain_errors
def cancel_issue(issue_id: int) -> Response:
    """Stop for good; what was not sent is skipped."""
    lifecycle.cancel(db(), issue_id)
    return jsonify(_issue_body(issue_id))


@bp.post("/issues/<int:issue_id>/resend-failed")
@require_token("issues:send")
@domain_errors
def resend_failed(issue_id: int) -> tuple[Response, int]:
    """Queue the failed deliveries again (not to bounced, unsubscribed or suppressed readers)."""
    result = lifecycle.resend_failed(db(), settings(), issue_id, task_queue())
    body = _issue_body(issue_id)
    body["requeued"] = result.requeued
    body["not_mailable"] = result.not_mailable
    return jsonify(body), 202 if result.requeued else 200


@bp.post("/issues/<int:issue_id>/hold")
@require_token("issues:send")
@domain_errors
def hold_issue(issue_id: int) -> Response:
    """The editor's veto: a held scheduled issue does not go out."""
    lifecycle.hold(db(), issue_id)
    return jsonify(_issue_body(issue_id))


@bp.post("/issues/<int:issue_id>/release")
@require_token("issues:send")
@domain_errors
def release_issue(issue_id: int) -> Response:
    """Lift the hold: the issue goes out at its time (or at the next tick if that passed)."""
    lifecycle.hold(db(), issue_id, held=False)
    return jsonify(_issue_body(issue_id))


@bp.post("/issues/<int:issue_id>/test")
@require_token("issues:send")
@domain_errors
def test_issue(issue_id: int) -> Response:
    """Send the issue to ``{"to": [addresses]}`` now, subject prefixed "[TEST]"."""
    data = json_body()
    to = data.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
        raise ApiError(400, "'to' must be a list of email addresses", field="to")
    results = lifecycle.test_send(db(), settings(), issue_id, to)
    return jsonify(
        {"results": [{"to": r.address, "ok": r.ok, "answer": r.answer} for r in results]}
    )


# --- Schedules -----------------------------------------------------------------------------------


@bp.get("/schedules")
@require_token("schedules:read")
def list_schedules() -> Response:
    """Every schedule with its next send times."""
    rows = schedules.list_schedules(db())
    return jsonify({"schedules": [schedules.describe(db(), s).to_json() for s in rows]})


@bp.post("/schedules")
@require_token("schedules:write")
@domain_errors
def create_schedule() -> tuple[Response, int]:
    """Add a schedule: newsletter, cron, timezone, frequency, reader_local_time, ..."""
    data = json_body()
    schedule = schedules.create_schedule(
        db(),
        newsletter=_text(data, "newsletter", required=True) or "",
        cron=_text(data, "cron", required=True) or "",
        timezone=_text(data, "timezone") or "UTC",
        frequency=_text(data, "frequency"),
        reader_local_time=bool(_flag(data, "reader_local_time")),
        prepare_minutes=_number(data, "prepare_minutes") or 0,
        name=_text(data, "name") or "",
        enabled=_flag(data, "enabled") is not False,
    )
    db().commit()
    return jsonify({"schedule": schedules.describe(db(), schedule).to_json()}), 201


@bp.patch("/schedules/<int:schedule_id>")
@require_token("schedules:write")
@domain_errors
def update_schedule(schedule_id: int) -> Response:
    """Change any of cron, timezone, frequency, reader_local_time, prepare_minutes, name,
    enabled; takes effect at the next tick."""
    data = json_body()
    readers: dict[str, Callable[[dict[str, Any], str], Any]] = {
        "cron": _text,
        "timezone": _text,
        "frequency": _text,
        "name": _text,
        "reader_local_time": _flag,
        "enabled": _flag,
        "prepare_minutes": _number,
    }
    unknown = sorted(set(data) - set(readers))
    if unknown:
        raise ApiError(400, f"unknown fields: {', '.join(unknown)}")
    changes = {name: read(data, name) for name, read in readers.items() if name in data}
    schedule = schedules.update_schedule(db(), schedule_id, **changes)
    db().commit()
    return jsonify({"schedule": schedules.describe(db(), schedule).to_json()})


@bp.delete("/schedules/<int:schedule_id>")
@require_token("schedules:write")
@domain_errors
def delete_schedule(schedule_id: int) -> tuple[str, int]:
    """Remove a schedule (its past issues stay)."""
    schedules.delete_schedule(db(), schedule_id)
    db().commit()
    return "", 204


# --- Preview -------------------------------------------------------------------------------------


@bp.get("/newsletters/<slug>/preview")
@require_token("issues:read")
@domain_errors
def preview(slug: str) -> Response:
    """What the newsletter would send now: subject, html, text and a signed preview link."""

    newsletter = lifecycle.find_newsletter(db(), slug)
    frequency = lifecycle.parse_frequency(request.args.get("frequency"))
    if frequency is None and NewsletterKind(newsletter.kind) is NewsletterKind.DIGEST:
        frequency = newsletter.default_frequency
    cohort = frequency.value if frequency is not None else None
    try:
        subject, html, text = rendering.preview(db(), settings(), slug, cohort)
    except rendering.NothingToPreview as exc:
        db().rollback()
        raise ApiError(404, str(exc)) from None
    db().rollback()  # previews change nothing
    return jsonify(
        {
            "newsletter": slug,
            "frequency": cohort,
            "subject": subject,
            "html": html,
            "text": text,
            "url": rendering.preview_url(settings(), slug, cohort),
        }
    )
