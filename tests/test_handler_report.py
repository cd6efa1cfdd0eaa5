"""The report_generation task: artifacts on disk, well-formed HTML, queue and records reports."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from taskd.config import Settings
from taskd.errors import Fail, ValidationError
from taskd.handlers.artifacts import artifact_path, content_type, list_artifacts
from taskd.handlers.report_generation import percentile
from taskd.model import Status, make_spec, new_task_id
from taskd.store import Store
from tests.handlertools import call, check_html, finished, running_pool, settings_at

SNAKE = re.compile(r"[a-z0-9]+(_[a-z0-9]+)*")
SALES = [
    {"region": "North", "product": "<script>alert(1)</script>", "revenue": 120.5, "units": 3},
    {"region": "South", "product": "Lamp", "revenue": 80, "units": 2},
    {"region": "North", "product": "Desk & Chair", "revenue": 300, "units": 1},
]


def artifact_files(settings: Settings, task_id: str, result: dict[str, Any]) -> dict[str, bytes]:
    """Each listed artifact's bytes, checking that size and content type match the listing."""
    files = {}
    for item in result["artifacts"]:
        path = artifact_path(settings, task_id, item["name"])
        data = path.read_bytes()
        assert item["size"] == len(data)
        assert item["content_type"] == content_type(item["name"])
        files[item["name"]] = data
    return files


async def test_records_report_artifacts(tmp_path: Path) -> None:
    """A records report stores HTML, CSV and JSON artifacts; the HTML is well-formed."""
    settings = settings_at(tmp_path)
    payload = {
        "records": SALES,
        "title": "Q3 sales",
        "chart": {"label": "region", "value": "revenue"},
    }
    result, ctx, progress = await call("report_generation", payload, settings)
    assert [a["name"] for a in result["artifacts"]] == ["report.html", "report.csv", "report.json"]
    assert list_artifacts(settings, ctx.task_id) == sorted(
        result["artifacts"], key=lambda a: a["name"]
    )
    files = artifact_files(settings, ctx.task_id, result)
    html = files["report.html"].decode()
    parser = check_html(html)
    assert {"html", "head", "body", "table", "svg", "rect"} <= set(parser.seen)
    assert "script" not in parser.seen
    assert "&lt;script&gt;" in html
    assert "<title>Q3 sales</title>" in html
    rows = list(csv.reader(io.StringIO(files["report.csv"].decode())))
    assert rows[0] == ["region", "product", "revenue", "units"]
    assert len(rows) == 4
    data = json.loads(files["report.json"])
    assert data["chart"] == {"North": 420.5, "South": 80.0}
    assert data["columns"]["revenue"]["sum"] == 500.5
    assert result["summary"]["records"] == 3
    assert progress.percents[-1] == 100


async def test_summary_numbers_are_rounded_and_keys_snake_case(tmp_path: Path) -> None:
    """Sums print without binary noise (0.1 + 0.2 is 0.3, 450.8 not 450.80000000000007)
    in the result, the JSON and the HTML, and summary keys are snake_case."""
    records = [{"item": "c", "amount": a} for a in (150.1, 150.3, 150.4)]  # 450.79999999999995
    result, ctx, _ = await call("report_generation", {"records": records}, settings_at(tmp_path))
    summary = result["summary"]
    assert all(SNAKE.fullmatch(key) for key in summary), summary
    assert summary["sum_amount"] == 450.8
    files = artifact_files(settings_at(tmp_path), ctx.task_id, result)
    data = json.loads(files["report.json"])
    assert data["columns"]["amount"]["sum"] == 450.8
    assert "0000000" not in files["report.json"].decode()


def test_duration_percentiles_are_rounded() -> None:
    """Interpolated duration percentiles (the queue report's p50_ms/p95_ms/p99_ms) carry
    no binary noise: 3691.6, not 3691.5999999999995."""
    assert percentile([0, 7, 4101], 95) == 3691.6
    assert percentile([0, 7, 14, 4101], 95) == 3487.95
    assert percentile([5], 99) == 5


async def test_formats_choose_the_artifacts(tmp_path: Path) -> None:
    """Only the asked formats are written."""
    settings = settings_at(tmp_path)
    result, ctx, _ = await call(
        "report_generation", {"records": SALES, "formats": ["csv"]}, settings
    )
    assert [a["name"] for a in result["artifacts"]] == ["report.csv"]
    assert [a["name"] for a in list_artifacts(settings, ctx.task_id)] == ["report.csv"]


async def test_queue_report_needs_the_store() -> None:
    """Without a store (outside a pool) a queue report fails clearly."""
    with pytest.raises(Fail, match="store"):
        await call("report_generation", {"period_s": 60})


async def test_queue_report_through_the_pool(store: Store, queue: str, tmp_path: Path) -> None:
    """In a real pool, a queue report counts the queue's tasks, failures and durations."""
    settings = settings_at(tmp_path)
    specs = [make_spec("data_processing", {"records": 50}, queue=queue) for _ in range(3)]
    specs.append(
        make_spec(
            "file_conversion",
            {"source": "missing.csv", "target": "x.json"},
            queue=queue,
            max_retries=0,
        )
    )
    async with running_pool(store, queue, settings):
        submitted = await store.submit(specs)
        for task, _ in submitted:
            await finished(store, task.id)
        ((report, _),) = await store.submit(
            [
                make_spec(
                    "report_generation",
                    {"queue": queue, "period_s": 600, "title": "Ops"},
                    queue=queue,
                )
            ]
        )
        done = await finished(store, report.id)
    assert done.status == Status.COMPLETED, done.error
    files = artifact_files(settings, done.id, done.result)
    check_html(files["report.html"].decode())
    data = json.loads(files["report.json"])
    assert data["kind"] == "queue"
    assert data["by_status"]["completed"] == 3
    assert data["by_status"]["failed"] == 1
    assert data["by_type"]["data_processing"]["total"] == 3
    assert data["durations_ms"]["p50"] is not None
    assert "not a file" in data["failures"][0]["error"]
    assert sum(bucket["completed"] for bucket in data["throughput"]) == 3
    rows = list(csv.DictReader(io.StringIO(files["report.csv"].decode())))
    statuses = {r["id"]: r["status"] for r in rows}
    assert statuses.pop(report.id) == "processing"  # the report sees itself running
    assert sorted(statuses.values()) == ["completed"] * 3 + ["failed"]
    assert done.result["summary"]["tasks"] == 5
    assert all(SNAKE.fullmatch(key) for key in done.result["summary"]), done.result["summary"]
    assert "completed_per_minute" in done.result["summary"]


@pytest.mark.parametrize(
    ("task_id", "name"),
    [
        ("0" * 32, "../secret"),
        ("0" * 32, "a/b.html"),
        ("0" * 32, ".hidden"),
        ("0" * 32, ""),
        ("../../etc", "passwd"),
        ("not-a-task-id", "report.html"),
    ],
)
def test_artifact_path_refuses_anything_but_plain_names(
    tmp_path: Path, task_id: str, name: str
) -> None:
    """The download helper only accepts a task id and a plain file name."""
    with pytest.raises(ValidationError):
        artifact_path(settings_at(tmp_path), task_id, name)


def test_artifact_path_refuses_symlinks_out_of_the_folder(tmp_path: Path) -> None:
    """An artifact that is a symlink pointing elsewhere is refused."""
    settings = settings_at(tmp_path)
    task_id = new_task_id()
    folder = tmp_path / "artifacts" / task_id
    folder.mkdir(parents=True)
    (folder / "report.html").symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(ValidationError):
        artifact_path(settings, task_id, "report.html")
    assert artifact_path(settings, task_id, "report.csv") == folder / "report.csv"
