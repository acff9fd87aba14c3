"""The OpenAPI 3.1 document of /api/v1, built from the schemas that validate and shape the API.

Why our own small layer and not a library: the API is a plain Flask blueprint (``api.bp``) that
several modules add routes to with ``require_token``/``verified_by``; flask-openapi3 and APIFlask
want their own app and blueprint classes, and spectree answers validation errors in its own shape
and serves its documentation pages from a CDN. Pydantic v2 alone gives what is needed: its JSON
Schema is draft 2020-12, the dialect of OpenAPI 3.1, so a model's schema goes into the document
as it is. ``operation(...)`` validates a route's query and body with its models (a 400 problem
naming every invalid field), validates and serialises what the route answers with the model of
its status, and records all of it on the view; ``document()`` walks ``app.url_map`` and builds
the paths from those records, the scope or signature each route declares, and the problems it
can answer. A route without ``operation`` is left out of the document, which the test comparing
the document with the app's routes (tests/web/test_openapi.py) then reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from flask import Flask, Response, current_app, jsonify, render_template, request
from pydantic import BaseModel, ValidationError
from werkzeug.routing import Rule

from newsletter.access.api_tokens import SCOPES
from newsletter.store.models import MAX_ID
from newsletter.web.api import PROBLEM_TYPE, ApiError, bp, verified_by
from newsletter.web.api_schemas import Problem

F = TypeVar("F", bound=Callable[..., Any])
JSON = "application/json"
DOCS_CSP = "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors 'none'"
# Problems any operation can answer (a route under a rate limit adds its 429 itself).
COMMON_PROBLEMS = (500,)
BEARER_PROBLEMS = (401, 403)
INPUT_PROBLEMS = (400,)
BODY_PROBLEMS = (400, 413, 415)


@dataclass(frozen=True)
class Header:
    """A request header an operation reads."""

    name: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """What the document says of one route, and what the route validates with."""

    summary: str
    description: str
    tag: str
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    body_media: str
    body_required: bool
    responses: dict[int, type[BaseModel] | None]
    response_media: str
    problems: tuple[int, ...]
    headers: tuple[Header, ...] = field(default=())
    response_headers: tuple[str, ...] = field(default=())
    creates: tuple[str, str] | None = None


def operation(
    *,
    tag: str,
    responses: dict[int, type[BaseModel] | None],
    problems: tuple[int, ...] = (),
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_media: str = JSON,  # another type: the view reads the raw body itself
    body_required: bool = True,
    validate_body: bool = True,
    response_media: str = JSON,
    headers: tuple[Header, ...] = (),
    response_headers: tuple[str, ...] = (),
    creates: tuple[str, str] | None = None,
) -> Callable[[F], F]:
    """Document a route and validate it: the view gets ``query=``/``body=`` model instances
    (when given), and what it returns (a model or a dict, alone or with a status and then
    headers) is validated by ``responses[status]`` and answered as JSON. A Response it returns
    passes unchanged. ``headers`` are request headers it reads, ``response_headers`` those its
    successes carry (e.g. ETag). ``creates=("issue_id", "/issue/id")``: its 201 names a new
    row, and the document links it (OpenAPI links) to every operation taking that parameter.

    Put it under ``require_token`` so a caller without a token learns that first."""

    def decorate(view: F) -> F:
        # The docstring's first paragraph is the summary, the rest the description.
        doc = (view.__doc__ or "").strip().replace("``", "`")
        summary, _, description = doc.partition("\n\n")
        op = Operation(
            summary=" ".join(summary.split()),
            description=" ".join(description.split()),
            tag=tag,
            query=query,
            body=body,
            body_media=body_media,
            body_required=body_required,
            responses=responses,
            response_media=response_media,
            problems=problems,
            headers=headers,
            response_headers=response_headers,
            creates=creates,
        )

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if query is not None:
                kwargs["query"] = _validated(query, dict(request.args), "query")
            if body is not None and validate_body and body_media == JSON:
                kwargs["body"] = _json_body(body, body_required)
            return _answer(responses, view(*args, **kwargs))

        wrapper.openapi = op  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _json_body(model: type[BaseModel], required: bool) -> BaseModel:
    """The body validated by ``model``: 415 when it is not JSON, 400 naming each bad field."""
    raw = request.get_data(cache=True)
    if not raw.strip() and not required:
        return model()
    if not request.is_json:
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc, "body") from None


def _validated(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    """``data`` validated by ``model``; a 400 naming each bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, where) from None


def invalid(exc: ValidationError, where: str, prefix: tuple[str | int, ...] = ()) -> ApiError:
    """A 400 problem listing every error of ``exc`` (``loc`` starts with body/query)."""
    errors = [
        {"loc": [where, *prefix, *e["loc"]], "msg": e["msg"]} for e in exc.errors(include_url=False)
    ]
    return problem_for_errors(errors)


def problem_for_errors(errors: list[dict[str, Any]]) -> ApiError:
    """The 400 for a list of ``{"loc": [...], "msg": ...}``; ``field`` names the first."""
    first = errors[0]
    name = field_name(first["loc"][1:])
    detail = f"{name}: {first['msg']}" if name else str(first["msg"])
    return ApiError(400, detail, field=name or None, errors=errors)


def field_name(loc: list[str | int] | tuple[str | int, ...]) -> str:
    """``[1, "url"]`` as ``[1].url``, ``["send_at"]`` as ``send_at``."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _answer(responses: dict[int, type[BaseModel] | None], result: Any) -> Any:
    """Validate and serialise a view's result by the model of its status."""
    if isinstance(result, Response):
        return result
    parts = result if isinstance(result, tuple) else (result,)
    body = parts[0]
    status: int = parts[1] if len(parts) > 1 else 200
    headers: dict[str, str] = parts[2] if len(parts) > 2 else {}
    model = responses[status]
    if model is None:
        return body, status, headers
    shaped = body if isinstance(body, model) else model.model_validate(body)
    return jsonify(shaped.model_dump(mode="json")), status, headers


# --- The document --------------------------------------------------------------------------------

_ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_]+)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_]\w*)>")


def api_rules(app: Flask) -> list[Rule]:
    """The app's rules under /api/v1, sorted."""
    return sorted(
        (r for r in app.url_map.iter_rules() if r.rule.startswith(bp.url_prefix or "")),
        key=lambda r: r.rule,
    )


def openapi_path(rule: Rule) -> str:
    """``/api/v1/issues/<int:issue_id>`` as ``/api/v1/issues/{issue_id}``."""
    return _ARGUMENT.sub(lambda m: "{" + m["name"] + "}", rule.rule)


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented route under /api/v1."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for rule in api_rules(app):
        view = app.view_functions[rule.endpoint]
        op: Operation | None = getattr(view, "openapi", None)
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation(
                rule, view, op, schemas
            )
    schemas["Problem"] = _schema(Problem, schemas)
    _link_created(app, paths)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Newsletter API",
            "version": "1",
            "description": (
                "Editors' and ops' JSON API. Every error is an RFC 9457 problem "
                "(application/problem+json); list endpoints page with `limit` and `after`."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A token from `newsletter tokens create NAME --scope SCOPE`; scopes: "
                        + ", ".join(sorted(SCOPES))
                    ),
                }
            },
        },
    }


def _link_created(app: Flask, paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links from each create's 201 to the operations on what it created (schemathesis
    follows them in its stateful run)."""
    takers: dict[str, list[str]] = {}
    for item in paths.values():
        for documented in item.values():
            for param in documented["parameters"]:
                if param["in"] == "path":
                    takers.setdefault(param["name"], []).append(documented["operationId"])
    for rule in api_rules(app):
        op: Operation | None = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if op is None or op.creates is None:
            continue
        name, pointer = op.creates
        for item in paths[openapi_path(rule)].values():
            if item["operationId"] != rule.endpoint.removeprefix("api."):
                continue
            item["responses"]["201"]["links"] = {
                target: {
                    "operationId": target,
                    "parameters": {f"path.{name}": f"$response.body#{pointer}"},
                }
                for target in sorted(takers.get(name, []))
            }


def _operation(rule: Rule, view: Any, op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    """One operation object."""
    scope: str | None = getattr(view, "required_scope", None)
    mechanism: str | None = getattr(view, "verified_by", None)
    problems = set(op.problems) | set(COMMON_PROBLEMS)
    if scope:
        problems |= set(BEARER_PROBLEMS)
    if op.query is not None:
        problems |= set(INPUT_PROBLEMS)
    if _has_body(op):
        problems |= set(BODY_PROBLEMS)
    if rule.arguments:
        problems.add(404)
    out: dict[str, Any] = {
        "operationId": rule.endpoint.removeprefix("api."),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _path_parameters(rule) + _query_parameters(op, schemas) + _headers(op),
        "responses": {
            **{
                str(status): _response(status, model, op, schemas)
                for status, model in sorted(op.responses.items())
            },
            **{
                str(status): {
                    "description": HTTPStatus(status).phrase,
                    "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
                for status in sorted(problems)
            },
        },
    }
    if op.description:
        out["description"] = op.description
    if scope:
        out["security"] = [{"bearer": [scope]}]
        out["x-required-scope"] = scope
    else:
        out["security"] = []
        out["x-verified-by"] = mechanism or "none: public"
    if _has_body(op):
        out["requestBody"] = {
            "required": op.body_required,
            "content": {op.body_media: {"schema": _body_schema(op, schemas)}},
        }
    return out


def _has_body(op: Operation) -> bool:
    """Whether the operation reads a body: a model's, or raw bytes of another media type."""
    return op.body is not None or op.body_media != JSON


def _body_schema(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    """The body's schema; a raw message is bytes."""
    if op.body_media != JSON or op.body is None:
        return {"type": "string", "contentMediaType": op.body_media}
    return _ref(op.body, schemas)


def _response(
    status: int, model: type[BaseModel] | None, op: Operation, schemas: dict[str, Any]
) -> dict[str, Any]:
    """A success response; 204 has no body."""
    media = op.response_media
    out: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    if op.response_headers:
        out["headers"] = {
            name: {"schema": {"type": "string"}, "required": True} for name in op.response_headers
        }
    if model is not None:
        out["content"] = {media: {"schema": _ref(model, schemas)}}
    elif status != 204:
        out["content"] = {media: {"schema": {"type": "object" if media == JSON else "string"}}}
    return out


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    """One parameter per URL argument, typed by its converter."""
    params = []
    for match in _ARGUMENT.finditer(rule.rule):
        converter = match["converter"] or "default"
        if converter == "int":
            schema: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
        elif converter == "path":
            schema = {"type": "string", "minLength": 1}
        else:
            schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        params.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return params


def _query_parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameter per field of the query model."""
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        param["schema"] = prop
        params.append(param)
    return params


def _headers(op: Operation) -> list[dict[str, Any]]:
    """The request headers an operation reads."""
    return [
        {
            "name": h.name,
            "in": "header",
            "required": h.required,
            "description": h.description,
            "schema": {"type": "string"},
        }
        for h in op.headers
    ]


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """A $ref to the model's schema, added to the components (with the models it uses)."""
    schemas.setdefault(model.__name__, _schema(model, schemas))
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON Schema (2020-12), its nested models moved to the components."""
    mode: Literal["validation", "serialization"] = (
        "validation" if _is_request(model) else "serialization"
    )
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    return schema


def _is_request(model: type[BaseModel]) -> bool:
    """Request models are validated; replies are serialised."""
    return model.model_config.get("extra") == "forbid"


# --- Serving it ----------------------------------------------------------------------------------

DOCUMENT = "newsletter.openapi"


def _document() -> dict[str, Any]:
    """The app's document, built on first use: its routes do not change once it serves."""
    built: dict[str, Any] | None = current_app.extensions.get(DOCUMENT)
    if built is None:
        built = current_app.extensions[DOCUMENT] = document(current_app)
    return built


@bp.get("/openapi.json")
@verified_by("none: public")
@operation(tag="documentation", responses={200: None})
def openapi_json() -> Response:
    """This document (OpenAPI 3.1); no token needed."""
    response = jsonify(_document())
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


@bp.get("/docs")
@verified_by("none: public")
@operation(tag="documentation", responses={200: None}, response_media="text/html")
def docs() -> Response:
    """A readable page of every operation: parameters, bodies, responses and scopes."""
    page = render_template("web/api_docs.html", spec=_document())
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
