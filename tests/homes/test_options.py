"""``--metabase``, ``--home`` and ``--home-weight``: what is accepted, and a clear error for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from mailiverse.config import HomeSetting
from mailiverse.tap import Options

META = "postgresql://mail@db0/meta"
H1 = "home1=postgresql://mail@db1/mail"
H2 = "home2=postgresql://mail@db2/mail"


def _parse(tmp_path: Path, *args: str) -> Options:
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path / "data"), "--domain", "example.org", *args])
    return options


def test_homes_and_weights_are_parsed_and_the_metabase_is_the_database(tmp_path: Path) -> None:
    config = _parse(tmp_path, "--metabase", META, "--home", H1, "--home", H2, "--home-weight", "home2=3")["config"]
    assert config.metabase_url == META
    assert config.db_url == META
    assert config.homes == (
        HomeSetting("home1", "postgresql://mail@db1/mail", 1),
        HomeSetting("home2", "postgresql://mail@db2/mail", 3),
    )
    assert "db1" not in repr(config.homes)  # URLs may hold passwords: not in reprs


def test_one_database_has_no_homes(tmp_path: Path) -> None:
    config = _parse(tmp_path)["config"]
    assert config.homes == () and config.metabase_url is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--home", H1], "need --metabase"),
        (["--home-weight", "home1=2"], "need --metabase"),
        (["--metabase", META], "at least one --home"),
        (["--metabase", "sqlite:///x.db", "--home", H1], "PostgreSQL"),
        (["--metabase", META, "--home", "home1=sqlite:///x.db"], "PostgreSQL"),
        (["--metabase", META, "--home", "Home 1=postgresql://x/y"], "NAME=URL"),
        (["--metabase", META, "--home", "postgresql://x/y"], "NAME=URL"),
        (["--metabase", META, "--home", H1, "--home", H1], "given twice"),
        (["--metabase", META, "--home", H1, "--home", "home2=postgresql://mail@db1/mail"], "already used"),
        (["--metabase", META, "--home", f"home1={META}"], "already used"),
        (["--metabase", META, "--home", H1, "--home-weight", "nohome=2"], "for a NAME given by --home"),
        (["--metabase", META, "--home", H1, "--home-weight", "home1=x"], "not a whole number"),
        (["--metabase", META, "--home", H1, "--home-weight", "home1=-1"], "from 0 to"),
        (["--metabase", META, "--home", H1, "--home-weight", "home1=0"], "weight 0"),
        (["--metabase", META, "--home", H1, "--db", "postgresql://x/y"], "exclude each other"),
        (["--metabase", META, "--home", H1, "--legacy"], "--legacy runs with one database"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        _parse(tmp_path, *args)
