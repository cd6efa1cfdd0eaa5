// The task detail panel, opened by the shareable URL #/tasks/<id>: everything about one
// task, live. For a running task it shows the lease (holder, age, delivery count): the
// place where a stuck task explains itself.

import { ApiError, api, curlFor, token } from "./api.js";
import { confirmDialog, copyText, toast } from "./dialogs.js";
import { byId, h, replace, setText } from "./dom.js";
import { count, duration, ms, when } from "./format.js";
import { taskDuration } from "./table.js";

const CANCELLABLE = new Set(["pending", "scheduled", "retrying", "reserved", "processing"]);
// Held by a consumer (lease shown): reserved (in its prefetch buffer) or processing.
const HELD = new Set(["reserved", "processing"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
const FINISHED = new Set(["completed", "failed", "cancelled"]);
const LEASE_EVERY_MS = 2000;

export class Detail {
  /** @param {(id: string) => void} onClose */
  constructor(onClose) {
    this.onClose = onClose;
    this.panel = byId("detail");
    this.id = "";
    /** @type {any} */
    this.task = null;
    /** @type {any} */
    this.history = null;
    /** @type {any} */
    this.lease = null;
    this.leaseAt = 0;
    this.refetchTimer = 0;
    this.seq = 0;
    this.dirty = false;
    byId("detail-close").addEventListener("click", () => this.onClose(this.id));
    byId("act-cancel").addEventListener("click", () => this.act("cancel"));
    byId("act-retry").addEventListener("click", () => this.act("retry"));
    byId("act-delete").addEventListener("click", () => this.remove());
    byId("act-curl").addEventListener("click", () => {
      if (this.task) copyText(curlFor(this.task), "curl command");
    });
  }

  get open() {
    return Boolean(this.id);
  }

  /** @param {string} id */
  async show(id) {
    const first = this.id !== id;
    this.id = id;
    this.panel.hidden = false;
    document.body.classList.add("detail-open");
    if (first) {
      this.task = null;
      this.history = null;
      this.lease = null;
      this.error = "";
      this.dirty = true;
      this.render(Date.now());
      byId("detail-title").focus();
    }
    await this.fetch();
  }

  hide() {
    this.id = "";
    this.seq += 1;
    this.panel.hidden = true;
    document.body.classList.remove("detail-open");
  }

  async fetch() {
    const id = this.id;
    const seq = ++this.seq;
    try {
      const [task, history] = await Promise.all([
        api(`/api/tasks/${id}`),
        api(`/api/tasks/${id}/history`).catch((err) => ({ failed: errorText(err) })),
      ]);
      if (seq !== this.seq) return;
      this.task = task;
      this.history = history;
      this.error = "";
      if (HELD.has(task.status)) await this.fetchLease();
    } catch (err) {
      if (seq !== this.seq) return;
      this.error =
        err instanceof ApiError && err.status === 404
          ? "This task does not exist (any more): finished tasks expire after the retention time."
          : err.message;
    }
    this.dirty = true;
  }

  async fetchLease() {
    this.leaseAt = Date.now();
    try {
      this.lease = await api(`/api/tasks/${this.id}/lease`);
    } catch {
      this.lease = null;
    }
    this.dirty = true;
  }

  /** @param {{kind: string, task: any}[]} events */
  apply(events) {
    if (!this.task) return;
    for (const e of events) {
      if (e.task.id !== this.id) continue;
      if (e.kind === "deleted") {
        this.error = "This task was deleted.";
        this.task = null;
      } else if ((e.task.updated_at || "") >= (this.task.updated_at || "")) {
        const statusChanged = e.task.status !== this.task.status;
        Object.assign(this.task, e.task);
        if (statusChanged) this.refetchSoon();
      }
      this.dirty = true;
    }
  }

  /** Fetch only the timeline again (after it failed to load). */
  async retryHistory() {
    const id = this.id;
    this.history = null;
    this.dirty = true;
    this.render(Date.now());
    let history;
    try {
      history = await api(`/api/tasks/${id}/history`);
    } catch (err) {
      history = { failed: errorText(err) };
    }
    if (id !== this.id) return;
    this.history = history;
    this.dirty = true;
    this.render(Date.now());
  }

  /** A new status: fetch result, payload and history again (once per burst). */
  refetchSoon() {
    clearTimeout(this.refetchTimer);
    this.refetchTimer = setTimeout(() => this.open && this.fetch(), 300);
  }

  /** @param {"cancel"|"retry"} action */
  async act(action) {
    if (!this.task) return;
    const id = this.id;
    try {
      const task = await api(`/api/tasks/${id}/${action}`, { method: "POST" });
      if (id !== this.id) return;
      Object.assign(this.task, task);
      toast(action === "cancel" ? `Cancelling ${task.name}` : `${task.name} queued again`);
      this.refetchSoon();
    } catch (err) {
      toast(`Could not ${action}: ${err.message}`, "error");
    }
    this.dirty = true;
  }

  async remove() {
    if (!this.task) return;
    const { id, name } = this.task;
    const ok = await confirmDialog({
      title: "Delete this task?",
      message: `“${name}” and its result are removed now instead of at the end of retention.`,
      confirm: "Delete",
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/api/tasks/${id}`, { method: "DELETE" });
      toast(`Deleted ${name}`);
      this.onClose(id);
    } catch (err) {
      toast(`Could not delete: ${err.message}`, "error");
    }
  }

  /** @param {number} now */
  tick(now) {
    if (!this.open || !this.task) return;
    if (HELD.has(this.task.status)) {
      this.dirty = true;
      if (now - this.leaseAt > LEASE_EVERY_MS) this.fetchLease();
    }
  }

  /** @param {number} now */
  render(now) {
    if (!this.open || !this.dirty) return;
    this.dirty = false;
    const t = this.task;
    setText(byId("detail-title"), t ? t.name : this.error ? "Task unavailable" : "Loading…");
    setText(byId("detail-id"), this.id);
    const status = byId("detail-status");
    status.className = t ? `badge b-${t.status}` : "badge";
    setText(status, t ? t.status : "");
    byId("act-cancel").disabled = !t || !CANCELLABLE.has(t.status) || t.cancel_requested;
    byId("act-retry").disabled = !t || !RETRYABLE.has(t.status);
    byId("act-delete").disabled = !t || !FINISHED.has(t.status);
    byId("act-curl").disabled = !t;
    setText(byId("detail-error-banner"), this.error);
    byId("detail-error-banner").hidden = !this.error;
    byId("detail-content").hidden = !t;
    if (!t) return;
    const progress = t.status === "completed" ? 100 : t.progress || 0;
    byId("detail-progress").parentElement.className = `detail-progress status-${t.status}`;
    /** @type {HTMLProgressElement} */ (byId("detail-progress")).value = progress;
    setText(byId("detail-progress-text"), `${progress}%${t.progress_message ? ` · ${t.progress_message}` : ""}`);
    replace(byId("detail-facts"), ...facts(t, now));
    this.renderLease(t);
    setText(byId("detail-error"), t.error || "");
    byId("detail-error-section").hidden = !t.error;
    setText(byId("detail-payload"), t.payload ? JSON.stringify(t.payload, null, 2) : "");
    const hasResult = t.result !== null && t.result !== undefined;
    byId("detail-result-section").hidden = !hasResult;
    setText(byId("detail-result"), hasResult ? JSON.stringify(t.result, null, 2) : "");
    replace(byId("detail-artifacts"), ...artifacts(t));
    this.renderTimeline();
  }

  renderLease(t) {
    const section = byId("detail-lease-section");
    section.hidden = !HELD.has(t.status);
    if (section.hidden) return;
    const l = this.lease;
    const rows = [];
    if (!l) rows.push(["Lease", "loading…"]);
    else if (!l.held) rows.push(["Lease", "not held by any consumer (being handed over?)"]);
    else {
      rows.push(["Holder", `${l.holder}${l.holder_alive === false ? " (heartbeat missing!)" : ""}`]);
      rows.push(["Lease age", `${duration(l.lease_age_ms)} of ${l.lease_s} s`]);
      rows.push(["Expires in", duration(l.expires_in_ms)]);
      rows.push(["Deliveries", `${count(l.delivery_count)}${l.delivery_count > 1 ? " (reclaimed before)" : ""}`]);
    }
    replace(byId("detail-lease"), ...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
  }

  renderTimeline() {
    const list = byId("detail-timeline");
    const hist = this.history;
    if (!hist) {
      replace(list, h("li", { class: "muted", text: "Loading history…" }));
      return;
    }
    if (hist.failed) {
      const retry = h("button", { type: "button", class: "link", id: "detail-history-retry", text: "Retry" });
      retry.addEventListener("click", () => this.retryHistory());
      const text = `The history failed to load: ${hist.failed}.`;
      replace(list, h("li", { class: "error-text history-failed", role: "alert" }, h("span", { text }), " ", retry));
      return;
    }
    const items = hist.events.map((e) =>
      h(
        "li",
        { class: `tl-${e.kind}` },
        h("time", { datetime: e.ts, text: when(e.ts) }),
        h("span", { class: `badge b-${e.status}`, text: e.kind }),
        h("span", { class: "tl-what", text: e.attempt ? `attempt ${e.attempt}` : "" }),
        e.worker ? h("span", { class: "tl-worker mono", text: e.worker }) : null,
        e.error && (e.kind === "retrying" || e.kind === "failed")
          ? h("pre", { class: "tl-error", text: e.error })
          : null,
      ),
    );
    if (hist.progress_events) {
      items.push(h("li", { class: "muted", text: `${count(hist.progress_events)} progress updates` }));
    }
    if (!hist.complete) {
      items.unshift(h("li", { class: "muted", text: "Older events are not shown (trimmed from the capped event stream, or beyond the read limit)." }));
    }
    replace(list, ...items);
  }
}

/** @param {unknown} err */
function errorText(err) {
  if (err instanceof ApiError) return err.status ? `${err.message} (HTTP ${err.status})` : err.message;
  return err instanceof Error ? err.message : String(err);
}

/** The facts grid of a task. */
function facts(t, now) {
  const rows = [
    ["Type", t.task_type],
    ["Queue", t.queue],
    ["Priority", String(t.priority)],
    ["Attempts", `${t.attempt || 0} (retries ${t.retry_count}/${t.max_retries})`],
    ["Worker", t.worker || "—"],
    ["Created", when(t.created_at)],
    ["Started", when(t.started_at)],
    ["Finished", FINISHED.has(t.status) ? when(t.completed_at || t.updated_at) : "—"],
    ["Duration", taskDuration(t, now)],
    ["Waited", Number.isFinite(ms(t.started_at)) ? duration(ms(t.started_at) - ms(t.run_at || t.created_at)) : "—"],
    ["Timeout", `${t.timeout_s} s`],
  ];
  if (t.run_at) rows.push(["Runs at", when(t.run_at)]);
  if (t.unique_key) rows.push(["Unique key", t.unique_key]);
  if (t.cancel_requested) rows.push(["Cancel", "requested; the handler stops at its next check"]);
  return rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]);
}

/** Download links for a report's files (fetched with the token when one is in use). */
function artifacts(t) {
  const list = t.result && Array.isArray(t.result.artifacts) ? t.result.artifacts : [];
  return list
    .filter((a) => a && typeof a.name === "string")
    .map((a) => {
      const href = `/api/tasks/${t.id}/artifacts/${encodeURIComponent(a.name)}`;
      const link = h("a", { href, download: a.name, text: a.name });
      if (token()) link.addEventListener("click", (e) => download(e, href, a.name));
      const type = String(a.content_type || "").split(";")[0];
      return h("li", {}, link, h("span", { class: "muted", text: ` ${type}` }));
    });
}

async function download(event, href, name) {
  event.preventDefault();
  try {
    const reply = await fetch(href, { headers: { Authorization: `Bearer ${token()}` } });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    const url = URL.createObjectURL(await reply.blob());
    const a = h("a", { href: url, download: name });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    toast(`Download failed: ${err.message}`, "error");
  }
}
