"""``python -m mailiverse.admin COMMAND``: the same command line as ``mailiverse-admin``."""

from __future__ import annotations

import sys

from mailiverse.admin.cli import main

if __name__ == "__main__":
    sys.exit(main())
