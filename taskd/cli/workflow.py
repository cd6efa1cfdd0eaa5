"""``taskd workflow submit|get|list|cancel``: workflows from the command line (over the
HTTP API, like the task commands)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import orjson

from taskd.cli import commands
from taskd.model import TASK_ID


def _workflow_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not TASK_ID.fullmatch(value):
        raise click.BadParameter("a workflow id is 32 hex digits")
    return value


def _read_body(path: str) -> Any:
    """The JSON of FILE ('-' = standard input); a bad file is a usage error."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return orjson.loads(raw)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{path} is not JSON: {exc}") from None


def summary(view: Mapping[str, Any]) -> str:
    """One workflow in one line: id, status, name and its non-zero counts."""
    counts = " ".join(f"{k}={v}" for k, v in view.get("counts", {}).items() if v and k != "total")
    return f"{view['id']}  {view['status']}  {view['name']}  {counts}".rstrip()


def detail(view: Mapping[str, Any]) -> str:
    """A workflow and each of its tasks (key, status, dependencies, error)."""
    lines = [summary(view)]
    for key, task in view.get("tasks", {}).items():
        deps = ",".join(task.get("depends_on") or []) or "-"
        error = f"  error={task['error']}" if task.get("error") else ""
        lines.append(f"  {key:<20} {task['status']:<10} after={deps}  {task['id']}{error}")
    return "\n".join(lines)


def table(page: Mapping[str, Any]) -> str:
    """A page of workflows, one per line, and the cursor of the next."""
    lines = [summary(v) for v in page["workflows"]] or ["no workflows"]
    if page.get("next_cursor"):
        lines.append(f"next: --cursor {page['next_cursor']}")
    return "\n".join(lines)


@commands.main.group()
def workflow() -> None:
    """Submit, show, list and cancel workflows (DAGs of tasks)."""


@workflow.command("submit")
@click.argument("file")
@commands.client_options
def submit_workflow(url: str, as_json: bool, file: str) -> None:
    """Submit the workflow in FILE (JSON, '-' for standard input; the body of
    POST /api/workflows)."""
    body = _read_body(file)
    view = commands.call(url, lambda r: r.post("/api/workflows", body))
    commands.show(view, as_json, detail)


@workflow.command("get")
@click.argument("workflow_id", callback=_workflow_id)
@commands.client_options
def get_workflow(url: str, as_json: bool, workflow_id: str) -> None:
    """Show a workflow with each task's status."""
    view = commands.call(url, lambda r: r.get(f"/api/workflows/{workflow_id}"))
    commands.show(view, as_json, detail)


@workflow.command("list")
@click.option("--status", type=click.Choice(["running", "completed", "failed", "cancelled"]))
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@commands.client_options
def list_workflows(url: str, as_json: bool, **query: Any) -> None:
    """List workflows, newest first."""
    query = {k: v for k, v in query.items() if v is not None}
    page = commands.call(url, lambda r: r.get("/api/workflows", **query))
    commands.show(page, as_json, table)


@workflow.command("cancel")
@click.argument("workflow_id", callback=_workflow_id)
@commands.client_options
def cancel_workflow(url: str, as_json: bool, workflow_id: str) -> None:
    """Cancel every unfinished task of a workflow."""
    view = commands.call(url, lambda r: r.post(f"/api/workflows/{workflow_id}/cancel"))
    commands.show(view, as_json, lambda v: f"cancelled {summary(v)}")


__all__ = ["workflow"]
