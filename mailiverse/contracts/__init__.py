"""The contracts between the appliance's parts, in one neutral place that imports none of them.

Front ends (SMTP, the web API, the legacy protocol), delivery, the submission service, the
outbound queue and the client all import what they share from here: the interfaces
(``IInbox``, ``IOutbound``, ``IBodyGate``), the value types (``Recipient``, ``Envelope``, ``BodyAllowance``), the
address and domain rule, and the store-path rule. Nothing here imports another ``mailiverse``
package (checked in CI, see docs/architecture.md).
"""

from mailiverse.contracts.addresses import (
    LOOK_ALIKES,
    MAX_ADDRESS_LENGTH,
    InvalidAddress,
    InvalidDomain,
    canonical_local,
    normalise_address,
    normalise_domain,
    split_address,
)
from mailiverse.contracts.bodies import (
    ANONYMOUS_ALLOWANCE,
    ANONYMOUS_BODY_BYTES,
    Allowance,
    BodyAllowance,
    IBodyGate,
)
from mailiverse.contracts.mail import (
    INBOX_FOLDER,
    SCREENER_FOLDER,
    SENT_FOLDER,
    SPAM_FOLDER,
    Envelope,
    EnvelopeRefused,
    IInbox,
    IOutbound,
    ISpooled,
    MailboxFull,
    MessageRefused,
    MessageRejected,
    Recipient,
    SealedObjects,
)
from mailiverse.contracts.paths import InvalidPath, prefix_upper_bound, validate_path, validate_prefix

__all__ = [
    "ANONYMOUS_ALLOWANCE",
    "ANONYMOUS_BODY_BYTES",
    "INBOX_FOLDER",
    "MAX_ADDRESS_LENGTH",
    "SENT_FOLDER",
    "SCREENER_FOLDER",
    "SPAM_FOLDER",
    "Allowance",
    "BodyAllowance",
    "Envelope",
    "EnvelopeRefused",
    "IBodyGate",
    "IInbox",
    "IOutbound",
    "ISpooled",
    "InvalidAddress",
    "InvalidDomain",
    "InvalidPath",
    "SealedObjects",
    "MailboxFull",
    "MessageRefused",
    "MessageRejected",
    "Recipient",
    "normalise_address",
    "normalise_domain",
    "LOOK_ALIKES",
    "canonical_local",
    "prefix_upper_bound",
    "split_address",
    "validate_path",
    "validate_prefix",
]
