"""systemd unit files read as the tests need them: every ``Key=value`` of a unit, its values in order."""

from __future__ import annotations

from pathlib import Path


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit file at ``path``, values in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found
