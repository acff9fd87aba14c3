"""The admin's page of console accounts: create, change a role, disable, enable, require TOTP."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from newsletter.access.roles import Role, parse_role
from newsletter.access.users import (
    UserError,
    create_user,
    disable_user,
    enable_user,
    list_users,
    require_totp,
    set_role,
)
from newsletter.store.db import utcnow
from newsletter.store.models import User
from newsletter.web import db
from newsletter.web.console.forms import ButtonForm, RoleForm, UserCreateForm
from newsletter.web.console.guard import bp, role_required


def _page(create: UserCreateForm | None = None, error: str = "", **extra: object) -> str:
    rows = list_users(db())
    role_forms = {user.id: RoleForm(formdata=None, role=user.role.value) for user in rows}
    return render_template(
        "web/console/users.html",
        rows=rows,
        create=create or UserCreateForm(formdata=None),
        role_forms=role_forms,
        button=ButtonForm(),
        error=error,
        now=utcnow(),
        **extra,
    )


def _sentence(exc: Exception) -> str:
    """A domain refusal (lower-case, no full stop, as the CLI prints it) as a sentence."""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def _target(user_id: int) -> User:
    user = db().get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.get("/users")
@role_required(Role.ADMIN)
def users() -> str:
    """Every account with its role, state and buttons."""
    return _page()


@bp.post("/users")
@role_required(Role.ADMIN)
def users_create() -> str | tuple[str, int]:
    """Create an account; its one-time password is shown on this answer only."""
    form = UserCreateForm()
    if not form.validate_on_submit():
        return _page(form, "Please correct the form."), 400
    try:
        user, one_time = create_user(
            db(), form.email.data or "", parse_role(form.role.data or ""), name=form.name.data or ""
        )
    except UserError as exc:
        db().rollback()
        return _page(form, _sentence(exc)), 400
    db().commit()
    return _page(created=user.email, one_time=one_time)


@bp.post("/users/<int:user_id>/role")
@role_required(Role.ADMIN)
def users_role(user_id: int) -> BaseResponse | tuple[str, int]:
    """Give an account another role."""
    user = _target(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        return _page(error="Please choose one of the roles."), 400
    try:
        set_role(db(), user, parse_role(form.role.data or ""))
    except UserError as exc:
        db().rollback()
        return _page(error=_sentence(exc)), 409
    db().commit()
    flash(f"{user.email} is now a {user.role.value}.")
    return redirect(url_for("console.users"))


@bp.post("/users/<int:user_id>/disable")
@role_required(Role.ADMIN)
def users_disable(user_id: int) -> BaseResponse | tuple[str, int]:
    """Disable an account and log out its sessions."""
    user = _target(user_id)
    try:
        ended = disable_user(db(), user)
    except UserError as exc:
        db().rollback()
        return _page(error=_sentence(exc)), 409
    db().commit()
    flash(f"{user.email} is disabled; {ended} session(s) logged out.")
    return redirect(url_for("console.users"))


@bp.post("/users/<int:user_id>/enable")
@role_required(Role.ADMIN)
def users_enable(user_id: int) -> BaseResponse:
    """Let a disabled account log in again."""
    user = enable_user(_target(user_id))
    db().commit()
    flash(f"{user.email} is enabled.")
    return redirect(url_for("console.users"))


@bp.post("/users/<int:user_id>/require-totp")
@role_required(Role.ADMIN)
def users_require_totp(user_id: int) -> BaseResponse:
    """Require a TOTP code at every login of this account (enrolment at its next login)."""
    user = require_totp(_target(user_id))
    db().commit()
    flash(f"{user.email} now needs a code from an authenticator app at every login.")
    return redirect(url_for("console.users"))
