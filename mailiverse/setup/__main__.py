"""``python -m mailiverse.setup COMMAND``: the set-up, backup, restore and dkim commands on their own."""

from __future__ import annotations

import argparse
import sys

from mailiverse.config import DEFAULT_DATA_DIR
from mailiverse.setup.cli import register_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailiverse.setup", description="Set up and back up a mailiverse appliance.")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"appliance data dir (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--db", default=None, help="database URL (default: the one the appliance recorded)")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
