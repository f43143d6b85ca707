"""Runs interoperability vector files of the shared Mailiverse schema.

Each vector file is handled by one registered checker, chosen by the file's
name (``aes_cbc_256_embediv.json`` -> ``aes_cbc_256_embediv``).  A checker
declares which top-level sections it understands and yields one
:class:`Case` per vector; the runner executes every case, so no case can be
skipped silently, and it fails any file or section nobody understands.
"""

from mailiverse.conformance.core import (
    Case,
    FileReport,
    NotUnderstood,
    checker,
    run_directories,
    run_file,
)

__all__ = ["Case", "FileReport", "NotUnderstood", "checker", "run_directories", "run_file"]
