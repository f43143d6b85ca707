"""The submission service: mail a logged-in user sends, from any front end
(JSON API, legacy protocol, later the bridge)."""

from mailiverse.submission.compose import Composed, compose
from mailiverse.submission.errors import SubmissionError
from mailiverse.submission.headers import serialized, set_header
from mailiverse.submission.sender import one_address, sender_of
from mailiverse.submission.service import MAX_RECIPIENTS, Submission, Submitted, Submitter

__all__ = [
    "MAX_RECIPIENTS",
    "Composed",
    "Submission",
    "SubmissionError",
    "Submitted",
    "Submitter",
    "compose",
    "one_address",
    "sender_of",
    "serialized",
    "set_header",
]
