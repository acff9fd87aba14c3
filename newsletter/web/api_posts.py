"""CMS push of posts: POST/GET /api/v1/posts and DELETE /api/v1/posts/<guid-or-id>."""

from __future__ import annotations

from typing import Any

from flask import request
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from newsletter.content.posts import (
    InvalidPost,
    PostInput,
    latest_posts,
    parse_timestamp,
    post_as_json,
    post_input_from_json,
    retract_post,
    upsert_posts,
)
from newsletter.web import db, settings
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_paging import decode_cursor, page
from newsletter.web.api_schemas import (
    PostIn,
    PostListQuery,
    PostPage,
    PostsPush,
    PushReply,
    RetractReply,
)
from newsletter.web.openapi import invalid, operation, problem_for_errors

MAX_POSTS_PER_REQUEST = 100
POSTS = "posts"


def _pushed_posts() -> list[PostInput]:
    """Validate the whole body before anything is stored; 400 names every bad field."""
    # Articles are larger than forms: this route has its own body limit (413 beyond it).
    request.max_content_length = settings().posts_api_max_bytes
    data = request.get_json(silent=True)
    single = isinstance(data, dict)
    if single:
        data = [data]
    if not isinstance(data, list):
        raise ApiError(
            400,
            "the body must be a JSON post object or a list of them "
            "(Content-Type: application/json)",
        )
    if not data:
        raise ApiError(400, "the list of posts is empty", field="posts")
    if len(data) > MAX_POSTS_PER_REQUEST:
        raise ApiError(
            413,
            f"at most {MAX_POSTS_PER_REQUEST} posts per request; send the rest in another request",
            field="posts",
        )
    items: list[PostInput] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(data):
        where: tuple[str | int, ...] = () if single else (index,)
        try:
            # The schema first (types, unknown fields, lengths), then the domain's own rules.
            if isinstance(raw, dict):
                PostIn.model_validate(_without_lone_surrogates(raw))
            items.append(post_input_from_json(raw))
        except ValidationError as exc:
            errors.extend(invalid(exc, "body", where).details["errors"])
        except InvalidPost as exc:
            errors.append({"loc": ["body", *where, exc.field], "msg": exc.message})
    if errors:
        raise problem_for_errors(errors)
    return items


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with each lone surrogate as "?": pydantic refuses them, the domain cleans them."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_lone_surrogates(v) for k, v in value.items()}
    return value


@bp.post("/posts")
@require_token("posts:write")
@operation(
    tag=POSTS,
    body=PostsPush,
    validate_body=False,  # validated item by item by _pushed_posts, with the same schema
    responses={200: PushReply, 201: PushReply},
    problems=(409,),
)
def push_posts() -> tuple[dict[str, Any], int]:
    """Create or update posts pushed by the CMS; 201 when any is new, else 200."""
    items = _pushed_posts()
    session = db()
    for attempt in (1, 2):
        try:
            stored = upsert_posts(session, items, revive=True)
            session.commit()
            break
        except IntegrityError:
            # Another request stored the same guid between our read and our write: the rerun
            # finds it and updates it instead.
            session.rollback()
            if attempt == 2:
                raise ApiError(409, "the posts changed concurrently; please retry") from None
    body: dict[str, Any] = {
        "posts": [
            {"id": s.post.id, "guid": s.post.guid, "status": s.outcome} for s in stored.items
        ],
        "created": stored.count("created"),
        "updated": stored.count("updated"),
        "unchanged": stored.count("unchanged"),
    }
    return body, 201 if body["created"] else 200


@bp.get("/posts")
@require_token("posts:read")
@operation(tag=POSTS, query=PostListQuery, responses={200: PostPage})
def list_posts(query: PostListQuery) -> dict[str, Any]:
    """Recent live posts, newest first, published after ``since`` if given; paged by ``after``."""
    since = None
    if query.since:
        try:
            since = parse_timestamp(query.since, "since")
        except InvalidPost as exc:
            raise ApiError(400, str(exc), field="since") from None
    key = decode_cursor(query.after, [str, int])
    before = None
    if key is not None:
        try:
            before = (parse_timestamp(key[0], "after"), int(key[1]))
        except InvalidPost:
            raise ApiError(400, "after: not a cursor of this list", field="after") from None
    posts = latest_posts(db(), since=since, limit=query.limit + 1, before=before)
    shown, cursor = page(posts, query.limit, lambda p: [p.published_at.isoformat(), p.id])
    return {"items": [post_as_json(p) for p in shown], "next": cursor}


@bp.delete("/posts/<path:key>")
@require_token("posts:write")
@operation(tag=POSTS, responses={200: RetractReply})
def delete_post(key: str) -> dict[str, Any]:
    """Retract a post (by guid, or by id) so no digest sends it again; idempotent."""
    session = db()
    post = retract_post(session, key)
    if post is None:
        raise ApiError(404, "no post with that guid or id", field="guid")
    session.commit()
    return {"id": post.id, "guid": post.guid, "retracted": True}
