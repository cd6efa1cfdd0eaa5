"""The Python examples of the docs build what they claim: a reader who copies one gets
a workflow the API accepts, not a 422."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import taskd
from taskd.workflow import make_workflow

DOCS = Path(__file__).resolve().parent.parent / "docs"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks(page: str) -> list[str]:
    return PYTHON_BLOCK.findall((DOCS / page).read_text())


def _built(source: str) -> dict[str, Any]:
    """Run an example's lines up to its first use of a client; its names, after."""
    lines = []
    for line in source.splitlines():
        if "client" in line:
            break
        lines.append(line)
    names: dict[str, Any] = {"taskd": taskd}  # (a fragment may leave out its import)
    exec("\n".join(lines), names)  # noqa: S102 - our own docs, the point of the test
    return names


@pytest.mark.parametrize("index", [0, 1])
def test_workflow_examples_pass_validation(index: int) -> None:
    """The chain/chord example and the Workflow example of docs/workflows.md are
    accepted by the workflow validator (the chord's callback used $result of a task
    that is not its own dependency, and of a key no step had: a 422)."""
    names = _built(_blocks("workflows.md")[index])
    shape = names.get("flow") or names["wf"]
    body = shape.body("example") if isinstance(shape, taskd.Workflow) else shape.body()
    spec = make_workflow(body)
    assert len(spec.tasks) == len(body["tasks"])
