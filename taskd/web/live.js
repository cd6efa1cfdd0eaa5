// The live connection: one WebSocket to /ws, reconnected by itself, resuming from the last
// event id it saw (?since=), so a restart of the server or a network blip loses nothing.
//
// States: "connecting" (first attempt), "live" (a snapshot or a replay arrived),
// "reconnecting" (lost, retrying with backoff), "offline" (the browser is offline or the
// server has been unreachable for a while; retries go on, more slowly).

import { socketUrl } from "./api.js";

const BACKOFF_MS = [250, 500, 1000, 2000, 3000, 5000];
const OFFLINE_AFTER_MS = 15000;
const FORGET_SINCE_AFTER = 8; // failed attempts in a row: the token may be invalid

export class Live {
  /**
   * @param {(message: any) => void} onMessage every parsed server message
   * @param {(state: string, detail: string) => void} onState connection state changes
   * @param {() => void} onUnauthorized the server refused the token (close code 1008)
   */
  constructor(onMessage, onState, onUnauthorized) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    /** @type {string|null} */
    this.since = null;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.failures = 0;
    this.lostAt = 0;
    this.timer = 0;
    this.stopped = true;
    this.state = "";
    window.addEventListener("online", () => this.retryNow());
    window.addEventListener("offline", () => this.setState("offline", "the browser is offline"));
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
  }

  retryNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    if (this.state !== "live") {
      this.setState(this.lostAt ? this.lostState() : "connecting", "");
    }
    const ws = new WebSocket(socketUrl(this.since));
    this.ws = ws;
    ws.addEventListener("message", (e) => {
      if (ws !== this.ws) return;
      let message;
      try {
        message = JSON.parse(e.data);
      } catch {
        return;
      }
      if (message.last_event_id) this.since = message.last_event_id;
      if (message.type === "snapshot" || message.type === "resumed") {
        this.failures = 0;
        this.lostAt = 0;
        this.setState("live", "");
      }
      this.onMessage(message);
    });
    ws.addEventListener("close", (e) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (e.code === 1008) {
        this.stopped = true;
        this.setState("offline", "sign in to see live updates");
        this.onUnauthorized();
        return;
      }
      this.scheduleRetry();
    });
  }

  scheduleRetry() {
    if (this.stopped) return;
    if (!this.lostAt) this.lostAt = Date.now();
    this.failures += 1;
    if (this.failures >= FORGET_SINCE_AFTER) this.since = null; // a fresh snapshot instead
    const base = BACKOFF_MS[Math.min(this.failures - 1, BACKOFF_MS.length - 1)];
    const delay = base * (0.8 + Math.random() * 0.4);
    const state = this.lostState();
    this.setState(state, `retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  lostState() {
    const offline = !navigator.onLine || Date.now() - this.lostAt > OFFLINE_AFTER_MS;
    return offline ? "offline" : "reconnecting";
  }

  /**
   * @param {string} state
   * @param {string} detail
   */
  setState(state, detail) {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.onState(state, detail);
  }
}
