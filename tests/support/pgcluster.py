"""Private PostgreSQL clusters for tests that must stop a database server for real (not one database on the
shared server): each is ``initdb`` into a fresh directory and ``pg_ctl`` on a free port of 127.0.0.1, trust
authentication, its socket in its own directory. initdb refuses to run as root, so as root the cluster
belongs to (and runs as) the ``postgres`` OS user, in a directory outside pytest's root-only tmp_path."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.harness import free_port

_OS_USER = "postgres"
_TIMEOUT_S = 60


def postgres_bin_dir() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, or None."""
    found = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if Path(path).with_name("pg_ctl").exists()
    ]

    def version(path: Path) -> tuple[int, ...]:
        name = path.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    return max(found, key=version) if found else None


def require_pg_binaries() -> Path:
    """The PostgreSQL bin directory; skip the calling test without it, but fail it when ``CI`` is set."""
    import pytest

    bin_dir = postgres_bin_dir()
    if bin_dir is not None and (os.geteuid() != 0 or _postgres_user_exists()):
        return bin_dir
    reason = "initdb and pg_ctl (/usr/lib/postgresql/*/bin) or the postgres OS user are missing"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so cluster tests may not be skipped")
    pytest.skip(reason)


def _postgres_user_exists() -> bool:
    try:
        pwd.getpwnam(_OS_USER)
    except KeyError:
        return False
    return True


@dataclass
class Cluster:
    """One private PostgreSQL server: its data directory, port and the tools that start and stop it."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _OS_USER, "--", *command]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} {args[1]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def init(self) -> None:
        """A new cluster: superuser ``postgres``, trust authentication (local use only), UTF-8."""
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"
        )

    def start(self) -> None:
        """Start the server on 127.0.0.1:port only, and wait until it takes connections."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-o", options)

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: every backend killed at once, as a crash or a pulled cable would)."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def running(self) -> bool:
        command = [str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _OS_USER, "--", *command]
        return subprocess.run(command, cwd=self.root, capture_output=True, timeout=_TIMEOUT_S).returncode == 0

    def create_database(self, name: str) -> str:
        """Create the database ``name`` and return its ``postgresql+psycopg://`` URL."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def running_cluster(bin_dir: Path) -> Iterator[Cluster]:
    """A fresh cluster, started; stopped and deleted on exit whatever happened inside."""
    root = Path(tempfile.mkdtemp(prefix="mailiverse-pgcluster-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam(_OS_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o700)
        cluster = Cluster(bin_dir, root, free_port())
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
