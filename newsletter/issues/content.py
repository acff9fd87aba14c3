"""What an issue says and the plain way to render it: loading, template context, previews.

:func:`render_reference` is the straightforward render (Jinja, then CSS inlining) of one
reader's mail. Previews and the public web version use it directly; the fast per-reader path in
:mod:`newsletter.issues.rendering` is checked against it before an issue is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2 import Environment
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.plain_text import html_to_plain_text
from newsletter.content.posts import latest_posts
from newsletter.content.sanitize import clean_html
from newsletter.content.selection import (
    NewsletterView,
    PostView,
    Reader,
    clean_line,
    digest_preheader,
    digest_subject,
    newsletter_view,
    plan_digest,
    post_view,
    select_for_reader,
    topic_keys,
)
from newsletter.issues.layout import arrange
from newsletter.issues.links import archive_url
from newsletter.mail.compose import Rendered, render_pair
from newsletter.readers import links
from newsletter.readers.greeting import first_name
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Frequency, Issue, IssueStatus, Newsletter, NewsletterKind, Post

TEMPLATES = {NewsletterKind.DIGEST: "digest", NewsletterKind.CAMPAIGN: "campaign"}


class NothingToPreview(LookupError):
    """There is no digest or draft to preview; the message says why."""


@dataclass(frozen=True)
class IssueContent:
    """What an issue says, loaded once: plain values, safe to keep across sessions."""

    issue_id: int | None
    kind: NewsletterKind
    frequency: str | None
    newsletter: NewsletterView
    posts: tuple[PostView, ...]
    fixed_subject: str  # the editor's subject for everyone; "" = from each reader's top story
    fixed_preheader: str
    body_html: str
    body_text: str
    day: date
    view_in_browser_url: str

    @property
    def template(self) -> str:
        """Base name of the template pair, e.g. ``digest`` for email/digest.html and .txt."""
        return TEMPLATES[self.kind]


# --- Loading and context -------------------------------------------------------------------------


def load_content(session: Session, settings: Settings, issue: Issue) -> IssueContent:
    """Everything the templates need from an issue, its newsletter and its posts."""
    newsletter = session.get(Newsletter, issue.newsletter_id)
    if newsletter is None:
        raise LookupError(f"issue {issue.id} belongs to no newsletter")
    nl = newsletter_view(newsletter)
    kind = NewsletterKind(issue.kind)
    stamp = issue.window_end or issue.send_at or issue.created_at or utcnow()
    day = stamp.date()
    posts: tuple[PostView, ...] = ()
    fixed_subject = clean_line(issue.subject or "")
    body_html = body_text = ""
    if kind is NewsletterKind.DIGEST:
        ids = [int(i) for i in issue.post_ids or []]
        rows = {p.id: p for p in session.scalars(select(Post).where(Post.id.in_(ids)))}
        planned = [post_view(rows[i]) for i in ids if i in rows]
        # The subject plan_digest wrote is derived per reader; only an edited one is kept.
        if fixed_subject == digest_subject(nl, planned, day, settings.site_name):
            fixed_subject = ""
        posts = tuple(view for view in planned if rows[view.id].retracted_at is None)
    else:
        body_html = clean_html(issue.body_html or "", settings.site_url)
        body_text = (issue.body_text or "").strip() or html_to_plain_text(body_html)
        fixed_subject = fixed_subject or nl.name
    return IssueContent(
        issue_id=issue.id,
        kind=kind,
        frequency=Frequency(issue.frequency).value if issue.frequency is not None else None,
        newsletter=nl,
        posts=posts,
        fixed_subject=fixed_subject,
        fixed_preheader=clean_line(issue.preheader or ""),
        body_html=body_html,
        body_text=body_text,
        day=day,
        view_in_browser_url=archive_url(settings, issue.id) if issue.id is not None else "",
    )


def subject_for(settings: Settings, content: IssueContent, posts: Sequence[PostView]) -> str:
    """A reader's subject: the editor's, or built from the top story of their posts."""
    if content.fixed_subject:
        return content.fixed_subject
    return digest_subject(content.newsletter, posts, content.day, settings.site_name)


def preheader_for(content: IssueContent, posts: Sequence[PostView]) -> str:
    """A reader's inbox preview text."""
    if content.fixed_preheader or content.kind is not NewsletterKind.DIGEST:
        return content.fixed_preheader
    return digest_preheader(posts)


def date_label(day: date) -> str:
    """The issue date as "Tuesday, 4 June 2024" (locale-independent)."""
    return f"{day:%A}, {day.day} {day:%B %Y}"


def reason_line(settings: Settings, content: IssueContent, archive: bool = False) -> str:
    """Why the reader got this mail (or, on the web version, what it is)."""
    if archive:
        return f"This is the web version of {content.newsletter.name} from {settings.site_name}."
    edition = f" ({content.frequency} edition)" if content.frequency else ""
    return (
        f"You are receiving {content.newsletter.name}{edition} because you subscribed to it "
        f"on {settings.site_name}."
    )


def template_context(
    settings: Settings,
    content: IssueContent,
    *,
    posts: Sequence[PostView],
    name: str,
    greeting_name: str,
    preferences_url: str,
    unsubscribe_url: str,
    subject: str,
    preheader: str,
    archive: bool = False,
) -> dict[str, Any]:
    """The variables of the digest and campaign templates (the same for fast and slow paths)."""
    layout = arrange(posts, content.newsletter.categories)
    return {
        "settings": settings,
        "newsletter": content.newsletter,
        "issue": content,
        "posts": list(posts),
        # The reader's top story, then the others in sections (issues.layout).
        "lead": layout.lead,
        "sections": list(layout.sections),
        "name": name,
        # What the greeting calls the reader (readers.greeting): "Jane" for "Jane Reader".
        "first_name": greeting_name,
        "subject": subject,
        "preheader": preheader,
        "date": content.day,
        "date_label": date_label(content.day),
        # Cleaned by sanitize.clean_html in load_content (nh3), so it may be output as is.
        "body_html": Markup(content.body_html),  # noqa: S704
        "body_text": content.body_text,
        "preferences_url": preferences_url,
        "unsubscribe_url": unsubscribe_url,
        "view_in_browser_url": "" if archive else content.view_in_browser_url,
        "reason": reason_line(settings, content, archive),
        "is_archive": archive,
        "subscribe_url": links.absolute(settings, "/") if archive else "",
    }


@dataclass(frozen=True)
class PersonalLinks:
    """A reader's preferences and unsubscribe links (one signed token for both unsubscribes)."""

    preferences_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str


def personal_links(settings: Settings, content: IssueContent, reader: Reader) -> PersonalLinks:
    """Sign the reader's links; the unsubscribe link leaves this newsletter only."""
    claim = links.claim_for(
        reader.subscriber_id, reader.token_version, reader.email, content.newsletter.id
    )
    token = links.unsubscribe_token(settings, claim)
    https = links.absolute(settings, f"/unsubscribe/{token}")
    mailto = links.unsubscribe_mailto(settings, token)
    return PersonalLinks(
        preferences_url=links.preferences_url(settings, claim),
        unsubscribe_url=https,
        unsubscribe_mailto=mailto,
    )


def reader_posts(content: IssueContent, reader: Reader) -> tuple[int, ...]:
    """Indexes into ``content.posts`` of what this reader gets (all of them for a campaign)."""
    if content.kind is not NewsletterKind.DIGEST:
        return ()
    return select_for_reader(content.posts, topic_keys(reader.topics), reader.sent_post_ids)


def render_reference(
    env: Environment, settings: Settings, content: IssueContent, reader: Reader
) -> Rendered | None:
    """The straightforward render of one reader's mail (previews, tests, the fallback path)."""
    chosen = reader_posts(content, reader)
    if content.kind is NewsletterKind.DIGEST and not chosen:
        return None
    posts = [content.posts[i] for i in chosen]
    personal = personal_links(settings, content, reader)
    name = clean_line(reader.name)
    context = template_context(
        settings,
        content,
        posts=posts,
        name=name,
        greeting_name=first_name(name),
        preferences_url=personal.preferences_url,
        unsubscribe_url=personal.unsubscribe_url,
        subject=subject_for(settings, content, posts),
        preheader=preheader_for(content, posts),
    )
    return render_pair(env, content.template, context)


def render_archive(env: Environment, settings: Settings, content: IssueContent) -> Rendered:
    """The issue for a generic reader: every post, no personal links, a "subscribe" link."""
    posts = list(content.posts)
    context = template_context(
        settings,
        content,
        posts=posts,
        name="",
        greeting_name="",
        preferences_url="",
        unsubscribe_url="",
        subject=subject_for(settings, content, posts),
        preheader=preheader_for(content, posts),
        archive=True,
    )
    return render_pair(env, content.template, context)


# --- Previews ------------------------------------------------------------------------------------

PREVIEW_READER = Reader(0, "reader@example.com", "", 0, "UTC", (), None, frozenset())


def preview(
    session: Session,
    settings: Settings,
    newsletter_slug: str,
    frequency: str | None = None,
    env: Environment | None = None,
) -> tuple[str, str, str]:
    """(subject, html, text) of what the newsletter would send now; changes nothing.

    A digest is planned on a throw-away issue; a campaign shows its latest draft.
    Raises :class:`NothingToPreview` (or ``LookupError``/``ValueError`` for bad input).
    """
    newsletter = session.scalars(
        select(Newsletter).where(Newsletter.slug == newsletter_slug)
    ).first()
    if newsletter is None:
        raise LookupError(f"There is no newsletter {newsletter_slug!r}.")
    cohort = _frequency(frequency)
    if NewsletterKind(newsletter.kind) is NewsletterKind.CAMPAIGN:
        draft = session.scalars(
            select(Issue)
            .where(
                Issue.newsletter_id == newsletter.id,
                Issue.status.in_((IssueStatus.DRAFT, IssueStatus.SCHEDULED)),
            )
            .order_by(Issue.id.desc())
            .limit(1)
        ).first()
        if draft is None:
            raise NothingToPreview(
                f"{newsletter.name} is a campaign newsletter with no draft to preview."
            )
        return preview_issue(session, settings, draft.id, env)
    # Never added to the session: planning fills its fields, nothing is stored.
    issue = Issue(
        newsletter_id=newsletter.id,
        kind=NewsletterKind.DIGEST,
        frequency=cohort,
        status=IssueStatus.DRAFT,
        subject="",
        preheader="",
        post_ids=[],
    )
    if not plan_digest(session, settings, issue, utcnow()):
        raise NothingToPreview(_nothing_new(session, newsletter, issue))
    content = load_content(session, settings, issue)
    return _preview_content(env, settings, content, cohort)


def _nothing_new(session: Session, newsletter: Newsletter, issue: Issue) -> str:
    """Why a digest would be empty now, naming the newest posts and why they do not count."""
    since = issue.window_start.isoformat(timespec="minutes") if issue.window_start else "?"
    message = f"No new posts for {newsletter.name} since {since} (UTC): nothing would be sent now."
    newest = latest_posts(session, limit=3)
    if not newest:
        return message + " There are no posts at all yet: add a feed or push one through the API."
    listed = "; ".join(
        f"{post.title[:60]!r} published {post.published_at:%Y-%m-%d %H:%M}" for post in newest
    )
    return (
        f"{message} The newest posts: {listed}. A digest takes posts published after its "
        "previous one (the first looks back NEWSLETTER_DIGEST_LOOKBACK_HOURS), in the "
        "newsletter's categories, and not already sent."
    )


def preview_issue(
    session: Session, settings: Settings, issue_id: int, env: Environment | None = None
) -> tuple[str, str, str]:
    """(subject, html, text) of an existing issue for a reader with every topic."""
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise LookupError(f"There is no issue {issue_id}.")
    content = load_content(session, settings, issue)
    return _preview_content(env, settings, content, issue.frequency)


def _preview_content(
    env: Environment | None, settings: Settings, content: IssueContent, cohort: Any
) -> tuple[str, str, str]:
    """Render an issue's content for the sample preview reader."""
    if content.kind is NewsletterKind.DIGEST and not content.posts:
        raise NothingToPreview("This issue has no posts left to send.")
    reader = Reader(
        0,
        "reader@example.com",
        "",
        0,
        "UTC",
        (),
        Frequency(cohort).value if cohort is not None else None,
        frozenset(),
    )
    rendered = render_reference(env if env is not None else app_env(), settings, content, reader)
    assert rendered is not None  # every post matches a reader without topics
    return rendered.subject, rendered.html, rendered.text


def _frequency(value: str | None) -> Frequency | None:
    """Parse a frequency cohort name, or say which ones exist."""
    if value is None or value == "":
        return None
    try:
        return Frequency(value.strip().lower())
    except ValueError:
        choices = ", ".join(f.value for f in Frequency)
        raise ValueError(f"Unknown frequency {value!r}; choose one of: {choices}.") from None


def app_env() -> Environment:
    """The Flask app's Jinja environment: one environment for web pages and mail."""
    from flask import current_app

    return current_app.jinja_env
