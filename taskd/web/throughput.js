// The throughput chart: completed and failed per minute over 5 min, 1 h, 24 h or 7 d,
// from the server's per-minute history (GET /api/tasks/stats/history), so it shows the
// same past after a reload, in another browser, and after the daemon restarted.
//
// The history is fetched again on a timer (short ranges often, long ranges rarely) and
// whenever the live connection (re)starts; the "now" read-out comes from the live stats
// messages' monotonic counters, which need no request at all.

import { api } from "./api.js";
import { MARGIN, niceMax, watchSize } from "./chart.js";
import { s, setText } from "./dom.js";
import { count, duration, rate } from "./format.js";

const RANGE_KEY = "taskd.throughput-range";
/** minutes shown, seconds per bucket, refresh period, x-axis tick step (minutes) */
export const RANGES = {
  "5m": { label: "5 min", minutes: 5, bucket_s: 60, every_ms: 10_000, tick: 1 },
  "1h": { label: "1 h", minutes: 60, bucket_s: 60, every_ms: 15_000, tick: 15 },
  "24h": { label: "24 h", minutes: 1440, bucket_s: 600, every_ms: 60_000, tick: 360 },
  "7d": { label: "7 d", minutes: 10080, bucket_s: 3600, every_ms: 300_000, tick: 1440 },
};
const LIVE_WINDOW_MS = 10_000;

/** @param {string|null} key */
function validRange(key) {
  return key && Object.hasOwn(RANGES, key) ? key : "1h";
}

/** "−45m", "−6h", "−2d": how far back a tick is. */
function tickLabel(minutesAgo) {
  if (minutesAgo === 0) return "now";
  if (minutesAgo % 1440 === 0) return `−${minutesAgo / 1440}d`;
  if (minutesAgo % 60 === 0) return `−${minutesAgo / 60}h`;
  return `−${minutesAgo}m`;
}

export class Throughput {
  /**
   * @param {SVGSVGElement} svg
   * @param {HTMLElement} readout the line under the chart
   * @param {HTMLElement} buttons the range buttons (each with data-range)
   */
  constructor(svg, readout, buttons) {
    this.svg = svg;
    this.readout = readout;
    this.buttons = buttons;
    let stored = null;
    try {
      stored = localStorage.getItem(RANGE_KEY);
    } catch {
      stored = null; // storage disabled: the default range
    }
    this.range = validRange(stored);
    /** @type {any[]|null} */
    this.buckets = null;
    this.error = "";
    this.seq = 0;
    this.timer = 0;
    this.dirty = true;
    /** @type {{t: number, c: number, f: number}[]} live counter samples */
    this.samples = [];
    this.size = watchSize(svg, () => {
      this.dirty = true;
      this.render();
    });
    this.grid = s("g", { class: "grid" });
    this.area = s("path", { class: "area-completed" });
    this.lineC = s("path", { class: "line-completed" });
    this.lineF = s("path", { class: "line-failed" });
    svg.append(this.grid, this.area, this.lineF, this.lineC);
    buttons.addEventListener("click", (e) => {
      const button = /** @type {HTMLElement} */ (e.target).closest("button[data-range]");
      if (button) this.setRange(button.dataset.range || "");
    });
    this.markRange();
  }

  /** @param {string} key */
  setRange(key) {
    this.range = validRange(key);
    try {
      localStorage.setItem(RANGE_KEY, this.range);
    } catch {
      // Storage disabled: the choice lasts until the page is reloaded.
    }
    this.markRange();
    this.buckets = null;
    this.dirty = true;
    this.load();
  }

  markRange() {
    for (const b of this.buttons.querySelectorAll("button[data-range]")) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-range") === this.range));
    }
    this.svg.dataset.range = this.range;
  }

  /** Fetch the current range's history now, then again after its refresh period. */
  async load() {
    clearTimeout(this.timer);
    const seq = ++this.seq;
    const r = RANGES[this.range];
    try {
      const body = await api(`/api/tasks/stats/history?minutes=${r.minutes}&bucket_s=${r.bucket_s}`);
      if (seq !== this.seq) return;
      this.buckets = body.buckets;
      this.error = "";
    } catch (err) {
      if (seq !== this.seq) return;
      this.error = err instanceof Error ? err.message : String(err);
    }
    this.dirty = true;
    this.render();
    this.timer = setTimeout(() => this.load(), r.every_ms);
  }

  /**
   * Take the counters of a stats message (for the "now" rate only).
   * @param {any} stats
   * @param {number} now ms
   */
  sample(stats, now) {
    if (typeof stats.completed_total !== "number") return;
    this.samples.push({ t: now, c: stats.completed_total, f: stats.failed_total || 0 });
    while (this.samples.length > 2 && now - this.samples[1].t >= LIVE_WINDOW_MS) {
      this.samples.shift();
    }
  }

  /**
   * Completed and failed per second over the last ~10 s. Stats messages come only when
   * the overview changes, so a quiet spell (no message) reads as 0/s, not the last rate.
   * @param {number} now ms
   */
  liveRate(now) {
    const recent = this.samples.filter((x) => now - x.t <= LIVE_WINDOW_MS);
    if (!this.samples.length) return null;
    if (recent.length < 2) return { c: 0, f: 0 };
    const first = recent[0];
    const last = recent[recent.length - 1];
    const dt = Math.max(now - first.t, 1000) / 1000;
    return { c: Math.max(0, last.c - first.c) / dt, f: Math.max(0, last.f - first.f) / dt };
  }

  render() {
    if (this.dirty) {
      this.dirty = false;
      this.draw();
    }
    setText(this.readout, this.summary());
  }

  summary() {
    const r = RANGES[this.range];
    if (this.error) return `History failed to load (${this.error}); retrying.`;
    if (!this.buckets) return `Loading the last ${r.label}…`;
    let c = 0;
    let f = 0;
    let latest = null;
    for (const b of this.buckets) {
      c += b.completed;
      f += b.failed;
      if (b.run_ms_p50 !== null) latest = b;
    }
    const parts = [`Last ${r.label}: ${count(c)} completed · ${count(f)} failed`];
    if (latest) {
      parts.push(`run time p50 ${duration(latest.run_ms_p50)} · p95 ${duration(latest.run_ms_p95)}`);
    }
    const live = this.liveRate(Date.now());
    if (live) parts.push(`now ${rate(live.c)}/s`);
    return parts.join(" · ");
  }

  draw() {
    const { w, h } = this.size;
    const r = RANGES[this.range];
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const buckets = this.buckets || [];
    const perMin = 60 / r.bucket_s;
    const top = niceMax(Math.max(0, ...buckets.map((b) => Math.max(b.completed, b.failed) * perMin)));
    const plotW = w - MARGIN.left - MARGIN.right;
    const plotH = h - MARGIN.top - MARGIN.bottom;
    const n = Math.max(buckets.length - 1, 1);
    const x = (i) => MARGIN.left + (i / n) * plotW;
    const y = (v) => MARGIN.top + plotH - (v / top) * plotH;
    // The last bucket (the current, filling one) is "now" at the right edge; ticks are
    // placed on the same scale as the buckets: minutes back from it.
    const span = Math.max(buckets.length - 1, 1) * (r.bucket_s / 60);
    this.drawGrid(top, y, r.tick, buckets.length ? span : r.minutes);
    if (!buckets.length) {
      for (const p of [this.area, this.lineC, this.lineF]) p.setAttribute("d", "");
    } else {
      const line = (key) =>
        `M${buckets.map((b, i) => `${x(i).toFixed(1)},${y(b[key] * perMin).toFixed(1)}`).join("L")}`;
      const c = line("completed");
      this.lineC.setAttribute("d", c);
      this.lineF.setAttribute("d", line("failed"));
      const base = y(0).toFixed(1);
      this.area.setAttribute("d", `${c}L${x(n).toFixed(1)},${base}L${x(0).toFixed(1)},${base}Z`);
    }
    const total = buckets.reduce((a, b) => a + b.completed, 0);
    this.svg.dataset.completed = String(total);
    this.svg.dataset.points = String(buckets.length);
    this.svg.setAttribute("aria-label", `Throughput over the last ${r.label}: ${count(total)} completed`);
  }

  /**
   * @param {number} top
   * @param {(v: number) => number} y
   * @param {number} tick minutes between x ticks
   * @param {number} span minutes from the left edge to "now"
   */
  drawGrid(top, y, tick, span) {
    const nodes = [];
    for (const v of [0, top / 2, top]) {
      const yy = y(v).toFixed(1);
      nodes.push(s("line", { x1: MARGIN.left, x2: this.size.w - MARGIN.right, y1: yy, y2: yy }));
      nodes.push(s("text", { x: MARGIN.left - 6, y: yy, class: "y-label", text: v === 0 ? "0" : rate(v) }));
    }
    const plotW = this.size.w - MARGIN.left - MARGIN.right;
    for (let ago = 0; ago <= span; ago += tick) {
      const xx = (MARGIN.left + plotW * (1 - ago / span)).toFixed(1);
      nodes.push(s("line", { x1: xx, x2: xx, y1: MARGIN.top, y2: y(0), class: "tick" }));
      nodes.push(s("text", { x: xx, y: this.size.h - 6, class: "x-label", text: tickLabel(ago) }));
    }
    this.grid.replaceChildren(...nodes);
  }
}
