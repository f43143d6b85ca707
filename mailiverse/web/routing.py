"""The app's one Klein router: every route module registers its routes on it, ``WebApp`` serves it."""

from __future__ import annotations

from klein import Klein

#: Routes are methods of ``WebApp``'s route classes; Klein binds them to the app instance.
router = Klein()

__all__ = ["router"]
