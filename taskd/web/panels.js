// Side panels that poll slowly-changing facts: workers, Redis (memory growth is the first
// thing that hurts a queue's users), and queues with their pause/resume/purge controls.

import { api } from "./api.js";
import { confirmDialog, toast } from "./dialogs.js";
import { byId, h, replace, setText } from "./dom.js";
import { ago, bytes, count, seconds } from "./format.js";

/** Poll `fn` every `everyMs` while the page is visible; never two calls at once. */
class Poller {
  /**
   * @param {() => Promise<void>} fn
   * @param {number} everyMs
   */
  constructor(fn, everyMs) {
    this.fn = fn;
    this.everyMs = everyMs;
    this.timer = 0;
    this.running = false;
  }

  start() {
    this.stop();
    this.run();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  async run() {
    if (this.running) return;
    this.running = true;
    try {
      if (!document.hidden) await this.fn();
    } catch {
      // Shown by the connection state; the next round tries again.
    } finally {
      this.running = false;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), this.everyMs);
    }
  }
}

export class Panels {
  constructor() {
    /** @type {any[]} */
    this.workers = [];
    /** @type {any} */
    this.redis = null;
    /** @type {any[]|null} null: this server has no queue routes */
    this.queues = null;
    this.pollers = [
      new Poller(() => this.loadWorkers(), 5000),
      new Poller(() => this.loadRedis(), 10000),
    ];
    this.queuePoller = new Poller(() => this.loadQueues(), 3000);
    this.processing = 0;
    byId("queues").addEventListener("click", (e) => this.onQueueClick(e));
  }

  /** @param {boolean} hasQueues the API describes /api/queues */
  start(hasQueues) {
    for (const p of this.pollers) p.start();
    // HOOK: the queues panel shows only when the server's OpenAPI description lists
    // /api/queues (added by the queue-controls work); older servers simply hide it.
    byId("queues-panel").hidden = !hasQueues;
    if (hasQueues) this.queuePoller.start();
  }

  refresh() {
    for (const p of [...this.pollers, this.queuePoller]) if (p.timer) p.start();
  }

  async loadWorkers() {
    this.workers = (await api("/api/workers")).workers;
    const now = Date.now();
    const items = this.workers.map((w) =>
      h(
        "li",
        {},
        h("div", { class: "w-name mono", text: w.consumer }),
        h(
          "div",
          { class: "w-meta muted" },
          `${count(w.concurrency)} slots · ${count(w.completed)} done · ${count(w.failed)} failed · heartbeat ${ago(now - Date.parse(w.heartbeat_at))} ago`,
        ),
      ),
    );
    if (!items.length) items.push(h("li", { class: "muted", text: "No live workers." }));
    replace(byId("workers"), ...items);
    this.summary();
  }

  async loadRedis() {
    const r = (this.redis = await api("/api/redis"));
    const mem = r.memory.max_bytes
      ? `${bytes(r.memory.used_bytes)} of ${bytes(r.memory.max_bytes)} (${r.memory.policy})`
      : `${bytes(r.memory.used_bytes)} · no limit`;
    const rows = [
      ["Server", `${r.server.flavour} ${r.server.version}${r.server.mode === "cluster" ? ` · cluster of ${r.server.nodes}` : ""}`],
      ["Memory", mem],
      ["Peak", bytes(r.memory.peak_bytes)],
      ["taskd keys", `${r.keys.complete ? "" : "≥ "}${count(r.keys.taskd)} in ${count(r.queues)} queue${r.queues === 1 ? "" : "s"}`],
      ["Finished tasks kept", seconds(r.retention.finished_task_s)],
      ["Events kept", `${count(r.retention.events_per_queue)} per queue`],
      ["Lease", seconds(r.retention.lease_s)],
    ];
    replace(byId("redis"), ...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
    this.summary();
  }

  summary() {
    const parts = [];
    if (this.redis) {
      parts.push(`${this.redis.server.flavour} ${this.redis.server.version} · ${bytes(this.redis.memory.used_bytes)}`);
    }
    const slots = this.workers.reduce((n, w) => n + w.concurrency, 0);
    const n = this.workers.length;
    parts.push(`${n} worker${n === 1 ? "" : "s"} · ${count(this.processing)} of ${count(slots)} slots busy`);
    setText(byId("summary"), parts.join(" · "));
  }

  /** @param {number} processing running tasks, from the live stats */
  setProcessing(processing) {
    if (processing === this.processing) return;
    this.processing = processing;
    this.summary();
  }

  async loadQueues() {
    this.queues = (await api("/api/queues")).queues;
    const rows = this.queues.map((q) => {
      const waiting = (q.counts.pending || 0) + (q.counts.scheduled || 0) + (q.counts.retrying || 0);
      const toggle = q.paused ? "resume" : "pause";
      const label = q.paused ? "Resume" : "Pause";
      return h(
        "li",
        { "data-queue": q.name },
        h(
          "div",
          { class: "q-name" },
          h("span", { class: "mono", text: q.name }),
          h("span", { class: `badge ${q.paused ? "b-retrying" : "b-completed"}`, text: q.paused ? "paused" : "running" }),
        ),
        h("div", { class: "q-counts muted", text: `${count(waiting)} waiting · ${count(q.counts.processing)} running · ${count(q.counts.failed)} failed` }),
        h(
          "div",
          { class: "q-actions" },
          h("button", { type: "button", "data-action": toggle, text: label, "aria-label": `${label} queue ${q.name}` }),
          h("button", { type: "button", class: "danger", "data-action": "purge", text: "Purge", "aria-label": `Purge queue ${q.name}` }),
        ),
      );
    });
    replace(byId("queues"), ...rows);
  }

  /** @param {MouseEvent} e */
  async onQueueClick(e) {
    const button = /** @type {HTMLElement} */ (e.target).closest("button");
    const row = button && button.closest("li");
    if (!button || !row) return;
    const name = row.dataset.queue;
    const action = button.dataset.action;
    const queue = (this.queues || []).find((q) => q.name === name);
    try {
      if (action === "purge") {
        const waiting = queue ? (queue.counts.pending || 0) + (queue.counts.scheduled || 0) + (queue.counts.retrying || 0) : 0;
        const ok = await confirmDialog({
          title: `Purge queue ${name}?`,
          message: `This cancels about ${count(waiting)} waiting tasks (pending, scheduled, retrying) of queue ${name}. Running tasks finish.`,
          confirm: `Cancel ${count(waiting)} tasks`,
          danger: true,
        });
        if (!ok) return;
        const done = await api(`/api/queues/${encodeURIComponent(name)}/purge`, { method: "POST", body: { confirm: true } });
        toast(`Purged ${count(done.purged)} tasks from ${name}`);
      } else {
        await api(`/api/queues/${encodeURIComponent(name)}/${action}`, { method: "POST" });
        toast(`Queue ${name} ${action === "pause" ? "paused" : "resumed"}`);
      }
    } catch (err) {
      toast(`Could not ${action} ${name}: ${err.message}`, "error");
    }
    this.queuePoller.start();
  }
}
