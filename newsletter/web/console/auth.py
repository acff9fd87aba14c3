"""Console login (password, then a TOTP code when enrolled), logout, password, TOTP, sessions."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from newsletter.access.console_sessions import (
    live_sessions,
    revoke_all,
    revoke_session,
    start_session,
    upgrade_session,
)
from newsletter.access.logins import Outcome, check_code, check_password, refused_message
from newsletter.access.passwords import PasswordError, verify_password
from newsletter.access.roles import Role
from newsletter.access.totp import (
    TotpError,
    begin_enrolment,
    confirm_enrolment,
    disable_totp,
    provisioning_uri,
    qr_svg,
)
from newsletter.access.users import change_password
from newsletter.store.models import User
from newsletter.web import db, settings
from newsletter.web.console.forms import ButtonForm, CodeForm, LoginForm, PasswordChangeForm
from newsletter.web.console.guard import (
    bp,
    clear_session_cookie,
    current_session,
    current_user,
    public,
    role_required,
    safe_next,
    set_session_cookie,
)
from newsletter.web.extensions import limiter
from newsletter.web.forms import CONTROL_MESSAGE
from newsletter.web.pages import client_ip, client_user_agent

DISABLED_MESSAGE = "This account is disabled. Ask an admin of the console to enable it."
NEXT_KEY = "console_next"


def _login_rate() -> str:
    return settings().console_login_rate_limit


# Per client IP, shared by both login steps: one address cannot try passwords across accounts.
login_limit = limiter.shared_limit(_login_rate, scope="console-login", methods=["POST"])


def _signed_in(user: User, *, totp_pending: bool) -> str:
    """Start a new session (a new id: no fixation) and drop any session the browser had."""
    old = current_session()
    if old is not None:
        revoke_session(db(), old.user_id, old.id)
    _row, token = start_session(
        db(),
        settings(),
        user,
        user_agent=client_user_agent(),
        ip=client_ip(),
        totp_pending=totp_pending,
    )
    db().commit()
    # A new CSRF token too: one issued before the login is not the signed-in user's.
    session.pop("csrf_token", None)
    return token


def _first_error(form: LoginForm) -> str:
    """What is wrong with a login form that did not validate, in one line."""
    if form.control_chars_found:
        return CONTROL_MESSAGE
    messages = [str(message) for field in form for message in field.errors]
    return messages[0] if messages else "Please fill in both fields."


@bp.route("/login", methods=["GET", "POST"])
@public
@login_limit
def login() -> BaseResponse | tuple[str, int] | str:
    """Email address and password; then the code step when the account has TOTP."""
    row = current_session()
    if row is not None and not row.totp_pending and request.method == "GET":
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    error = ""
    if form.validate_on_submit():
        result = check_password(db(), settings(), form.email.data or "", form.password.data or "")
        if result.outcome is Outcome.OK and result.user is not None:
            token = _signed_in(result.user, totp_pending=result.totp_due)
            target = safe_next(request.args.get("next"))
            if result.totp_due:
                session[NEXT_KEY] = target  # for after the code step
                target = url_for("console.login_code")
            return set_session_cookie(redirect(target), token)
        db().commit()
        error = (
            DISABLED_MESSAGE if result.outcome is Outcome.DISABLED else refused_message(settings())
        )
    elif request.method == "POST":
        error = _first_error(form)
    status = 400 if request.method == "POST" else 200
    return render_template("web/console/login.html", form=form, error=error), status


@bp.route("/login/code", methods=["GET", "POST"])
@public
@login_limit
def login_code() -> BaseResponse | tuple[str, int]:
    """The second step: a code from the authenticator app."""
    row = current_session()
    if row is None:
        return redirect(url_for("console.login"))
    if not row.totp_pending:
        return redirect(url_for("console.dashboard"))
    form = CodeForm()
    error = ""
    if form.validate_on_submit():
        result = check_code(db(), settings(), row.user, form.code.data or "")
        if result.outcome is Outcome.OK:
            _new, token = upgrade_session(db(), settings(), row)
            db().commit()
            session.pop("csrf_token", None)
            target = safe_next(session.pop(NEXT_KEY, None))
            return set_session_cookie(redirect(target), token)
        db().commit()
        if result.outcome is Outcome.DISABLED:
            error = DISABLED_MESSAGE
        else:
            error = "That code is not right, or was used already. Wait for the next one."
    elif request.method == "POST":
        error = "Please enter the six-digit code."
    status = 400 if request.method == "POST" else 200
    return render_template("web/console/login_code.html", form=form, error=error), status


@bp.post("/logout")
@public
def logout() -> BaseResponse:
    """End this session here and on the server, whatever state it is in."""
    row = current_session()
    form = ButtonForm()
    if form.validate_on_submit() and row is not None:
        revoke_session(db(), row.user_id, row.id)
        db().commit()
    session.pop("csrf_token", None)
    session.pop(NEXT_KEY, None)
    flash("You are logged out.")
    return clear_session_cookie(redirect(url_for("console.login")))


def _user() -> User:
    user = current_user()
    assert user is not None  # role_required let the request in
    return user


@bp.route("/password", methods=["GET", "POST"])
@role_required(Role.VIEWER, setup=True)
@login_limit  # the current password is checked here too: no unlimited guessing from a session
def password() -> BaseResponse | tuple[str, int]:
    """Change one's password (the first login after a one-time password comes here first)."""
    user = _user()
    form = PasswordChangeForm()
    error = ""
    if form.validate_on_submit():
        if not verify_password(user.password_hash, form.current.data or ""):
            error = "The current password is not right."
        else:
            row = current_session()
            try:
                ended = change_password(
                    db(), user, form.new.data or "", keep=row.id if row else None
                )
            except PasswordError as exc:
                error = str(exc)
            else:
                db().commit()
                others = f" {ended} other session(s) were logged out." if ended else ""
                flash(f"Your password is changed.{others}")
                return redirect(url_for("console.dashboard"))
    status = 400 if request.method == "POST" else 200
    return render_template("web/console/password.html", form=form, error=error), status


@bp.get("/totp")
@role_required(Role.VIEWER, setup=True)
def totp() -> str:
    """Two-factor login: its state, and the way to turn it on or off."""
    user = _user()
    return render_template("web/console/totp.html", **_totp_page(user, CodeForm()))


def _totp_page(user: User, form: CodeForm, error: str = "") -> dict[str, object]:
    enrol: dict[str, str] = {}
    if not user.totp_secret and user.totp_pending_secret:
        uri = provisioning_uri(user.totp_pending_secret, user.email, settings().site_name)
        enrol = {
            "secret": user.totp_pending_secret,
            "uri": uri,
            "qr": qr_svg(uri, f"QR code to add {settings().site_name} to an authenticator app"),
        }
    return {"user": user, "form": form, "enrol": enrol, "error": error, "button": ButtonForm()}


@bp.post("/totp/setup")
@role_required(Role.VIEWER, setup=True)
def totp_setup() -> BaseResponse:
    """Make a new secret to scan (a POST: it replaces any secret shown before)."""
    user = _user()
    if not user.totp_secret:
        begin_enrolment(user)
        db().commit()
    return redirect(url_for("console.totp"))


@bp.post("/totp")
@role_required(Role.VIEWER, setup=True)
def totp_confirm() -> BaseResponse | tuple[str, int]:
    """Turn TOTP on with a first code from the secret just shown."""
    user = _user()
    form = CodeForm()
    if user.totp_secret:
        return redirect(url_for("console.totp"))
    if form.validate_on_submit() and confirm_enrolment(db(), user, form.code.data or ""):
        db().commit()
        flash("Two-factor login is on: each login now asks for a code.")
        return redirect(url_for("console.dashboard"))
    error = "That code does not match the secret shown. Check the app's clock and try again."
    return render_template("web/console/totp.html", **_totp_page(user, form, error)), 400


@bp.post("/totp/disable")
@role_required(Role.VIEWER, setup=True)
def totp_disable() -> BaseResponse | tuple[str, int]:
    """Turn TOTP off for oneself (refused when an admin requires it)."""
    user = _user()
    if ButtonForm().validate_on_submit():
        try:
            disable_totp(user)
        except TotpError as exc:
            return render_template(
                "web/console/totp.html", **_totp_page(user, CodeForm(), f"{exc}.")
            ), 409
        db().commit()
        flash("Two-factor login is off.")
    return redirect(url_for("console.totp"))


@bp.get("/sessions")
@role_required(Role.VIEWER, setup=True)
def sessions() -> str:
    """One's signed-in browsers, this one marked, each with a button to log it out."""
    user = _user()
    rows = live_sessions(db(), settings(), user.id)
    row = current_session()
    return render_template(
        "web/console/sessions.html",
        rows=rows,
        current_id=row.id if row else None,
        form=ButtonForm(),
    )


@bp.post("/sessions/<int:session_id>/revoke")
@role_required(Role.VIEWER, setup=True)
def revoke(session_id: int) -> BaseResponse:
    """Log out one of one's sessions."""
    user = _user()
    if ButtonForm().validate_on_submit() and revoke_session(db(), user.id, session_id):
        db().commit()
        flash("That session is logged out.")
    return redirect(url_for("console.sessions"))


@bp.post("/sessions/revoke-others")
@role_required(Role.VIEWER, setup=True)
def revoke_others() -> BaseResponse:
    """Log out every session of one's account but this one."""
    user = _user()
    row = current_session()
    if ButtonForm().validate_on_submit():
        ended = revoke_all(db(), user.id, keep=row.id if row else None)
        db().commit()
        flash(f"{ended} other session(s) logged out.")
    return redirect(url_for("console.sessions"))
