"""``mailiverse-admin``: the operator's tools (accounts, stored objects, set-up, backup and restore).

It works on the same data directory and database as the running appliance (the database URL is
read from ``<data-dir>/appliance.json`` unless ``--db`` is given).  It never needs, and never sees,
a user's private key, except when an operator passes their own to ``store cat --private-key`` to
read their own mail locally.  :mod:`mailiverse.admin.cli` parses the command line and dispatches.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The ``mailiverse-admin`` entry point (see :func:`mailiverse.admin.cli.main`)."""
    # Imported here, so that using one part (say the backup archive) does not load the whole command line.
    from mailiverse.admin.cli import main as run

    return run(argv)


__all__ = ["main"]
