// The task table's data: one page of tasks (newest first) for the current filters, kept
// current by the event stream, and paged through the API's cursor.
//
// Page 1 is live: new tasks that match the filters slide in at the top and the page is
// trimmed back to PAGE_SIZE rows. Older pages are frozen in membership (their rows still
// update in place); new arrivals are only counted, to offer a way back to the newest.
// Memory stays bounded: one page of tasks, plus a fixed-size memory of recent events
// used to reconcile a page fetched while events kept arriving.

import { api } from "./api.js";

export const PAGE_SIZE = 100;
const RECENT_LIMIT = 2000;
const STATUS_NAMES = [
  "pending",
  "scheduled",
  "reserved",
  "processing",
  "completed",
  "failed",
  "retrying",
  "cancelled",
];

export class TaskView {
  /** @param {() => void} changed called whenever the rows or their contents changed */
  constructor(changed) {
    this.changed = changed;
    this.filters = { status: "", type: "", q: "" };
    /** @type {any[]} the page's tasks, in order */
    this.rows = [];
    /** @type {Map<string, any>} */
    this.byId = new Map();
    this.page = 0;
    /** @type {(string|null)[]} cursor that fetches page i (page 0: none) */
    this.cursors = [null];
    /** @type {string|null} */
    this.nextCursor = null;
    this.stale = false; // page 0 changed since its cursor was issued
    this.newSince = 0; // tasks created while an older page was shown
    this.loading = false;
    this.error = "";
    /** @type {Map<string, any>} latest event task per id, bounded */
    this.recent = new Map();
    this.fetchSeq = 0;
    this.backfillTimer = 0;
    this.reloadTimer = 0;
  }

  get live() {
    return this.page === 0;
  }

  /** Whether an older page exists (or may: the live page changed since its cursor). */
  get hasNext() {
    return Boolean(this.nextCursor) || (this.live && this.stale && this.rows.length >= PAGE_SIZE);
  }

  get filtered() {
    return Boolean(this.filters.status || this.filters.type || this.filters.q);
  }

  /** @param {any} t */
  matches(t) {
    const f = this.filters;
    if (f.status && t.status !== f.status) return false;
    if (f.type && t.task_type !== f.type) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      if (!(t.name || "").toLowerCase().includes(q) && !t.id.startsWith(q)) return false;
    }
    return true;
  }

  /** @param {{status?: string, type?: string, q?: string}} next */
  setFilters(next) {
    this.filters = { ...this.filters, ...next };
    if (this.filters.status && !STATUS_NAMES.includes(this.filters.status)) {
      this.filters.status = "";
    }
    return this.load(0);
  }

  /**
   * Fetch page `page` (0 = newest) from the API.
   * @param {number} page
   */
  async load(page) {
    const seq = ++this.fetchSeq;
    if (page > 0 && page >= this.cursors.length) {
      if (this.stale || this.cursors.length < page) await this.refreshCursor(seq);
      if (seq !== this.fetchSeq) return;
      if (!this.nextCursor) return;
      this.cursors[page] = this.nextCursor;
    }
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.filters.status) params.set("status", this.filters.status);
    if (this.filters.type) params.set("task_type", this.filters.type);
    if (this.filters.q) params.set("q", this.filters.q);
    if (page > 0) params.set("cursor", /** @type {string} */ (this.cursors[page]));
    this.loading = true;
    this.changed();
    try {
      const data = await api(`/api/tasks?${params}`);
      if (seq !== this.fetchSeq) return;
      this.page = page;
      this.cursors.length = page + 1;
      this.nextCursor = data.next_cursor;
      this.stale = false;
      this.newSince = 0;
      this.error = "";
      this.setRows(data.tasks);
      if (this.live) this.reconcile();
    } catch (err) {
      if (seq === this.fetchSeq) this.error = err.message;
    } finally {
      if (seq === this.fetchSeq) this.loading = false;
      this.changed();
    }
  }

  /** Page 0's current cursor: the live page was reshaped by events since it was fetched. */
  async refreshCursor(seq) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.filters.status) params.set("status", this.filters.status);
    if (this.filters.type) params.set("task_type", this.filters.type);
    if (this.filters.q) params.set("q", this.filters.q);
    let cursor = null;
    for (let p = 0; p < this.cursors.length; p += 1) {
      if (p > 0) params.set("cursor", cursor);
      const data = await api(`/api/tasks?${params}`);
      if (seq !== this.fetchSeq) return;
      cursor = data.next_cursor;
      if (!cursor) break;
      if (p + 1 < this.cursors.length) this.cursors[p + 1] = cursor;
    }
    this.nextCursor = cursor;
    this.stale = false;
  }

  next() {
    if (!this.hasNext) return Promise.resolve();
    return this.load(this.page + 1);
  }

  prev() {
    return this.load(Math.max(0, this.page - 1));
  }

  newest() {
    return this.load(0);
  }

  /** @param {any[]} tasks */
  setRows(tasks) {
    this.rows = tasks.slice(0, PAGE_SIZE);
    this.byId = new Map(this.rows.map((t) => [t.id, t]));
  }

  /**
   * A snapshot from the socket: the newest tasks over everything.
   * @param {any[]} tasks
   */
  snapshot(tasks) {
    for (const t of tasks) this.remember(t);
    if (this.live && !this.filtered) {
      this.setRows(tasks);
      this.nextCursor = tasks.length >= PAGE_SIZE ? this.nextCursor : null;
      this.stale = true;
      this.changed();
    } else {
      for (const t of tasks) this.update(t);
      this.load(this.page);
    }
  }

  /**
   * Events from the socket, each {kind, task}.
   * @param {{kind: string, task: any}[]} events
   */
  apply(events) {
    let touched = false;
    for (const e of events) {
      this.remember(e.task, e.kind);
      touched = this.applyOne(e.kind, e.task) || touched;
    }
    if (touched) this.changed();
  }

  applyOne(kind, t) {
    const have = this.byId.get(t.id);
    if (kind === "deleted") {
      if (have) this.remove(t.id);
      return Boolean(have);
    }
    if (have) {
      if ((have.updated_at || "") > (t.updated_at || "")) return false;
      Object.assign(have, t);
      if (this.live && !this.matches(have)) this.remove(t.id);
      return true;
    }
    // Events are deltas (a batch merges a task's deltas): only one that includes the
    // creation carries enough of a task to show a new row. A task that newly matches a
    // filter (it completed, say) arrives by reloading the page.
    if (!t.created_at) {
      if (this.live && this.filters.status && t.status === this.filters.status) this.reloadSoon();
      return false;
    }
    if (!this.matches(t)) return false;
    if (!this.live) {
      this.newSince += 1;
      return true;
    }
    return this.insert({ ...t });
  }

  /** Insert a matching task where it belongs on the live page, if it belongs there. */
  insert(t) {
    const last = this.rows[this.rows.length - 1];
    const full = this.rows.length >= PAGE_SIZE;
    if (full && (t.created_at || "") < (last.created_at || "")) return false; // older than the page
    // Tasks created in the same millisecond: creations arrive in order, so a later one
    // goes above (the server orders such ties the same way, by creation sequence).
    let i = this.rows.length;
    while (i > 0 && (t.created_at || "") >= (this.rows[i - 1].created_at || "")) i -= 1;
    this.rows.splice(i, 0, t);
    this.byId.set(t.id, t);
    if (this.rows.length > PAGE_SIZE) {
      const dropped = this.rows.pop();
      this.byId.delete(dropped.id);
    }
    this.stale = true;
    return true;
  }

  /** @param {string} id */
  remove(id) {
    const i = this.rows.findIndex((t) => t.id === id);
    if (i >= 0) this.rows.splice(i, 1);
    this.byId.delete(id);
    this.stale = true;
    if (this.live && this.nextCursor !== null) this.scheduleBackfill();
  }

  /** Tasks joined the filtered live page: fetch it again soon (at most every second). */
  reloadSoon() {
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = 0;
      if (this.live && !this.loading) this.load(0);
    }, 1000);
  }

  /** Rows left the live page: fetch it again soon (at most every 2 s) to fill it up. */
  scheduleBackfill() {
    if (this.backfillTimer) return;
    this.backfillTimer = setTimeout(() => {
      this.backfillTimer = 0;
      if (this.live && this.rows.length < PAGE_SIZE && !this.loading) this.load(0);
    }, 2000);
  }

  /** @param {any} t a task from any source, merged into the page if shown */
  update(t) {
    const have = this.byId.get(t.id);
    if (have && (have.updated_at || "") <= (t.updated_at || "")) Object.assign(have, t);
  }

  remember(t, kind = "") {
    this.recent.delete(t.id);
    this.recent.set(t.id, { kind, task: t });
    if (this.recent.size > RECENT_LIMIT) this.recent.delete(this.recent.keys().next().value);
  }

  /** After a fetch: re-apply recent events, which may be newer than what the fetch saw. */
  reconcile() {
    for (const { kind, task } of this.recent.values()) this.applyOne(kind, task);
  }
}
