// Confirmations and toasts. Confirmations are a real <dialog> (focus is trapped and
// restored, Escape cancels) rather than window.confirm, which blocks the page's rendering.

import { byId, h } from "./dom.js";

const MAX_TOASTS = 4;

/**
 * Ask before doing something that cannot be undone.
 * @param {{title: string, message: string, confirm: string, danger?: boolean}} what
 * @returns {Promise<boolean>}
 */
export function confirmDialog(what) {
  const dialog = /** @type {HTMLDialogElement} */ (byId("confirm"));
  byId("confirm-title").textContent = what.title;
  byId("confirm-message").textContent = what.message;
  const ok = byId("confirm-ok");
  ok.textContent = what.confirm;
  ok.className = what.danger ? "danger" : "primary";
  dialog.returnValue = "";
  dialog.showModal();
  ok.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/**
 * A short message that goes away by itself (screen readers hear it: the region is live).
 * @param {string} message
 * @param {"info"|"error"} [kind]
 */
export function toast(message, kind = "info") {
  const region = byId("toasts");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null, text: message });
  region.append(item);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/**
 * Put text on the clipboard; where the browser refuses (plain http on a LAN address is
 * not a secure context) show it selected in a dialog to copy by hand.
 * @param {string} text
 * @param {string} what e.g. "curl command"
 */
export async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`Copied the ${what}`);
  } catch {
    const dialog = /** @type {HTMLDialogElement} */ (byId("copy"));
    const area = /** @type {HTMLTextAreaElement} */ (byId("copy-text"));
    area.value = text;
    dialog.showModal();
    area.select();
  }
}
