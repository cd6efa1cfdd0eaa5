"""Which methods each path has, answered exactly: ``OPTIONS`` and 405 with a true ``Allow``.

aiohttp's router lists in ``Allow`` the methods of every route whose pattern matches, so
``/api/tasks/batch`` (POST) also advertised ``/api/tasks/{task_id}``'s GET and DELETE.
Here a literal path wins over a pattern, as in the OpenAPI description, and the table is
built from the same route table the app registers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PLACEHOLDER = re.compile(r"\{[^}/]+\}")


class MethodTable:
    """Methods per route path; :meth:`allowed` finds a request path's entry."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        literal: dict[str, set[str]] = {}
        patterns: dict[str, set[str]] = {}
        for method, path in routes:
            table = patterns if "{" in path else literal
            table.setdefault(path, set()).add(method)
        self._literal = {p: _allow(m) for p, m in literal.items()}
        self._patterns = [(_regex(p), _allow(m)) for p, m in patterns.items()]

    def allowed(self, path: str) -> tuple[str, ...] | None:
        """The methods of the route ``path`` belongs to (OPTIONS included), or None."""
        if path.startswith("/api/") and path.endswith("/") and len(path) > 5:
            path = path[:-1]  # /api paths also answer with a trailing slash
        found = self._literal.get(path)
        if found is not None:
            return found
        return next((m for pattern, m in self._patterns if pattern.fullmatch(path)), None)


def _regex(path: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(path)
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in parts) + "$")


def _allow(methods: set[str]) -> tuple[str, ...]:
    return (*sorted(methods), "OPTIONS")
