"""The dashboard's workflows in a real Chromium against a real `taskd serve`: the list,
the DAG drawn live with each node's status, click-through to a task, and cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.dashboard_support import (
    MARKS,
    Api,
    Watched,
    expect,
    fresh_db,
    open_page,
    start_daemon,
)
from tests.procs import DaemonProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = MARKS
DB = 11


@pytest.fixture(scope="module")
async def daemon(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DaemonProcess]:
    """One daemon on an empty database of its own, for the module."""
    url = await fresh_db(redis_url, DB)
    d = await start_daemon(tmp_path_factory.mktemp("dash-wf"), url)
    yield d
    d.close()


@pytest.fixture
async def api(daemon: DaemonProcess) -> AsyncIterator[Api]:
    """REST access to the daemon."""
    client = Api(daemon.url)
    yield client
    await client.close()


@pytest.fixture
async def live(browser: Browser, daemon: DaemonProcess) -> AsyncIterator[Watched]:
    """The dashboard, loaded and live; uncaught page errors fail the test."""
    watched = await open_page(browser, daemon.url)
    await expect(watched.page.locator("#conn-text")).to_have_text("Live")
    yield watched
    await watched.context.close()
    assert watched.page_errors == []


async def submit(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/workflows; returns the workflow."""
    async with api.session.post("/api/workflows", json=body) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def test_workflow_graph_draws_and_updates_live(live: Watched, api: Api) -> None:
    """A diamond's graph draws every node and edge, the join turns from waiting to
    completed without a reload, the list shows it, and a node opens that task's
    detail."""
    page = live.page
    wf = await submit(
        api,
        {
            "name": "diamond in the browser",
            "tasks": [
                {"key": "top", "task_type": "steps", "payload": {"steps": 4, "delay_s": 1.0}},
                {"key": "left", "task_type": "quick", "depends_on": ["top"]},
                {"key": "right", "task_type": "quick", "depends_on": ["top"]},
                {"key": "join", "task_type": "quick", "depends_on": ["left", "right"]},
            ],
        },
    )
    await page.goto(f"/#/workflows/{wf['id']}")
    graph = page.locator("#wf-graph svg")
    await expect(graph.locator(".node")).to_have_count(4)
    join = graph.locator('.node[data-key="join"]')
    await expect(join).to_have_attribute("data-status", "waiting")
    await expect(graph.locator(".edge")).to_have_count(4)
    await expect(join).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(page.locator("#wf-status")).to_have_text("completed")
    assert await graph.locator(".edge.crit").count() >= 2
    await expect(page.locator("#workflows")).to_contain_text("diamond in the browser")
    await join.click()
    await expect(page.locator("#detail-title")).to_have_text("quick")
    assert page.url.endswith(f"#/tasks/{wf['tasks']['join']['id']}")


async def test_cancel_from_the_workflow_view(live: Watched, api: Api) -> None:
    """The cancel button ends a running workflow: its nodes turn cancelled."""
    page = live.page
    wf = await submit(
        api,
        {
            "name": "to cancel",
            "tasks": [
                {"key": "long", "task_type": "wait", "payload": {"s": 120}},
                {"key": "after", "task_type": "quick", "depends_on": ["long"]},
            ],
        },
    )
    await page.goto(f"/#/workflows/{wf['id']}")
    after = page.locator('#wf-graph .node[data-key="after"]')
    await expect(after).to_have_attribute("data-status", "waiting")
    await page.locator("#wf-cancel").click()
    await page.locator("#confirm-ok").click()
    await expect(after).to_have_attribute("data-status", "cancelled")
    await expect(page.locator("#wf-status")).to_have_text("cancelled")


async def test_retry_a_failed_node_from_the_workflow_view(live: Watched, api: Api) -> None:
    """A failed node opens its task beside the graph; Retry there queues it again and the
    graph follows live: the node completes, the dependent its failure cancelled is
    re-armed and completes, and the workflow turns from failed to completed."""
    page = live.page
    wf = await submit(
        api,
        {
            "name": "to retry",
            "tasks": [
                {"key": "flaky", "task_type": "fail_once", "max_retries": 0},
                {"key": "after", "task_type": "quick", "depends_on": ["flaky"]},
            ],
        },
    )
    await page.goto(f"/#/workflows/{wf['id']}")
    flaky = page.locator('#wf-graph .node[data-key="flaky"]')
    after = page.locator('#wf-graph .node[data-key="after"]')
    await expect(flaky).to_have_attribute("data-status", "failed", timeout=20_000)
    await expect(after).to_have_attribute("data-status", "cancelled")
    await expect(page.locator("#wf-status")).to_have_text("failed")
    await flaky.click()
    await expect(page.locator("#detail-title")).to_have_text("fail_once")
    await expect(page.locator("#wf-view")).to_be_visible()
    retry = page.locator("#act-retry")
    await expect(retry).to_be_enabled()
    await retry.click()
    await expect(after).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(flaky).to_have_attribute("data-status", "completed")
    await expect(page.locator("#wf-status")).to_have_text("completed")


async def test_retry_failed_button_retries_the_workflow(live: Watched, api: Api) -> None:
    """'Retry failed' in the workflow view queues every failed task again: the failed
    workflow runs on to completed."""
    page = live.page
    wf = await submit(
        api,
        {
            "name": "retry all",
            "tasks": [
                *({"key": f"f{i}", "task_type": "fail_once", "max_retries": 0} for i in range(3)),
                {"key": "join", "task_type": "quick", "depends_on": ["f0", "f1", "f2"]},
            ],
        },
    )
    await page.goto(f"/#/workflows/{wf['id']}")
    await expect(page.locator("#wf-status")).to_have_text("failed", timeout=20_000)
    await expect(page.locator('#wf-graph .node[data-status="failed"]')).to_have_count(3)
    await page.locator("#wf-retry").click()
    await expect(page.locator("#wf-status")).to_have_text("completed", timeout=20_000)
    await expect(page.locator('#wf-graph .node[data-status="completed"]')).to_have_count(4)
    await expect(page.locator("#wf-retry")).to_be_hidden()
