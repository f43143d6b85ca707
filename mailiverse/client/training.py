"""Marking a message as spam or not spam: train the appliance's spam filter, then move it between Inbox and Spam.

The order is the contract's (docs/api.md): the decrypted original goes to ``POST /api/learn/spam`` (or
``ham``) first, then ``POST /api/move`` moves the original and its JSON twin together. The user's
consent to training is the command itself. An appliance without a trainable filter (503) or one that
refuses the size (413) still gets the move, and the result says training did not happen. Any other
failure of training stops before the move, so running the command again retries both; a message
already in the target folder is trained and left where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailiverse.client.api import INBOX, SPAM_FOLDER, Client
from mailiverse.client.errors import UsageError

#: The folders' names as the CLI shows them.
FOLDER_NAMES = {INBOX: "Inbox", SPAM_FOLDER: "Spam"}


@dataclass(frozen=True)
class Marked:
    """What marking one message did: ``learned`` is a ``mailiverse.client.api`` learn outcome."""

    message_id: str
    learned: str
    #: The folder it is in now (``Mail/In`` or ``Mail/Spam``).
    folder: str
    #: Whether this run moved it (False: it was already there).
    moved: bool


def _twin(path: str) -> str:
    base, _, name = path.rpartition("/")
    return f"{base}_Json/{name}"


def mark(client: Client, message_id: str, *, spam: bool) -> Marked:
    """Train the filter with the message (as spam, or as ham) and move it to Spam, or back to the Inbox."""
    path = client.resolve_message(message_id)
    folder, _, key = path.rpartition("/")
    if folder not in FOLDER_NAMES:
        raise UsageError("only messages in Inbox or Spam can be marked as spam or not spam")
    target = SPAM_FOLDER if spam else INBOX
    learned = client.learn("spam" if spam else "ham", client.open_mail(path))
    if folder == target:
        return Marked(key, learned, target, moved=False)
    moves = [(path, f"{target}/{key}")]
    if client.object_exists(_twin(path)):
        moves.append((_twin(path), _twin(f"{target}/{key}")))
    client.move(moves)
    return Marked(key, learned, target, moved=True)
