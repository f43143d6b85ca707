"""MIME to the Mailiverse JSON twin (JavaMail 1.4 compatible), with hard limits."""

from mailiverse.mime.errors import TwinError
from mailiverse.mime.limits import DEFAULT_LIMITS, Limits, MimeLimitError
from mailiverse.mime.twin import convert, convert_document

__all__ = ["DEFAULT_LIMITS", "Limits", "MimeLimitError", "TwinError", "convert", "convert_document"]
