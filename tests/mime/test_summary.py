"""Reading a twin the way the client does: subject, people, date, bodies, attachments."""

from __future__ import annotations

import base64
import json

from mailiverse.mime.summary import summarize
from mailiverse.mime.twin import convert

RAW = (
    b"From: Bob <bob@x.org>\nTo: a@y.org, c@z.org\nCc: d@w.org\nSubject: =?utf-8?Q?Hi_=C3=A9?=\n"
    b"Date: Sat, 19 Oct 2013 14:03:11 +0000\nMessage-ID: <m@x>\n"
    b"Content-Type: multipart/mixed; boundary=o\n\n"
    b"--o\nContent-Type: multipart/alternative; boundary=i\n\n"
    b"--i\n\nplain body\n--i\nContent-Type: text/html\n\n<p>html</p>\n--i--\n"
    b'--o\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="a.pdf"\n'
    b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"%PDF-1.4") + b"\n--o--\n"
)


def _twin(raw: bytes) -> dict[str, object]:
    return json.loads(convert(raw, original_path="Mail/In/1_1", written_ms=5))


def test_summary_of_a_normal_twin() -> None:
    """Subject, author, recipients, date, both bodies and the attachment are read back."""
    s = summarize(_twin(RAW))
    assert s.subject == "Hi é"
    assert s.author is not None and (s.author.name, s.author.email) == ("Bob", "bob@x.org")
    assert [p.email for p in s.to] == ["a@y.org", "c@z.org"] and [p.email for p in s.cc] == ["d@w.org"]
    assert s.date_ms == 1382191391000
    assert (s.text_body, s.html_body) == ("plain body", "<p>html</p>")
    assert [(a.filename, a.data) for a in s.attachments] == [("a.pdf", b"%PDF-1.4")]
    assert s.uidl == "<m@x>" and not s.is_error_document


def test_summary_of_an_error_document() -> None:
    """The fallback document has no subject, its date is written, and its text is the body."""
    s = summarize(_twin(b"Content-Type: text/plain; charset=nope\n\nx"))
    assert s.is_error_document and s.subject is None and s.date_ms == 5
    assert s.text_body == "java.io.UnsupportedEncodingException: nope"
