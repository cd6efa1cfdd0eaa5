"""The dashboard in a real Chromium against a real `taskd serve`: live updates, the submit
form, task actions, filters and the shareable detail URL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.dashboard_support import (
    MARKS,
    Api,
    Watched,
    expect,
    fresh_db,
    launch,
    open_page,
    start_daemon,
)
from tests.procs import DaemonProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

pytestmark = MARKS
DB = 9


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless chromium for the module."""
    async for b in launch():
        yield b


@pytest.fixture(scope="module")
async def daemon(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DaemonProcess]:
    """One daemon on an empty database of its own, for the module."""
    url = await fresh_db(redis_url, DB)
    d = await start_daemon(tmp_path_factory.mktemp("dash"), url)
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


def row(page: Page, task_id: str) -> Locator:
    """The table row of a task."""
    return page.locator(f'#task-rows tr[data-id="{task_id}"]')


async def test_page_loads_live_without_console_errors(
    browser: Browser, daemon: DaemonProcess
) -> None:
    """The page loads under its CSP, goes live and logs no error at all."""
    watched = await open_page(browser, daemon.url)
    page = watched.page
    await expect(page.locator("#conn-text")).to_have_text("Live")
    await expect(page.locator("#card-total")).to_have_text(re.compile(r"^\d"))
    await expect(page.locator("#redis dd").first).not_to_have_text("Loading…")
    await expect(page.locator("#workers li").first).to_contain_text("slots")
    await page.locator("#open-submit").click()
    await expect(page.locator("#s-payload")).not_to_be_empty()
    await page.keyboard.press("Escape")
    await expect(page.locator("#submit-dialog")).not_to_be_visible()
    assert watched.console_errors == []
    assert watched.page_errors == []
    await watched.context.close()


async def test_task_from_the_api_appears_and_completes_with_progress(
    live: Watched, api: Api
) -> None:
    """A task submitted over REST shows up, its bar moves, and it ends completed: no reload."""
    page = live.page
    task = await api.submit("steps", name="live progress", payload={"steps": 5, "delay_s": 0.6})
    line = row(page, task["id"])
    await expect(line).to_be_visible()
    await expect(line.locator(".task-link")).to_have_text("live progress")
    await expect(line.locator(".pct")).to_have_text(re.compile(r"^(20|40|60|80)%$"))
    await expect(line.locator(".msg")).to_have_text(re.compile(r"^step \d of 5$"))
    await expect(line.locator(".c-status .badge")).to_have_text("completed")
    await expect(line.locator(".pct")).to_have_text("100%")
    assert await line.locator("progress").evaluate("p => p.value") == 100


async def test_submit_form_creates_a_task_and_shows_api_errors_by_the_field(live: Watched) -> None:
    """The form submits a valid task, and shows the API's 422 message under the payload."""
    page = live.page
    await page.locator("#open-submit").click()
    await page.locator("#s-task_type").select_option("steps")
    await expect(page.locator("#s-payload")).to_have_value(re.compile('"steps": 4'))
    await page.locator("#s-name").fill("from the form")
    await page.locator("#s-submit").click()
    await expect(page.locator("#submit-dialog")).not_to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text("from the form")
    task_id = page.url.rsplit("/", 1)[1]
    await expect(row(page, task_id)).to_be_visible()

    await page.locator("#detail-close").click()
    await page.locator("#open-submit").click()
    await page.locator("#s-task_type").select_option("email")
    await page.locator("#s-payload").fill('{"subject": "no recipient"}')
    await page.locator("#s-submit").click()
    error = page.locator("#s-error-payload")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("payload.recipient")
    await expect(page.locator("#s-payload")).to_have_attribute("aria-invalid", "true")
    await page.locator("#s-payload").fill("{not json")
    await page.locator("#s-submit").click()
    await expect(error).to_contain_text("Not valid JSON")
    await expect(page.locator("#submit-dialog")).to_be_visible()


async def test_cancel_and_retry_buttons_change_the_state(live: Watched, api: Api) -> None:
    """Cancel stops a running task; retry sends it back to run again."""
    page = live.page
    task = await api.submit("wait", name="to cancel", payload={"s": 120})
    await page.goto(f"/#/tasks/{task['id']}")
    status = page.locator("#detail-status")
    await expect(status).to_have_text("processing")
    await expect(page.locator("#detail-lease")).to_contain_text("Deliveries")
    await page.locator("#act-cancel").click()
    await expect(status).to_have_text("cancelled")
    await expect(row(page, task["id"]).locator(".c-status .badge")).to_have_text("cancelled")
    await expect(page.locator("#act-retry")).to_be_enabled()
    await page.locator("#act-retry").click()
    await expect(status).to_have_text(re.compile("^(pending|processing)$"))
    await expect(page.locator("#detail-timeline")).to_contain_text("retried")
    await page.locator("#act-cancel").click()
    await expect(status).to_have_text("cancelled")


async def test_filtering_by_status_shows_only_that_status(live: Watched, api: Api) -> None:
    """Choosing "failed" lists the failed task and none of another status."""
    page = live.page
    failed = await api.submit("boom", name="will fail", payload={"reason": "for the filter"})
    done = await api.submit("quick", name="will complete")
    await expect(row(page, failed["id"]).locator(".c-status .badge")).to_have_text("failed")
    await expect(row(page, done["id"]).locator(".c-status .badge")).to_have_text("completed")
    await page.locator("#f-status").select_option("failed")
    await expect(row(page, done["id"])).to_have_count(0)
    await expect(row(page, failed["id"])).to_be_visible()
    badges = await page.locator("#task-rows .c-status .badge").all_text_contents()
    assert badges
    assert set(badges) == {"failed"}
    await expect(page.locator('#cards button[data-status="failed"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await page.locator("#f-q").fill("will comp")
    await expect(page.locator("#tasks-empty")).to_be_visible()
    await page.locator("#f-status").select_option("")
    await expect(row(page, done["id"])).to_be_visible()
    await expect(page.locator("#task-rows tr")).to_have_count(1)


async def test_detail_url_opens_the_panel_directly(
    browser: Browser, daemon: DaemonProcess, api: Api
) -> None:
    """A shared #/tasks/<id> link opens that task's details on load."""
    task = await api.submit("boom", name="shared link", payload={"reason": "look here"})
    watched = await open_page(browser, daemon.url, f"/#/tasks/{task['id']}")
    page = watched.page
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text("shared link")
    await expect(page.locator("#detail-id")).to_have_text(task["id"])
    await expect(page.locator("#detail-payload")).to_contain_text('"reason": "look here"')
    await expect(page.locator("#detail-error")).to_contain_text("boom: look here")
    await expect(page.locator("#detail-timeline")).to_contain_text("failed")
    await page.keyboard.press("Escape")
    await expect(page.locator("#detail")).to_be_hidden()
    assert watched.page_errors == []
    await watched.context.close()


async def test_bulk_retry_confirms_the_count_before_running(live: Watched, api: Api) -> None:
    """The bulk dialog counts the failed tasks of a type first, then retries them."""
    page = live.page
    for i in range(3):
        await api.submit("boom", name=f"bulk {i}", payload={"reason": "bulk"})
    await expect(page.locator("#card-failed")).not_to_have_text("0")
    await page.locator("#open-bulk").click()
    await page.locator("#b-type").select_option("boom")
    summary = page.locator("#b-summary")
    await expect(summary).to_have_text(re.compile(r"This will retry \d+ failed boom tasks"))
    expected = int(re.findall(r"\d+", await summary.text_content() or "")[0])
    assert expected >= 3
    await page.locator("#b-go").click()
    await expect(page.locator("#bulk-dialog")).not_to_be_visible()
    await expect(page.locator("#toasts")).to_contain_text(f"{expected} tasks retried")


async def test_queue_panel_pauses_resumes_and_purges(live: Watched, api: Api) -> None:
    """Pause and resume flip a queue's state; purge says how many tasks it cancels first."""
    page = live.page
    for n in range(3):
        await api.submit("quick", name=f"parked {n}", queue="parked")
    parked = page.locator('#queues li[data-queue="parked"]')
    await expect(parked).to_contain_text("3 waiting")
    await parked.get_by_role("button", name="Purge queue parked").click()
    await expect(page.locator("#confirm-message")).to_contain_text("3 waiting tasks")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#toasts")).to_contain_text("Purged 3 tasks from parked")
    await expect(parked).to_contain_text("0 waiting")

    default = page.locator('#queues li[data-queue="default"]')
    try:
        await default.get_by_role("button", name="Pause queue default").click()
        await expect(default.locator(".badge")).to_have_text("paused")
        assert (await api.get("/api/queues/default"))["paused"] is True
        await default.get_by_role("button", name="Resume queue default").click()
        await expect(default.locator(".badge")).to_have_text("running")
        assert (await api.get("/api/queues/default"))["paused"] is False
    finally:
        await api.session.post("/api/queues/default/resume")


async def test_keyboard_alone_reaches_a_task_and_its_details(live: Watched, api: Api) -> None:
    """Tab reaches the task links, Enter opens the details, Escape closes them and gives
    the focus back to the row."""
    page = live.page
    task = await api.submit("quick", name="by keyboard")
    await expect(row(page, task["id"])).to_be_visible()
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.classList.contains('task-link')"):
            break
    focused = await page.evaluate("document.activeElement.closest('tr').dataset.id")
    assert focused
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-id")).to_have_text(focused)
    await page.keyboard.press("Escape")
    await expect(page.locator("#detail")).to_be_hidden()
    assert await page.evaluate("document.activeElement.closest('tr')?.dataset.id") == focused
