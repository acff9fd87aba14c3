"""CMS push of posts: POST/GET /api/v1/posts and DELETE /api/v1/posts/<guid-or-id>."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
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

MAX_POSTS_PER_REQUEST = 100
MAX_LIST_LIMIT = 100


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
    errors: list[dict[str, str]] = []
    for index, raw in enumerate(data):
        try:
            items.append(post_input_from_json(raw))
        except InvalidPost as exc:
            name = exc.field if single else f"[{index}].{exc.field}"
            errors.append({"field": name, "message": exc.message})
    if errors:
        first = errors[0]
        raise ApiError(
            400, f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        )
    return items


@bp.post("/posts")
@require_token("posts:write")
def push_posts() -> tuple[Response, int]:
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
    return jsonify(body), 201 if body["created"] else 200


@bp.get("/posts")
@require_token("posts:read")
def list_posts() -> Response:
    """Recent live posts, newest first: ``?since=ISO-8601&limit=N`` (limit 1..100, default 20)."""
    since = None
    if request.args.get("since"):
        try:
            since = parse_timestamp(request.args["since"], "since")
        except InvalidPost as exc:
            raise ApiError(400, str(exc), field="since") from None
    raw_limit = request.args.get("limit", "20")
    if (
        not (raw_limit.isascii() and raw_limit.isdigit())
        or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT
    ):
        raise ApiError(400, f"limit: a whole number from 1 to {MAX_LIST_LIMIT}", field="limit")
    posts = latest_posts(db(), since=since, limit=int(raw_limit))
    return jsonify({"posts": [post_as_json(p) for p in posts]})


@bp.delete("/posts/<path:key>")
@require_token("posts:write")
def delete_post(key: str) -> Response:
    """Retract a post (by guid, or by id) so no digest sends it again; idempotent."""
    session = db()
    post = retract_post(session, key)
    if post is None:
        raise ApiError(404, "no post with that guid or id", field="guid")
    session.commit()
    return jsonify({"id": post.id, "guid": post.guid, "retracted": True})
