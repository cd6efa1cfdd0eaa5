"""Streaming record files: CSV, TSV, JSON (an array of objects), JSONL; optionally gzipped.

Everything here reads and writes incrementally, one record at a time, so a task over a
multi-gigabyte file holds one record and one buffer in memory. JSON arrays are streamed
with ``JSONDecoder.raw_decode`` over a sliding buffer, which the standard library allows
without a dependency like ijson.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

RECORD_FORMATS: Final = ("csv", "tsv", "json", "jsonl")
TEXT_FORMATS: Final = ("txt",)
ALIASES: Final = {"ndjson": "jsonl", "text": "txt", "tab": "tsv"}
CHUNK_CHARS = 1 << 16
MAX_JSON_ITEM_CHARS = 16 << 20
_NON_SPACE = re.compile(r"\S")


class RecordError(ValueError):
    """A record file is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class FileFormat:
    """What a path holds: ``kind`` (csv, tsv, json, jsonl, txt) and a gzip layer or not."""

    kind: str
    gzipped: bool

    @property
    def is_records(self) -> bool:
        """Whether the file holds records (rather than plain text)."""
        return self.kind in RECORD_FORMATS


def format_of(name: str, explicit: str | None = None) -> FileFormat | None:
    """The format from an explicit name (``"csv"``, ``"jsonl.gz"``) or the file's suffixes."""
    text = (explicit or name).lower()
    gzipped = text.endswith(".gz") or text == "gz"
    base = text.removesuffix(".gz") if text != "gz" else ""
    if explicit is None:
        base = base.rsplit(".", 1)[-1] if "." in base else ""
    kind = ALIASES.get(base, base)
    if kind in RECORD_FORMATS or kind in TEXT_FORMATS:
        return FileFormat(kind, gzipped)
    return None


@contextmanager
def open_read(path: Path, gzipped: bool) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """Yield (data stream, raw file): read data from the first, ``tell()`` progress on the
    second (compressed bytes consumed, comparable with the file size)."""
    with path.open("rb") as raw:
        if gzipped:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield cast("IO[bytes]", unzipped), raw  # GzipFile is a binary IO
        else:
            yield raw, raw


@contextmanager
def open_write(path: Path, gzipped: bool) -> Iterator[IO[bytes]]:
    """A binary stream writing ``path`` (through gzip when asked)."""
    with path.open("wb") as raw:
        if gzipped:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped:
                yield cast("IO[bytes]", zipped)
        else:
            yield raw


@contextmanager
def open_text(
    path: Path, gzipped: bool, encoding: str, errors: str = "strict"
) -> Iterator[tuple[IO[str], IO[bytes]]]:
    """Yield (text, raw file) like :func:`open_read`, decoded. Universal newlines are off,
    as the csv module requires."""
    with (
        open_read(path, gzipped) as (data, raw),
        io.TextIOWrapper(data, encoding=encoding, errors=errors, newline="") as text,
    ):
        yield text, raw


@contextmanager
def open_text_write(
    path: Path, gzipped: bool, encoding: str, errors: str = "strict"
) -> Iterator[IO[str]]:
    """A text stream writing ``path``; line ends are written as given (csv writes its own)."""
    with (
        open_write(path, gzipped) as data,
        io.TextIOWrapper(data, encoding=encoding, errors=errors, newline="") as text,
    ):
        yield text


def read_records(text: IO[str], kind: str) -> Iterator[dict[str, Any]]:
    """Records of a text stream in format ``kind``; RecordError names the bad line/item."""
    if kind in ("csv", "tsv"):
        yield from _read_delimited(text, "," if kind == "csv" else "\t")
    elif kind == "jsonl":
        yield from _read_jsonl(text)
    elif kind == "json":
        for i, item in enumerate(JsonArrayReader(text)):
            if not isinstance(item, dict):
                raise RecordError(f"item {i} of the JSON array is not an object")
            yield item
    else:
        raise RecordError(f"{kind} files do not hold records")


def _read_delimited(text: IO[str], delimiter: str) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(text, delimiter=delimiter, restkey="\x00extra")
    try:
        for row in reader:
            if "\x00extra" in row:
                raise RecordError(f"line {reader.line_num} has more fields than the header")
            yield row
    except csv.Error as exc:
        raise RecordError(f"line {reader.line_num}: {exc}") from None


def _read_jsonl(text: IO[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise RecordError(f"line {number} is not a JSON object")
        yield item


class JsonArrayReader:
    """Iterate the items of a top-level JSON array without loading the whole document."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        data = self._text.read(CHUNK_CHARS)
        if not data:
            self._eof = True
            return False
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def _peek(self) -> str:
        """The next non-space character ("" at the end), without consuming it."""
        while True:
            found = _NON_SPACE.search(self._buf, self._pos)
            if found:
                self._pos = found.start()
                return self._buf[self._pos]
            self._pos = len(self._buf)
            if not self._fill():
                return ""

    def _value(self) -> Any:
        self._peek()  # raw_decode does not skip leading whitespace
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._eof or not self._fill():
                    raise RecordError(f"invalid JSON: {exc.msg}") from None
                if len(self._buf) > MAX_JSON_ITEM_CHARS:
                    raise RecordError("a JSON array item is larger than 16 MiB") from None
                continue
            # A number at the buffer's end may continue in the next chunk ("12" of "123").
            if end == len(self._buf) and not self._eof and self._fill():
                continue
            self._pos = end
            return value

    def __iter__(self) -> Iterator[Any]:
        if self._peek() != "[":
            raise RecordError("a JSON file must hold one array of objects")
        self._pos += 1
        if self._peek() == "]":
            self._pos += 1
        else:
            while True:
                yield self._value()
                separator = self._peek()
                self._pos += 1
                if separator == "]":
                    break
                if separator != ",":
                    raise RecordError(f"expected ',' or ']' in the JSON array, got {separator!r}")
        if self._peek() != "":
            raise RecordError("unexpected data after the JSON array")


def cell(value: Any) -> str:
    """A value as a CSV cell: null empty, booleans lower-case, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


class RecordWriter:
    """Write records in one format to a text stream; CSV/TSV need the columns up front."""

    def __init__(self, text: IO[str], kind: str, columns: list[str] | None = None) -> None:
        self.kind = kind
        self.count = 0
        self._text = text
        self._csv: Any = None
        self._columns = columns or []
        if kind in ("csv", "tsv"):
            self._csv = csv.writer(
                text,
                delimiter="," if kind == "csv" else "\t",
                lineterminator="\r\n" if kind == "csv" else "\n",
            )
            self._csv.writerow(self._columns)
        elif kind == "json":
            text.write("[")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self._csv is not None:
            extra = record.keys() - set(self._columns)
            if extra:
                raise RecordError(
                    f"record {self.count + 1} has a field not in the header: {sorted(extra)[0]!r}"
                )
            self._csv.writerow([cell(record.get(c)) for c in self._columns])
        elif self.kind == "json":
            self._text.write(("\n" if self.count == 0 else ",\n") + _dumps(record))
        else:
            self._text.write(_dumps(record) + "\n")
        self.count += 1

    def close(self) -> None:
        """Finish the document (closes the JSON array)."""
        if self.kind == "json":
            self._text.write("\n]\n" if self.count else "]\n")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def infer(value: Any) -> Any:
    """A CSV string as the JSON value it spells: numbers, true/false, empty -> null."""
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    number = to_number(value)
    return value if number is None else number


def tidy(value: int | float | None) -> int | float | None:
    """A computed number as people read it: the noise of binary fractions rounded away.

    Sums of decimal values pick up error in the last bits (450.79999999999995 for
    150.1 + 150.3 + 150.4); 12 significant digits are more than the inputs carried.
    """
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def to_number(value: Any) -> int | float | None:
    """A number from a number or numeric string (as CSV gives them); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if not isinstance(value, str) or not value.strip() or "_" in value:
        return None  # Python's int() accepts "1_000"; a CSV cell like that is text
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
