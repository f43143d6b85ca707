"""Hand-crafted edge-case messages for the differential harness, covering each rule of docs/protocol.md
section 12, and the documented JavaMail 1.4 vs 1.6.5 differences (``KNOWN_DIFFERENCES``)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

_STD = (
    "Return-Path: <sender@example.org>\n"
    "Delivered-To: alice@mailiverse.example\n"
    "From: Sender <sender@example.org>\n"
    "To: alice@mailiverse.example\n"
    "Subject: edge case\n"
    "Date: Tue, 15 Oct 2013 10:11:12 +0200\n"
    "Message-ID: <edge@example.org>\n"
)


def _msg(headers: str, body: str | bytes, *, std: bool = True, crlf: bool = False) -> bytes:
    """A message with (optionally) the standard headers first, then ``headers``, a blank line and ``body``."""
    head = (_STD if std else "") + headers
    raw_body = body if isinstance(body, bytes) else body.encode("latin-1")
    raw = head.encode("latin-1") + b"\n" + raw_body
    if crlf:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return raw


CASES: dict[str, bytes] = {}

# --- header reading -----------------------------------------------------------------------------

CASES["headers_folding_forms"] = _msg(
    "Subject:\n  folded right after the colon\n\tand again with a tab   \n"
    "X-Trailing: value with trailing blanks   \n"
    "X-Empty:\n"
    "X-NoSpace:novalue\n"
    "X-Many-Folds: a\n b\n  c\n\t\td\n"
    "X-Colon-In-Value: a: b: c\n",
    "body\n",
)
CASES["headers_folding_crlf"] = _msg("X-Folded: first\n  second\n\tthird\n", "crlf body\nline two\n", crlf=True)
CASES["headers_colonless_line"] = _msg("X-Before: 1\nthis line has no colon\nX-After: 2\n", "body\n")
CASES["headers_mbox_from_line"] = b"From sender@example.org Tue Oct 15 10:11:12 2013\n" + _msg("", "mbox style\n")
CASES["headers_duplicates"] = _msg(
    "Subject: second subject\nDate: Wed, 16 Oct 2013 10:11:12 +0000\nMessage-ID:\n   <second@example.org>\n"
    "Received: from a by b; Tue, 15 Oct 2013 10:11:12 +0200\nReceived: from c\n by d\n",
    "dups\n",
)
CASES["headers_uidl_folded"] = _msg("", "body\n", std=False).replace(
    b"\n\nbody", b"\nMessage-ID:\n\t<folded@example.org>   \nFrom: a@b.example\n\nbody"
)
CASES["headers_8bit_latin1_and_utf8"] = _msg("X-Latin1: caf\xe9\nX-Utf8: caf\xc3\xa9 \xe2\x82\xac\n", "b\xe9ody\n")
CASES["headers_bare_cr_lines"] = b"From: a@example.org\rTo: b@example.org\rSubject: cr only\r\rbody\rline\r"
CASES["headers_only_no_body"] = b"From: a@example.org\nSubject: no body at all\n"
CASES["headers_no_blank_line_eof"] = b"From: a@example.org\nSubject: no blank line"
CASES["headers_encoded_name"] = _msg("=?utf-8?q?X-Enc?=: value\n", "b\n")
CASES["headers_leading_blank_line"] = b"\nFrom: a@example.org\nSubject: after blank\n\nbody\n"
CASES["headers_continuation_first"] = b" continued first line\nFrom: a@example.org\n\nbody\n"

# --- RFC 2047 -------------------------------------------------------------------------------------

CASES["rfc2047_forms"] = _msg(
    "X-Adjacent: =?utf-8?q?a?= =?utf-8?q?b?=\n"
    "X-Adjacent-Fold: =?utf-8?q?a?=\n =?utf-8?q?b?=  =?iso-8859-1?q?c=E9?=\n"
    "X-Mixed: plain =?utf-8?q?caf=C3=A9?= plain =?utf-8?B?w6k=?=\n"
    "X-Glued: x=?utf-8?q?a?= =?utf-8?q?b?=y\n"
    'X-Quoted: "=?utf-8?q?a?=" (=?utf-8?q?b?=)\n'
    "X-Underscore: =?utf-8?q?a_b_c?=\n"
    "X-Lower: =?UTF-8?b?w6k=?= =?utf-8?Q?=c3=a9?=\n"
    "X-Junk-B: =?utf-8?b?w6!k=?= =?utf-8?b?w6k?=\n"
    "X-Malformed: =?utf-8?x?abc?= =?utf-8?q?unterminated =?utf-8??abc?= =?utf-8?q?a?b?=\n"
    "X-Empty-Word: =?utf-8?q??= =?utf-8?b??=\n"
    "X-Lang: =?utf-8*en?q?lang?=\n"
    "X-Invalid-Q: =?utf-8?q?=ZZ=4?=\n"
    "X-Tabs: a\t=?utf-8?q?b?=\t\tc\n"
    "X-No-Encoded: a =? b ?= c\n"
    "X-Aliases: =?latin1?q?caf=e9?= =?utf8?q?x?= =?cp1252?q?=80?= =?us-ascii?q?=e9?= =?ISO8859-1?q?=e9?=\n",
    "b\n",
)
CASES["rfc2047_subject_utf8_invalid"] = _msg("X-Bad-Utf8: =?utf-8?q?a=FFb=C3c=E2=82?=\n", "b\n")
CASES["rfc2047_unknown_charset_aborts"] = _msg("X-Unknown: =?x-unknown?q?abc?=\n", "b\n")
CASES["rfc2047_unknown_charset_glued"] = _msg("X-Unknown: x=?x-unknown?q?abc?=\n", "b\n")
CASES["rfc2047_asian_charsets"] = _msg(
    "X-Jp: =?iso-2022-jp?B?GyRCJDMkcyRLJEEkTxsoQg==?=\n"
    "X-Sjis: =?shift_jis?B?grGC8YLJgr+CzQ==?=\n"
    "X-Gb: =?gb2312?B?xOO6ww==?=\n"
    "X-Big5: =?big5?B?p0Gmbg==?=\n"
    "X-Kr: =?ks_c_5601-1987?B?vsiz58fPvLy/5A==?=\n"
    "X-Koi: =?koi8-r?B?8NLJ18XU?=\n",
    "b\n",
)

# --- addresses ------------------------------------------------------------------------------------

CASES["addresses_forms"] = _msg(
    'Cc: "=?utf-8?q?Caf=C3=A9?=" <cafe@example.org>, =?utf-8?q?J=C3=B6rg?= <j@example.org>,\n'
    ' x@example.org (Comment Name), "Quoted \\"Inner\\"" <q@example.org>, <@route.example:r@example.org>\n'
    'Bcc: local-only, "Last, First" <lf@example.org>,\n',
    "b\n",
).replace(b"From: Sender <sender@example.org>\n", b"")
CASES["addresses_empty_route_addr"] = _msg("Cc: <>\nBcc: Nobody <>\n", "b\n")
CASES["addresses_empty_reply_to"] = _msg("Reply-To:\n", "b\n")
CASES["addresses_groups"] = _msg(
    "Cc: undisclosed-recipients:;\n"
    'Bcc: Team: a@example.org, "B, Person" <b@example.org>;, after@example.org\n'
    "Reply-To: Empty Group:;, =?utf-8?q?G=C3=BC?=: g@example.org;\n",
    "b\n",
)
CASES["addresses_sender_fallback"] = _msg('Sender: "The Sender" <s@example.org>\n', "b\n").replace(
    b"From: Sender <sender@example.org>\n", b""
)
CASES["addresses_parse_errors"] = _msg(
    'Cc: "unterminated <a@example.org>\nBcc: a@b@c\nReply-To: <no-close@example.org\n', "b\n"
)
CASES["addresses_from_error_no_replyto"] = _msg("", "b\n").replace(
    b"From: Sender <sender@example.org>", b"From: Bad (unclosed <x@example.org>"
)
CASES["addresses_multiple_to_headers"] = _msg("To: second@example.org\nTo:\nCc:\n", "b\n")
CASES["addresses_double_encoded_name"] = _msg(
    'Cc: "=?utf-8?b?PT91dGYtOD9xP0NhZj1DMz1BOT89?=" <d@example.org>\n'
    "Bcc: =?utf-8?q?a=40b?= <e@example.org>, =?utf-8?q?enc=40example.org?=\n",
    "b\n",
)
CASES["addresses_8bit_names"] = _msg("Cc: J\xc3\xb6rg <j@example.org>, \xe9mile@example.org\n", "b\n")
CASES["addresses_trailing_commas_and_spaces"] = _msg("Cc: , a@example.org,, ,b@example.org ,\n", "b\n")
CASES["addresses_unknown_charset_in_name"] = _msg('Cc: "=?x-unknown?q?abc?=" <u@example.org>\n', "b\n")

# --- dates ------------------------------------------------------------------------------------------

DATES = [
    "Tue, 15 Oct 2013 10:11:12 +0200",
    "15 Oct 2013 10:11:12 -0000",
    "Tue, 15 Oct 2013 10:11 +0200",
    "Tue, 15 Oct 13 10:11:12 GMT",
    "Tue, 15 Oct 49 10:11:12 UT",
    "Tue, 15 Oct 50 10:11:12 Z",
    "Tue, 15 Oct 99 10:11:12 EST",
    "Tue, 15 Oct 2013 10:11:12 EDT",
    "Tue, 15 Oct 2013 10:11:12 CST",
    "Tue, 15 Oct 2013 10:11:12 CDT",
    "Tue, 15 Oct 2013 10:11:12 MST",
    "Tue, 15 Oct 2013 10:11:12 MDT",
    "Tue, 15 Oct 2013 10:11:12 PST",
    "Tue, 15 Oct 2013 10:11:12 PDT",
    "Tue, 15 Oct 2013 10:11:12 CET",
    "Tue, 15 Oct 2013 10:11:12 A",
    "Tue, 15 Oct 2013 10:11:12",
    "Tue, 15 Oct 2013 10:11:12 0200",
    "Tue, 15 Oct 2013 10:11:12 +02",
    "Tue, 15 Oct 2013 10:11:12 +0200 (CEST)",
    "Tue, 15 Oct 2013 10:11:12 -0930",
    "Tue, 15 Oct 2013 10:11:12 +9999",
    "Mon, 31 Feb 2013 25:61:61 +0000",
    "Thu, 1 Jan 1950 00:00:00 +0000",
    "Fri, 13 Sep 1901 00:00:00 +0000",
    "1 jan 0001 00:00:00 +0000",
    "Tue,15 Oct 2013 10:11:12 +0200",
    "Tue, 15-Oct-2013 10:11:12 +0200",
    "Tue 15 Oct 2013 10:11:12 +0200",
    "15 October 2013 10:11:12 +0200",
    "Tue, 15 OCT 2013 10:11:12 +0200",
    "Tue,  5 Oct 2013  1:02:03 +0200",
    "Tue, 15 Oct 2013 10:11:12 +0200 trailing junk",
    "2013-10-15T10:11:12Z",
    "Tue, 15 Foo 2013 10:11:12 +0200",
    "",
    "   Tue, 15 Oct 2013 10:11:12 +0200",
    "Tue, 15 Oct 2013 10:11:12 +0200\n\t(folded comment)",
    "Tue, 15 Oct 2013\n 10:11:12 +0200",
    "Tue, 15 Oct 113 10:11:12 +0000",
    "Tue, 15 Oct 5 10:11:12 +0000",
    "Tue, 15 Oct 99999 10:11:12 +0000",
    "Tue, 15 Oct 2013 10:11:12 +0200x",
    "Tue, 15 Oct 2013 10:11:12 gmt",
    "Tue, 15 Oct 2013 10:11:12 est",
    "Tue, 15 Oct 2013 10:11:12 -",
    "Tue, 15 Oct 2013 10:11:12 +",
    "Tue, 32 Dec 2013 10:11:12 +0000",
    "Tue, 0 Jan 2013 10:11:12 +0000",
    "Tue, 15 Oct 2013 10:11:12.345 +0000",
    "Tue, 15 Oct 2013 10.11.12 +0000",
    "Sun, 29 Feb 2004 23:59:60 +1400",
    "Thu, 15 Oct 1582 00:00:00 +0000",
    "Thu, 4 Oct 1582 00:00:00 +0000",
    "Wed, 10 Oct 1582 00:00:00 +0000",
    "Tue, 15 Oct 2013 10:11:12 UTC",
    "Tue, 15 Oct 2013 10:11:12 +0200 +0300",
    "Tue, 15 Oct 2013 10:11:12 -1200",
    "Jan 15 2013 10:11:12 +0000",
    "Tue, 15 Oct 2013 99999999999:11:12 +0000",
    "Tue, 15 Oct 2147483648 10:11:12 +0000",
]
for _i, _d in enumerate(DATES):
    CASES[f"date_{_i:02d}"] = _msg("", "d\n").replace(
        b"Date: Tue, 15 Oct 2013 10:11:12 +0200\n", f"Date: {_d}\n".encode("latin-1")
    )
CASES["date_two_headers_first_bad"] = _msg("Date: Wed, 16 Oct 2013 10:11:12 +0000\n", "d\n").replace(
    b"Date: Tue, 15 Oct 2013 10:11:12 +0200\n", b"Date: garbage\n"
)

# --- charsets ---------------------------------------------------------------------------------------

_CHARSET_TEXTS: list[tuple[str, bytes]] = [
    ("us-ascii", b"plain \xe9\xff 8-bit\n"),
    ("US-ASCII", b"caps \xe9\n"),
    ("ascii", b"ascii \xe9\n"),
    ('"utf-8"', b"quoted caf\xc3\xa9\n"),
    ("UTF8", b"utf8 alias caf\xc3\xa9\n"),
    ("utf-8", b"bad \xff \xc3 \xe2\x82 \xed\xa0\x80 \xf0\x9f\x98 \xf4\x90\x80\x80 \xc0\xaf end\n"),
    ("latin1", b"latin1 caf\xe9\n"),
    ("iso8859-1", b"iso8859-1 \xe9\n"),
    ("ISO_8859-1", b"underscore \xe9\n"),
    ("iso-8859-15", b"euro \xa4\n"),
    ("windows-1252", b"cp1252 \x80 \x81 \x8d \x93\x94\n"),
    ("cp1252", b"cp1252 alias \x80\n"),
    ("x-mac-roman", b"mac \x8e\n"),
    ("macintosh", b"mac \x8e\n"),
    ("koi8-r", b"\xf0\xd2\xc9\xd7\xc5\xd4\n"),
    ("big5", b"\xa7\x41\xa6\x6e\n"),
    ("gb2312", b"\xc4\xe3\xba\xc3\n"),
    ("gbk", b"\xc4\xe3\xba\xc3\n"),
    ("gb18030", b"\xc4\xe3\xba\xc3\n"),
    ("shift_jis", b"\x82\xb1\x82\xf1\n"),
    ("euc-jp", b"\xa4\xb3\xa4\xf3\n"),
    ("euc-kr", b"\xbe\xc8\xb3\xe7\n"),
    ("ks_c_5601-1987", b"\xbe\xc8\xb3\xe7\n"),
    ("iso-2022-jp", b"\x1b$B$3$s!=\x1b(B\n"),
    ("utf-16", b"\xff\xfeh\x00i\x00\n\x00"),
    ("utf-16be", b"\x00h\x00i"),
    ("utf-7", b"+AGEAYgBj-\n"),
    ("", b"empty charset\n"),
    ("x-unknown-charset", b"unknown\n"),
    ("iso-8859-8-i", b"\xe0\xe1\n"),
    ("windows-874", b"\xa1\n"),
    ("tis-620", b"\xa1\n"),
    ("ibm437", b"\x80\n"),
    ("cp850", b"\x80\n"),
    ("ansi_x3.4-1968", b"ansi \xe9\n"),
    ('iso-8859-1"', b"junk quote\n"),
    ("utf-8; format=flowed", b"flowed caf\xc3\xa9\n"),
    ("us-ascii (comment)", b"comment\n"),
]
for _i, (_cs, _body) in enumerate(_CHARSET_TEXTS):
    CASES[f"charset_{_i:02d}"] = _msg(f"MIME-Version: 1.0\nContent-Type: text/plain; charset={_cs}\n", _body)
# Java table entries that differ from CPython's codecs (each found by an exhaustive table comparison).
CASES["charset_java_tables_sjis"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=shift_jis\n", b"dash \x81\x5c \x82\xa0\n"
)
CASES["charset_java_tables_eucjp"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=euc-jp\n", b"dash \xa1\xbd tilde \x8f\xa2\xb7 ~\n"
)
CASES["charset_java_tables_big5"] = _msg("MIME-Version: 1.0\nContent-Type: text/plain; charset=big5\n", b"\xa1\x5a\n")
CASES["charset_gbk_a892"] = _msg("MIME-Version: 1.0\nContent-Type: text/plain; charset=gbk\n", b"\xa8\x92\n")
CASES["charset_java_tables_gb18030"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=gb18030\n", b"\xa6\xd9\xa8\xbc\xfe\x59\n"
)
CASES["rfc2047_java_tables"] = _msg("Subject: =?shift_jis?B?gVw=?= =?euc-jp?B?ob2Porc=?=\n", "b\n")
CASES["base64_byte_ff_counts"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n",
    b"QU\xffJDRA==\n",
)
CASES["rfc2047_b_byte_ff"] = _msg("X-B: =?iso-8859-1?B?QU\xffJDRA==?= =?iso-8859-1?B?QU\xffJD?=\n", "b\n")
CASES["charset_rfc2231_ignored"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain; charset*=utf-8''x\n", b"caf\xc3\xa9\n"
)
CASES["charset_none_8bit"] = _msg("MIME-Version: 1.0\nContent-Type: text/plain\n", b"caf\xc3\xa9 \x80\n")

# --- transfer encodings ------------------------------------------------------------------------------

CASES["qp_leniency"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n",
    "soft=\nbreak and =C3=A9 and lower =c3=a9\n"
    "invalid =XY =4 =\t= x\n"
    "trailing blanks   \n"
    "trailing tab\t\t\n"
    "encoded trailing =20\n"
    "equals space newline = \n"
    "mixed case =3d =3D\n"
    "crlf soft=\r\nbreak\r\n"
    "final lone =",
)
CASES["qp_bytes_attachment"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: Quoted-Printable\n",
    "a=00b=FF=\n=0D=0A   \nend=",
)
CASES["base64_leniency"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: BASE64\n",
    "AAEC\nAw!!Q=\n=BQYH\n  CAkK*CwwN\nDg\n",
)
CASES["base64_text_partial_quantum"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n",
    "w6kgY2Fmw6k\n",
)
CASES["base64_padding_middle"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n",
    "YQ==YWI=YWJj\nYQ\n",
)
CASES["base64_empty_and_junk_only"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n",
    "!!! ***\n",
)
_UU = "begin 644 data.bin\n+:&5L;&\\@=V]R;&0*\n`\nend\n"
CASES["uuencode"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: uuencode\n", _UU
)
CASES["x_uuencode_text"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n", _UU
)
CASES["x_uue"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: x-uue\n", _UU
)
CASES["uuencode_no_begin"] = _msg(
    "MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: uuencode\n",
    "+:&5L;&\\@=V]R;&0*\n`\nend\n",
)
CASES["encoding_unknown_8_bit"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: 8-bit\n", "x\n"
)
CASES["encoding_unknown_on_bytes"] = _msg(
    "MIME-Version: 1.0\nContent-Type: image/png\nContent-Transfer-Encoding: x-gzip\n", "x\n"
)
CASES["encoding_case_and_comment"] = _msg(
    "MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: 7BIT (comment)\n", "x\n"
)
CASES["encoding_empty"] = _msg("MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding:\n", "x\n")
CASES["encoding_binary_quoted"] = _msg(
    'MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: "base64"\n', "eA==\n"
)
CASES["encoding_base64_multipart"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b64\nContent-Transfer-Encoding: base64\n",
    base64.encodebytes(b"--b64\nContent-Type: text/plain\n\ninner\n--b64--\n").decode("ascii"),
)
CASES["encoding_unknown_multipart"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=u\nContent-Transfer-Encoding: x-foo\n",
    "--u\n\nx\n--u--\n",
)

CASES["encoding_composite_ignored"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=c\nContent-Transfer-Encoding: quoted-printable\n",
    "--c\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\nUmVwb3J0aW5nLU1UQTogZG5zOyB4\n"
    "--c\nContent-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\nSubject: =3D\n\nx=\n"
    "--c\nContent-Type: message/partial; id=x\nContent-Transfer-Encoding: x-unknown\n\npartial\n"
    "--c\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nZGVjb2RlZA==\n--c--\n",
)
CASES["encoding_composite_bad_params_kept"] = _msg(
    "MIME-Version: 1.0\nContent-Type: message/rfc822; junk\nContent-Transfer-Encoding: x-unknown\n", "Subject: x\n\ny\n"
)

# --- content types / class mapping ----------------------------------------------------------------

_TYPES = [
    "text/plain",
    "TEXT/PLAIN",
    "Text/Html",
    "text/xml",
    "text/csv",
    "text/calendar",
    "text/x-vcard",
    "text/rfc822-headers",
    "text",
    "text/enriched",
    "text/richtext",
    "application/xml",
    "application/json",
    "message/delivery-status",
    'message/partial; id="x"; number=1',
    "message/external-body; access-type=x",
    "message/disposition-notification",
    "image/gif",
    "image/jpeg",
    "audio/basic",
    "foo",
    "foo/bar",
    "text/plain; format",
    "text/plain; charset=utf-8; format",
    "text/plain;",
    "text/plain; ;charset=utf-8",
    'text/plain; charset="utf-8',
    "text/plain; a=b; a=c",
    "text/plain charset=utf-8",
    "/plain",
    "text/",
    "text/plain; name*0=a; name*1=b",
    "text/plain; charset=utf-8 junk",
    "text/html; charset=utf-8;",
    "text/plain (comment); charset=utf-8",
    'application/octet-stream; name="a b.bin"',
]
_TYPE_PARTS = []
for _t in _TYPES:
    _TYPE_PARTS.append(f"--T\nContent-Type: {_t}\n\ncontent for {_t} \xe9\n")
for _i, _t in enumerate(_TYPES):
    CASES[f"type_{_i:02d}"] = _msg(f"MIME-Version: 1.0\nContent-Type: {_t}\n", f"body of {_t} \xe9\n")
CASES["type_empty_content_type"] = _msg("MIME-Version: 1.0\nContent-Type:\n", "x\n")
CASES["type_two_content_types"] = _msg("MIME-Version: 1.0\nContent-Type: image/png\nContent-Type: text/plain\n", "x\n")

# --- multipart ----------------------------------------------------------------------------------------

_MP = 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n'
CASES["mp_preamble_epilogue"] = _msg(
    _MP.format(b="BND"),
    "preamble\n--BND\nContent-Type: text/plain\n\nfirst\n\n--BND\n\nsecond no headers\n--BND--\nepilogue\n--BND\n",
)
CASES["mp_missing_close"] = _msg(_MP.format(b="BND"), "--BND\n\nfirst\n--BND\n\nlast runs to end\n")
CASES["mp_no_boundary_param"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/mixed\n",
    "preamble\n--guess\n\none\n--guess\n\ntwo\n--guess--\n",
)
CASES["mp_no_boundary_param_none"] = _msg("MIME-Version: 1.0\nContent-Type: multipart/mixed\n", "no dashes\n")
CASES["mp_boundary_never_appears"] = _msg(_MP.format(b="BND"), "text without delimiter\n")
CASES["mp_inner_reuses_outer"] = _msg(
    _MP.format(b="SAME"),
    '--SAME\nContent-Type: multipart/alternative; boundary="SAME"\n\n--SAME\n\na\n--SAME--\n--SAME--\n',
)
CASES["mp_delimiter_variants"] = _msg(
    _MP.format(b="B"),
    "--B   \n\ntrailing blanks on delimiter\n--Bxyz\nnot a delimiter\n--B\t\n\ntab after\n--B-- \n",
)
CASES["mp_empty_parts"] = _msg(_MP.format(b="E"), "--E\n--E\n\n--E\nX-Only: header\n--E--\n")
CASES["mp_no_parts"] = _msg(_MP.format(b="N"), "--N--\n")
CASES["mp_crlf"] = _msg(
    _MP.format(b="C"), "--C\nContent-Type: text/plain\n\ncrlf part\n--C\n\nsecond\n--C--\n", crlf=True
)
CASES["mp_extra_boundary_lines"] = _msg(
    _MP.format(b="X"), "--X\n--X\nContent-Type: text/plain\n\nbody after double delimiter\n--X--\n"
)
CASES["mp_nested_three"] = _msg(
    _MP.format(b="L1"),
    "--L1\nContent-Type: multipart/alternative; boundary=L2\n\n"
    "--L2\nContent-Type: multipart/related; boundary=L3\n\n"
    "--L3\nContent-Type: text/html\n\n<p>x</p>\n--L3\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n"
    "iVBORw0KGgo=\n--L3--\n--L2\nContent-Type: text/plain\n\nplain\n--L2--\n--L1--\n",
)
CASES["mp_boundary_with_spaces_and_case"] = _msg(
    _MP.format(b="a b'c()+_,-./:=?"),
    "--a b'c()+_,-./:=?\n\nfirst\n--A B'C()+_,-./:=?\nnot delimiter (case)\n--a b'c()+_,-./:=?--\n",
)
CASES["mp_malformed_params"] = _msg("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary\n", "--x\n\na\n")
CASES["mp_digest_defaults"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/digest; boundary=D\n",
    "--D\n\nFrom: a@example.org\nSubject: inner\n\ninner body\n--D\nContent-Type: message/rfc822\n\n"
    "From: b@example.org\n\nb\n--D--\n",
)
CASES["mp_all_types"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=T\n",
    "".join(p for p in _TYPE_PARTS if "format" not in p and '"utf-8\n' not in p) + "--T--\n",
)
CASES["mp_subtype_unknown"] = _msg(
    "MIME-Version: 1.0\nContent-Type: multipart/x-weird; boundary=W\n", "--W\n\nw\n--W--\n"
)
CASES["mp_body_starts_with_delimiter_no_newline"] = _msg(_MP.format(b="Z"), "--Z\n\nz\n--Z--")
CASES["mp_delimiter_at_start_crlf_mixed"] = _msg(_MP.format(b="M"), "--M\r\n\r\nmixed\r\n--M\n\nlf\n--M--\r\n")
CASES["mp_part_header_no_blank"] = _msg(_MP.format(b="H"), "--H\nContent-Type: text/plain\n--H--\n")
CASES["mp_long_boundary"] = _msg(_MP.format(b="L" * 70), f"--{'L' * 70}\n\nlong\n--{'L' * 70}--\n")

# --- message/rfc822 ---------------------------------------------------------------------------------

CASES["rfc822_nested"] = _msg(
    _MP.format(b="F"),
    "--F\n\nsee below\n--F\nContent-Type: message/rfc822\n\nFrom: inner@example.org\nSubject: inner\n"
    "Content-Type: multipart/mixed; boundary=I\n\n--I\n\ninner part\n--I--\n--F--\n",
)
CASES["rfc822_top_level"] = _msg(
    "MIME-Version: 1.0\nContent-Type: message/rfc822\n", "From: inner@example.org\n\nbody\n"
)
CASES["rfc822_base64"] = _msg(
    "MIME-Version: 1.0\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n",
    base64.encodebytes(b"From: inner@example.org\n\nbody\n").decode("ascii"),
)
CASES["rfc822_bad_encoding"] = _msg(
    "MIME-Version: 1.0\nContent-Type: message/rfc822\nContent-Transfer-Encoding: x-bad\n", "From: i@example.org\n\nb\n"
)
CASES["rfc822_empty"] = _msg("MIME-Version: 1.0\nContent-Type: message/rfc822\n", "")
CASES["rfc822_uppercase"] = _msg("MIME-Version: 1.0\nContent-Type: MESSAGE/RFC822\n", "Subject: x\n\ny\n")


def _keep_14_error_text(text: str) -> Callable[[Any], Any]:
    """The expected document is the reference's, with JavaMail 1.4's exception text."""

    def fix(ref: Any) -> Any:
        out = copy.deepcopy(ref)
        out["content"]["value"] = text
        return out

    return fix


def _drop_from_buckets_kept_in_14(ref: Any) -> Any:
    """1.4 accepts ``MAILER DAEMON <>``; the expected document has the from and reply-to buckets."""
    out = copy.deepcopy(ref)
    entry = [{"name": base64.b64encode(b"MAILER DAEMON").decode("ascii"), "email": ""}]
    out["addresses"]["from"] = entry
    out["addresses"]["reply-to"] = copy.deepcopy(entry)
    return out


_MISSING_START = {
    "expected": _keep_14_error_text("javax.mail.MessagingException: Missing start boundary"),
    "reason": "JavaMail 1.6.5 throws ParseException for a missing start boundary; 1.4 (docs/protocol.md section 12, "
    "vector msg_15) throws MessagingException",
}


def _text(text: str, reason: str) -> dict[str, Any]:
    return {"expected": _keep_14_error_text(text), "reason": reason}


def _reviewed(reason: str) -> dict[str, Any]:
    """Our output, reviewed by hand against the JavaMail 1.4 behaviour named in ``reason``."""
    return {"expected": None, "reason": reason}


_B64_TEXT = (
    "JavaMail 1.4's BASE64DecoderStream raises IOException 'Error in encoded stream, got N' only at the end "
    "of input (after skipping junk and decoding on past '=' padding); 1.6.5 raises DecodingException with "
    "a different text, and earlier for misplaced padding"
)
_DATE = "JavaMail 1.4's MailDateParser/lenient GregorianCalendar; 1.6.5 has a rewritten date parser. "

#: Messages whose reference (1.6.5) output differs from JavaMail 1.4's as documented by the spec.
#: ``expected`` maps the reference document to the 1.4 one; None means "our output, reviewed".
KNOWN_DIFFERENCES: dict[str, dict[str, Any]] = {
    "cpython/msg_15.txt": _MISSING_START,
    "vector/msg_15": _MISSING_START,
    "cpython/msg_17.txt": _MISSING_START,
    "cpython/msg_31.txt": _MISSING_START,
    "cpython/msg_39.txt": _MISSING_START,
    "cpython/msg_41.txt": _MISSING_START,
    "crafted/mp_no_boundary_param_none": _MISSING_START,
    "crafted/mp_boundary_never_appears": _MISSING_START,
    "crafted/mp_inner_reuses_outer": _MISSING_START,
    "crafted/mp_no_parts": _MISSING_START,
    "cpython/msg_25.txt": _text(
        "javax.mail.internet.ParseException: Expected '=', got \"null\"",
        "JavaMail 1.6.5 adds 'In parameter list <...>,' to the ParameterList parse error; 1.4's text "
        "is the bare one (one of the two exception texts of docs/protocol.md section 12)",
    ),
    "crafted/mp_malformed_params": _text(
        "javax.mail.internet.ParseException: Expected '=', got \"null\"",
        "as msg_25: 1.6.5 prefixes the ParameterList error with the parameter text",
    ),
    "cpython/msg_43.txt": {
        "expected": _drop_from_buckets_kept_in_14,
        "reason": "JavaMail 1.6.5 rejects 'MAILER DAEMON <>' (unquoted personal with a blank before an empty "
        "route-addr), so from and reply-to are missing; 1.4 accepts it (docs/protocol.md section 12)",
    },
    "crafted/addresses_empty_route_addr": _reviewed(
        "1.6.5 rejects '<>' and 'Nobody <>' so the buckets are missing; 1.4 gives email '' "
        "(docs/protocol.md section 12)"
    ),
    "crafted/addresses_empty_reply_to": _reviewed(
        "an empty Reply-To gives [] in 1.4 (JavaMail bug 6799810, fixed in 1.4.2: 1.6.5 falls back to From); "
        "docs/protocol.md section 12: 'empty header: []'"
    ),
    "crafted/headers_bare_cr_lines": _reviewed(
        "1.4's LineInputStream treats CR CR <x> as one line end and pushes back only <x> (at EOF, (byte)-1 "
        "comes back as 0xFF), so CR-only text never has an empty line; 1.6.5 resets to after the first CR"
    ),
    "crafted/headers_continuation_first": _reviewed(
        "1.4's InternetHeaders.load keeps a leading continuation line as its own header, with the CRLF it "
        "prepends; 1.6.5 trims it"
    ),
    "crafted/date_14": _reviewed(_DATE + "1.4 reads 'CET' as C(entral) = -0600 (only the first letter and S/D count)"),
    "crafted/date_18": _reviewed(_DATE + "1.4 reads '+02' as the number 2, i.e. 2 minutes"),
    "crafted/date_39": _reviewed(_DATE + "1.4 only maps 2-digit years, so 113 is the year 113 AD"),
    "crafted/date_51": _reviewed(_DATE + "1.4 lets second 60 roll over to the next minute; 1.6.5 clamps it"),
    "crafted/date_59": _reviewed(_DATE + "1.4 parses the hour with int overflow and rolls it over; 1.6.5 rejects it"),
    "crafted/charset_rfc2231_ignored": _reviewed(
        "mail.mime.decodeparameters is false by default in 1.4 (charset*= ignored, docs/protocol.md section 12) and "
        "true in 1.6.5"
    ),
    "crafted/base64_leniency": _text("java.io.IOException: Error in encoded stream, got 3", _B64_TEXT),
    "crafted/base64_text_partial_quantum": _text("java.io.IOException: Error in encoded stream, got 3", _B64_TEXT),
    "crafted/base64_padding_middle": _text("java.io.IOException: Error in encoded stream, got 2", _B64_TEXT),
    "crafted/uuencode_no_begin": _text(
        "java.io.IOException: UUDecoder error: No Begin",
        "1.4's UUDecoderStream text; 1.6.5 throws DecodingException 'UUDecoder: Missing begin'",
    ),
    "crafted/encoding_empty": _reviewed(
        "1.4's getEncoding returns '' for an empty Content-Transfer-Encoding and MimeUtility.decode rejects it "
        "(IOException 'Unknown encoding: '); 1.6.5 treats it as absent"
    ),
    "crafted/base64_byte_ff_counts": _text("java.io.IOException: Error in encoded stream, got 1", _B64_TEXT),
    "crafted/rfc2047_b_byte_ff": _reviewed(
        "1.4's decodeWord reads the B word through BASE64DecoderStream.read(byte[]), which raises at the "
        "trailing lone '=' (a partial group), so the word stays encoded; 1.6.5 ignores the stray padding"
    ),
    "crafted/encoding_base64_multipart": _text(
        "javax.mail.MessagingException: Missing start boundary",
        "both ignore base64 on a multipart (restrictEncoding); only the exception class differs, as for msg_15",
    ),
}
