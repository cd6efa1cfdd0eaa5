// Signing in: when the API answers 401 the login dialog asks for a token, checks it with
// one read, keeps it for this tab (sessionStorage) and restarts the page's connections.

import { ApiError, api, setToken, token } from "./api.js";
import { byId } from "./dom.js";

export class Login {
  /** @param {() => void} onSignedIn */
  constructor(onSignedIn) {
    this.onSignedIn = onSignedIn;
    this.dialog = /** @type {HTMLDialogElement} */ (byId("login-dialog"));
    this.input = /** @type {HTMLInputElement} */ (byId("l-token"));
    this.error = byId("l-error");
    window.addEventListener("taskd:unauthorized", () => this.open());
    byId("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    // Without a token the page cannot show anything: Escape must not leave it blank.
    this.dialog.addEventListener("cancel", (e) => e.preventDefault());
    const signOut = byId("sign-out");
    signOut.hidden = !token();
    signOut.addEventListener("click", () => {
      setToken(null);
      location.reload();
    });
  }

  open() {
    if (this.dialog.open) return;
    const had = Boolean(token());
    setToken(null);
    this.error.textContent = had ? "Your token is no longer accepted; sign in again." : "";
    this.error.hidden = !had;
    this.input.value = "";
    this.dialog.showModal();
    this.input.focus();
  }

  async submit() {
    const value = this.input.value.trim();
    if (!value) return;
    setToken(value);
    try {
      await api("/api/tasks/stats/overview", { quiet401: true });
    } catch (err) {
      setToken(null);
      this.error.textContent =
        err instanceof ApiError && err.status === 401
          ? "That token was not accepted."
          : `Could not check the token: ${err.message}`;
      this.error.hidden = false;
      this.input.select();
      return;
    }
    this.dialog.close();
    byId("sign-out").hidden = false;
    this.onSignedIn();
  }
}
