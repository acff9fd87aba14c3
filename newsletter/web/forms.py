"""Flask-WTF forms of the reader pages.

Every form derives from :class:`SafeForm`, which refuses control characters (CR/LF above all)
in *every* submitted field, whatever its own validators say: values end up in mail headers, logs
and the consent ledger, and a line break in any of them is an injection attempt, not a typo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    Field,
    HiddenField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import InputRequired, Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from newsletter.readers.addresses import MAX_ADDRESS_LENGTH, InvalidAddress, normalise
from newsletter.readers.subscriptions import NAME_MAX, PAUSE_WEEKS

CONTROL_MESSAGE = "This field contains line breaks or other control characters, which we refuse."
# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: all of them can end a
# header line or a log line somewhere downstream.
_EXTRA_BREAKS = {"\u0085", "\u2028", "\u2029"}


def has_control_chars(value: str) -> bool:
    """True when ``value`` holds a character that could break a header or log line."""
    return any(ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in _EXTRA_BREAKS for ch in value)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class SafeForm(FlaskForm):
    """A form that marks every field holding control characters as invalid."""

    control_chars_found: bool = False

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        """Run the usual validation, then overrule it for fields with control characters."""
        tainted = [field for field in self if _field_has_control(field)]
        ok = super().validate(extra_validators)
        for field in tainted:
            field.errors = [CONTROL_MESSAGE]
        self.control_chars_found = bool(tainted)
        return ok and not tainted


def _field_has_control(field: Field) -> bool:
    raw = field.raw_data or []
    return any(isinstance(v, str) and has_control_chars(v) for v in raw)


class CheckboxList(SelectMultipleField):
    """Several checkboxes under one name (we render them by hand; this parses and validates)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SignupForm(SafeForm):
    """The "Stay in touch" box: address, optional name, lists; plus hidden bookkeeping fields."""

    email = StringField(
        "Email address",
        filters=[_strip],
        validators=[InputRequired("Please enter your email address.")],
    )
    name = StringField(
        "Your name (optional)",
        filters=[_strip],
        validators=[
            Length(max=NAME_MAX, message=f"Please keep your name under {NAME_MAX} characters.")
        ],
    )
    # Slugs (or ids); resolved against the database by the view, which knows the session.
    newsletter = CheckboxList("Newsletters", validate_choice=False)
    source = HiddenField(validators=[Length(max=500, message="The source is too long.")])
    next = HiddenField(validators=[Length(max=2000, message="The return address is too long.")])
    embed = HiddenField()
    # The honeypot: hidden from people and screen readers, irresistible to form-filling bots.
    website = StringField("Leave this field empty")
    # The solved proof of work (base64 JSON), filled in by the page's script when it is enabled.
    altcha = HiddenField(validators=[Length(max=2000, message="The form check is too long.")])

    def validate_email(self, field: StringField) -> None:
        """Normalise the address in place (no DNS), or say in the form's own words what is wrong."""
        value = field.data or ""
        if len(value) > MAX_ADDRESS_LENGTH:
            raise ValidationError("That email address is too long.")
        try:
            field.data = normalise(value)
        except InvalidAddress as exc:
            raise ValidationError(exc.reader_message) from exc


class ExternalSignupForm(SignupForm):
    """The same box posted from the news site's own pages or the iframe: no CSRF token.

    Safe without one: a forged post can only ever cause a confirmation mail (which does nothing
    without the mailbox owner's click), at most ``signup_mails_per_day`` of them a day per
    address, under per-IP and per-address rate limits.
    """

    class Meta:
        csrf = False


class ConfirmForm(SafeForm):
    """The confirmation button; the signed token in the URL is the credential."""

    class Meta:
        csrf = False


class ManageActionForm(SafeForm):
    """Buttons of the unsubscribe page; the signed token in the URL is the credential."""

    class Meta:
        csrf = False

    action = SelectField(
        choices=[
            SelectChoice("unsubscribe", "Unsubscribe"),
            SelectChoice("all", "Leave all newsletters"),
            SelectChoice("pause", "Pause"),
            SelectChoice("weekly", "Switch to weekly"),
            SelectChoice("undo", "Undo"),
            SelectChoice("rejoin", "Subscribe again"),
        ],
        validate_choice=True,
    )
    weeks = SelectField(
        choices=[SelectChoice(str(w), f"{w} weeks") for w in PAUSE_WEEKS],
        default=str(PAUSE_WEEKS[0]),
    )
    # The signed, 15-minute token of the "undo" button shown right after leaving.
    undo = HiddenField(validators=[Length(max=2000)])


class PreferencesForm(SafeForm):
    """The preferences page; per-list frequency fields are added by :func:`preferences_form`."""

    name = StringField(
        "Your name",
        filters=[_strip],
        validators=[
            Length(max=NAME_MAX, message=f"Please keep your name under {NAME_MAX} characters.")
        ],
    )
    timezone = SelectField("Time zone", validate_choice=True)
    newsletter = CheckboxList("Newsletters", coerce=str)
    topics = CheckboxList("Topics", coerce=str)

    def frequency_fields(self) -> list[tuple[int, RadioField]]:
        """The per-list frequency fields, with the list id each belongs to."""
        out: list[tuple[int, RadioField]] = []
        for field in self:
            if field.name.startswith("frequency_") and isinstance(field, RadioField):
                out.append((int(field.name.removeprefix("frequency_")), field))
        return out


def preferences_form(
    *,
    newsletter_choices: Iterable[tuple[str, str]],
    digest_ids: Iterable[int],
    topics: Iterable[str],
    timezones: Iterable[str],
    data: Mapping[str, Any] | None = None,
) -> PreferencesForm:
    """Build the preferences form with one daily/weekly choice per digest list."""

    class _Form(PreferencesForm):
        pass

    for newsletter_id in digest_ids:
        setattr(
            _Form,
            f"frequency_{newsletter_id}",
            RadioField(
                "How often",
                choices=[SelectChoice("daily", "Daily"), SelectChoice("weekly", "Weekly")],
                default="daily",
            ),
        )
    # On a POST Flask-WTF reads request.form; ``data`` only fills what was not submitted.
    form = _Form(data=dict(data or {}))
    form.newsletter.choices = [SelectChoice(value, label) for value, label in newsletter_choices]
    form.topics.choices = [SelectChoice(t, t) for t in topics]
    form.timezone.choices = [SelectChoice(z, z.replace("_", " ")) for z in timezones]
    return form
