"""The data_processing task: aggregates and filters over inline records and streamed files."""

from __future__ import annotations

import csv
import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from taskd.config import Settings
from taskd.errors import Fail
from tests.handlertools import call, settings_at

ORDERS = [
    {"city": "Oslo", "amount": 12.5, "status": "paid", "tags": ["new"]},
    {"city": "Paris", "amount": 40, "status": "paid", "tags": []},
    {"city": "Oslo", "amount": 7.5, "status": "refunded", "tags": ["vip"]},
    {"city": "Rome", "amount": "n/a", "status": "paid", "tags": ["vip", "new"]},
    {"city": "Paris", "amount": 20, "status": "paid", "customer": {"tier": "gold"}},
]


def results_of(result: dict[str, Any]) -> list[Any]:
    """The ``value`` (or ``groups``) of each operation's entry."""
    return [entry.get("value", entry.get("groups")) for entry in result["results"]]


async def test_sums_and_means_carry_no_binary_noise() -> None:
    """150.1 + 150.3 + 150.4 sums to 450.8 (not 450.79999999999995), per group too."""
    records = [{"k": "a", "amount": a} for a in (150.1, 150.3, 150.4)]
    payload = {
        "records": records,
        "operations": [
            {"op": "sum", "field": "amount"},
            {"op": "group_by", "field": "k", "aggregates": [{"op": "sum", "field": "amount"}]},
        ],
    }
    result, _, _ = await call("data_processing", payload)
    total, groups = results_of(result)
    assert total == 450.8
    assert "0000000" not in json.dumps(groups)
    assert "9999999" not in json.dumps(groups)


async def test_inline_records_every_operation() -> None:
    """count, sum, mean, min, max, distinct and group_by give one entry per operation."""
    payload = {
        "records": ORDERS,
        "operations": [
            {"op": "count"},
            {"op": "sum", "field": "amount"},
            {"op": "mean", "field": "amount"},
            {"op": "min", "field": "amount"},
            {"op": "max", "field": "amount"},
            {"op": "distinct", "field": "city"},
            {
                "op": "group_by",
                "field": "city",
                "aggregates": [{"op": "count"}, {"op": "sum", "field": "amount"}],
            },
            {"op": "count", "field": "customer.tier"},
        ],
    }
    result, _, progress = await call("data_processing", payload)
    assert result["source"] == "inline"
    assert result["records"] == result["matched"] == 5
    assert results_of(result) == [
        5,
        80.0,
        20.0,
        7.5,
        40,
        3,
        [
            {"key": "Oslo", "count": 2, "sum(amount)": 20.0},
            {"key": "Paris", "count": 2, "sum(amount)": 60},
            {"key": "Rome", "count": 1, "sum(amount)": 0},
        ],
        1,
    ]
    assert result["results"][1] == {
        "op": "sum",
        "field": "amount",
        "value": 80.0,
        "n": 4,
        "skipped": 1,
    }
    assert result["results"][5]["values"] == ["Oslo", "Paris", "Rome"]
    assert progress.percents[-1] == 100


async def test_filters_and_per_operation_where() -> None:
    """Top-level filters select records; ``where`` narrows a single operation."""
    payload = {
        "records": ORDERS,
        "filter": [
            {"field": "status", "op": "==", "value": "paid"},
            {"field": "city", "op": "in", "value": ["Oslo", "Paris"]},
        ],
        "operations": [
            {"op": "count"},
            {
                "op": "sum",
                "field": "amount",
                "where": [{"field": "amount", "op": ">=", "value": 20}],
            },
            {"op": "count", "where": [{"field": "tags", "op": "contains", "value": "new"}]},
            {"op": "count", "where": [{"field": "customer", "op": "exists", "value": False}]},
        ],
    }
    result, _, _ = await call("data_processing", payload)
    assert result["matched"] == 3
    assert results_of(result) == [3, 60, 1, 2]


async def test_seed_record_count_processes_generated_samples() -> None:
    """``{"records": 1000}`` aggregates 1000 generated orders with the default operations."""
    result, _, _ = await call("data_processing", {"records": 1000})
    assert result["source"] == "sample"
    assert result["records"] == 1000
    count, total, mean, low, high, by_city = result["results"]
    assert count["value"] == 1000
    assert mean["value"] == pytest.approx(total["value"] / 1000)
    assert 1 <= low["value"] <= high["value"] <= 500
    assert sum(group["count"] for group in by_city["groups"]) == 1000


def write_orders(path: Path, rows: int) -> tuple[float, dict[str, int]]:
    """A CSV of ``rows`` orders; returns the amount total and the count per city."""
    cities = ("Oslo", "Paris", "Rome", "Lisbon")
    total, per_city = 0.0, dict.fromkeys(cities, 0)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "city", "amount", "note"])
        for i in range(rows):
            city, amount = cities[i % 4], (i % 1000) / 4
            total += amount
            per_city[city] += 1
            writer.writerow([i, city, amount, "quoted, with comma" if i % 7 == 0 else ""])
    return total, per_city


async def test_200k_row_csv_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    """A 200,000-row CSV is aggregated exactly while peak memory stays far below its size."""
    settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    path = settings.files_root / "orders.csv"
    total, per_city = write_orders(path, 200_000)
    size = path.stat().st_size
    payload = {
        "source": "orders.csv",
        "operations": [
            {"op": "sum", "field": "amount"},
            {"op": "group_by", "field": "city", "aggregates": [{"op": "count"}]},
        ],
    }
    tracemalloc.start()
    try:
        result, _, progress = await call("data_processing", payload, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["records"] == 200_000
    assert result["source"] == "orders.csv"
    assert result["results"][0]["value"] == pytest.approx(total)
    assert {g["key"]: g["count"] for g in result["results"][1]["groups"]} == per_city
    assert size > 4_000_000
    assert peak < size / 8, (peak, size)
    assert progress.percents[-1] == 100


async def test_gzipped_jsonl_source(tmp_path: Path) -> None:
    """A .jsonl.gz file in the files root is read through gzip."""
    settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    with gzip.open(settings.files_root / "events.jsonl.gz", "wt") as f:
        for record in ORDERS:
            f.write(json.dumps(record) + "\n")
    payload = {"source": "events.jsonl.gz", "operations": [{"op": "max", "field": "amount"}]}
    result, _, _ = await call("data_processing", payload, settings)
    assert results_of(result) == [40]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("bad.csv", "a,b\n1,2\n3,4,5\n", "line 3 has more fields"),
        ("bad.jsonl", '{"a": 1}\n[1, 2]\n', "line 2 is not a JSON object"),
        ("bad.json", '[{"a": 1}, {"a": ', "invalid JSON"),
    ],
)
async def test_malformed_files_fail_with_the_place(
    tmp_path: Path, name: str, content: str, fragment: str
) -> None:
    """Broken input fails the task (no retry) with the line or item at fault."""
    settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    (settings.files_root / name).write_text(content)
    with pytest.raises(Fail, match=fragment):
        await call("data_processing", {"source": name}, settings)


async def test_source_must_stay_in_the_files_root(tmp_path: Path) -> None:
    """A source symlinked outside the sandbox is refused; a missing file fails clearly."""
    settings: Settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("a\n1\n")
    (settings.files_root / "link.csv").symlink_to(outside)
    with pytest.raises(Fail, match="outside the files root"):
        await call("data_processing", {"source": "link.csv"}, settings)
    with pytest.raises(Fail, match="not a file"):
        await call("data_processing", {"source": "nope.csv"}, settings)
