// The task table: keyed rows updated in place. A row element lives as long as its task
// stays on the page, so focus, selection and the scroll position (the browser's scroll
// anchoring keeps the visible rows still when rows arrive above them) survive updates.

import { h, setText } from "./dom.js";
import { ago, duration, ms } from "./format.js";

/**
 * @typedef {{tr: HTMLTableRowElement, sig: string, link: HTMLAnchorElement,
 *   id: HTMLElement, badge: HTMLElement, inline: HTMLElement, bar: HTMLProgressElement,
 *   pct: HTMLElement,
 *   msg: HTMLElement, type: HTMLElement, prio: HTMLElement, age: HTMLElement,
 *   dur: HTMLElement}} Row
 */

const NOTE_MAX = 160; // characters of an error kept in a row (CSS clips to the width)
const ERROR_FIRST = new Set(["failed", "retrying"]);

/**
 * What a row says under its bar: the error of a failed (or retrying) task, else the last
 * progress message: "checking" is no explanation of why a task failed.
 * @param {any} t
 */
export function rowNote(t) {
  if (ERROR_FIRST.has(t.status) && t.error) return t.error;
  return t.progress_message || t.error || "";
}

export class TaskTable {
  /** @param {HTMLTableSectionElement} tbody */
  constructor(tbody) {
    this.tbody = tbody;
    /** @type {Map<string, Row>} */
    this.rows = new Map();
    this.selected = "";
    tbody.addEventListener("click", (e) => {
      const target = /** @type {HTMLElement} */ (e.target);
      if (target.closest("a")) return; // the link navigates by itself
      const tr = target.closest("tr");
      if (tr && tr.dataset.id) location.hash = `#/tasks/${tr.dataset.id}`;
    });
  }

  /**
   * Bring the table in line with `tasks` (in order).
   * @param {any[]} tasks
   * @param {number} now ms since the epoch
   */
  render(tasks, now) {
    const keep = new Set(tasks.map((t) => t.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    let at = this.tbody.firstElementChild;
    for (const task of tasks) {
      let row = this.rows.get(task.id);
      if (!row) {
        row = this.create(task);
        this.rows.set(task.id, row);
      }
      if (at !== row.tr) this.tbody.insertBefore(row.tr, at);
      else at = at.nextElementSibling;
      this.update(row, task, now);
    }
  }

  /** @param {any} task */
  create(task) {
    const link = h("a", { class: "task-link", href: `#/tasks/${task.id}` });
    const id = h("span", { class: "task-id mono", text: task.id.slice(0, 8) });
    const badge = h("span", { class: "badge" });
    const inline = h("span", { class: "badge badge-inline" }); // phones: no status column
    const bar = /** @type {HTMLProgressElement} */ (h("progress", { max: "100", value: "0" }));
    const pct = h("span", { class: "pct" });
    const msg = h("span", { class: "msg" });
    const type = h("td", { class: "c-type" });
    const prio = h("span", { class: "prio" });
    const age = h("td", { class: "c-age num" });
    const dur = h("td", { class: "c-dur num" });
    const tr = /** @type {HTMLTableRowElement} */ (
      h(
        "tr",
        { "data-id": task.id },
        h("td", { class: "c-name" }, link, h("div", { class: "name-sub" }, id, inline)),
        h("td", { class: "c-status" }, badge),
        h("td", { class: "c-progress" }, h("div", { class: "progress-line" }, bar, pct), msg),
        type,
        h("td", { class: "c-prio" }, prio),
        age,
        dur,
      )
    );
    return { tr, sig: "", link, id, badge, inline, bar, pct, msg, type, prio, age, dur };
  }

  /**
   * @param {Row} row
   * @param {any} t
   * @param {number} now
   */
  update(row, t, now) {
    const selected = t.id === this.selected;
    const sig = [t.status, t.progress, t.progress_message, t.error, t.name, t.priority, selected].join("|");
    if (sig !== row.sig) {
      row.sig = sig;
      row.tr.className = `status-${t.status}${selected ? " selected" : ""}`;
      if (selected) row.tr.setAttribute("aria-current", "true");
      else row.tr.removeAttribute("aria-current");
      setText(row.link, t.name || t.task_type);
      row.badge.className = `badge b-${t.status}`;
      setText(row.badge, t.status);
      row.inline.className = `badge badge-inline b-${t.status}`;
      setText(row.inline, t.status);
      const progress = t.status === "completed" ? 100 : t.progress || 0;
      row.bar.value = progress;
      row.bar.setAttribute("aria-label", `progress of ${t.name || t.id}`);
      setText(row.pct, `${progress}%`);
      const note = rowNote(t);
      setText(row.msg, note.length > NOTE_MAX ? `${note.slice(0, NOTE_MAX - 1)}…` : note);
      row.msg.title = note; // the full text on hover (and in the detail panel)
      setText(row.type, t.task_type);
      row.prio.className = `prio p${t.priority}`;
      setText(row.prio, String(t.priority));
    }
    if (t.status === "scheduled" && t.run_at && !t.progress_message) {
      setText(row.msg, `starts in ${duration(ms(t.run_at) - now)}`);
    }
    setText(row.age, ago(now - ms(t.created_at)));
    row.age.title = t.created_at || "";
    setText(row.dur, taskDuration(t, now));
  }
}

/**
 * Run time: finished - started, or so far for a running task.
 * @param {any} t
 * @param {number} now
 */
export function taskDuration(t, now) {
  const started = ms(t.started_at);
  if (!Number.isFinite(started)) return "—";
  const end = t.status === "processing" ? now : ms(t.completed_at || t.updated_at);
  return duration(end - started);
}
