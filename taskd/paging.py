"""Opaque cursors for newest-first listings merged over several queues.

A listing walks the queues' index zsets in one global order: score descending (created
time), then queue and id descending to break ties. A cursor names a position in that order
as the score last seen and how many entries with exactly that score were already passed,
so pages neither skip nor repeat tasks created in the same millisecond.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Final

from taskd.errors import ValidationError

#: The shape of a cursor token, for the API description.
PATTERN: Final = "^[0-9]{1,19}-[0-9]{1,9}$"
_TOKEN: Final = re.compile(PATTERN)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position in the merged order: entries with ``score`` beyond ``skip`` come next."""

    score: int
    skip: int

    def encode(self) -> str:
        """A URL-safe token, ``<score>-<skip>``: opaque to clients, but of a shape the
        OpenAPI description can state exactly (:data:`PATTERN`), so any token of that
        shape is a valid position and a generated client can check one."""
        return f"{self.score}-{self.skip}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a token made by :meth:`encode` (or the base64 tokens of older builds)."""
        if _TOKEN.fullmatch(token):
            score, _, skip = token.partition("-")
            return cls(int(score), int(skip))
        try:
            padded = token + "=" * (-len(token) % 4)
            score, skip = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
            cursor = cls(int(score), int(skip))
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("cursor", "malformed cursor") from None
        if cursor.skip < 0:
            raise ValidationError("cursor", "malformed cursor")
        return cursor


Entry = tuple[int, str, str]  # (score, queue, task id)


def order(candidates: list[Entry], cursor: Cursor | None) -> list[Entry]:
    """Sort candidates (all with score <= cursor.score) and drop those already passed."""
    ordered = sorted(candidates, key=lambda e: (e[0], e[1], e[2]), reverse=True)
    if cursor is None:
        return ordered
    same = [e for e in ordered if e[0] == cursor.score]
    rest = [e for e in ordered if e[0] < cursor.score]
    return same[cursor.skip :] + rest


def advance(cursor: Cursor | None, passed: list[Entry]) -> Cursor | None:
    """The cursor after ``passed`` (a prefix of :func:`order`'s result) was consumed."""
    if not passed:
        return cursor
    last = passed[-1][0]
    count = sum(1 for e in passed if e[0] == last)
    if cursor is not None and cursor.score == last:
        count += cursor.skip
    return Cursor(last, count)
