"""Tests for mailiverse.privatefile: modes, atomic replacement, crash safety, create-once races, symlinks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailiverse.privatefile import (
    create_private,
    create_private_once,
    private_dir,
    private_writer,
    write_private,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield None
    finally:
        os.umask(old)


def test_write_private_is_owner_only_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    """A new file is 0600 even when the process umask would allow everyone to read it."""
    path = tmp_path / "secret"
    write_private(path, b"key material")
    assert path.read_bytes() == b"key material"
    assert _mode(path) == 0o600


def test_write_private_uses_the_mode_asked_for(tmp_path: Path) -> None:
    """An explicit mode (0640 for a service's environment file) is applied exactly, despite umask 077."""
    old = os.umask(0o077)
    try:
        write_private(tmp_path / "env", b"X=1\n", mode=0o640)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "env") == 0o640


def test_write_private_replaces_and_tightens_an_existing_file(tmp_path: Path) -> None:
    """Rewriting a world-readable file leaves the new content at 0600 and no temporary file behind."""
    path = tmp_path / "cert.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600
    assert _leftovers(tmp_path) == []


def test_exception_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A failure half way through writing leaves the previous content whole and removes the temporary file."""
    path = tmp_path / "data"
    path.write_bytes(b"complete old content")
    with pytest.raises(RuntimeError, match="disk on fire"), private_writer(path) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"complete old content"
    assert _leftovers(tmp_path) == []


def test_exception_mid_write_creates_nothing(tmp_path: Path) -> None:
    """A failed first write leaves no file at the target name, not even an empty one."""
    path = tmp_path / "data"
    with pytest.raises(RuntimeError), private_writer(path) as handle:
        handle.write(b"partial")
        raise RuntimeError("interrupted")
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_failed_fsync_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the data cannot be made durable, the target is not replaced."""
    path = tmp_path / "data"
    path.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_private(path, b"new content")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_process_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """A process that dies abruptly while writing never leaves a partial file under the target name."""
    path = tmp_path / "data"
    path.write_bytes(b"old and whole")
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from mailiverse.privatefile import private_writer\n"
        "with private_writer(Path(sys.argv[1])) as handle:\n"
        "    handle.write(b'torn')\n"
        "    handle.flush()\n"
        "    os._exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], check=False, timeout=60)
    assert result.returncode == 3
    assert path.read_bytes() == b"old and whole"


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    """Writing over a symlink replaces the link itself; the file it pointed to is untouched."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    link = tmp_path / "key.pem"
    link.symlink_to(victim)
    write_private(link, b"secret")
    assert not link.is_symlink()
    assert link.read_bytes() == b"secret"
    assert victim.read_bytes() == b"do not touch"


def test_temp_dir_holds_the_unfinished_file(tmp_path: Path) -> None:
    """With temp_dir (Maildir's tmp/), the unfinished file is there and only the finished one reaches the target dir."""
    scratch = private_dir(tmp_path / "tmp")
    final = private_dir(tmp_path / "new")
    with private_writer(final / "msg", temp_dir=scratch) as handle:
        handle.write(b"mail")
        assert len(os.listdir(scratch)) == 1
        assert os.listdir(final) == []
    assert os.listdir(scratch) == []
    assert (final / "msg").read_bytes() == b"mail"
    assert _mode(final / "msg") == 0o600


def test_create_private_never_overwrites(tmp_path: Path) -> None:
    """Creating a file that exists raises FileExistsError and keeps the existing content."""
    path = tmp_path / "private.pem"
    create_private(path, b"first")
    assert _mode(path) == 0o600
    with pytest.raises(FileExistsError):
        create_private(path, b"second")
    assert path.read_bytes() == b"first"
    assert _leftovers(tmp_path) == []


def test_create_private_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    """A symlink to a missing file counts as existing: nothing is written through it."""
    link = tmp_path / "key"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        create_private(link, b"secret")
    assert not (tmp_path / "elsewhere").exists()


def test_create_private_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a filesystem without link() the file is still created whole, and still never overwritten."""

    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "backup.mvb"
    create_private(path, b"archive")
    assert path.read_bytes() == b"archive"
    assert _mode(path) == 0o600
    with pytest.raises(FileExistsError):
        create_private(path, b"other")
    assert path.read_bytes() == b"archive"
    assert _leftovers(tmp_path) == []


def test_create_private_once_reads_an_existing_file(tmp_path: Path) -> None:
    """An existing file is returned as it is and make() is never called."""
    path = tmp_path / "queue.key"
    path.write_bytes(b"existing")

    def make() -> bytes:
        raise AssertionError("make() must not run when the file exists")

    assert create_private_once(path, make) == b"existing"


def test_create_private_once_creates_when_absent(tmp_path: Path) -> None:
    """A missing file is made from make(), owner-only, and its content returned."""
    path = tmp_path / "legacy.secret"
    assert create_private_once(path, lambda: b"fresh") == b"fresh"
    assert path.read_bytes() == b"fresh"
    assert _mode(path) == 0o600


def test_create_private_once_race_between_threads(tmp_path: Path) -> None:
    """Threads racing to create one key all get the same content, the one that is on disk."""
    path = tmp_path / "dkim.key.pem"
    count = 8
    barrier = threading.Barrier(count)
    results: list[bytes] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        def make() -> bytes:
            time.sleep(0.02)  # widen the window in which every thread has seen no file
            return f"key from thread {index}".encode()

        barrier.wait()
        value = create_private_once(path, make)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == count
    assert len(set(results)) == 1
    assert path.read_bytes() == results[0]
    assert _leftovers(tmp_path) == []


def test_create_private_once_race_between_processes(tmp_path: Path) -> None:
    """Processes starting together on one data dir agree on a single created secret."""
    path = tmp_path / "keys" / "legacy.secret"
    private_dir(path.parent)
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from mailiverse.privatefile import create_private_once\n"
        "go = Path(sys.argv[2])\n"
        "while not go.exists():\n"
        "    time.sleep(0.005)\n"
        "def make():\n"
        "    time.sleep(0.05)\n"
        "    return f'secret of {os.getpid()}'.encode()\n"
        "sys.stdout.write(create_private_once(Path(sys.argv[1]), make).decode())\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(go)], stdout=subprocess.PIPE) for _ in range(4)
    ]
    time.sleep(0.5)  # let every child start and wait for the signal
    go.touch()
    outputs = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        outputs.append(out)
    assert len(set(outputs)) == 1
    assert path.read_bytes() == outputs[0]
    assert outputs[0].startswith(b"secret of ")
    assert _leftovers(path.parent) == []


def test_private_dir_is_owner_only_and_leaves_existing_dirs(tmp_path: Path) -> None:
    """A new directory (and its missing parents' leaf) is 0700; an existing one keeps its mode."""
    made = private_dir(tmp_path / "a" / "keys")
    assert made == tmp_path / "a" / "keys"
    assert _mode(made) == 0o700
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    private_dir(chosen)
    assert _mode(chosen) == 0o755
