"""The store's thread-side functions say so in their name.

Every function of a store repository that takes a ``Connection`` runs on a database thread
(through ``Database.run``/``transact``); its name ends in ``_txn`` so a reader of the caller
sees which side of the thread boundary it is on, and nothing else in the store ends so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailiverse.store

STORE = Path(mailiverse.store.__file__).parent


def _functions() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(STORE.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                found.append((path.name, node))
    return found


def test_every_function_taking_a_connection_is_named_txn() -> None:
    takes_conn = [(f, n.name) for f, n in _functions() if n.args.args and n.args.args[0].arg == "conn"]
    assert len(takes_conn) > 40  # the repositories are all here
    misnamed = [f"{f}:{name}" for f, name in takes_conn if not name.endswith("_txn")]
    assert misnamed == []


def test_no_reactor_side_function_is_named_txn() -> None:
    wrong = [
        f"{f}:{n.name}"
        for f, n in _functions()
        if n.name.endswith("_txn") and not (n.args.args and n.args.args[0].arg == "conn")
    ]
    assert wrong == []
