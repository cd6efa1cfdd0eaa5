"""The ``file_conversion`` task: CSV/TSV/JSON/JSONL conversion, gzip and text encodings.

Both paths are relative to the files sandbox and checked twice (lexically at submit,
against the real file system, symlinks included, at run time). Files are streamed
through a thread; the output is written to a temporary file beside the target and
renamed into place, so a failed or cancelled attempt never leaves half a file behind.
"""

from __future__ import annotations

import asyncio
import codecs
import gzip
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from taskd.engine.context import Context
from taskd.engine.payload_schema import known_keys
from taskd.engine.registry import task
from taskd.errors import Fail, ValidationError
from taskd.handlers.progress import ThreadProgress, run_in_thread
from taskd.handlers.records import (
    FileFormat,
    RecordError,
    RecordWriter,
    format_of,
    infer,
    open_read,
    open_text,
    open_text_write,
    open_write,
    read_records,
)
from taskd.handlers.sandbox import (
    check_relative,
    display,
    files_root,
    not_a_file,
    resolve_inside,
)

CHUNK_BYTES = 1 << 16
PROGRESS_EVERY = 1_000  # records between updates: a few ms, where crunching threads take turns
MAX_COLUMNS = 10_000
ERROR_MODES: Final = ("strict", "replace")
EXAMPLE: Final = {"source": "orders.csv", "target": "orders.jsonl.gz", "infer_types": True}
SCHEMA: Final = known_keys(
    {
        "source": "The file to read, relative to the files root.",
        "target": "The file to write, relative to the files root.",
        "from": "The source's format when its name does not tell (csv, tsv, json, jsonl, txt).",
        "to": "The target's format when its name does not tell.",
        "encoding": "The source's text encoding [utf-8-sig].",
        "target_encoding": "The target's text encoding [utf-8].",
        "errors": "strict or replace: what to do with undecodable bytes [strict].",
        "infer_types": "Turn CSV strings into numbers, booleans and nulls [false].",
        "overwrite": "Replace an existing target [true].",
    }
)


@dataclass(frozen=True, slots=True)
class Job:
    """A validated conversion: formats, encodings and options."""

    source: FileFormat
    target: FileFormat
    encoding: str
    target_encoding: str
    errors: str
    infer_types: bool
    recode: bool  # an encoding was asked for

    @property
    def mode(self) -> str:
        """copy (bytes, maybe re-gzipped), transcode (text) or records (parse and write)."""
        if self.source.kind != self.target.kind:
            return "records"
        same = codecs.lookup(self.encoding).name == codecs.lookup(self.target_encoding).name
        return "transcode" if self.recode and not same else "copy"


def plan(payload: dict[str, Any]) -> Job:
    """Check the payload and describe the conversion; ValidationError names the field."""
    source = check_relative(payload.get("source"), "payload.source")
    target = check_relative(payload.get("target"), "payload.target")
    if os.path.normpath(source) == os.path.normpath(target):
        raise ValidationError("payload.target", "must differ from payload.source")
    formats = []
    for path, key in ((source, "from"), (target, "to")):
        explicit = payload.get(key)
        if explicit is not None and not isinstance(explicit, str):
            raise ValidationError(f"payload.{key}", "must be a format name like 'csv'")
        found = format_of(path, explicit)
        if found is None:
            raise ValidationError(
                f"payload.{key}",
                f"cannot tell the format of {path!r}: use "
                "csv, tsv, json, jsonl or txt (optionally .gz)",
            )
        formats.append(found)
    src, dst = formats
    if src.kind != dst.kind and not (src.is_records and dst.is_records):
        raise ValidationError(
            "payload.to",
            "text files convert only to text (another encoding) or gzip, not to record formats",
        )
    encodings = [
        _encoding(payload, key, default)
        for key, default in (("encoding", "utf-8-sig"), ("target_encoding", "utf-8"))
    ]
    errors = payload.get("errors", "strict")
    if errors not in ERROR_MODES:
        raise ValidationError("payload.errors", "must be 'strict' or 'replace'")
    infer_types = payload.get("infer_types", False)
    if not isinstance(infer_types, bool):
        raise ValidationError("payload.infer_types", "must be true or false")
    if not isinstance(payload.get("overwrite", True), bool):
        raise ValidationError("payload.overwrite", "must be true or false")
    recode = "encoding" in payload or "target_encoding" in payload
    return Job(src, dst, encodings[0], encodings[1], errors, infer_types, recode)


def _encoding(payload: dict[str, Any], key: str, default: str) -> str:
    name = payload.get(key, default)
    try:
        codecs.lookup(name)
    except (LookupError, TypeError):
        raise ValidationError(f"payload.{key}", f"unknown text encoding {name!r}") from None
    return str(name)


def validate(payload: dict[str, Any]) -> None:
    """Submit-time checks (paths, formats, encodings)."""
    plan(payload)


@task("file_conversion", example=EXAMPLE, schema=SCHEMA, validate=validate)
async def file_conversion(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Convert a file in the files root: CSV, TSV, JSON, JSONL, gzip, text encodings.

    Formats come from the file names (``.csv``, ``.jsonl.gz``…) or ``from``/``to``;
    ``encoding``/``target_encoding`` convert text; ``infer_types`` turns CSV strings
    into numbers, booleans and nulls.
    """
    try:
        job = plan(payload)
    except ValidationError as exc:
        raise Fail(str(exc)) from None
    root = files_root(ctx.settings)
    source = resolve_inside(root, payload["source"], "payload.source")
    target = resolve_inside(root, payload["target"], "payload.target")
    if not source.is_file():
        raise not_a_file(root, payload["source"], "payload.source")
    if target.is_dir() or (target.exists() and not payload.get("overwrite", True)):
        raise Fail(f"payload.target: {payload['target']!r} exists (set overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{ctx.task_id}.part")
    try:
        rows = await run_in_thread(ctx, lambda progress: convert(source, temp, job, progress))
    except asyncio.CancelledError:
        temp.unlink(missing_ok=True)  # in case the thread finished just before the cancel
        raise
    os.replace(temp, target)
    await ctx.progress(100, "converted")
    return {
        "source": display(root, source),
        "target": display(root, target),
        "from": _name(job.source),
        "to": _name(job.target),
        "mode": job.mode,
        "size": target.stat().st_size,
        "rows": rows,
    }


def _name(fmt: FileFormat) -> str:
    return fmt.kind + (".gz" if fmt.gzipped else "")


def convert(source: Path, temp: Path, job: Job, progress: ThreadProgress) -> int | None:
    """Write the converted ``source`` to ``temp``; rows written, or None for copies.

    ``temp`` is removed when anything goes wrong, cancellation included.
    """
    try:
        return _convert(source, temp, job, progress)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _convert(source: Path, temp: Path, job: Job, progress: ThreadProgress) -> int | None:
    try:
        if job.mode == "records":
            return _convert_records(source, temp, job, progress)
        _copy(source, temp, job, progress)
        return None
    except RecordError as exc:
        raise Fail(f"{source.name}: {exc}") from None
    except UnicodeError as exc:
        raise Fail(
            f"{source.name}: text does not fit the encoding ({exc}); set "
            "payload.encoding / target_encoding, or errors='replace'"
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Fail(f"{source.name}: broken gzip data: {exc}") from None


def _copy(source: Path, temp: Path, job: Job, progress: ThreadProgress) -> None:
    """Bytes (re-)gzipped as asked, or text re-encoded chunk by chunk."""
    size = max(source.stat().st_size, 1)
    if job.mode == "copy":
        with (
            open_read(source, job.source.gzipped) as (data, raw),
            open_write(temp, job.target.gzipped) as out,
        ):
            while chunk := data.read(CHUNK_BYTES):
                out.write(chunk)
                progress.update(raw.tell() / size, "copying")
        return
    with (
        open_text(source, job.source.gzipped, job.encoding, job.errors) as (text, raw),
        open_text_write(temp, job.target.gzipped, job.target_encoding, job.errors) as writer,
    ):
        while chunk_text := text.read(CHUNK_BYTES):
            writer.write(chunk_text)
            progress.update(raw.tell() / size, "re-encoding")


def _convert_records(source: Path, temp: Path, job: Job, progress: ThreadProgress) -> int:
    """Parse records and write them in the target format (two passes when CSV/TSV needs
    the union of the JSON fields as its header)."""
    columns: list[str] | None = None
    write_stage = progress
    if job.target.kind in ("csv", "tsv"):
        columns = _columns(source, job, progress.stage(0, 30))
        write_stage = progress.stage(30, 99)
    fix: Callable[[dict[str, Any]], dict[str, Any]] = (
        (lambda r: {k: infer(v) for k, v in r.items()}) if job.infer_types else (lambda r: r)
    )
    size = max(source.stat().st_size, 1)
    with (
        open_text(source, job.source.gzipped, job.encoding, job.errors) as (text, raw),
        open_text_write(temp, job.target.gzipped, job.target_encoding, job.errors) as out,
    ):
        writer = RecordWriter(out, job.target.kind, columns)
        for n, record in enumerate(read_records(text, job.source.kind), 1):
            writer.write(fix(record))
            if n % PROGRESS_EVERY == 0:
                write_stage.update(raw.tell() / size, f"{n} records")
        writer.close()
    return writer.count


def _columns(source: Path, job: Job, progress: ThreadProgress) -> list[str]:
    """The header for a CSV/TSV target: every field name in order of first appearance."""
    seen: dict[str, None] = {}
    size = max(source.stat().st_size, 1)
    with open_text(source, job.source.gzipped, job.encoding, job.errors) as (text, raw):
        for n, record in enumerate(read_records(text, job.source.kind), 1):
            for name in record:
                if name not in seen:
                    if len(seen) >= MAX_COLUMNS:
                        raise RecordError(f"more than {MAX_COLUMNS} distinct fields")
                    seen[name] = None
            if n % PROGRESS_EVERY == 0:
                progress.update(raw.tell() / size, f"reading fields: {n} records")
    return list(seen)
