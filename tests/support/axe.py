"""axe-core (vendored in tests/support/vendor/axe-core, test tooling only) in a Playwright page: the rules run, and
the violations found per view (tests/browser/test_accessibility.py, tests/browser/test_passkeys.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING = {"serious", "critical"}
IMPACTS = ["critical", "serious", "moderate", "minor"]

# The mail in an HTML message is the sender's, shown in a sandboxed frame without scripts: axe checks the frame's
# title in the page and does not go into it (iframes: false).
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {
    runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'], iframes: false,
  });
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })) }));
}"""


class Audit:
    """The violations axe finds, per view."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.blocking: list[str] = []

    def check(self, page: Any, view: str) -> None:
        """Run axe on what ``page`` shows now and record it as ``view``."""
        page.wait_for_timeout(100)  # let the last render and its transitions settle
        violations = page.evaluate(RUN_AXE, TAGS)
        counts: Counter[str] = Counter()
        for violation in violations:
            counts[violation["impact"]] += len(violation["nodes"])
            if violation["impact"] in BLOCKING:
                for node in violation["nodes"][:5]:
                    self.blocking.append(
                        f"{view}: {violation['impact']} {violation['id']} ({violation['help']}) at {node['target']}: "
                        f"{node['summary']}"
                    )
            else:
                targets = ", ".join(n["target"] for n in violation["nodes"][:3])
                print(f"  {view}: {violation['impact']} {violation['id']}: {violation['help']} [{targets}]")
        self.counts[view] = counts

    def table(self) -> str:
        lines = ["| view | " + " | ".join(IMPACTS) + " |", "| --- |" + " ---: |" * len(IMPACTS)]
        for view, counts in self.counts.items():
            lines.append(f"| {view} | " + " | ".join(str(counts[i]) for i in IMPACTS) + " |")
        return "\n".join(lines)
