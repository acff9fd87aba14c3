"""Flask-WTF forms of the console. Every one carries a CSRF token (none opts out)."""

from __future__ import annotations

from typing import Any

from flask_wtf.file import FileField, FileRequired
from wtforms import (
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import (
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from newsletter.access.passwords import MAX_LENGTH, MIN_LENGTH
from newsletter.access.roles import Role
from newsletter.access.users import MAX_EMAIL_LENGTH, NAME_MAX
from newsletter.readers.addresses import MAX_ADDRESS_LENGTH
from newsletter.readers.directory import SEARCH_MAX
from newsletter.readers.importing import SOURCE_MAX, ImportMode
from newsletter.store.models import MAX_ID, SubscriberStatus
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


# --- the subscribers pages ------------------------------------------------------------------------

READER_STATUSES = [SelectChoice("", "Any status")] + [
    SelectChoice(s.value, s.value.capitalize()) for s in SubscriberStatus
]
IMPORT_MODES = [
    SelectChoice(ImportMode.CONFIRM_BY_MAIL.value, "Send confirmation mails"),
    SelectChoice(ImportMode.CONSENTED.value, "They already consented"),
]


class ReaderSearchForm(SafeForm):
    """The filters of the subscribers page, read from the query string (a GET: no CSRF token).

    The newsletter choices are the lists of the database, set by the view."""

    class Meta:
        csrf = False

    q = StringField(
        "Address or name starts with",
        filters=[_strip],
        validators=[Length(max=SEARCH_MAX, message=f"At most {SEARCH_MAX} characters.")],
    )
    newsletter = SelectField(
        "Newsletter", choices=[SelectChoice("", "Every newsletter")], default=""
    )
    status = SelectField(
        "Status",
        choices=READER_STATUSES,
        default="",
        description="With a newsletter chosen, the status on that newsletter.",
    )
    after = IntegerField(
        "After id",
        validators=[Optional(), NumberRange(min=0, max=MAX_ID, message="Not a page of this list.")],
    )


class UnsubscribeForm(SafeForm):
    """An editor's unsubscribe: from one list (its slug) or, empty, from every list."""

    newsletter = HiddenField(validators=[Length(max=100)])


class SuppressForm(SafeForm):
    """An editor's "never mail this address", with an optional reason kept with the entry."""

    detail = StringField(
        "Why (optional, kept with the entry)",
        filters=[_strip],
        validators=[Length(max=500, message="At most 500 characters.")],
    )


class EraseForm(SafeForm):
    """The erasure's confirmation: the editor types the reader's address."""

    address = StringField(
        "Type the reader's address to confirm",
        filters=[_strip],
        validators=[
            InputRequired("Type the address to confirm the erasure."),
            Length(max=MAX_ADDRESS_LENGTH, message="That is not the reader's address."),
        ],
    )


class ImportUploadForm(SafeForm):
    """A CSV file, the list it goes to, and how its readers come to be subscribed."""

    file = FileField(
        "CSV file",
        description="UTF-8, with a header row naming an 'email' column; "
        "optional columns: name, topics, frequency, timezone.",
        validators=[FileRequired("Please choose a CSV file.")],
    )
    newsletter = SelectField("Newsletter", choices=[])
    mode = RadioField(
        "How they join",
        choices=IMPORT_MODES,
        default=ImportMode.CONFIRM_BY_MAIL.value,
    )
    source = StringField(
        "Where and how they consented",
        description="Required when they already consented, e.g. 'paper form at the 2024 fair'. "
        "It is kept in each reader's consent record.",
        filters=[_strip],
        validators=[Length(max=SOURCE_MAX, message=f"At most {SOURCE_MAX} characters.")],
    )

    def validate_source(self, field: StringField) -> None:
        """Recorded consent needs its source: the proof names where it was given."""
        if self.mode.data == ImportMode.CONSENTED.value and not field.data:
            raise ValidationError("Say where and how the readers consented.")


class ImportApplyForm(SafeForm):
    """The "import N readers" button: it names the file kept since the preview."""

    upload = HiddenField(validators=[InputRequired(), Length(max=100)])
