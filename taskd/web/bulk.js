// Bulk actions with a confirmation that says how many tasks they touch: the count comes
// from a dry run of the same API call, and the action repeats the call until the API
// says nothing matching is left (each call does a bounded amount of work).

import { api } from "./api.js";
import { toast } from "./dialogs.js";
import { byId, h, replace } from "./dom.js";
import { count } from "./format.js";

const MAX_ROUNDS = 50;
const ACTIONS = {
  retry: { statuses: ["failed", "cancelled"], verb: "Retry", done: "retried" },
  cancel: { statuses: ["pending", "scheduled", "retrying"], verb: "Cancel", done: "cancelled" },
};

export class BulkActions {
  constructor() {
    this.dialog = /** @type {HTMLDialogElement} */ (byId("bulk-dialog"));
    this.action = /** @type {HTMLSelectElement} */ (byId("b-action"));
    this.status = /** @type {HTMLSelectElement} */ (byId("b-status"));
    this.type = /** @type {HTMLSelectElement} */ (byId("b-type"));
    this.go = /** @type {HTMLButtonElement} */ (byId("b-go"));
    this.summary = byId("b-summary");
    this.seq = 0;
    this.action.addEventListener("change", () => {
      this.fillStatuses();
      this.count();
    });
    this.status.addEventListener("change", () => this.count());
    this.type.addEventListener("change", () => this.count());
    byId("b-cancel").addEventListener("click", () => this.dialog.close());
    byId("bulk-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.run();
    });
    this.fillStatuses();
  }

  /** @param {string[]} names task types */
  setTypes(names) {
    const current = this.type.value;
    replace(this.type, h("option", { value: "", text: "any type" }), ...names.map((n) => h("option", { value: n, text: n })));
    this.type.value = names.includes(current) ? current : "";
  }

  fillStatuses() {
    const { statuses } = ACTIONS[this.action.value];
    replace(this.status, ...statuses.map((s) => h("option", { value: s, text: s })));
  }

  open() {
    this.dialog.showModal();
    this.action.focus();
    this.count();
  }

  body(dryRun) {
    return {
      status: this.status.value,
      task_type: this.type.value || null,
      dry_run: dryRun,
    };
  }

  /** Dry run: how many tasks the action would touch. */
  async count() {
    const seq = ++this.seq;
    this.go.disabled = true;
    this.summary.textContent = "Counting…";
    try {
      const r = await api(`/api/tasks/bulk/${this.action.value}`, { method: "POST", body: this.body(true) });
      if (seq !== this.seq) return;
      const n = `${r.more ? "at least " : ""}${count(r.matched)}`;
      const type = r.task_type ? ` ${r.task_type}` : "";
      const { verb } = ACTIONS[this.action.value];
      this.summary.textContent = r.matched
        ? `This will ${verb.toLowerCase()} ${n} ${r.status}${type} task${r.matched === 1 ? "" : "s"}.`
        : `No ${r.status}${type} tasks: nothing to do.`;
      this.go.textContent = `${verb} ${n} task${r.matched === 1 ? "" : "s"}`;
      this.go.disabled = !r.matched;
    } catch (err) {
      if (seq === this.seq) this.summary.textContent = `Could not count: ${err.message}`;
    }
  }

  async run() {
    const action = this.action.value;
    const body = this.body(false);
    this.go.disabled = true;
    let changed = 0;
    try {
      for (let round = 0; round < MAX_ROUNDS; round += 1) {
        const r = await api(`/api/tasks/bulk/${action}`, { method: "POST", body });
        changed += r.changed;
        this.summary.textContent = `${ACTIONS[action].verb}: ${count(changed)} so far…`;
        if (!r.more || !r.matched) break;
      }
      toast(`${count(changed)} tasks ${ACTIONS[action].done}`);
      this.dialog.close();
    } catch (err) {
      toast(`Bulk ${action} stopped after ${count(changed)}: ${err.message}`, "error");
      this.count();
    }
  }
}
