"""Newsletters over the JSON API: GET/POST /api/v1/newsletters and GET/PATCH
/api/v1/newsletters/<slug>; the rules are ``newsletter.readers.newsletters``'s, as the
``newsletter newsletters`` commands use them. (A newsletter's preview, GET
/api/v1/newsletters/<slug>/preview, is the issues API's: api_dispatch.py.)"""

from __future__ import annotations

from typing import Any

from newsletter.readers.newsletters import (
    NewsletterError,
    create_newsletter,
    find_newsletter,
    newsletter_page,
    update_newsletter,
)
from newsletter.store.models import Newsletter, as_dict
from newsletter.web import db
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_etags import IF_MATCH, check_if_match, etag
from newsletter.web.api_paging import decode_cursor, page
from newsletter.web.api_schemas import PageQuery
from newsletter.web.api_schemas_readers import (
    NewsletterCreate,
    NewsletterEdit,
    NewsletterPage,
    NewsletterReply,
)
from newsletter.web.openapi import operation

NEWSLETTERS = "newsletters"
# What a PATCH may change, and what identifies the list: the ETag covers these.
STORED = ("slug", "name", "description", "kind", "default_frequency", "categories", "is_public")


def newsletter_etag(newsletter: Newsletter) -> str:
    """The tag of a newsletter's stored settings (not its reader count, which moves)."""
    return etag(as_dict(newsletter, *STORED))


def _out(newsletter: Newsletter, active: int) -> dict[str, Any]:
    """A newsletter as the API shows it."""
    shown = as_dict(newsletter, *STORED, "position", "created_at")
    shown["public"] = shown.pop("is_public")
    shown["active_subscribers"] = active
    return shown


def _answer(slug: str) -> tuple[dict[str, Any], dict[str, str]]:
    """One newsletter's body and ETag header; a 404 when there is none."""
    found = newsletter_page(db(), slug=slug, limit=1)
    if not found:
        raise ApiError(404, f"no newsletter with slug {slug!r}")
    newsletter, active = found[0]
    return {"newsletter": _out(newsletter, active)}, {"ETag": newsletter_etag(newsletter)}


@bp.get("/newsletters")
@require_token("newsletters:read")
@operation(tag=NEWSLETTERS, query=PageQuery, responses={200: NewsletterPage})
def list_newsletters(query: PageQuery) -> dict[str, Any]:
    """Every newsletter in display order with its count of active readers; paged by ``after``."""
    after = decode_cursor(query.after, [int, int])
    rows = newsletter_page(
        db(), after=(after[0], after[1]) if after else None, limit=query.limit + 1
    )
    shown, cursor = page(rows, query.limit, lambda r: [r[0].position, r[0].id])
    return {"items": [_out(n, active) for n, active in shown], "next": cursor}


@bp.post("/newsletters")
@require_token("newsletters:write")
@operation(
    tag=NEWSLETTERS,
    body=NewsletterCreate,
    responses={201: NewsletterReply},
    problems=(409,),
    response_headers=("ETag", "Location"),
    creates=("slug", "/newsletter/slug"),
)
def create(body: NewsletterCreate) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Add a newsletter; a taken slug is a 409, a bad slug or name a 400.

    A list that is not ``public`` is on no signup form; readers join it through the API, an
    import or the console.
    """
    session = db()
    if find_newsletter(session, body.slug) is not None:
        raise ApiError(409, f"a newsletter with slug {body.slug!r} already exists", field="slug")
    try:
        created = create_newsletter(
            session,
            body.slug,
            body.name,
            description=body.description,
            kind=body.kind,
            frequency=body.default_frequency,
            categories=body.categories,
            public=body.public,
        )
        session.commit()
    except NewsletterError as exc:
        session.rollback()
        # create_newsletter refuses a slug taken meanwhile with the same error as a bad one.
        status = 409 if find_newsletter(session, body.slug) is not None else 400
        raise ApiError(status, str(exc)) from None
    reply, tag = _answer(created.slug)
    return reply, 201, tag | {"Location": f"/api/v1/newsletters/{created.slug}"}


@bp.get("/newsletters/<slug>")
@require_token("newsletters:read")
@operation(tag=NEWSLETTERS, responses={200: NewsletterReply}, response_headers=("ETag",))
def show_newsletter(slug: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """One newsletter with its count of active readers; its ETag for If-Match."""
    reply, tag = _answer(slug)
    return reply, 200, tag


@bp.patch("/newsletters/<slug>")
@require_token("newsletters:write")
@operation(
    tag=NEWSLETTERS,
    body=NewsletterEdit,
    responses={200: NewsletterReply},
    problems=(412,),
    headers=(IF_MATCH,),
    response_headers=("ETag",),
)
def edit_newsletter(slug: str, body: NewsletterEdit) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Change name, description, default frequency, categories or whether it is public (the
    slug and kind stay); with If-Match, only if unchanged since (412 otherwise)."""
    session = db()
    newsletter = find_newsletter(session, slug, lock=True)
    if newsletter is None:
        raise ApiError(404, f"no newsletter with slug {slug!r}")
    check_if_match(newsletter_etag(newsletter))
    try:
        update_newsletter(
            newsletter,
            name=body.name,
            description=body.description,
            frequency=body.default_frequency,
            categories=body.categories,
            public=body.public,
        )
        session.commit()
    except NewsletterError as exc:
        session.rollback()
        raise ApiError(400, str(exc), field="name") from None
    reply, tag = _answer(slug)
    return reply, 200, tag
