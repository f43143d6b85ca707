"""The MIME-to-JSON "twin" converter: an independent reproduction of the original
``JavaMailToJSON`` (JavaMail 1.4 + org.json), bounded by hard limits, that never raises."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from mailiverse.mime import charsets, jsonout
from mailiverse.mime.addresses import AddressError, bucket, parse_header
from mailiverse.mime.dates import parse_date_ms
from mailiverse.mime.errors import TwinError, io_error, messaging, unsupported_encoding
from mailiverse.mime.headers import (
    MESSAGE,
    MULTIPART,
    TEXT,
    Header,
    base_type,
    content_type_of,
    first_header,
    handler_for,
    header_values,
    load_headers,
    parse_content_type,
    transfer_encoding,
)
from mailiverse.mime.limits import DEFAULT_LIMITS, Budget, Limits, MimeLimitError
from mailiverse.mime.multipart import Span, split
from mailiverse.mime.rfc2047 import decode_text
from mailiverse.mime.transfer import DecodeResult, base64_error, iter_base64_decode, transfer_decode

__all__ = [
    "ERROR_SUBJECT",
    "Limits",
    "MimeLimitError",
    "TwinError",
    "convert",
    "convert_document",
    "error_document",
    "iter_twin",
]

#: Decoded bytes a streamed "bytes" value encodes at a time (a multiple of 3: no padding inside).
_ENCODE_PIECE = 192 * 1024
#: Transfer encodings whose decoded body is the raw body itself.
_IDENTITY_ENCODINGS = (None, "7bit", "8bit", "binary")

#: The subject the original puts in its fallback document.
ERROR_SUBJECT = "The mail server failed to handle this message."
_INTERNAL_FAILURE = "message could not be converted (internal converter error)"


def convert(
    raw: bytes,
    *,
    original_path: str,
    written_ms: int | str,
    limits: Limits = DEFAULT_LIMITS,
    safe_html: bool = False,
) -> bytes:
    """The UTF-8 JSON twin of one raw message; never raises for any input bytes."""
    return jsonout.dumps(
        convert_document(raw, original_path=original_path, written_ms=written_ms, limits=limits, safe_html=safe_html)
    ).encode("utf-8")


def iter_twin(document: dict[str, Any]) -> Iterator[bytes]:
    """The UTF-8 JSON text of a twin document in batches of about 64 KiB; may be run more than once.

    With a document from ``convert_document(..., streamed=True)`` the batches join to exactly
    ``convert(raw)``, while no more than one batch and one body piece exist at a time.
    """
    for text in jsonout.iter_dumps(document):
        yield text.encode("utf-8")


def convert_document(
    raw: bytes,
    *,
    original_path: str,
    written_ms: int | str,
    limits: Limits = DEFAULT_LIMITS,
    streamed: bool = False,
    safe_html: bool = False,
) -> dict[str, Any]:
    """The twin as a value (dicts in org.json's Java 8+ member order), before serialisation.

    With ``streamed``, the value of a "bytes" part is a ``jsonout.Streamed`` that Base64-encodes
    the body from ``raw`` as it is serialised, instead of a string as large as the attachment;
    the document then refers to ``raw`` and is for ``iter_twin``/``jsonout`` only.

    With ``safe_html``, every HTML part's value is its ``safehtml.make_safe`` form and the part
    gets a member ``"safe": {"remote": N, "truncated": bool}``, which readers of the original
    format skip. Without it the twin is the original converter's, byte for byte.
    """
    written = str(int(written_ms))
    try:
        if len(raw) > limits.max_size:
            raise MimeLimitError(f"message exceeds the size limit ({limits.max_size} bytes)")
        return _Converter(bytes(raw), Budget(limits), streamed, safe_html).message(original_path, written)
    except TwinError as e:
        return error_document(original_path, written, e.java_text)
    except MimeLimitError as e:
        return error_document(original_path, written, str(e))
    except RecursionError:
        return error_document(original_path, written, f"message exceeds the nesting depth limit ({limits.max_depth})")
    except MemoryError:
        return error_document(original_path, written, "message exceeds the memory limit")
    except Exception:  # noqa: BLE001 - mail is never lost: the original is stored anyway
        return error_document(original_path, written, _INTERNAL_FAILURE)


def error_document(original_path: str, written: str, text: str) -> dict[str, Any]:
    """The original's fallback document (its header values are not Base64)."""
    return {
        "headers": [["subject", ERROR_SUBJECT]],
        "original": original_path,
        "dates": {"written": written},
        "content": {"headers": [["Content-Type", "text/plain"]], "class": "string", "value": text},
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")


class _Base64Value(jsonout.Streamed):
    """A "bytes" part's value: the Base64 text of its decoded body, encoded as it is written."""

    def __init__(self, decoded: Callable[[], Iterator[bytes]]) -> None:
        self._decoded = decoded

    def iter_json(self) -> Iterator[str]:
        # Base64 needs no JSON escaping, so the quotes simply wrap the encoded pieces.
        yield '"'
        carry = b""
        for piece in self._decoded():
            data = carry + piece
            cut = len(data) - len(data) % 3
            carry = data[cut:]
            if cut:
                yield base64.b64encode(data[:cut]).decode("ascii")
        if carry:
            yield base64.b64encode(carry).decode("ascii")
        yield '"'


def _is_html(content_type: str) -> bool:
    """Whether a reader may render this string part as HTML: JavaMail's base type, or the readers'
    own rule (the decoded Content-Type starts with ``text/html``, docs/protocol.md §2.3.4)."""
    return base_type(content_type).lower() == "text/html" or decode_text(content_type).lower().startswith("text/html")


def _slices(buf: bytes, start: int, end: int) -> Callable[[], Iterator[bytes]]:
    """A re-startable source of ``buf[start:end]`` in pieces, without copying it whole."""

    def pieces() -> Iterator[bytes]:
        for pos in range(start, end, _ENCODE_PIECE):
            yield buf[pos : min(pos + _ENCODE_PIECE, end)]

    return pieces


class _Converter:
    def __init__(self, raw: bytes, budget: Budget, streamed: bool = False, safe_html: bool = False) -> None:
        self.raw = raw
        self.budget = budget
        self.streamed = streamed
        self.safe_html = safe_html

    def message(self, original_path: str, written: str) -> dict[str, Any]:
        headers, body_start, _ = load_headers(self.raw, 0, len(self.raw), self.budget)
        self.budget.add_part()
        doc: dict[str, Any] = {}
        doc["addresses"] = self._addresses(headers)
        doc["original"] = original_path
        dates: dict[str, str] = {"written": written}
        date = first_header(headers, "Date")
        if date is not None:
            sent = parse_date_ms(date)
            if sent is not None:
                dates["sent"] = str(sent)
        doc["dates"] = dates
        uidl = first_header(headers, "Message-ID")
        if uidl is not None:
            doc["uidl"] = uidl
        doc["content"] = self.part(headers, Span(self.raw, body_start, len(self.raw)), 0)
        return doc

    # --- addresses --------------------------------------------------------------------------

    @staticmethod
    def _joined(headers: list[Header], name: str) -> str | None:
        values = header_values(headers, name)
        return ",".join(values) if values else None

    def _address_list(self, headers: list[Header], name: str) -> list[Any] | None:
        text = self._joined(headers, name)
        return None if text is None else parse_header(text)

    def _from(self, headers: list[Header]) -> list[Any] | None:
        found = self._address_list(headers, "From")
        return found if found is not None else self._address_list(headers, "Sender")

    def _addresses(self, headers: list[Header]) -> dict[str, Any]:
        getters: dict[str, Callable[[], list[Any] | None]] = {
            "cc": lambda: self._address_list(headers, "Cc"),
            "bcc": lambda: self._address_list(headers, "Bcc"),
            "from": lambda: self._from(headers),
            "to": lambda: self._address_list(headers, "To"),
            "reply-to": lambda: (
                self._address_list(headers, "Reply-To") if header_values(headers, "Reply-To") else self._from(headers)
            ),
        }
        out: dict[str, Any] = {}
        for key, getter in getters.items():
            self.budget.check_time()
            try:
                found = getter()
                if found is not None:
                    out[key] = bucket(found)
            except (AddressError, TwinError):
                # Each bucket is filled on its own; a failure leaves only that bucket out.
                continue
        return out

    # --- parts ------------------------------------------------------------------------------

    def part(self, headers: list[Header], body: Span, depth: int) -> dict[str, Any]:
        self.budget.check_depth(depth)
        out: dict[str, Any] = {}
        out["headers"] = [[decode_text(h.name), _b64(decode_text(h.value))] for h in headers]
        content_type = content_type_of(headers)
        handler = handler_for(content_type)
        if handler == TEXT:
            out["class"] = "string"
            out["value"] = self._text(headers, body, content_type)
            if self.safe_html and _is_html(content_type):
                from mailiverse.mime.safehtml import make_safe  # nh3: loaded where HTML is made safe

                safe = make_safe(out["value"])
                self.budget.check_time()
                out["value"] = safe.html
                out["safe"] = {"remote": safe.remote, "truncated": safe.truncated}
        elif handler == MULTIPART:
            out["class"] = "part"
            out["value"] = self._multipart(headers, body, content_type, depth)
        elif handler == MESSAGE:
            self._message_rfc822(headers, body)
            out["class"] = "unknown"
        elif self.streamed:
            out["class"] = "bytes"
            out["value"] = self._streamed_bytes(headers, body)
        else:
            result = self._open(headers, body)
            if result.error is not None:
                raise result.error
            out["class"] = "bytes"
            out["value"] = base64.b64encode(result.data).decode("ascii")
        return out

    def _streamed_bytes(self, headers: list[Header], body: Span) -> _Base64Value:
        """What ``part`` stores for a "bytes" body, raising the same errors, without decoding it now.

        Base64 and identity bodies are read from ``raw`` when serialised; the rarer encodings are
        decoded here and only their Base64 text is deferred.
        """
        self.budget.check_time()
        encoding = self._encoding(headers)
        name = None if encoding is None else encoding.lower()
        if name == "base64":
            error = base64_error(body.buf, body.start, body.end)
            if error is not None:
                raise error
            return _Base64Value(lambda: iter_base64_decode(body.buf, body.start, body.end))
        if name in _IDENTITY_ENCODINGS:
            return _Base64Value(_slices(body.buf, body.start, body.end))
        result = transfer_decode(body.bytes(), encoding, self.budget.tick)
        if result.error is not None:
            raise result.error
        return _Base64Value(_slices(result.data, 0, len(result.data)))

    @staticmethod
    def _encoding(headers: list[Header]) -> str | None:
        """MimePartDataSource: getEncoding, then restrictEncoding for composite types.

        JavaMail (since 1.3.3, property mail.mime.ignoremultipartencoding, default true) ignores
        any encoding other than 7bit/8bit/binary on a multipart/* or message/* entity, so its
        body is read raw; a Content-Type that does not parse keeps the encoding.
        """
        try:
            encoding = transfer_encoding(headers)
        except TwinError as e:
            raise io_error(e.message) from None
        if encoding is None or encoding.lower() in ("7bit", "8bit", "binary"):
            return encoding
        try:
            primary = parse_content_type(content_type_of(headers))[0].lower()
        except TwinError:
            return encoding
        return None if primary in ("multipart", "message") else encoding

    def _open(self, headers: list[Header], body: Span) -> DecodeResult:
        """MimePartDataSource.getInputStream: the transfer-decoded body."""
        self.budget.check_time()
        return transfer_decode(body.bytes(), self._encoding(headers), self.budget.tick)

    def _text(self, headers: list[Header], body: Span, content_type: str) -> str:
        try:
            params = parse_content_type(content_type)[2]
            charset: str | None = charsets.java_charset(params.get("charset", "us-ascii"))
        except TwinError:
            charset = None
        result = self._open(headers, body)
        if charset is None:
            raise TwinError("java.lang.NullPointerException", "charsetName")
        try:
            codec = charsets.codec_for(charset)
        except TwinError:
            raise unsupported_encoding(charset) from None
        if result.error is not None:
            raise result.error
        return charsets.decode_with(result.data, codec, self.budget.tick)

    def _multipart(self, headers: list[Header], body: Span, content_type: str, depth: int) -> list[Any]:
        try:
            encoding = self._encoding(headers)
            shared = encoding is None or encoding.lower() in ("7bit", "8bit", "binary")
            # An identity encoding leaves the shared bytes in place: no copy per nesting level.
            result = DecodeResult(b"") if shared else transfer_decode(body.bytes(), encoding, self.budget.tick)
        except TwinError as e:
            raise messaging("No inputstream from datasource", e) from None
        _, _, params = parse_content_type(content_type)
        data = body if shared else Span(result.data, 0, len(result.data))
        spans = split(data, params.get("boundary"), shared, result.error, self.budget)
        self.budget.check_depth(depth + 1)
        children: list[Any] = []
        for span in spans:
            self.budget.check_time()
            child_headers, body_start, _ = load_headers(span.buf, span.start, span.end, self.budget)
            children.append(self.part(child_headers, Span(span.buf, body_start, span.end), depth + 1))
        return children

    def _message_rfc822(self, headers: list[Header], body: Span) -> None:
        """message_rfc822.getContent: only its failures matter, the message is not exported."""
        result = self._open(headers, body)
        if result.error is None:
            return
        data = result.data
        _, _, blank = load_headers(data, 0, len(data), self.budget)
        stage = "IOException" if blank else "Error in input stream"
        raise io_error(
            "Exception creating MimeMessage in message/rfc822 DataContentHandler: "
            + messaging(stage, result.error).java_text
        )
