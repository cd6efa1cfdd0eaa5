"""Files a task produces for download: ``<data_dir>/artifacts/<task id>/<name>``.

The HTTP layer serves them with :func:`artifact_path`, which accepts only a task id and
a plain file name, so a request can never name a path outside the task's folder.
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from typing import Any, Final

from taskd.config import Settings
from taskd.errors import ValidationError
from taskd.handlers.sandbox import data_dir
from taskd.model import TASK_ID

ARTIFACT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def artifacts_root(settings: Settings | None) -> Path:
    """The folder holding every task's artifacts."""
    return data_dir(settings) / "artifacts"


def task_dir(settings: Settings | None, task_id: str) -> Path:
    """The artifact folder of one task; ValidationError for anything but a task id."""
    if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
        raise ValidationError("task_id", "is not a task id")
    return artifacts_root(settings) / task_id


def artifact_path(settings: Settings | None, task_id: str, name: str) -> Path:
    """Where artifact ``name`` of a task lives (it may not exist: check before serving).

    Raises ValidationError for a bad task id or a name that is not a plain file name
    (no separators, no ``..``, no leading dot), and when the resolved path (symlinks
    followed) leaves the task's folder.
    """
    folder = task_dir(settings, task_id)
    if not isinstance(name, str) or not ARTIFACT_NAME.fullmatch(name) or ".." in name:
        raise ValidationError("name", "is not an artifact name")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ValidationError("name", "is not an artifact name")
    return path


def content_type(name: str) -> str:
    """The Content-Type to serve an artifact with."""
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def write_artifact(
    settings: Settings | None, task_id: str, name: str, data: bytes
) -> dict[str, Any]:
    """Store one artifact atomically; returns its ``{"name", "content_type", "size"}``."""
    path = artifact_path(settings, task_id, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{name}.part")
    temp.write_bytes(data)
    os.replace(temp, path)
    return {"name": name, "content_type": content_type(name), "size": len(data)}


def list_artifacts(settings: Settings | None, task_id: str) -> list[dict[str, Any]]:
    """The stored artifacts of a task (none when it has no folder)."""
    folder = task_dir(settings, task_id)
    if not folder.is_dir():
        return []
    return [
        {"name": p.name, "content_type": content_type(p.name), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and ARTIFACT_NAME.fullmatch(p.name)
    ]
