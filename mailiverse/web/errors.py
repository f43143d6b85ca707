"""The HTTP layer's one error type, ``ApiError``, and the mapping of every refusal to the API's JSON shape.

Every error the API answers is ``{"error": code, "message": text}`` with a stable code. Routes
raise ``ApiError``; the services below raise their own refusals (``AccountError``,
``SubmissionError``, the store's errors), which ``ErrorHandlers`` maps here, in one place. An
unexpected exception answers 500 ``internal`` and is logged by type and place, never by message
(messages can carry user data).
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound

from mailiverse.accesslog import logged_method
from mailiverse.contracts.errors import Refusal
from mailiverse.failures import describe
from mailiverse.logs import Logger
from mailiverse.store.errors import (
    HomeUnavailable,
    InvalidInput,
    InvalidPath,
    ObjectNotFound,
    ObjectTooLarge,
    OverQuota,
    VersionConflict,
)
from mailiverse.web.routing import router
from mailiverse.web.site import route_template

log = Logger()


class ApiError(Refusal):
    """A refusal of the web layer itself, answered as ``{"error": code, "message": message}`` with ``status``."""


def json_response(request: Any, value: Any, code: int = 200) -> bytes:
    """``value`` as the body of a JSON response with ``code``; never cached."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(value, separators=(",", ":")).encode()


def error_response(request: Any, code: str, message: str, status: int, retry_after: int | None = None) -> bytes:
    """The JSON error body, with Retry-After (rate limits) and WWW-Authenticate (401) where they apply."""
    if retry_after is not None:
        request.setHeader(b"Retry-After", str(retry_after).encode("ascii"))
    if status == 401:
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="mailiverse"')
    return json_response(request, {"error": code, "message": message}, status)


class ErrorHandlers:
    """Klein error handlers of the app: every refusal of every layer, then the catch-all 500."""

    @router.handle_errors(Refusal)
    def refusals(self, request: Any, failure: Any) -> bytes:
        """The web layer's, the account services' and the submission service's refusals: one shape."""
        error: Refusal = failure.value
        return error_response(request, error.code, error.message, error.status, error.retry_after)

    @router.handle_errors(InvalidPath)
    def path_errors(self, request: Any, failure: Any) -> bytes:
        return error_response(request, "invalid_path", str(failure.value), 400)

    @router.handle_errors(ObjectTooLarge)
    def size_errors(self, request: Any, failure: Any) -> bytes:
        return error_response(request, "body_too_large", "the object is too large", 413)

    @router.handle_errors(InvalidInput)
    def input_errors(self, request: Any, failure: Any) -> bytes:
        return error_response(request, "invalid_request", str(failure.value), 400)

    @router.handle_errors(HomeUnavailable)
    def home_errors(self, request: Any, failure: Any) -> bytes:
        message = "the account's mail store is unavailable for a moment; try again shortly"
        return error_response(request, "home_unavailable", message, 503, retry_after=5)

    @router.handle_errors(OverQuota)
    def quota_errors(self, request: Any, failure: Any) -> bytes:
        message = "storing this would take the account past its storage quota; delete something first"
        return error_response(request, "over_quota", message, 507)

    @router.handle_errors(ObjectNotFound)
    def missing_errors(self, request: Any, failure: Any) -> bytes:
        return error_response(request, "not_found", "no object at this path", 404)

    @router.handle_errors(VersionConflict)
    def conflict_errors(self, request: Any, failure: Any) -> bytes:
        return error_response(request, "version_conflict", "the object is not at the expected version", 412)

    @router.handle_errors(NotFound)
    def route_not_found(self, request: Any, failure: Any) -> bytes:
        return error_response(request, "not_found", "no such route", 404)

    @router.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: Any, failure: Any) -> bytes:
        valid = sorted(getattr(failure.value, "valid_methods", None) or [])
        if valid:  # RFC 9110 §15.5.6: a 405 lists the methods the resource does take
            request.setHeader(b"Allow", ", ".join(valid).encode("ascii"))
        return error_response(request, "method_not_allowed", "this route does not take that method", 405)

    @router.handle_errors(Exception)
    def errors(self, request: Any, failure: Any) -> bytes:
        log.error(
            "{method} {route} failed: {why}",
            method=logged_method(request),
            route=route_template(request),
            why=describe(failure.value),
        )
        return error_response(request, "internal", "internal error", 500)


__all__ = ["ApiError", "ErrorHandlers", "error_response", "json_response"]
