"""JSON API for editors and ops: issues (create, send, pause, resume, cancel, resend, test),
schedules and previews. Routes on the /api/v1 blueprint, each needing a token with its scope;
their bodies, queries and answers are the models of api_schemas.py.

Illegal transitions answer 409, unknown ids 404, bad input 400, each a problem whose detail says
what to do. Sending answers 202: the work continues in the workers; poll ``GET /issues/<id>``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g

from newsletter.access.roles import may_override
from newsletter.issues import lifecycle, rendering, schedules
from newsletter.issues.progress import progress
from newsletter.issues.summary import describe
from newsletter.store.db import utcnow
from newsletter.store.models import Issue, NewsletterKind, Schedule
from newsletter.web import db, settings, task_queue
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_etags import IF_MATCH, check_if_match, issue_etag, locked, schedule_etag
from newsletter.web.api_idempotency import IDEMPOTENCY_KEY, idempotent
from newsletter.web.api_paging import decode_cursor, page
from newsletter.web.api_schemas import (
    IssueCreate,
    IssueEdit,
    IssueListQuery,
    IssuePage,
    IssueReply,
    IssueSend,
    PageQuery,
    PreviewQuery,
    PreviewReply,
    ResendReply,
    ScheduleCreate,
    ScheduleEdit,
    SchedulePage,
    ScheduleReply,
    TestReply,
    TestSend,
)
from newsletter.web.openapi import operation

F = TypeVar("F", bound=Callable[..., Any])
ISSUES = "issues"
SCHEDULES = "schedules"


def domain_errors(view: F) -> F:
    """Translate refusals of the domain core into problems (404/409/400)."""

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


def _issue_body(issue_id: int) -> dict[str, Any]:
    issue = lifecycle.get_issue(db(), issue_id)
    return {
        "issue": describe(issue).to_json(),
        "progress": progress(db(), issue_id).to_json(),
    }


def _issue_tag(issue_id: int) -> dict[str, str]:
    """The ETag header of an issue as it is now."""
    return {"ETag": issue_etag(lifecycle.get_issue(db(), issue_id))}


def _schedule_answer(schedule: Schedule) -> tuple[dict[str, Any], dict[str, str]]:
    """A schedule's body and its ETag header."""
    body = {"schedule": schedules.describe(db(), schedule).to_json()}
    return body, {"ETag": schedule_etag(schedule)}


# --- Issues --------------------------------------------------------------------------------------


@bp.get("/issues")
@require_token("issues:read")
@operation(tag=ISSUES, query=IssueListQuery, responses={200: IssuePage}, problems=(404,))
@domain_errors
def list_issues(query: IssueListQuery) -> dict[str, Any]:
    """Newest issues first, optionally of one newsletter or status; paged by ``after``."""
    after = decode_cursor(query.after, [int])
    issues = lifecycle.list_issues(
        db(),
        newsletter=query.newsletter or None,
        status=query.status.value if query.status else None,
        limit=query.limit + 1,
        before_id=after[0] if after else None,
    )
    shown, cursor = page(issues, query.limit, lambda i: [i.id])
    return {"items": [describe(i).to_json() for i in shown], "next": cursor}


@bp.post("/issues")
@require_token("issues:write")
@idempotent
@operation(
    tag=ISSUES,
    body=IssueCreate,
    responses={201: IssueReply},
    problems=(404, 409, 422),
    headers=(IDEMPOTENCY_KEY,),
    response_headers=("ETag",),
    creates=("issue_id", "/issue/id"),
)
@domain_errors
def create_issue(body: IssueCreate) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Create a digest (planned from posts) or a campaign draft; ``send_at`` schedules it."""
    newsletter = lifecycle.find_newsletter(db(), body.newsletter)
    kind = body.kind or NewsletterKind(newsletter.kind)
    if kind is NewsletterKind.DIGEST:
        issue = lifecycle.create_digest(
            db(), settings(), newsletter, frequency=body.frequency, send_at=body.send_at
        )
    else:
        if body.subject is None:
            raise ApiError(400, "'subject' is required", field="subject")
        issue = lifecycle.create_campaign(
            db(),
            settings(),
            newsletter,
            subject=body.subject,
            body_html=body.html or "",
            body_text=body.text or "",
            preheader=body.preheader or "",
            frequency=body.frequency,
        )
        if body.send_at is not None:
            issue.status = lifecycle.S.SCHEDULED
            issue.send_at = body.send_at
    db().commit()
    return _issue_body(issue.id), 201, _issue_tag(issue.id)


@bp.get("/issues/<int:issue_id>")
@require_token("issues:read")
@operation(tag=ISSUES, responses={200: IssueReply}, response_headers=("ETag",))
@domain_errors
def show_issue(issue_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """One issue with its live progress (counts, rate, ETA); its ETag for If-Match."""
    return _issue_body(issue_id), 200, _issue_tag(issue_id)


@bp.patch("/issues/<int:issue_id>")
@require_token("issues:write")
@operation(
    tag=ISSUES,
    body=IssueEdit,
    responses={200: IssueReply},
    problems=(409, 412),
    headers=(IF_MATCH,),
    response_headers=("ETag",),
)
@domain_errors
def edit_issue(issue_id: int, body: IssueEdit) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Edit subject, preheader or a campaign's html/text before it goes out; with If-Match,
    only if nobody changed the issue since (412 otherwise)."""
    issue = locked(db(), Issue, issue_id)
    if issue is not None:
        check_if_match(issue_etag(issue))
    lifecycle.edit(
        db(),
        settings(),
        issue_id,
        subject=body.subject,
        preheader=body.preheader,
        body_html=body.html,
        body_text=body.text,
    )
    db().commit()
    return _issue_body(issue_id), 200, _issue_tag(issue_id)


@bp.post("/issues/<int:issue_id>/send")
@require_token("issues:send")
@idempotent
@operation(
    tag=ISSUES,
    body=IssueSend,
    body_required=False,
    responses={200: IssueReply, 202: IssueReply},
    problems=(403, 409, 422),
    headers=(IDEMPOTENCY_KEY,),
)
@domain_errors
def send_issue(issue_id: int, body: IssueSend) -> tuple[dict[str, Any], int]:
    """Send now (202), or schedule it (200) when ``send_at`` is in the future.

    The pre-send check runs first; a failure is a 422 naming the failed checks, unless an
    admin gives ``override_check`` (its reason is recorded on the issue).
    """
    if body.send_at is not None and body.send_at > utcnow():
        lifecycle.schedule(db(), issue_id, body.send_at)
        return _issue_body(issue_id), 200
    override = body.override_check or ""
    if override and not may_override(g.api_token):
        raise ApiError(403, "only an admin may override the pre-send check")
    lifecycle.send(db(), settings(), issue_id, task_queue(), override=override)
    return _issue_body(issue_id), 202


@bp.post("/issues/<int:issue_id>/pause")
@require_token("issues:send")
@operation(tag=ISSUES, responses={200: IssueReply}, problems=(409,))
@domain_errors
def pause_issue(issue_id: int) -> dict[str, Any]:
    """Stop after the mail in flight; the rest stays queued."""
    lifecycle.pause(db(), issue_id)
    return _issue_body(issue_id)


@bp.post("/issues/<int:issue_id>/resume")
@require_token("issues:send")
@operation(tag=ISSUES, responses={202: IssueReply}, problems=(409,))
@domain_errors
def resume_issue(issue_id: int) -> tuple[dict[str, Any], int]:
    """Continue a paused (or failed) send."""
    lifecycle.resume(db(), settings(), issue_id, task_queue())
    return _issue_body(issue_id), 202


@bp.post("/issues/<int:issue_id>/cancel")
@require_token("issues:send")
@operation(tag=ISSUES, responses={200: IssueReply}, problems=(409,))
@domain_errors
def cancel_issue(issue_id: int) -> dict[str, Any]:
    """Stop for good; what was not sent is skipped."""
    lifecycle.cancel(db(), issue_id)
    return _issue_body(issue_id)


@bp.post("/issues/<int:issue_id>/resend-failed")
@require_token("issues:send")
@operation(tag=ISSUES, responses={200: ResendReply, 202: ResendReply}, problems=(409,))
@domain_errors
def resend_failed(issue_id: int) -> tuple[dict[str, Any], int]:
    """Queue the failed deliveries again (not to bounced, unsubscribed or suppressed readers);
    202 when any was queued, else 200."""
    result = lifecycle.resend_failed(db(), settings(), issue_id, task_queue())
    body = _issue_body(issue_id)
    body["requeued"] = result.requeued
    body["not_mailable"] = result.not_mailable
    return body, 202 if result.requeued else 200


@bp.post("/issues/<int:issue_id>/hold")
@require_token("issues:send")
@operation(tag=ISSUES, responses={200: IssueReply}, problems=(409,))
@domain_errors
def hold_issue(issue_id: int) -> dict[str, Any]:
    """The editor's veto: a held scheduled issue does not go out."""
    lifecycle.hold(db(), issue_id)
    return _issue_body(issue_id)


@bp.post("/issues/<int:issue_id>/release")
@require_token("issues:send")
@operation(tag=ISSUES, responses={200: IssueReply}, problems=(409,))
@domain_errors
def release_issue(issue_id: int) -> dict[str, Any]:
    """Lift the hold: the issue goes out at its time (or at the next tick if that passed)."""
    lifecycle.hold(db(), issue_id, held=False)
    return _issue_body(issue_id)


@bp.post("/issues/<int:issue_id>/test")
@require_token("issues:send")
@operation(tag=ISSUES, body=TestSend, responses={200: TestReply})
@domain_errors
def test_issue(issue_id: int, body: TestSend) -> dict[str, Any]:
    """Send the issue to ``{"to": [addresses]}`` now, subject prefixed "[TEST]"."""
    to = [body.to] if isinstance(body.to, str) else body.to
    results = lifecycle.test_send(db(), settings(), issue_id, to)
    return {"results": [{"to": r.address, "ok": r.ok, "answer": r.answer} for r in results]}


# --- Schedules -----------------------------------------------------------------------------------


@bp.get("/schedules")
@require_token("schedules:read")
@operation(tag=SCHEDULES, query=PageQuery, responses={200: SchedulePage})
def list_schedules(query: PageQuery) -> dict[str, Any]:
    """Every schedule with its next send times, oldest first; paged by ``after``."""
    after = decode_cursor(query.after, [int])
    rows = schedules.list_schedules(
        db(), after_id=after[0] if after else None, limit=query.limit + 1
    )
    shown, cursor = page(rows, query.limit, lambda s: [s.id])
    return {"items": [schedules.describe(db(), s).to_json() for s in shown], "next": cursor}


@bp.post("/schedules")
@require_token("schedules:write")
@operation(
    tag=SCHEDULES,
    body=ScheduleCreate,
    responses={201: ScheduleReply},
    problems=(404,),
    response_headers=("ETag",),
    creates=("schedule_id", "/schedule/id"),
)
@domain_errors
def create_schedule(body: ScheduleCreate) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Add a schedule: newsletter, cron, timezone, frequency, reader_local_time, ..."""
    schedule = schedules.create_schedule(
        db(),
        newsletter=body.newsletter,
        cron=body.cron,
        timezone=body.timezone,
        frequency=body.frequency.value if body.frequency else None,
        reader_local_time=body.reader_local_time,
        prepare_minutes=body.prepare_minutes,
        name=body.name,
        enabled=body.enabled,
    )
    db().commit()
    reply, tag = _schedule_answer(schedule)
    return reply, 201, tag


@bp.get("/schedules/<int:schedule_id>")
@require_token("schedules:read")
@operation(tag=SCHEDULES, responses={200: ScheduleReply}, response_headers=("ETag",))
@domain_errors
def show_schedule(schedule_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """One schedule with its next send times; its ETag for If-Match."""
    reply, tag = _schedule_answer(schedules.get_schedule(db(), schedule_id))
    return reply, 200, tag


@bp.patch("/schedules/<int:schedule_id>")
@require_token("schedules:write")
@operation(
    tag=SCHEDULES,
    body=ScheduleEdit,
    responses={200: ScheduleReply},
    problems=(412,),
    headers=(IF_MATCH,),
    response_headers=("ETag",),
)
@domain_errors
def update_schedule(
    schedule_id: int, body: ScheduleEdit
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Change any of cron, timezone, frequency, reader_local_time, prepare_minutes, name,
    enabled; takes effect at the next tick. With If-Match, only if unchanged since (412)."""
    current = locked(db(), Schedule, schedule_id)
    if current is not None:
        check_if_match(schedule_etag(current))
    changes = body.model_dump(exclude_unset=True)
    if changes.get("frequency") is not None:
        changes["frequency"] = changes["frequency"].value
    schedule = schedules.update_schedule(db(), schedule_id, **changes)
    db().commit()
    reply, tag = _schedule_answer(schedule)
    return reply, 200, tag


@bp.delete("/schedules/<int:schedule_id>")
@require_token("schedules:write")
@operation(tag=SCHEDULES, responses={204: None})
@domain_errors
def delete_schedule(schedule_id: int) -> tuple[str, int]:
    """Remove a schedule (its past issues stay)."""
    schedules.delete_schedule(db(), schedule_id)
    db().commit()
    return "", 204


# --- Preview -------------------------------------------------------------------------------------


@bp.get("/newsletters/<slug>/preview")
@require_token("issues:read")
@operation(tag=ISSUES, query=PreviewQuery, responses={200: PreviewReply})
@domain_errors
def preview(slug: str, query: PreviewQuery) -> dict[str, Any]:
    """What the newsletter would send now: subject, html, text and a signed preview link;
    404 when the newsletter is unknown or has nothing to preview."""
    newsletter = lifecycle.find_newsletter(db(), slug)
    frequency = query.frequency
    if frequency is None and NewsletterKind(newsletter.kind) is NewsletterKind.DIGEST:
        frequency = newsletter.default_frequency
    cohort = frequency.value if frequency is not None else None
    try:
        subject, html, text = rendering.preview(db(), settings(), slug, cohort)
    except rendering.NothingToPreview as exc:
        db().rollback()
        raise ApiError(404, str(exc)) from None
    db().rollback()  # previews change nothing
    return {
        "newsletter": slug,
        "frequency": cohort,
        "subject": subject,
        "html": html,
        "text": text,
        "url": rendering.preview_url(settings(), slug, cohort),
    }
