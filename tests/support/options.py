"""``twistd mailiverse`` options parsed as twistd parses them, into the typed configuration."""

from __future__ import annotations

from pathlib import Path

from mailiverse.config import ApplianceConfig
from mailiverse.tap import Options


def parse(tmp_path: Path, *args: str) -> ApplianceConfig:
    """The configuration of ``twistd mailiverse --data-dir TMP/data --domain example.org ARGS``."""
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path / "data"), "--domain", "example.org", *args])
    config: ApplianceConfig = options["config"]
    return config
