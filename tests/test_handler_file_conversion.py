"""The file_conversion task: format round trips, gzip, encodings, and the sandbox."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from taskd.config import Settings
from taskd.engine.registry import Registry
from taskd.errors import Fail, ValidationError
from taskd.handlers import records
from tests.conftest import eventually
from tests.handlertools import BUILTINS, call, context_for, settings_at

CSV = (
    "id,name,city,amount\r\n"
    "1,Ada,Oslo,12.5\r\n"
    '2,"Lovelace, Ada",Zürich,40\r\n'
    '3,"He said ""hi""",,7\r\n'
)


@pytest.fixture
def sandbox(tmp_path: Path) -> Settings:
    """Settings whose files root exists and holds orders.csv."""
    settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    (settings.files_root / "orders.csv").write_bytes(CSV.encode())
    return settings


async def convert(settings: Settings, **payload: Any) -> dict[str, Any]:
    """Run one conversion and return its result."""
    result, _, _ = await call("file_conversion", payload, settings)
    assert isinstance(result, dict)
    return result


async def test_csv_json_jsonl_tsv_csv_round_trip(sandbox: Settings) -> None:
    """CSV -> JSON -> JSONL -> TSV -> CSV gives back the original bytes."""
    root = sandbox.files_root
    steps = [
        ("orders.csv", "out/orders.json"),
        ("out/orders.json", "out/orders.jsonl"),
        ("out/orders.jsonl", "out/orders.tsv"),
        ("out/orders.tsv", "out/again.csv"),
    ]
    for source, target in steps:
        result = await convert(sandbox, source=source, target=target)
        assert result["rows"] == 3
        assert result["target"] == target
        assert result["size"] == (root / target).stat().st_size
    assert json.loads((root / "out/orders.json").read_text())[1] == {
        "id": "2",
        "name": "Lovelace, Ada",
        "city": "Zürich",
        "amount": "40",
    }
    assert (root / "out/orders.tsv").read_text().splitlines()[0] == "id\tname\tcity\tamount"
    assert (root / "out/again.csv").read_bytes() == CSV.encode()
    assert sorted(p.name for p in (root / "out").iterdir()) == [
        "again.csv",
        "orders.json",
        "orders.jsonl",
        "orders.tsv",
    ]


async def test_infer_types_makes_numbers_and_nulls(sandbox: Settings) -> None:
    """infer_types turns CSV strings into numbers and empty cells into null."""
    await convert(sandbox, source="orders.csv", target="typed.jsonl", infer_types=True)
    lines = (sandbox.files_root / "typed.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"id": 1, "name": "Ada", "city": "Oslo", "amount": 12.5}
    assert json.loads(lines[2])["city"] is None


async def test_json_to_csv_header_is_the_union_of_fields(sandbox: Settings) -> None:
    """Records with different fields become one CSV whose header lists them all."""
    data = [{"a": 1}, {"b": {"nested": True}}, {"a": 2, "c": [1, 2]}]
    (sandbox.files_root / "mixed.json").write_text(json.dumps(data))
    result = await convert(sandbox, source="mixed.json", target="mixed.csv")
    assert result["rows"] == 3
    assert (sandbox.files_root / "mixed.csv").read_bytes().decode() == (
        'a,b,c\r\n1,,\r\n,"{""nested"":true}",\r\n2,,"[1,2]"\r\n'
    )


async def test_gzip_compress_and_decompress(sandbox: Settings) -> None:
    """csv -> csv.gz compresses the same bytes; csv.gz -> json decompresses and converts."""
    packed = await convert(sandbox, source="orders.csv", target="orders.csv.gz")
    assert packed["mode"] == "copy"
    assert packed["rows"] is None
    assert gzip.decompress((sandbox.files_root / "orders.csv.gz").read_bytes()) == CSV.encode()
    result = await convert(sandbox, source="orders.csv.gz", target="orders.json")
    assert result["rows"] == 3
    unpacked = await convert(sandbox, source="orders.csv.gz", target="plain.csv")
    assert (sandbox.files_root / "plain.csv").read_bytes() == CSV.encode()
    assert unpacked["to"] == "csv"


async def test_text_encoding_conversion(sandbox: Settings) -> None:
    """Latin-1 text becomes UTF-8 (and a cp1252 CSV becomes UTF-8 JSON)."""
    root = sandbox.files_root
    (root / "old.txt").write_bytes("Crème brûlée – 5 €\n".encode("cp1252"))
    result = await convert(sandbox, source="old.txt", target="new.txt", encoding="cp1252")
    assert result["mode"] == "transcode"
    assert (root / "new.txt").read_text(encoding="utf-8") == "Crème brûlée – 5 €\n"
    (root / "menu.csv").write_bytes("dish,price\nCrème,5 €\n".encode("cp1252"))
    await convert(sandbox, source="menu.csv", target="menu.json", encoding="cp1252")
    assert json.loads((root / "menu.json").read_text()) == [{"dish": "Crème", "price": "5 €"}]


async def test_undecodable_text_fails_and_leaves_no_partial_file(sandbox: Settings) -> None:
    """Bytes that are not UTF-8 fail the task; neither the target nor a temp file remains."""
    (sandbox.files_root / "bin.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(Fail, match="encoding"):
        await convert(sandbox, source="bin.csv", target="bin.json")
    assert sorted(p.name for p in sandbox.files_root.iterdir()) == ["bin.csv", "orders.csv"]


def test_json_arrays_are_streamed_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming JSON reader gives json.loads' answer even with 5-character chunks."""
    monkeypatch.setattr(records, "CHUNK_CHARS", 5)
    data = [
        {"n": 1234567890, "f": -1.5e10, "s": 'a, "b" ] ü'},
        {},
        {"x": [1, {"y": None}]},
        {"t": True},
    ]
    text = json.dumps(data, indent=1)
    assert list(records.read_records(io.StringIO(text), "json")) == data
    assert list(records.read_records(io.StringIO(" [ ] "), "json")) == []
    with pytest.raises(records.RecordError, match="after the JSON array"):
        list(records.read_records(io.StringIO("[] []"), "json"))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"source": "../etc/passwd.csv", "target": "x.json"}, "payload.source"),
        ({"source": "/etc/passwd.csv", "target": "x.json"}, "payload.source"),
        ({"source": "a.csv", "target": "out/../../x.json"}, "payload.target"),
        ({"source": "a.csv", "target": "~/x.json"}, "payload.target"),
        ({"source": "a.csv", "target": "./a.csv"}, "payload.target"),
    ],
)
def test_traversal_is_refused_at_submit(payload: dict[str, Any], field: str) -> None:
    """'..', absolute and home paths never reach the queue."""
    with pytest.raises(ValidationError) as info:
        Registry.from_modules([]).check_payload("file_conversion", payload)
    assert info.value.field == field


async def test_symlinks_out_of_the_root_are_refused(sandbox: Settings, tmp_path: Path) -> None:
    """A symlinked file or directory leading outside the files root is refused at run time."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n1\n")
    (sandbox.files_root / "secret.csv").symlink_to(outside / "secret.csv")
    (sandbox.files_root / "escape").symlink_to(outside)
    with pytest.raises(Fail, match="outside the files root"):
        await convert(sandbox, source="secret.csv", target="copy.json")
    with pytest.raises(Fail, match="outside the files root"):
        await convert(sandbox, source="orders.csv", target="escape/stolen.json")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]


async def test_runtime_checks_repeat_the_submit_checks(sandbox: Settings) -> None:
    """A payload that skipped submit validation (e.g. via Redis directly) still fails."""
    with pytest.raises(Fail, match=r"payload\.source.*'\.\.'"):
        await convert(sandbox, source="../x.csv", target="x.json")


async def test_cancelled_conversion_stops_and_leaves_no_partial_file(sandbox: Settings) -> None:
    """Cancelling the task stops the worker thread at its next chunk and removes the temp file."""
    root = sandbox.files_root
    with (root / "big.csv").open("w") as f:
        f.write("id,value\n")
        f.writelines(f"{i},{i * 3}\n" for i in range(300_000))
    payload = {"source": "big.csv", "target": "big.jsonl"}
    found = BUILTINS.get("file_conversion")
    assert found is not None
    ctx, progress = context_for("file_conversion", payload, sandbox)
    job = asyncio.create_task(found.func(ctx, payload))
    await eventually(lambda: asyncio.sleep(0, result=bool(progress.updates)))
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await eventually(lambda: asyncio.sleep(0, result=not list(root.glob(".*.part"))))
    assert sorted(p.name for p in root.iterdir()) == ["big.csv", "orders.csv"]


async def test_missing_files_root_is_named_and_said_to_be_missing(tmp_path: Path) -> None:
    """With no files root on disk, the failure names the root's path and says it is missing."""
    settings = settings_at(tmp_path)
    with pytest.raises(Fail) as info:
        await convert(settings, source="orders.csv", target="orders.json")
    message = str(info.value)
    assert str(settings.files_root) in message
    assert "does not exist" in message
    assert "TASKD_FILES_ROOT" in message


async def test_missing_source_names_the_files_root(sandbox: Settings) -> None:
    """A source that is not in the (existing) files root is refused naming that root."""
    with pytest.raises(Fail) as info:
        await convert(sandbox, source="nosuch.csv", target="nosuch.json")
    assert f"'nosuch.csv' is not a file in the files root {sandbox.files_root}" in str(info.value)
