"""MIME to the Mailiverse JSON twin (JavaMail 1.4 compatible), with hard limits.

The converter is imported on first use (``convert``, ``convert_document``): the appliance's main process, whose
delivery workers build the twins, never loads it (idle memory: docs/appliance.md).
"""

from typing import Any

from mailiverse.mime.errors import TwinError
from mailiverse.mime.limits import DEFAULT_LIMITS, Limits, MimeLimitError


def __getattr__(name: str) -> Any:
    if name in ("convert", "convert_document"):
        from mailiverse.mime import twin

        return getattr(twin, name)
    raise AttributeError(f"module 'mailiverse.mime' has no attribute {name!r}")


__all__ = ["DEFAULT_LIMITS", "Limits", "MimeLimitError", "TwinError", "convert", "convert_document"]
