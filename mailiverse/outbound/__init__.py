"""Outbound mail: a persistent, encrypted queue delivered by smarthost or direct MX, DKIM-signed, with bounces."""

from mailiverse.outbound.errors import OutboundError, SubmissionRejected
from mailiverse.outbound.queue import Outbound
from mailiverse.outbound.service import OutboundConfig, build_outbound

__all__ = [
    "Outbound",
    "OutboundConfig",
    "OutboundError",
    "SubmissionRejected",
    "build_outbound",
]
