"""The dashboard in a real Chromium against a real `taskd serve`: live updates, the submit
form, task actions, filters, the shareable detail URL, the throughput history's ranges,
failed rows, layout at desktop and phone widths, and the theme toggle."""

from __future__ import annotations

import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import eventually
from tests.dashboard_support import (
    MARKS,
    PHONE,
    Api,
    Watched,
    expect,
    fresh_db,
    open_page,
    start_daemon,
)
from tests.procs import DaemonProcess, free_port

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page, Route

pytestmark = MARKS
DB = 9


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


DB_HISTORY = 13
POINTS = {"5m": r"^5$", "1h": r"^60$", "24h": r"^14[45]$", "7d": r"^16[89]$"}
LABELS = {"5m": "5 min", "1h": "1 h", "24h": "24 h", "7d": "7 d"}


async def _completed_quick(api: Api, n: int) -> None:
    """Submit ``n`` quick tasks and wait until the server's history counts them."""
    before = await _history_completed(api)
    await api.batch([{"task_type": "quick", "name": f"hist {i}"} for i in range(n)])

    async def counted() -> bool:
        return await _history_completed(api) >= before + n

    await eventually(counted, timeout_s=20)


async def _history_completed(api: Api) -> int:
    body = await api.get("/api/tasks/stats/history?minutes=10")
    return sum(b["completed"] for b in body["buckets"])


async def test_throughput_chart_shows_server_history_in_each_range(live: Watched, api: Api) -> None:
    """Each range button loads that span from the server's history (bucket count, totals
    in the read-out), and a reload keeps the chosen range and shows the same past."""
    page = live.page
    await _completed_quick(api, 3)
    chart = page.locator("#throughput")
    for key, points in POINTS.items():
        await page.locator(f'#throughput-ranges button[data-range="{key}"]').click()
        await expect(page.locator(f'#throughput-ranges [data-range="{key}"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(chart).to_have_attribute("data-range", key)
        await expect(chart).to_have_attribute("data-points", re.compile(points))
        await expect(chart).not_to_have_attribute("data-completed", "0")
        await expect(page.locator("#throughput-now")).to_contain_text(f"Last {LABELS[key]}:")
    await page.reload()
    await expect(page.locator('#throughput-ranges [data-range="7d"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(chart).to_have_attribute("data-points", re.compile(POINTS["7d"]))
    await expect(chart).not_to_have_attribute("data-completed", "0")
    assert len(await chart.locator("path.line-completed").get_attribute("d") or "") > 100


async def test_throughput_history_survives_a_daemon_restart(
    browser: Browser, redis_url: str, tmp_path: Path
) -> None:
    """After the daemon restarts, the open page (on reconnect) and a fresh page both show
    the completions made before the restart."""
    url = await fresh_db(redis_url, DB_HISTORY)
    port = free_port()
    first = await start_daemon(tmp_path / "one", url, port=port)
    second: DaemonProcess | None = None
    watched = await open_page(browser, first.url)
    page = watched.page
    try:
        api = Api(first.url)
        await _completed_quick(api, 4)
        await api.close()
        chart = page.locator("#throughput")
        await expect(chart).to_have_attribute("data-completed", "4")
        first.kill(signal.SIGTERM)
        assert await first.wait() == 0
        await expect(page.locator("#conn-text")).to_have_text(re.compile("Reconnecting|Offline"))
        second = await start_daemon(tmp_path / "two", url, port=port)
        await expect(page.locator("#conn-text")).to_have_text("Live")
        await expect(chart).to_have_attribute("data-completed", "4")
        await page.reload()
        await expect(chart).to_have_attribute("data-completed", "4")
        assert watched.page_errors == []
    finally:
        await watched.context.close()
        first.close()
        if second is not None:
            second.close()


async def test_failed_rows_show_the_error_truncated_with_the_full_text_on_hover(
    live: Watched, api: Api
) -> None:
    """A failed row says why it failed (not its last progress message), cut short in the
    row, whole in its title and in the detail panel."""
    page = live.page
    reason = "disk full " + "x" * 400
    task = await api.submit("boom", name="fails loudly", payload={"reason": reason})
    line = row(page, task["id"])
    await expect(line.locator(".c-status .badge")).to_have_text("failed")
    msg = line.locator(".msg")
    await expect(msg).to_have_text(re.compile(r"^boom: disk full x+…$"))
    assert len(await msg.text_content() or "") <= 160
    await expect(msg).to_have_attribute("title", f"boom: {reason}")
    await line.locator(".task-link").click()
    await expect(page.locator("#detail-error")).to_have_text(f"boom: {reason}")


async def test_type_column_shows_long_type_names_whole_at_1400_px(
    browser: Browser, daemon: DaemonProcess, api: Api
) -> None:
    """At 1400 px the Type column fits data_processing and report_generation unclipped."""
    watched = await open_page(browser, daemon.url, viewport={"width": 1400, "height": 900})
    page = watched.page
    try:
        for task_type in ("data_processing", "report_generation"):
            example = next(
                t["example"]
                for t in (await api.get("/api/task-types"))["task_types"]
                if t["name"] == task_type
            )
            task = await api.submit(task_type, payload=example)
            cell = row(page, task["id"]).locator("td.c-type")
            await expect(cell).to_have_text(task_type)
            clipped = await cell.evaluate("c => c.scrollWidth > c.clientWidth")
            assert not clipped, task_type
    finally:
        await watched.context.close()


async def test_phone_task_list_scrolls_with_the_page_not_inside_it(
    browser: Browser, daemon: DaemonProcess, api: Api
) -> None:
    """On a phone the task list is part of the page's one scroll, not a box of its own."""
    await api.batch([{"task_type": "quick", "name": f"phone {i}"} for i in range(60)])
    watched = await open_page(browser, daemon.url, viewport=PHONE)
    page = watched.page
    try:
        await expect(page.locator("#task-rows tr").nth(40)).to_be_attached()
        wrap = page.locator(".table-wrap")
        inner = await wrap.evaluate(
            "w => ({overflow: getComputedStyle(w).overflowY, "
            "scrolls: w.scrollHeight > w.clientHeight + 1})"
        )
        assert inner == {"overflow": "visible", "scrolls": False}
        assert await page.evaluate("document.documentElement.scrollHeight > innerHeight")
    finally:
        await watched.context.close()


async def test_detail_says_when_the_history_failed_and_retries(live: Watched, api: Api) -> None:
    """When /history cannot be fetched the timeline says so (not "No history available.")
    and offers a retry that loads it (requests are cut off in the browser's network layer
    until the failure shows)."""
    page = live.page
    task = await api.submit("wait", name="history retry", payload={"s": 60})
    cut = True
    requests: list[str] = []

    async def handle(route: Route) -> None:
        requests.append(route.request.url)
        await (route.abort() if cut else route.continue_())

    await page.route("**/api/tasks/*/history", handle)
    try:
        await page.goto(f"/#/tasks/{task['id']}")
        timeline = page.locator("#detail-timeline")
        await expect(timeline).to_contain_text("The history failed to load")
        cut = False
        tried = len(requests)
        await timeline.get_by_role("button", name="Retry").click()
        await expect(timeline.locator("li").first).to_contain_text("created")
        assert len(requests) > tried
    finally:
        await page.unroute("**/api/tasks/*/history", handle)
        async with api.session.post(f"/api/tasks/{task['id']}/cancel") as reply:
            assert reply.status in (200, 202)


async def test_theme_toggle_overrides_the_system_and_is_remembered(
    browser: Browser, daemon: DaemonProcess
) -> None:
    """The theme follows the system by default; choosing light or dark overrides it and
    survives a reload; choosing system again follows the system."""
    watched = await open_page(browser, daemon.url, color_scheme="light")
    page = watched.page
    root = page.locator("html")
    try:
        await expect(root).to_have_attribute("data-theme", "light")
        await page.locator("#theme").select_option("dark")
        await expect(root).to_have_attribute("data-theme", "dark")
        background = "getComputedStyle(document.body).backgroundColor"
        assert await page.evaluate(background) == "rgb(13, 17, 23)"
        await page.reload()
        await expect(root).to_have_attribute("data-theme", "dark")
        await expect(page.locator("#theme")).to_have_value("dark")
        await page.locator("#theme").select_option("system")
        await expect(root).to_have_attribute("data-theme", "light")
        await page.emulate_media(color_scheme="dark")
        await expect(root).to_have_attribute("data-theme", "dark")
        assert watched.page_errors == []
    finally:
        await watched.context.close()
