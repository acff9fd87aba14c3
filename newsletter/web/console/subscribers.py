"""The subscribers pages at /console/subscribers: find readers, one reader's page, unsubscribe,
suppress, erase, export a filtered set as CSV, and import a CSV through a preview.

The rules are in ``newsletter.readers`` (``directory``, ``importing``, ``exporting``,
``erasure``), the same functions ``newsletter subscribers`` calls; these views parse the form,
call them and shape the page. Viewers read; editors and admins change readers, import and export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from newsletter.access.roles import Role, role_at_least
from newsletter.readers.addresses import email_key
from newsletter.readers.directory import (
    ReaderFilter,
    count_readers,
    list_readers,
    reader_record,
)
from newsletter.readers.erasure import erase, suppress_reader, unsubscribe_reader
from newsletter.readers.exporting import iter_csv
from newsletter.readers.importing import (
    ImportFileError,
    ImportMode,
    ImportReport,
    apply,
    enqueue_confirmations,
    preview,
)
from newsletter.readers.subscriptions import UnknownNewsletter
from newsletter.store.db import utcnow
from newsletter.store.models import Newsletter, Subscriber, SubscriberStatus, SubscriptionStatus
from newsletter.web import db, mail_queue, settings
from newsletter.web.console import uploads
from newsletter.web.console.forms import (
    EraseForm,
    ImportApplyForm,
    ImportUploadForm,
    ReaderSearchForm,
    SuppressForm,
    UnsubscribeForm,
)
from newsletter.web.console.guard import bp, current_session, current_user, role_required
from newsletter.web.extensions import csrf

PAGE = 50
# The preview lists this many problem rows (the totals count them all).
SHOWN_PROBLEMS = 100
# A multipart body is the file plus its boundaries, headers and the other fields.
FORM_OVERHEAD = 64 * 1024
SUB_STATUSES = {s.value for s in SubscriptionStatus}


def _sentence(exc: Exception) -> str:
    """A domain refusal (lower-case, no full stop, as the CLI prints it) as a sentence."""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def _lists() -> list[tuple[str, str]]:
    """(slug, name) of every newsletter in display order: the choices of the forms."""
    rows = db().execute(
        select(Newsletter.slug, Newsletter.name).order_by(Newsletter.position, Newsletter.id)
    )
    return [(slug, name) for slug, name in rows]


def _search_form() -> ReaderSearchForm:
    """The filters from the query string, the newsletter choices from the database."""
    form = ReaderSearchForm(formdata=request.args)
    form.newsletter.choices = [("", "Every newsletter"), *_lists()]
    return form


def _reader_filter(form: ReaderSearchForm) -> ReaderFilter | None:
    """The filter the form asks for, or None with the form's errors set."""
    if not form.validate():
        return None
    slug = form.newsletter.data or None
    status = form.status.data or None
    search = form.q.data or ""
    if slug is None:
        return ReaderFilter(None, None, SubscriberStatus(status) if status else None, search)
    if status is not None and status not in SUB_STATUSES:
        form.status.errors = ["With a newsletter, the status is pending, active or unsubscribed."]
        return None
    return ReaderFilter(slug, SubscriptionStatus(status) if status else None, None, search)


def _query(form: ReaderSearchForm, **changes: Any) -> dict[str, Any]:
    """The page's query string with some values changed (empty values left out)."""
    args = {"q": form.q.data, "newsletter": form.newsletter.data, "status": form.status.data}
    args.update(changes)
    return {k: v for k, v in args.items() if v}


@bp.get("/subscribers")
@role_required(Role.VIEWER)
def subscribers() -> ResponseReturnValue:
    """Readers matching a search and filters, a keyset page at a time, with counts per status."""
    form = _search_form()
    f = _reader_filter(form)
    if f is None:
        return render_template("web/console/subscribers.html", form=form, error=True), 400
    after = form.after.data or 0
    page = list_readers(db(), f, after=after, limit=PAGE)
    counts = count_readers(db(), f)
    return render_template(
        "web/console/subscribers.html",
        form=form,
        error=False,
        page=page,
        after=after,
        counts=counts,
        breakdown=counts.by_subscription_status or counts.by_status,
        query=lambda **changes: _query(form, **changes),
        may_edit=_may_edit(),
    )


def _may_edit() -> bool:
    """Whether the page shows the buttons that change readers (an editor's and up)."""
    user = current_user()
    return user is not None and role_at_least(user.role, Role.EDITOR)


# Export hands out personal data in bulk (addresses and names, to a file that leaves the
# service): that is more than reading one page at a time, so a viewer may not. Editors and admins
# already change readers and import them; the export is theirs too.
@bp.get("/subscribers/export.csv")
@role_required(Role.EDITOR)
def subscribers_export() -> ResponseReturnValue:
    """The filtered readers as CSV, streamed a keyset page at a time (constant memory)."""
    form = _search_form()
    f = _reader_filter(form)
    if f is None:
        return render_template("web/console/subscribers.html", form=form, error=True), 400
    # The filter is checked above (an unknown list is a 400 page, not an error mid-stream).
    name = f"subscribers-{f.newsletter_slug or 'all'}-{utcnow():%Y%m%d}.csv"
    stream: Iterator[str] = stream_with_context(iter_csv(db(), f))
    return BaseResponse(
        stream,
        mimetype="text/csv",
        headers={
            # The slug is [a-z0-9-] (validated when the list was made): a plain ASCII filename.
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


def _reader(subscriber_id: int) -> Subscriber:
    subscriber = db().get(Subscriber, subscriber_id)
    if subscriber is None:
        abort(404)
    return subscriber


@bp.get("/subscribers/<int:subscriber_id>")
@role_required(Role.VIEWER)
def subscriber(subscriber_id: int) -> str:
    """One reader: lists, consent records, latest mails, bounces and complaints, actions."""
    record = reader_record(db(), subscriber_id)
    if record is None:
        abort(404)
    return render_template(
        "web/console/subscriber.html",
        record=record,
        unsubscribe=UnsubscribeForm(formdata=None),
        suppress=SuppressForm(formdata=None),
        may_edit=_may_edit(),
    )


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe")
@role_required(Role.EDITOR)
def subscriber_unsubscribe(subscriber_id: int) -> ResponseReturnValue:
    """Unsubscribe the reader from one list (the form names it) or from every list."""
    reader = _reader(subscriber_id)
    form = UnsubscribeForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        left = unsubscribe_reader(db(), reader, form.newsletter.data or None)
    except UnknownNewsletter:
        db().rollback()
        abort(400)
    db().commit()
    if left:
        flash(f"{reader.email} left {', '.join(left)}.")
    else:
        flash(f"{reader.email} was on no such list.")
    return redirect(url_for("console.subscriber", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/suppress")
@role_required(Role.EDITOR)
def subscriber_suppress(subscriber_id: int) -> ResponseReturnValue:
    """Never mail the reader's address again (they leave every list too)."""
    reader = _reader(subscriber_id)
    form = SuppressForm()
    if not form.validate_on_submit():
        abort(400)
    row = suppress_reader(db(), reader.email, form.detail.data or "")
    db().commit()
    flash(f"{reader.email} is on the do-not-mail list ({row.reason}) and left every list.")
    return redirect(url_for("console.subscriber", subscriber_id=subscriber_id))


def _erase_page(reader: Subscriber, form: EraseForm, error: str = "") -> str:
    return render_template(
        "web/console/erase.html",
        reader=reader,
        form=form,
        error=error,
        keep_days=settings().erased_consent_days,
    )


@bp.get("/subscribers/<int:subscriber_id>/erase")
@role_required(Role.EDITOR)
def subscriber_erase_confirm(subscriber_id: int) -> str:
    """The erasure's confirmation step: what goes, what stays and why."""
    return _erase_page(_reader(subscriber_id), EraseForm(formdata=None))


@bp.post("/subscribers/<int:subscriber_id>/erase")
@role_required(Role.EDITOR)
def subscriber_erase(subscriber_id: int) -> ResponseReturnValue:
    """Erase the reader (GDPR Art. 17) once the editor has typed their address."""
    reader = _reader(subscriber_id)
    form = EraseForm()
    if not form.validate_on_submit():
        return _erase_page(reader, form, "Type the reader's address to confirm."), 400
    if email_key(form.address.data or "") != reader.email_key:
        form.address.errors = ["That is not this reader's address."]
        return _erase_page(reader, form, "The address does not match: nothing was erased."), 400
    address = reader.email
    result = erase(db(), reader)
    db().commit()
    flash(
        f"{address} is erased: {result.subscriptions} subscriptions, {result.consent_records} "
        f"consent records, {result.deliveries} deliveries and {result.feedback_events} reports "
        f"deleted; {result.consents_kept} consent proof(s) kept without the address; the address "
        f"stays on the do-not-mail list ({result.suppression_reason})."
    )
    return redirect(url_for("console.subscribers"))


# --- import ---------------------------------------------------------------------------------------


def _upload_form(*, blank: bool = False) -> ImportUploadForm:
    """The upload form: the posted one, or a blank one; its choices are the lists we have."""
    form = ImportUploadForm(formdata=None) if blank else ImportUploadForm()
    form.newsletter.choices = _lists()
    return form


def _size(n: int) -> str:
    """A byte count as people read it: 20 MB, 9.8 KB, 500 bytes."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} bytes"


def _import_page(
    form: ImportUploadForm, error: str = "", status: int = 200, **extra: Any
) -> tuple[str, int]:
    return render_template(
        "web/console/import.html",
        form=form,
        error=error,
        max_size=_size(settings().import_max_bytes),
        max_rows=settings().import_max_rows,
        **extra,
    ), status


@bp.get("/subscribers/import")
@role_required(Role.EDITOR)
def subscribers_import() -> ResponseReturnValue:
    """The upload form: a file, the list, and how the readers join."""
    return _import_page(_upload_form(blank=True))


def _too_large() -> tuple[str, int]:
    form = _upload_form(blank=True)
    message = (
        f"The file is larger than {_size(settings().import_max_bytes)} "
        "(NEWSLETTER_IMPORT_MAX_BYTES): "
        "split it into smaller files and import them one by one."
    )
    return _import_page(form, message, 413)


# The upload is larger than any other form: the global CSRF check would read the body under
# the small form limit first. This view raises the limit to the importer's own, then checks the
# token itself (csrf.protect(): the same check, the same "Form expired" page).
@bp.post("/subscribers/import")
@csrf.exempt
@role_required(Role.EDITOR)
def subscribers_import_preview() -> ResponseReturnValue:
    """Keep the uploaded file and show the verdict on every row; nothing is imported yet."""
    request.max_content_length = settings().import_max_bytes + FORM_OVERHEAD
    try:
        csrf.protect()
        form = _upload_form()
        valid = form.validate_on_submit()
    except RequestEntityTooLarge:
        return _too_large()
    if not valid:
        return _import_page(form, "Please correct the form.", 400)
    row = current_session()
    assert row is not None  # role_required let the request in
    try:
        upload = uploads.store(
            settings(),
            form.file.data.stream,
            console_session_id=row.id,
            newsletter_slug=form.newsletter.data or "",
            mode=form.mode.data or "",
            source=form.source.data or "",
            filename=form.file.data.filename or "",
        )
    except uploads.UploadTooLarge:
        return _too_large()
    try:
        with upload.path(settings()).open("rb") as stream:
            report = preview(db(), settings(), stream, upload.newsletter_slug)
    except (ImportFileError, UnknownNewsletter) as exc:
        uploads.discard(settings(), upload.id)
        return _import_page(form, _sentence(exc), 400)
    return _import_page(
        form,
        report=report,
        upload=upload,
        problems=report.problems[:SHOWN_PROBLEMS],
        confirm=ImportApplyForm(formdata=None, upload=upload.id),
        consented=upload.mode == ImportMode.CONSENTED.value,
    )


@bp.post("/subscribers/import/apply")
@role_required(Role.EDITOR)
def subscribers_import_apply() -> ResponseReturnValue:
    """Import the rows still valid of the file previewed in this session, all or nothing."""
    form = ImportApplyForm()
    row, user = current_session(), current_user()
    assert row is not None and user is not None  # role_required let the request in
    upload = (
        uploads.load(settings(), form.upload.data or "", row.id)
        if form.validate_on_submit()
        else None
    )
    claimed = uploads.claim(settings(), upload) if upload is not None else None
    if upload is None or claimed is None:
        message = (
            "That upload is no longer here (it waits an hour, for the session that sent it): "
            "please upload the file again."
        )
        return _import_page(_upload_form(blank=True), message, 404)
    mode = ImportMode(upload.mode)
    try:
        with claimed.open("rb") as stream:
            report: ImportReport = preview(db(), settings(), stream, upload.newsletter_slug)
        result = apply(
            db(),
            settings(),
            report.valid,
            upload.newsletter_slug,
            mode,
            actor=f"{user.email} (console)",
            source=upload.source,
        )
        db().commit()
    except (ImportFileError, UnknownNewsletter) as exc:
        db().rollback()
        uploads.discard(settings(), upload.id)
        return _import_page(_upload_form(blank=True), _sentence(exc), 400)
    uploads.discard(settings(), upload.id)
    queued = enqueue_confirmations(mail_queue(), result)
    message = (
        f"Imported {result.subscribed} readers ({result.created} new) into "
        f"{upload.newsletter_slug}."
    )
    if result.skipped:
        message += f" {len(result.skipped)} rows changed since the preview and were left out."
    if mode == ImportMode.CONFIRM_BY_MAIL:
        message += f" {queued} confirmation mails are queued; each joins when they click the link."
    flash(message)
    return redirect(url_for("console.subscribers", newsletter=upload.newsletter_slug))
