"""``--default-quota SIZE`` and ``--send-limit-per-hour N``: parsed into the configuration with their defaults,
recorded for ``mailiverse-admin``, and refused with an error naming the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.python import usage

from mailiverse.config import format_size, parse_size
from tests.support.options import parse


def test_defaults_are_10_gib_and_200_recipients_an_hour(tmp_path: Path) -> None:
    """Without the options every account gets 10 GiB and may send to 200 recipients an hour."""
    config = parse(tmp_path)
    assert (config.default_quota, config.send_limit_per_hour) == (10 * 1024**3, 200)


def test_sizes_in_binary_units_and_the_recorded_default(tmp_path: Path) -> None:
    """Sizes take KiB, MiB, GiB, TiB or plain bytes; the default quota is recorded in appliance.json."""
    config = parse(tmp_path, "--default-quota", "500MiB", "--send-limit-per-hour", "50")
    assert (config.default_quota, config.send_limit_per_hour) == (500 * 1024**2, 50)
    config.data_dir.create()
    config.record()
    assert json.loads(config.data_dir.appliance_file.read_text())["default_quota"] == 500 * 1024**2
    assert [parse_size(text) for text in ("0", "1000", "2 kib", "3TiB", "7B")] == [0, 1000, 2048, 3 * 1024**4, 7]
    assert [format_size(n) for n in (0, 1000, 2048, 10 * 1024**3)] == ["0 bytes", "1000 bytes", "2 KiB", "10 GiB"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--default-quota", "10GB"], "--default-quota"),
        (["--default-quota", "-1"], "--default-quota"),
        (["--default-quota", "1.5GiB"], "--default-quota"),
        (["--default-quota", "9999999TiB"], "--default-quota"),
        (["--send-limit-per-hour", "0"], "--send-limit-per-hour"),
        (["--send-limit-per-hour", "ten"], "--send-limit-per-hour"),
        (["--send-limit-per-hour", "1000001"], "--send-limit-per-hour"),
    ],
)
def test_bad_values_name_the_option(tmp_path: Path, args: list[str], named: str) -> None:
    """A value that is no size or count, or out of range, is a usage error naming the option."""
    with pytest.raises(usage.UsageError, match=named):
        parse(tmp_path, *args)
