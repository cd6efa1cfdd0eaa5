// The dashboard's composition root: builds the parts, routes messages between them, and
// renders in batches.
//
// Rendering is decoupled from arrival: messages only update models and ask for a frame;
// frames run in requestAnimationFrame at most FRAME_MIN_MS apart. Thousands of task
// events per second therefore cost a few renders per second, each touching at most one
// page of rows.

import { ApiError, api } from "./api.js";
import { Login } from "./auth.js";
import { BulkActions } from "./bulk.js";
import { DepthBars } from "./chart.js";
import { Detail } from "./detail.js";
import { toast } from "./dialogs.js";
import { byId, setText } from "./dom.js";
import { count } from "./format.js";
import { Live } from "./live.js";
import { Panels } from "./panels.js";
import { SubmitForm } from "./submit.js";
import { TaskTable } from "./table.js";
import { PAGE_SIZE, TaskView } from "./tasks.js";
import { Throughput } from "./throughput.js";
import { Workflows } from "./workflows.js";

const FRAME_MIN_MS = 250;
const TICK_MS = 1000;
const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};
const CARD_STATUSES = ["total", "pending", "waiting", "scheduled", "reserved", "processing", "completed", "failed", "retrying", "cancelled"];

/** Renders at most once per FRAME_MIN_MS, inside an animation frame. */
class Frame {
  /** @param {() => void} draw */
  constructor(draw) {
    this.draw = draw;
    this.pending = false;
    this.last = 0;
  }

  request() {
    if (this.pending) return;
    this.pending = true;
    const wait = Math.max(0, this.last + FRAME_MIN_MS - performance.now());
    setTimeout(() => requestAnimationFrame(() => this.run()), wait);
  }

  run() {
    this.pending = false;
    this.last = performance.now();
    this.draw();
  }
}

const frame = new Frame(render);
const view = new TaskView(() => frame.request());
const table = new TaskTable(byId("task-rows"));
const chart = new Throughput(byId("throughput"), byId("throughput-now"), byId("throughput-ranges"));
const depth = new DepthBars(byId("depth"));
const detail = new Detail(closeDetail);
const panels = new Panels();
const bulk = new BulkActions();
const workflows = new Workflows();
const submit = new SubmitForm((task) => {
  location.hash = `#/tasks/${task.id}`;
});
const login = new Login(() => boot());
const live = new Live(onMessage, onState, () => login.open());
/** @type {any} */
let stats = null;
let statsDirty = false;
let booted = false;

function onMessage(m) {
  if (m.type === "snapshot") {
    setStats(m.stats);
    view.snapshot(m.tasks);
    chart.load(); // a (re)connect: the daemon may have restarted, history is in Redis
    if (detail.open) detail.fetch();
    if (workflows.id) workflows.refresh(true);
    panels.refresh();
  } else if (m.type === "events") {
    view.apply(m.events);
    detail.apply(m.events);
    workflows.apply(m.events);
  } else if (m.type === "stats") {
    setStats(m.stats);
  } else if (m.type === "workflow") {
    workflows.update(m.workflow);
  }
  frame.request();
}

function setStats(next) {
  stats = next;
  statsDirty = true;
  chart.sample(next, Date.now());
  depth.set(next.depth_by_priority);
  panels.setProcessing(next.processing || 0);
}

/**
 * @param {string} state
 * @param {string} detailText
 */
function onState(state, detailText) {
  const conn = byId("conn");
  conn.className = `conn state-${state}`;
  setText(byId("conn-text"), STATE_TEXT[state] || state);
  setText(byId("conn-detail"), detailText);
  document.body.classList.toggle("stale", state !== "live");
  if (state === "live" && booted) panels.refresh();
}

function render() {
  const now = Date.now();
  if (statsDirty && stats) {
    statsDirty = false;
    for (const status of CARD_STATUSES) {
      setText(byId(`card-${status}`), count(stats[status] || 0));
    }
  }
  for (const button of document.querySelectorAll("#cards button")) {
    const status = button.dataset.status;
    button.setAttribute("aria-pressed", String(status === (view.filters.status || "total")));
  }
  table.selected = detail.id;
  table.render(view.rows, now);
  renderPager();
  chart.render();
  detail.render(now);
}

function renderPager() {
  const first = view.page * PAGE_SIZE + 1;
  const info = view.rows.length
    ? `${view.live ? "Newest · " : ""}${count(first)}–${count(first + view.rows.length - 1)}`
    : "";
  setText(byId("page-info"), view.loading ? "Loading…" : info);
  byId("prev").disabled = view.live || view.loading;
  byId("newest").hidden = view.live;
  byId("next").disabled = !view.hasNext || view.loading;
  const empty = byId("tasks-empty");
  empty.hidden = view.rows.length > 0 || view.loading;
  setText(empty, view.filtered ? "No tasks match these filters." : "No tasks yet. Submit one with “New task”.");
  const error = byId("tasks-error");
  error.hidden = !view.error;
  setText(error, view.error ? `Could not load tasks: ${view.error}` : "");
  const pill = byId("new-tasks");
  pill.hidden = view.live || view.newSince === 0;
  setText(pill, `${count(view.newSince)} new task${view.newSince === 1 ? "" : "s"} · show newest`);
}

function route() {
  const flow = /^#\/workflows\/([0-9a-f]{32})$/.exec(location.hash);
  if (flow) {
    workflows.show(flow[1]);
    return;
  }
  const match = /^#\/tasks\/([0-9a-f]{32})$/.exec(location.hash);
  if (match) detail.show(match[1]).then(() => frame.request());
  else if (detail.open) detail.hide();
  if (!match && workflows.id) workflows.hide(); // a task opened from the graph keeps it
  frame.request();
}

/** @param {string} id */
function closeDetail(id) {
  history.pushState(null, "", `${location.pathname}${location.search}`);
  detail.hide();
  frame.request();
  const link = document.querySelector(`#task-rows tr[data-id="${id}"] a`);
  if (link) /** @type {HTMLElement} */ (link).focus();
}

function wireControls() {
  const status = /** @type {HTMLSelectElement} */ (byId("f-status"));
  const type = /** @type {HTMLSelectElement} */ (byId("f-type"));
  const q = /** @type {HTMLInputElement} */ (byId("f-q"));
  status.addEventListener("change", () => view.setFilters({ status: status.value }));
  type.addEventListener("change", () => view.setFilters({ type: type.value }));
  let typing = 0;
  q.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => view.setFilters({ q: q.value.trim() }), 250);
  });
  byId("filters").addEventListener("submit", (e) => e.preventDefault());
  byId("cards").addEventListener("click", (e) => {
    const button = /** @type {HTMLElement} */ (e.target).closest("button");
    if (!button) return;
    const wanted = button.dataset.status === "total" ? "" : button.dataset.status;
    status.value = view.filters.status === wanted ? "" : wanted;
    view.setFilters({ status: status.value });
  });
  byId("prev").addEventListener("click", () => view.prev());
  byId("next").addEventListener("click", () => view.next());
  byId("newest").addEventListener("click", () => view.newest());
  byId("new-tasks").addEventListener("click", () => view.newest());
  byId("open-submit").addEventListener("click", () => submit.open());
  byId("open-bulk").addEventListener("click", () => bulk.open());
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && detail.open && !document.querySelector("dialog[open]")) {
      closeDetail(detail.id);
    }
  });
  document.addEventListener("visibilitychange", () => !document.hidden && frame.request());
  setInterval(() => {
    detail.tick(Date.now());
    frame.request();
  }, TICK_MS);
}

/** Load what the page needs once, then go live; a 401 opens the login instead. */
async function boot() {
  live.stop();
  let types;
  let spec;
  try {
    [types, spec] = await Promise.all([api("/api/task-types"), api("/api/openapi.json")]);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      onState("offline", "the server cannot be reached; retrying");
      setTimeout(boot, 3000);
    }
    return;
  }
  const names = types.task_types.map((t) => t.name);
  submit.setTypes(types.task_types);
  bulk.setTypes(names);
  const select = byId("f-type");
  const current = select.value;
  select.replaceChildren(new Option("any type", ""), ...names.map((n) => new Option(n, n)));
  select.value = names.includes(current) ? current : "";
  panels.start(Boolean(spec.paths && spec.paths["/api/queues"]));
  if (spec.paths && spec.paths["/api/workflows"]) workflows.start();
  else byId("workflows-panel").hidden = true;
  booted = true;
  if (view.filtered) view.load(0);
  live.start();
  route();
}

wireControls();
boot().catch((err) => toast(`The dashboard failed to start: ${err.message}`, "error"));
