"""``--log-level LEVEL``: info by default, each of Twisted's level names accepted, anything else refused with an
error naming the option and the levels."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import LogLevel
from twisted.python import usage

from tests.support.options import parse


def test_the_default_is_info(tmp_path: Path) -> None:
    """Without --log-level the appliance logs info and above."""
    assert parse(tmp_path).log_level is LogLevel.info


@pytest.mark.parametrize("level", list(LogLevel.iterconstants()), ids=lambda level: level.name)
def test_each_level_name_is_accepted(tmp_path: Path, level: LogLevel) -> None:
    """debug, info, warn, error and critical each give that level."""
    assert parse(tmp_path, "--log-level", level.name).log_level is level


@pytest.mark.parametrize("value", ["verbose", "warning", "DEBUG", "", "0"])
def test_a_bad_level_is_refused_naming_the_option(tmp_path: Path, value: str) -> None:
    """Any other value is a usage error that names --log-level and lists the levels."""
    with pytest.raises(usage.UsageError, match="--log-level must be one of: debug, info, warn, error, critical"):
        parse(tmp_path, "--log-level", value)
