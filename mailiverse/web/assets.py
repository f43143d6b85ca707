"""Where the browser client's files are: the copy packaged with mailiverse, else a source checkout's webclient/."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The client in a source checkout (an editable install); builds copy it into the package (setup.py).
CHECKOUT_WEBCLIENT = Path(__file__).resolve().parent.parent.parent / "webclient"


def webclient_dir() -> Path:
    """The directory to serve the client from: the packaged ``mailiverse/webclient/`` first, then the checkout's."""
    packaged = resources.files("mailiverse").joinpath("webclient")
    # twisted.web.static.File serves from the file system, so only an unpacked copy will do (wheels install unpacked).
    if isinstance(packaged, Path) and packaged.joinpath("index.html").is_file():
        return packaged
    return CHECKOUT_WEBCLIENT
