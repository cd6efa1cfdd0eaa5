// Charts drawn as SVG in pixels (re-laid out on resize, so text never stretches): ready
// depth per priority, and the helpers the throughput chart (throughput.js) shares.

import { s } from "./dom.js";
import { count } from "./format.js";

export const MARGIN = { left: 44, right: 12, top: 12, bottom: 24 };

/** The smallest 1/2/5 x 10^n at or above `v` (axis maxima that read well). */
export function niceMax(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Track an element's size without reading layout on every render. */
export function watchSize(el, onResize) {
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
