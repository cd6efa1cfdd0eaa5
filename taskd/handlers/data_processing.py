"""The ``data_processing`` task: aggregates over inline records or a record file.

The records come from the payload (``records``: a list of objects, or for seed
compatibility a number of generated sample records) or from a CSV/TSV/JSON/JSONL file
(optionally ``.gz``) in the files root (``source``). Files are streamed and the work runs
in a thread, so neither memory nor the event loop depend on the file's size.
"""

from __future__ import annotations

import codecs
import gzip
import random
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from taskd.engine.context import Context
from taskd.engine.payload_schema import known_keys
from taskd.engine.registry import task
from taskd.errors import Fail, ValidationError
from taskd.handlers.aggregate import Plan, parse_plan
from taskd.handlers.progress import ThreadProgress, run_in_thread
from taskd.handlers.records import (
    FileFormat,
    RecordError,
    format_of,
    open_text,
    read_records,
)
from taskd.handlers.sandbox import (
    check_relative,
    display,
    files_root,
    not_a_file,
    resolve_inside,
)

MAX_SAMPLE_RECORDS = 1_000_000
PROGRESS_EVERY = 1_000  # records between updates: a few ms, where crunching threads take turns
DEFAULT_OPERATIONS: Final = ({"op": "count"},)
SAMPLE_OPERATIONS: Final = (
    {"op": "count"},
    {"op": "sum", "field": "amount"},
    {"op": "mean", "field": "amount"},
    {"op": "min", "field": "amount"},
    {"op": "max", "field": "amount"},
    {
        "op": "group_by",
        "field": "city",
        "aggregates": [{"op": "count"}, {"op": "sum", "field": "amount"}],
    },
)
CITIES: Final = ("Amsterdam", "Berlin", "Lisbon", "Oslo", "Paris", "Rome", "Vienna")
CATEGORIES: Final = ("books", "games", "garden", "music", "tools")
EXAMPLE: Final = {
    "records": [
        {"city": "Oslo", "amount": 12.5},
        {"city": "Paris", "amount": 40},
        {"city": "Oslo", "amount": 7.5},
    ],
    "filter": [{"field": "amount", "op": ">", "value": 5}],
    "operations": [
        {"op": "sum", "field": "amount"},
        {"op": "group_by", "field": "city", "aggregates": [{"op": "mean", "field": "amount"}]},
    ],
}

SCHEMA: Final = known_keys(
    {
        "records": "A list of objects, or a number of generated sample records.",
        "source": "A CSV/TSV/JSON/JSONL file (optionally .gz) in the files root.",
        "format": "The source's format when its name does not tell.",
        "encoding": "The source's text encoding [utf-8-sig].",
        "filter": 'Conditions, e.g. [{"field": "amount", "op": ">", "value": 5}].',
        "operations": "Aggregates: count, sum, mean, min, max, distinct, group_by.",
    }
)


def validate(payload: dict[str, Any]) -> None:
    """Submit-time checks: one record source, a well-formed plan, a known encoding."""
    records, source = payload.get("records"), payload.get("source")
    if (records is None) == (source is None):
        raise ValidationError("payload.records", "give either records or source")
    if source is not None:
        check_relative(source, "payload.source")
        if source_format(payload) is None:
            raise ValidationError(
                "payload.format",
                "cannot tell the format: use a .csv, .tsv, "
                ".json or .jsonl file (optionally .gz) or give format",
            )
        _check_encoding(payload.get("encoding", "utf-8-sig"))
    elif isinstance(records, bool) or not isinstance(records, int | list):
        raise ValidationError("payload.records", "must be a list of objects or a number")
    elif isinstance(records, int) and not 0 <= records <= MAX_SAMPLE_RECORDS:
        raise ValidationError("payload.records", f"must be from 0 to {MAX_SAMPLE_RECORDS}")
    elif isinstance(records, list):
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValidationError(f"payload.records[{i}]", "must be an object")
    parse_plan(payload, default_operations(payload))


def _check_encoding(name: Any) -> None:
    try:
        codecs.lookup(name)
    except (LookupError, TypeError):
        raise ValidationError("payload.encoding", f"unknown text encoding {name!r}") from None


def default_operations(payload: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """What runs when the payload names no operations."""
    return SAMPLE_OPERATIONS if isinstance(payload.get("records"), int) else DEFAULT_OPERATIONS


def source_format(payload: Mapping[str, Any]) -> FileFormat | None:
    """The record format of ``source``, from ``format`` or the file name."""
    found = format_of(str(payload.get("source", "")), payload.get("format"))
    return found if found is not None and found.is_records else None


@task("data_processing", example=EXAMPLE, schema=SCHEMA, validate=validate)
async def data_processing(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Aggregate records (count, sum, mean, min, max, distinct, group_by with filters).

    Records come inline (``records``), as generated samples (``records``: a number) or
    from a CSV/TSV/JSON/JSONL file in the files root (``source``), which is streamed.
    """
    try:
        validate(payload)
    except ValidationError as exc:
        raise Fail(str(exc)) from None
    plan = parse_plan(payload, default_operations(payload)).start()
    started = time.monotonic()
    if "source" in payload:
        root = files_root(ctx.settings)
        path = resolve_inside(root, payload["source"], "payload.source")
        if not path.is_file():
            raise not_a_file(root, payload["source"], "payload.source")
        fmt, encoding = source_format(payload), payload.get("encoding", "utf-8-sig")
        if fmt is None:  # validate() refuses this; keeps the type checker informed
            raise Fail("payload.format: unknown record format")
        read, matched = await run_in_thread(
            ctx, lambda progress: aggregate_file(path, fmt, encoding, plan, progress)
        )
        origin = display(root, path)
    else:
        records = payload["records"]
        rows = sample_records(records) if isinstance(records, int) else records
        total = records if isinstance(records, int) else len(records)
        read, matched = await run_in_thread(
            ctx, lambda progress: aggregate(rows, total, plan, progress)
        )
        origin = "sample" if isinstance(records, int) else "inline"
    await ctx.progress(100, f"aggregated {read} records")
    return {
        "source": origin,
        "records": read,
        "matched": matched,
        "results": plan.results(),
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }


def aggregate(
    records: Iterable[Mapping[str, Any]], total: int, plan: Plan, progress: ThreadProgress
) -> tuple[int, int]:
    """Feed records into the plan; returns (read, matched)."""
    read = matched = 0
    try:
        for read, record in enumerate(records, 1):
            matched += plan.add(record)
            if read % PROGRESS_EVERY == 0:
                progress.update(read / max(total, 1), f"{read} of {total} records")
    except RecordError as exc:
        raise Fail(str(exc)) from None
    return read, matched


def aggregate_file(
    path: Path, fmt: FileFormat, encoding: str, plan: Plan, progress: ThreadProgress
) -> tuple[int, int]:
    """Stream a record file through the plan; progress follows the bytes consumed."""
    size = max(path.stat().st_size, 1)
    read = matched = 0
    try:
        with open_text(path, fmt.gzipped, encoding) as (text, raw):
            for read, record in enumerate(read_records(text, fmt.kind), 1):
                matched += plan.add(record)
                if read % PROGRESS_EVERY == 0:
                    progress.update(raw.tell() / size, f"{read} records")
    except RecordError as exc:
        raise Fail(f"{path.name}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise Fail(
            f"{path.name}: not {encoding} text at byte {exc.start}; set payload.encoding"
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Fail(f"{path.name}: broken gzip data: {exc}") from None
    return read, matched


def sample_records(count: int) -> Iterator[dict[str, Any]]:
    """Deterministic sample orders, so the seed's ``{"records": 1000}`` does real work."""
    rng = random.Random(count)  # noqa: S311 - sample data, not cryptography
    for i in range(count):
        yield {
            "id": i + 1,
            "city": rng.choice(CITIES),
            "category": rng.choice(CATEGORIES),
            "quantity": rng.randint(1, 10),
            "amount": round(rng.uniform(1, 500), 2),
        }
