// Workflows: the recent ones listed, and one drawn as its DAG (SVG built here, no library),
// nodes coloured by live status, the critical path (the longest chain) highlighted, a
// click on a node opening that task's detail (with its Retry) beside the graph; the
// workflow's own actions: cancel, and retry every failed task.

import { api } from "./api.js";
import { confirmDialog, toast } from "./dialogs.js";
import { byId, h, replace, s, setText } from "./dom.js";
import { ago, count, ms } from "./format.js";

const LIST_EVERY_MS = 5000;
const REFRESH_MIN_MS = 500; // a live workflow is read again at most this often
const NODE_W = 150;
const NODE_H = 34;
const GAP_X = 56;
const GAP_Y = 12;
const PER_LEVEL = 14; // nodes drawn per level; the rest become one "+N more" node
const RETRY_AT_ONCE = 8; // retry calls in flight from one "Retry failed" click

export class Workflows {
  constructor() {
    /** @type {any[]} */
    this.list = [];
    /** @type {any} */
    this.current = null;
    this.id = "";
    this.ids = new Set();
    this.timer = 0;
    this.refreshing = false;
    this.lastRefresh = 0;
    byId("wf-cancel").addEventListener("click", () => this.cancel());
    byId("wf-retry").addEventListener("click", () => this.retryFailed());
    byId("wf-close").addEventListener("click", () => {
      location.hash = "";
    });
  }

  start() {
    clearTimeout(this.timer);
    this.loadList().finally(() => {
      this.timer = setTimeout(() => this.start(), LIST_EVERY_MS);
    });
  }

  async loadList() {
    if (document.hidden) return;
    try {
      this.list = (await api("/api/workflows?limit=20")).workflows;
    } catch {
      return; // the connection state says why; the next round tries again
    }
    this.renderList();
  }

  /** @param {string} id */
  async show(id) {
    this.id = id;
    byId("wf-view").hidden = false;
    await this.refresh(true);
  }

  hide() {
    this.id = "";
    this.current = null;
    this.ids = new Set();
    byId("wf-view").hidden = true;
  }

  /** Task events: read the open workflow again when one of its tasks changed. */
  apply(events) {
    if (!this.id || !events.some((e) => this.ids.has(e.task && e.task.id))) return;
    const wait = Math.max(0, this.lastRefresh + REFRESH_MIN_MS - Date.now());
    setTimeout(() => this.refresh(false), wait);
  }

  /** A workflow message from /ws: its row updated at once (a new one listed first). */
  update(wf) {
    const i = this.list.findIndex((w) => w.id === wf.id);
    if (i >= 0) this.list[i] = wf;
    else this.list = [wf, ...this.list].slice(0, 20);
    this.renderList();
    if (wf.id === this.id) this.refresh(false);
  }

  async refresh(force) {
    if (!this.id || (this.refreshing && !force)) return;
    this.refreshing = true;
    try {
      const id = this.id;
      const wf = await api(`/api/workflows/${id}`);
      if (id !== this.id) return;
      this.current = wf;
      this.ids = new Set(Object.values(wf.tasks).map((t) => t.id));
      this.lastRefresh = Date.now();
      this.renderView();
    } catch (err) {
      toast(`Could not load the workflow: ${err.message}`, "error");
    } finally {
      this.refreshing = false;
    }
  }

  async cancel() {
    if (!this.current) return;
    const ok = await confirmDialog({
      title: "Cancel this workflow?",
      message: `Every unfinished task of “${this.current.name}” is cancelled (running ones are asked to stop).`,
      confirm: "Cancel workflow",
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/api/workflows/${this.current.id}/cancel`, { method: "POST" });
      await this.refresh(true);
      this.loadList();
    } catch (err) {
      toast(`Could not cancel: ${err.message}`, "error");
    }
  }

  /** Retry every failed task of the open workflow (their cancelled dependents re-arm). */
  async retryFailed() {
    if (!this.current) return;
    const ids = Object.values(this.current.tasks)
      .filter((t) => t.status === "failed")
      .map((t) => t.id);
    let done = 0;
    const errors = [];
    for (let i = 0; i < ids.length; i += RETRY_AT_ONCE) {
      const calls = ids.slice(i, i + RETRY_AT_ONCE).map((id) => api(`/api/tasks/${id}/retry`, { method: "POST" }));
      for (const r of await Promise.allSettled(calls)) {
        if (r.status === "fulfilled") done += 1;
        else errors.push(r.reason.message);
      }
    }
    if (errors.length) toast(`Could not retry ${errors.length} of ${ids.length}: ${errors[0]}`, "error");
    else toast(`${count(done)} failed task${done === 1 ? "" : "s"} queued again`);
    await this.refresh(true);
  }

  renderList() {
    const rows = this.list.map((wf) =>
      h(
        "li",
        { class: `wf-item${wf.id === this.id ? " selected" : ""}` },
        h("a", { href: `#/workflows/${wf.id}`, text: wf.name }),
        h("span", { class: `badge b-${wf.status}`, text: wf.status }),
        h("span", { class: "muted small", text: `${count(wf.counts.completed)}/${count(wf.counts.total)} · ${ago(Date.now() - (ms(wf.created_at) || Date.now()))}` }),
      ),
    );
    if (!rows.length) rows.push(h("li", { class: "muted", text: "No workflows yet." }));
    replace(byId("workflows"), ...rows);
  }

  renderView() {
    const wf = this.current;
    setText(byId("wf-title"), wf.name);
    const badge = byId("wf-status");
    badge.className = `badge b-${wf.status}`;
    setText(badge, wf.status);
    const parts = Object.entries(wf.counts)
      .filter(([k, v]) => v && k !== "total")
      .map(([k, v]) => `${count(v)} ${k}`);
    setText(byId("wf-counts"), `${count(wf.counts.total)} tasks: ${parts.join(", ")}`);
    byId("wf-cancel").hidden = wf.status !== "running";
    byId("wf-retry").hidden = !Object.values(wf.tasks).some((t) => t.status === "failed");
    replace(byId("wf-graph"), drawGraph(wf.tasks));
    this.renderList();
  }
}

/** Level of each key: the longest chain of dependencies leading to it. */
function levels(tasks) {
  const level = new Map();
  const visit = (key, seen) => {
    if (level.has(key)) return level.get(key);
    if (seen.has(key)) return 0; // (the server refuses cycles; never loop regardless)
    seen.add(key);
    const deps = (tasks[key] && tasks[key].depends_on) || [];
    const mine = deps.length ? 1 + Math.max(...deps.map((d) => visit(d, seen))) : 0;
    level.set(key, mine);
    return mine;
  };
  for (const key of Object.keys(tasks)) visit(key, new Set());
  return level;
}

/** Keys on the longest chain (ties: the first met), end to start. */
function criticalPath(tasks, level) {
  let end = null;
  for (const [key, l] of level) if (end === null || l > level.get(end)) end = key;
  const path = new Set();
  while (end !== null) {
    path.add(end);
    const deps = tasks[end].depends_on || [];
    end = deps.length ? deps.reduce((a, b) => (level.get(b) > level.get(a) ? b : a)) : null;
  }
  return path;
}

/** @param {Record<string, any>} tasks */
function drawGraph(tasks) {
  const level = levels(tasks);
  const critical = criticalPath(tasks, level);
  const columns = [];
  for (const [key, l] of level) (columns[l] ||= []).push(key);
  const place = new Map();
  const extra = [];
  columns.forEach((keys, col) => {
    keys.slice(0, PER_LEVEL).forEach((key, row) => place.set(key, { x: col, y: row }));
    if (keys.length > PER_LEVEL) extra.push({ x: col, y: PER_LEVEL, n: keys.length - PER_LEVEL });
  });
  const rows = Math.max(1, ...columns.map((c) => Math.min(c.length, PER_LEVEL + 1)));
  const px = (p) => 8 + p.x * (NODE_W + GAP_X);
  const py = (p) => 8 + p.y * (NODE_H + GAP_Y);
  const width = 16 + columns.length * (NODE_W + GAP_X) - GAP_X;
  const height = 16 + rows * (NODE_H + GAP_Y) - GAP_Y;
  const svg = s("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Workflow graph" });
  for (const [key, p] of place) {
    for (const dep of tasks[key].depends_on || []) {
      const q = place.get(dep);
      if (!q) continue;
      const x1 = px(q) + NODE_W;
      const y1 = py(q) + NODE_H / 2;
      const x2 = px(p);
      const y2 = py(p) + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      const crit = critical.has(key) && critical.has(dep) ? " crit" : "";
      svg.append(s("path", { class: `edge${crit}`, d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
    }
  }
  for (const [key, p] of place) {
    const t = tasks[key];
    const crit = critical.has(key) ? " crit" : "";
    const link = s(
      "a",
      { href: `#/tasks/${t.id}`, class: `node n-${t.status}${crit}`, "data-key": key, "data-status": t.status },
      s("title", { text: `${key}: ${t.status}${t.error ? ` (${t.error})` : ""}` }),
      s("rect", { x: px(p), y: py(p), width: NODE_W, height: NODE_H, rx: 7 }),
      s("rect", { class: "bar", x: px(p), y: py(p) + NODE_H - 4, width: (NODE_W * (t.progress || 0)) / 100, height: 4, rx: 2 }),
      s("text", { x: px(p) + 10, y: py(p) + 15, text: key.length > 18 ? `${key.slice(0, 17)}…` : key }),
      s("text", { class: "sub", x: px(p) + 10, y: py(p) + 27, text: t.status }),
    );
    svg.append(link);
  }
  for (const p of extra) {
    svg.append(
      s(
        "g",
        { class: "node more" },
        s("rect", { x: px(p), y: py(p), width: NODE_W, height: NODE_H, rx: 7 }),
        s("text", { x: px(p) + 10, y: py(p) + 21, text: `+${count(p.n)} more` }),
      ),
    );
  }
  return svg;
}
