// Charts drawn as SVG in pixels (re-laid out on resize, so text never stretches):
// completed and failed per second over the last five minutes, and ready depth per priority.
//
// Throughput comes from the server's monotonic completed/failed counters in the stats
// messages (every process's work, nothing missed between messages): each difference is
// spread over the seconds it covers, into a fixed ring of 300 one-second buckets.

import { s, setText } from "./dom.js";
import { count, rate } from "./format.js";

const WINDOW_S = 300;
const MARGIN = { left: 44, right: 12, top: 12, bottom: 24 };

/** The smallest 1/2/5 x 10^n at or above `v` (axis maxima that read well). */
function niceMax(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Track an element's size without reading layout on every render. */
function watchSize(el, onResize) {
  const size = { w: el.clientWidth || 600, h: el.clientHeight || 200 };
  new ResizeObserver((entries) => {
    const box = entries[0].contentRect;
    if (box.width && (box.width !== size.w || box.height !== size.h)) {
      size.w = box.width;
      size.h = box.height;
      onResize();
    }
  }).observe(el);
  return size;
}

export class Throughput {
  /**
   * @param {SVGSVGElement} svg
   * @param {HTMLElement} now the "now: 12/s completed" read-out
   */
  constructor(svg, now) {
    this.svg = svg;
    this.readout = now;
    this.completed = new Float64Array(WINDOW_S);
    this.failed = new Float64Array(WINDOW_S);
    this.second = new Float64Array(WINDOW_S).fill(-1);
    /** @type {{t: number, c: number, f: number}|null} */
    this.last = null;
    this.since = 0; // first second with data (the page only knows what it saw)
    this.size = watchSize(svg, () => this.render(Date.now()));
    this.grid = s("g", { class: "grid" });
    this.area = s("path", { class: "area-completed" });
    this.lineC = s("path", { class: "line-completed" });
    this.lineF = s("path", { class: "line-failed" });
    svg.append(this.grid, this.area, this.lineF, this.lineC);
  }

  /**
   * Take the counters of a stats message.
   * @param {any} stats
   * @param {number} now ms
   */
  sample(stats, now) {
    const c = stats.completed_total;
    const f = stats.failed_total;
    if (typeof c !== "number" || typeof f !== "number") return;
    const last = this.last;
    this.last = { t: now, c, f };
    if (!last) {
      this.since = Math.floor(now / 1000);
      return;
    }
    const dc = c - last.c;
    const df = f - last.f;
    const dt = now - last.t;
    if (dc < 0 || df < 0 || dt <= 0) return; // counters reset (Redis flushed)
    const first = Math.max(Math.floor(last.t / 1000), Math.floor(now / 1000) - WINDOW_S);
    for (let sec = first; sec <= Math.floor(now / 1000); sec += 1) {
      const overlap = Math.min(now, (sec + 1) * 1000) - Math.max(last.t, sec * 1000);
      if (overlap > 0) this.add(sec, (dc * overlap) / dt, (df * overlap) / dt);
    }
  }

  add(sec, c, f) {
    const i = sec % WINDOW_S;
    if (this.second[i] !== sec) {
      this.second[i] = sec;
      this.completed[i] = 0;
      this.failed[i] = 0;
    }
    this.completed[i] += c;
    this.failed[i] += f;
  }

  value(series, sec) {
    const i = sec % WINDOW_S;
    return this.second[i] === sec ? series[i] : 0;
  }

  /** @param {number} now ms */
  render(now) {
    const { w, h } = this.size;
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const end = Math.floor(now / 1000) - 1; // the current second is still filling
    const start = end - WINDOW_S + 1;
    let max = 0;
    for (let sec = start; sec <= end; sec += 1) {
      max = Math.max(max, this.value(this.completed, sec), this.value(this.failed, sec));
    }
    const top = niceMax(max);
    const plotW = w - MARGIN.left - MARGIN.right;
    const plotH = h - MARGIN.top - MARGIN.bottom;
    const x = (sec) => MARGIN.left + ((sec - start) / (WINDOW_S - 1)) * plotW;
    const y = (v) => MARGIN.top + plotH - (v / top) * plotH;
    this.drawGrid(top, x, y, end);
    const from = Math.max(start, this.since);
    if (from > end) {
      for (const p of [this.area, this.lineC, this.lineF]) p.setAttribute("d", "");
      return;
    }
    const line = (series) => {
      const parts = [];
      for (let sec = from; sec <= end; sec += 1) {
        parts.push(`${x(sec).toFixed(1)},${y(this.value(series, sec)).toFixed(1)}`);
      }
      return `M${parts.join("L")}`;
    };
    const c = line(this.completed);
    this.lineC.setAttribute("d", c);
    this.lineF.setAttribute("d", line(this.failed));
    const base = y(0).toFixed(1);
    this.area.setAttribute("d", `${c}L${x(end).toFixed(1)},${base}L${x(from).toFixed(1)},${base}Z`);
    let recentC = 0;
    let recentF = 0;
    for (let sec = end - 9; sec <= end; sec += 1) {
      recentC += this.value(this.completed, sec);
      recentF += this.value(this.failed, sec);
    }
    const text = `${rate(recentC / 10)}/s completed · ${rate(recentF / 10)}/s failed (last 10 s)`;
    setText(this.readout, text);
    this.svg.setAttribute("aria-label", `Throughput over the last 5 minutes: ${text}`);
  }

  drawGrid(top, x, y, end) {
    const key = `${this.size.w}x${this.size.h}:${top}`;
    if (this.gridKey === key) return; // the grid only moves with the scale or the size
    this.gridKey = key;
    const nodes = [];
    for (const v of [0, top / 2, top]) {
      const yy = y(v).toFixed(1);
      nodes.push(s("line", { x1: MARGIN.left, x2: this.size.w - MARGIN.right, y1: yy, y2: yy }));
      const label = v === 0 ? "0" : rate(v);
      nodes.push(s("text", { x: MARGIN.left - 6, y: yy, class: "y-label", text: label }));
    }
    for (let m = 5; m >= 0; m -= 1) {
      const xx = x(end - m * 60).toFixed(1);
      const label = m === 0 ? "now" : `−${m}m`;
      nodes.push(s("line", { x1: xx, x2: xx, y1: MARGIN.top, y2: y(0), class: "tick" }));
      nodes.push(s("text", { x: xx, y: this.size.h - 6, class: "x-label", text: label }));
    }
    nodes.push(s("text", { x: 4, y: MARGIN.top + 4, class: "unit", text: "/s" }));
    this.grid.replaceChildren(...nodes);
  }
}

export class DepthBars {
  /** @param {SVGSVGElement} svg */
  constructor(svg) {
    this.svg = svg;
    this.depth = /** @type {Record<string, number>} */ ({});
    this.size = watchSize(svg, () => this.draw());
  }

  /** @param {Record<string, number>|undefined} depth ready tasks per priority "1".."10" */
  set(depth) {
    const next = depth || {};
    if (JSON.stringify(next) === JSON.stringify(this.depth)) return;
    this.depth = next;
    this.draw();
  }

  draw() {
    const { w, h } = this.size;
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const levels = Array.from({ length: 10 }, (_, i) => i + 1);
    const values = levels.map((p) => this.depth[String(p)] || 0);
    const top = niceMax(Math.max(...values));
    const plotW = w - MARGIN.left - MARGIN.right;
    const plotH = h - MARGIN.top - MARGIN.bottom - 14;
    const slot = plotW / levels.length;
    const barW = Math.max(4, Math.min(36, slot * 0.6));
    const nodes = [];
    const y0 = MARGIN.top + 14 + plotH;
    for (const v of [0, top]) {
      const yy = (y0 - (v / top) * plotH).toFixed(1);
      nodes.push(s("line", { x1: MARGIN.left, x2: w - MARGIN.right, y1: yy, y2: yy }));
      nodes.push(s("text", { x: MARGIN.left - 6, y: yy, class: "y-label", text: count(v) }));
    }
    levels.forEach((p, i) => {
      const v = values[i];
      const bh = (v / top) * plotH;
      const cx = MARGIN.left + slot * i + slot / 2;
      nodes.push(
        s(
          "rect",
          {
            x: (cx - barW / 2).toFixed(1),
            y: (y0 - bh).toFixed(1),
            width: barW.toFixed(1),
            height: Math.max(v > 0 ? 1 : 0, bh).toFixed(1),
            rx: 2,
            class: `bar p${p}`,
          },
          s("title", { text: `priority ${p}: ${count(v)} ready` }),
        ),
      );
      if (v > 0) {
        const label = { x: cx, y: (y0 - bh - 4).toFixed(1), class: "bar-label", text: count(v) };
        nodes.push(s("text", label));
      }
      nodes.push(s("text", { x: cx, y: h - 6, class: "x-label", text: `P${p}` }));
    });
    const total = values.reduce((a, b) => a + b, 0);
    if (!total) {
      const label = "nothing waiting";
      nodes.push(s("text", { x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, class: "empty-label", text: label }));
    }
    this.svg.replaceChildren(...nodes);
    const summary = levels.filter((p) => values[p - 1] > 0).map((p) => `P${p}: ${values[p - 1]}`);
    this.svg.setAttribute(
      "aria-label",
      `Ready tasks per priority: ${total ? summary.join(", ") : "none waiting"}`,
    );
  }
}
