"""The one build step setup.cfg cannot declare: the browser client ships inside the package.

``webclient/`` at the top of the tree stays the only source; a build copies it to ``mailiverse/webclient/``,
where ``mailiverse.web.assets`` finds it at run time. The metadata lives in setup.cfg.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import FileError

WEBCLIENT = Path(__file__).resolve().parent / "webclient"
PACKAGED_WEBCLIENT = ("mailiverse", "webclient")


class BuildPyWithWebclient(build_py):
    """``build_py`` that also copies ``webclient/`` into the build as ``mailiverse/webclient/``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # An editable install runs from the checkout, where the top-level webclient/ is found directly.
            return
        if not (WEBCLIENT / "index.html").is_file():
            raise FileError(f"{WEBCLIENT}/index.html is missing: an sdist must carry webclient/ (see MANIFEST.in)")
        target = Path(self.build_lib, *PACKAGED_WEBCLIENT)
        # Replaced whole, so a file deleted from webclient/ does not linger from an earlier build.
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(WEBCLIENT, target, ignore=shutil.ignore_patterns(".*", "*~"))


setup(cmdclass={"build_py": BuildPyWithWebclient})
