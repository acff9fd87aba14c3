"""Flask-WTF forms of the console. Every one carries a CSRF token (none opts out)."""

from __future__ import annotations

from typing import Any

from wtforms import EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import EqualTo, InputRequired, Length

from newsletter.access.passwords import MAX_LENGTH, MIN_LENGTH
from newsletter.access.roles import Role
from newsletter.access.users import MAX_EMAIL_LENGTH, NAME_MAX
from newsletter.web.forms import SafeForm

ROLE_CHOICES = [
    SelectChoice(Role.ADMIN.value, "Admin: everything, users and settings"),
    SelectChoice(Role.EDITOR.value, "Editor: content, sends, schedules, subscribers"),
    SelectChoice(Role.VIEWER.value, "Viewer: read only"),
]


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class ButtonForm(SafeForm):
    """A form that is only a button (log out, revoke, disable…): the CSRF token is its content."""


class LoginForm(SafeForm):
    """Email address and password."""

    email = EmailField(
        "Email address",
        filters=[_strip],
        validators=[
            InputRequired("Please enter your email address."),
            Length(max=MAX_EMAIL_LENGTH, message="That email address is too long."),
        ],
    )
    password = PasswordField(
        "Password",
        validators=[
            InputRequired("Please enter your password."),
            Length(max=MAX_LENGTH, message="That password is too long."),
        ],
    )


class CodeForm(SafeForm):
    """A six-digit code from an authenticator app."""

    code = StringField(
        "Code from your authenticator app",
        filters=[_strip],
        validators=[
            InputRequired("Please enter the six-digit code."),
            Length(max=12, message="The code has six digits."),
        ],
    )


class PasswordChangeForm(SafeForm):
    """The current password and a new one, twice."""

    current = PasswordField(
        "Current password",
        validators=[InputRequired("Please enter your current password."), Length(max=MAX_LENGTH)],
    )
    new = PasswordField(
        "New password",
        description=f"At least {MIN_LENGTH} characters; a phrase of a few words is good.",
        validators=[InputRequired("Please choose a new password."), Length(max=MAX_LENGTH)],
    )
    confirm = PasswordField(
        "New password again",
        validators=[
            InputRequired("Please enter the new password again."),
            EqualTo("new", message="The two new passwords differ."),
        ],
    )


class UserCreateForm(SafeForm):
    """A new account: address, name and role (the password is made up and shown once)."""

    email = EmailField(
        "Email address",
        filters=[_strip],
        validators=[
            InputRequired("Please enter the person's email address."),
            Length(max=MAX_EMAIL_LENGTH, message="That email address is too long."),
        ],
    )
    name = StringField(
        "Display name (optional)",
        filters=[_strip],
        validators=[Length(max=NAME_MAX, message=f"At most {NAME_MAX} characters.")],
    )
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.VIEWER.value)


class RoleForm(SafeForm):
    """Another role for one account."""

    role = SelectField("Role", choices=ROLE_CHOICES)
