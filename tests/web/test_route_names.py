"""The web app is one class made of route classes (``web/app.py``): a method name defined by two of them would
let one hide the other, and Klein would then route one path to the other's code (a move of a message would
become a move of the account). No two route classes define the same name."""

from __future__ import annotations

import inspect

from mailiverse.web.app import WebApp
from mailiverse.web.session import RouteBase


def test_no_two_route_classes_define_the_same_method() -> None:
    owners: dict[str, str] = {}
    clashes = []
    for cls in WebApp.__mro__:
        if cls in (WebApp, RouteBase, object) or not issubclass(cls, RouteBase):
            continue
        for name, value in vars(cls).items():
            if name.startswith("__") or not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            if name in owners:
                clashes.append(f"{name}: {owners[name]} and {cls.__name__}")
            owners.setdefault(name, cls.__name__)
    assert clashes == []
    assert len(owners) > 50  # the check looked at the routes
