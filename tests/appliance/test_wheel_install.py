"""The wheel built from the tree carries the browser client: installed in a fresh virtualenv, its twistd serves it."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEBCLIENT = ROOT / "webclient"
# What a working tree holds besides its source; the wheel is built from the rest, as from a clean clone.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache", ".hypothesis", "mailiverse-data"
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*cmd: str | Path, cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def outside_env() -> dict[str, str]:
    """This environment without anything that would put the checkout or this virtualenv on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return dict(env, PYTHONSAFEPATH="1")


def build_wheel(source: Path, work: Path) -> Path:
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", work / "out", source, cwd=work)
    (found,) = (work / "out").glob("mailiverse-*.whl")
    return found


def packaged_client(wheel: Path) -> dict[str, bytes]:
    """The files under mailiverse/webclient/ in a wheel, by their path below it."""
    with zipfile.ZipFile(wheel) as archive:
        prefix = "mailiverse/webclient/"
        return {n.removeprefix(prefix): archive.read(n) for n in archive.namelist() if n.startswith(prefix)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this tree, as `pip wheel` builds it from a clean copy (no build/ or egg-info left over)."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "src", ignore=NOT_SOURCE)
    return build_wheel(work / "src", work)


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the checkout with the wheel and its dependencies installed."""
    work = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    run(work / "venv/bin/python", "-m", "pip", "install", "--quiet", "--no-compile", wheel, cwd=work)
    return work / "venv"


@pytest.fixture
def appliance(venv: Path, tmp_path: Path) -> Iterator[str]:
    """`twistd -n mailiverse` of the virtualenv on 127.0.0.1, run from a temporary directory; yields its HTTPS URL."""
    web_port = free_port()
    service = subprocess.Popen(
        [venv / "bin/twistd", "-n", "--pidfile=", f"--logfile={tmp_path / 'twistd.log'}", "mailiverse",
         "--data-dir", tmp_path / "data", "--domain", "example.org", "--listen", "127.0.0.1",
         "--smtp", f"tcp:{free_port()}", "--smtps", "none", "--web", f"tcp:{web_port}"],
        cwd=tmp_path, env=outside_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"https://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert service.poll() is None, (tmp_path / "twistd.log").read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", web_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "twistd did not listen in 60 s"
                time.sleep(0.1)
        yield url
    finally:
        service.terminate()
        service.wait(30)


def test_wheel_carries_every_file_of_the_client(wheel: Path) -> None:
    """Each file of webclient/ is in the wheel, unchanged, as mailiverse/webclient/."""
    packaged = packaged_client(wheel)
    source = {p.relative_to(WEBCLIENT).as_posix(): p.read_bytes() for p in WEBCLIENT.rglob("*") if p.is_file()}
    assert "index.html" in packaged and any(name.endswith(".js") for name in packaged)
    assert packaged == source


def test_sdist_carries_the_client_into_its_wheel(tmp_path: Path) -> None:
    """The sdist holds webclient/ (MANIFEST.in), so a wheel built from it, as from PyPI, has the client too."""
    shutil.copytree(ROOT, tmp_path / "src", ignore=NOT_SOURCE)
    run(sys.executable, "setup.py", "--quiet", "sdist", "--dist-dir", tmp_path / "sdist", cwd=tmp_path / "src")
    (sdist,) = (tmp_path / "sdist").glob("mailiverse-*.tar.gz")
    assert packaged_client(build_wheel(sdist, tmp_path))["index.html"] == (WEBCLIENT / "index.html").read_bytes()


def test_installed_package_is_the_wheel_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    """The virtualenv imports mailiverse from its own site-packages, and finds the client packaged there."""
    found = run(venv / "bin/python", "-c", "import mailiverse, mailiverse.web.assets as a; "
                "print(mailiverse.__file__); print(a.webclient_dir())", cwd=tmp_path).split()  # fmt: skip
    module, client = (Path(line) for line in found)
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert module == site / "mailiverse/__init__.py"
    assert client == site / "mailiverse/webclient"


def test_installed_twistd_serves_the_client(appliance: str, client_renders: Callable[[str, str], None]) -> None:
    """`/` answers 200 with the client's index.html, and Chromium renders the log-in and sign-up screen from it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(appliance + "/", context=context, timeout=30) as response:
        assert response.status == 200
        assert response.read() == (WEBCLIENT / "index.html").read_bytes()
    client_renders(appliance, "example.org")
