// The submit form: task types and their example payloads come from /api/task-types; the
// API validates, and a 422 is shown next to the field it names (details.field).

import { ApiError, api } from "./api.js";
import { toast } from "./dialogs.js";
import { byId, h, replace } from "./dom.js";

const FIELDS = ["task_type", "name", "priority", "delay_s", "payload"];

export class SubmitForm {
  /** @param {(task: any) => void} onCreated */
  constructor(onCreated) {
    this.onCreated = onCreated;
    this.dialog = /** @type {HTMLDialogElement} */ (byId("submit-dialog"));
    this.form = /** @type {HTMLFormElement} */ (byId("submit-form"));
    /** @type {Map<string, any>} */
    this.types = new Map();
    this.edited = false;
    this.el = {
      type: /** @type {HTMLSelectElement} */ (byId("s-task_type")),
      name: /** @type {HTMLInputElement} */ (byId("s-name")),
      priority: /** @type {HTMLInputElement} */ (byId("s-priority")),
      delay: /** @type {HTMLInputElement} */ (byId("s-delay_s")),
      payload: /** @type {HTMLTextAreaElement} */ (byId("s-payload")),
      description: byId("s-description"),
    };
    this.el.type.addEventListener("change", () => this.useExample(!this.edited));
    this.el.payload.addEventListener("input", () => {
      this.edited = true;
      this.clearError("payload");
    });
    byId("s-example").addEventListener("click", () => this.useExample(true));
    byId("s-cancel").addEventListener("click", () => this.dialog.close());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
  }

  /** @param {any[]} types from /api/task-types */
  setTypes(types) {
    this.types = new Map(types.map((t) => [t.name, t]));
    const current = this.el.type.value;
    replace(this.el.type, ...types.map((t) => h("option", { value: t.name, text: t.name })));
    if (this.types.has(current)) this.el.type.value = current;
    if (!this.edited) this.useExample(true);
  }

  open() {
    this.clearErrors();
    if (!this.el.payload.value) this.useExample(true);
    this.dialog.showModal();
    this.el.type.focus();
  }

  /** @param {boolean} replacePayload */
  useExample(replacePayload) {
    const type = this.types.get(this.el.type.value);
    // Descriptions are docstrings: drop reStructuredText's ``literal`` quotes.
    this.el.description.textContent = type ? type.description.replaceAll("``", "") : "";
    if (replacePayload && type) {
      this.el.payload.value = JSON.stringify(type.example || {}, null, 2);
      this.edited = false;
      this.clearError("payload");
    }
  }

  async submit() {
    this.clearErrors();
    let payload;
    try {
      payload = JSON.parse(this.el.payload.value || "{}");
    } catch (err) {
      this.showError("payload", `Not valid JSON: ${err.message}`);
      return;
    }
    const body = { task_type: this.el.type.value, payload };
    if (this.el.name.value.trim()) body.name = this.el.name.value.trim();
    if (this.el.priority.value !== "") body.priority = Number(this.el.priority.value);
    if (this.el.delay.value !== "") body.delay_s = Number(this.el.delay.value);
    const button = byId("s-submit");
    button.disabled = true;
    try {
      const task = await api("/api/tasks", { method: "POST", body });
      this.dialog.close();
      this.el.name.value = "";
      toast(`Submitted ${task.name}`);
      this.onCreated(task);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        const field = err.field || "";
        const base = field.split(".")[0].split("[")[0];
        this.showError(FIELDS.includes(base) ? base : "form", err.message);
      } else {
        this.showError("form", err.message);
      }
    } finally {
      button.disabled = false;
    }
  }

  /**
   * @param {string} field
   * @param {string} message
   */
  showError(field, message) {
    const box = byId(`s-error-${field}`);
    box.textContent = message;
    box.hidden = false;
    const input = field === "form" ? null : document.getElementById(`s-${field}`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  /** @param {string} field */
  clearError(field) {
    const box = byId(`s-error-${field}`);
    box.textContent = "";
    box.hidden = true;
    const input = document.getElementById(`s-${field}`);
    if (input) input.removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const f of [...FIELDS, "form"]) this.clearError(f);
  }
}
