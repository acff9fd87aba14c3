"""The development mail viewer over real captured mail (CaptureTransport + build_message)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from newsletter import create_app
from newsletter.mail.compose import Envelope, Rendered, build_message
from newsletter.mail.transport import CaptureTransport
from newsletter.settings import Settings
from tests.conftest import TEST_SECRET


def capture(settings: Settings, to: str, subject: str, html: str, text: str, **headers: str) -> str:
    """Build a real message and capture it the way the worker does; return its id."""
    folder = settings.mail_capture_dir
    assert folder is not None
    before = set(folder.glob("*.eml")) if folder.exists() else set()
    message = build_message(
        settings,
        Envelope(to=to, from_=settings.mail_from, headers=dict(headers)),
        Rendered(subject=subject, text=text, html=html),
    )
    CaptureTransport(folder).send("bounces@news.example.com", to, message)
    (new,) = set(folder.glob("*.eml")) - before
    return new.stem


def test_list_shows_newest_first_with_time_recipient_and_subject(
    client: FlaskClient, settings: Settings
) -> None:
    capture(settings, "first@example.com", "First mail", "<p>one</p>", "one")
    capture(settings, "second@example.com", "Second <mail> & more", "<p>two</p>", "two")

    response = client.get("/dev/mail/")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.index("second@example.com") < page.index("first@example.com")
    assert "Second &lt;mail&gt; &amp; more" in page  # subjects are escaped
    assert re.search(r"<time datetime=\"\d{4}-\d\d-\d\dT", page)


def test_empty_list_explains_where_mail_comes_from(client: FlaskClient) -> None:
    page = client.get("/dev/mail/").get_data(as_text=True)
    assert "No mail yet" in page


def test_latest_endpoint_reports_newest_id_for_auto_refresh(
    client: FlaskClient, settings: Settings
) -> None:
    assert client.get("/dev/mail/latest").get_json() == {"latest": "", "count": 0}
    capture(settings, "a@example.com", "A", "<p>a</p>", "a")
    newest = capture(settings, "b@example.com", "B", "<p>b</p>", "b")
    assert client.get("/dev/mail/latest").get_json() == {"latest": newest, "count": 2}


def test_mail_page_frames_the_html_part_in_a_sandbox(
    client: FlaskClient, settings: Settings
) -> None:
    mail_id = capture(settings, "r@example.com", "Hello", "<p>Hi <b>there</b></p>", "Hi there")

    page = client.get(f"/dev/mail/{mail_id}").get_data(as_text=True)

    iframe = re.search(r"<iframe[^>]*>", page)
    assert iframe is not None
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe.group(0)
    assert f'src="/dev/mail/{mail_id}/html"' in iframe.group(0)
    assert "r@example.com" in page


def test_html_part_is_served_with_a_strict_policy_and_links_open_in_new_tabs(
    client: FlaskClient, settings: Settings
) -> None:
    html = (
        "<html><head><title>x</title></head><body><a href='http://127.0.0.1:5000/confirm/t'>"
        "Confirm</a><script>alert(1)</script></body></html>"
    )
    mail_id = capture(settings, "r@example.com", "Confirm", html, "Confirm")

    response = client.get(f"/dev/mail/{mail_id}/html")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp  # no scripts, no connections
    assert "script-src" not in csp
    assert "frame-ancestors 'self'" in csp
    assert "sandbox allow-popups allow-popups-to-escape-sandbox" in csp
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    body = response.get_data(as_text=True)
    assert '<head><base target="_blank">' in body
    assert "http://127.0.0.1:5000/confirm/t" in body


def test_text_view_escapes_and_links_urls(client: FlaskClient, settings: Settings) -> None:
    text = "Confirm here: http://127.0.0.1:5000/confirm/abc?x=1&y=2\n<script>no</script>"
    mail_id = capture(settings, "r@example.com", "T", "<p>t</p>", text)

    page = client.get(f"/dev/mail/{mail_id}?view=text").get_data(as_text=True)

    assert (
        '<a href="http://127.0.0.1:5000/confirm/abc?x=1&amp;y=2" target="_blank" '
        'rel="noopener noreferrer">' in page
    )
    assert "&lt;script&gt;no&lt;/script&gt;" in page
    assert "<script>no</script>" not in page


def test_headers_and_source_views(client: FlaskClient, settings: Settings) -> None:
    mail_id = capture(
        settings, "r@example.com", "Headers", "<p>h</p>", "h", **{"X-Campaign": "c-42"}
    )

    headers = client.get(f"/dev/mail/{mail_id}?view=headers").get_data(as_text=True)
    source = client.get(f"/dev/mail/{mail_id}?view=source").get_data(as_text=True)
    raw = client.get(f"/dev/mail/{mail_id}/source.eml")

    assert "X-Campaign" in headers and "c-42" in headers
    assert "Message-ID" in headers
    assert "Content-Type: multipart/alternative" in source
    assert raw.mimetype == "message/rfc822"
    assert raw.headers["Content-Disposition"] == f'attachment; filename="{mail_id}.eml"'
    assert b"X-Envelope-To: r@example.com" in raw.data


def test_one_click_unsubscribe_button_posts_to_the_list_unsubscribe_url(
    client: FlaskClient, settings: Settings
) -> None:
    url = "http://127.0.0.1:5000/unsubscribe/tok123"
    mail_id = capture(
        settings,
        "r@example.com",
        "Digest",
        "<p>d</p>",
        "d",
        **{
            "List-Unsubscribe": f"<{url}>, <mailto:unsubscribe@news.example.com?subject=x>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )

    page = client.get(f"/dev/mail/{mail_id}").get_data(as_text=True)

    form = re.search(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', page, re.S)
    assert form is not None and form.group(1) == url
    assert 'name="List-Unsubscribe" value="One-Click"' in form.group(2)


@pytest.mark.parametrize(
    "path",
    [
        "/dev/mail/..%2F..%2Fnewsletter.db",
        "/dev/mail/../newsletter.db",
        "/dev/mail/%2e%2e/html",
        "/dev/mail/00000000000000000001-zzzzzzzz",
        "/dev/mail/00000000000000000001-0000000/html",
        "/dev/mail/00000000000000000001-00000000",  # well-formed, not there
        "/dev/mail/00000000000000000001-00000000/source.eml",
    ],
)
def test_ids_are_validated_and_nothing_outside_the_folder_is_served(
    client: FlaskClient, settings: Settings, path: str
) -> None:
    capture(settings, "r@example.com", "x", "<p>x</p>", "x")
    response = client.get(path)
    assert response.status_code == 404
    assert b"SQLite" not in response.data


def test_delete_all_needs_the_form_token_and_removes_captured_mail(
    settings: Settings, tmp_path: Path
) -> None:
    capture(settings, "r@example.com", "x", "<p>x</p>", "x")
    app = create_app(settings)
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()

    assert client.post("/dev/mail/clear").status_code == 400  # no CSRF token
    assert settings.mail_capture_dir is not None
    assert list(settings.mail_capture_dir.glob("*.eml"))

    page = client.get("/dev/mail/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post("/dev/mail/clear", data={"csrf_token": token.group(1)})

    assert response.status_code == 303
    assert not list(settings.mail_capture_dir.glob("*.eml"))


def test_viewer_says_when_mail_goes_to_smtp_instead(settings: Settings) -> None:
    app = create_app(replace(settings, smtp_url="smtp://user:hunter2@mail.example.com:587"))
    page = app.test_client().get("/dev/mail/").get_data(as_text=True)
    assert "nothing is captured" in page
    assert "hunter2" not in page


def test_viewer_does_not_exist_in_production(tmp_path: Path) -> None:
    production = Settings(env="production", data_dir=tmp_path, secret_key=TEST_SECRET)
    app = create_app(production.with_defaults())
    assert app.test_client().get("/dev/mail/").status_code == 404
