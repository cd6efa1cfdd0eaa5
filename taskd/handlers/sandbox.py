"""Where built-in handlers may read and write: the data dir and the sandboxed files root.

Payload paths are checked twice: lexically at submit time (:func:`check_relative`, no
settings needed, so the API can answer 422), and against the real file system at run
time (:func:`resolve_inside`), which also catches symlinks that lead out of the root.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from taskd.config import Settings
from taskd.errors import Fail, ValidationError

MAX_PATH_CHARS = 1024


def data_dir(settings: Settings | None) -> Path:
    """``settings.data_dir``; without settings (library use, unit tests) a per-user tmp dir."""
    if settings is not None:
        return settings.data_dir
    return Path(tempfile.gettempdir()) / f"taskd-{os.getuid()}"


def files_root(settings: Settings | None) -> Path:
    """The file sandbox: ``files.root`` or ``<data_dir>/files``."""
    return settings.files_root if settings is not None else data_dir(None) / "files"


def check_relative(value: Any, field: str) -> str:
    """A path relative to the files root without ``..``; raise ValidationError otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty path relative to the files root")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise ValidationError(field, f"must be at most {MAX_PATH_CHARS} characters, no NUL")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or value.startswith("~") or (len(value) > 1 and value[1] == ":"):
        raise ValidationError(field, "must be relative to the files root, not absolute")
    if ".." in pure.parts:
        raise ValidationError(field, "must not contain '..'")
    return value


def resolve_inside(root: Path, value: Any, field: str) -> Path:
    """The real path of ``value`` under ``root``; Fail when it escapes (symlinks included).

    The target need not exist (an output file); every existing component is resolved,
    so a symlinked directory or file pointing outside the root is refused.
    """
    try:
        relative = check_relative(value, field)
    except ValidationError as exc:
        raise Fail(str(exc)) from None
    real_root = root.resolve()
    candidate = (real_root / relative).resolve()
    if not candidate.is_relative_to(real_root) or candidate == real_root:
        raise Fail(f"{field}: {value!r} is outside the files root")
    return candidate


def not_a_file(root: Path, value: Any, field: str) -> Fail:
    """The failure for a payload path that names no file: where the files root is, and
    whether the root itself is missing (the usual cause on a fresh install)."""
    if not root.is_dir():
        return Fail(
            f"{field}: {value!r} is not a file: the files root {root} does not exist "
            "(create it and put the file there, or set files.root / TASKD_FILES_ROOT)"
        )
    return Fail(f"{field}: {value!r} is not a file in the files root {root}")


def display(root: Path, path: Path) -> str:
    """A path as shown in results: relative to the files root."""
    return path.relative_to(root.resolve()).as_posix()
