"""``python -m mailiverse.conformance DIR...``: check every vector file in DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailiverse.conformance.core import run_directories


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mailiverse.conformance",
        description="Check Mailiverse interoperability vector files.",
    )
    parser.add_argument("directories", nargs="+", type=Path, metavar="DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="list each failure")
    args = parser.parse_args(argv)
    missing = [d for d in args.directories if not d.exists()]
    if missing:
        print(f"no such directory: {missing[0]}", file=sys.stderr)
        return 2
    reports = run_directories(args.directories)
    if not reports:
        print("no vector files found", file=sys.stderr)
        print("0 passed, 0 failed")
        return 1
    passed = failed = 0
    for report in reports:
        print(f"{report.name}: {report.passed} passed, {report.failed} failed")
        for failure in report.failures:
            print(f"  FAIL {failure}", file=sys.stderr if not args.verbose else sys.stdout)
        passed += report.passed
        failed += report.failed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
