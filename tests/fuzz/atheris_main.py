"""Coverage-guided fuzzing with atheris: ``python -m tests.fuzz.atheris_main TARGET [libFuzzer args]``.

Runs one target of tests/support/fuzz_targets.py under libFuzzer with the mailiverse modules instrumented,
starting from tests/fuzz/corpus/TARGET.  New interesting inputs go to a scratch directory given as
the first libFuzzer corpus argument (never into the committed corpus unless you pass it first).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["mailiverse"]):
    from tests.support.fuzz_targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_main {{{','.join(TARGETS)}}} [libFuzzer args]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
