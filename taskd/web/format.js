// Human-readable numbers, sizes and durations, the same everywhere on the page.

const NUMBER = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const RATE = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** @param {number} n */
export function count(n) {
  return NUMBER.format(n || 0);
}

/** @param {number} n */
export function rate(n) {
  return RATE.format(n || 0);
}

/**
 * A duration in ms as "850 ms", "12.3 s", "4m 05s", "3h 02m", "2d 4h".
 * @param {number|null|undefined} ms
 */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/**
 * How long ago, compactly: "now", "42s", "5m", "3h", "2d".
 * @param {number} ms
 */
export function ago(ms) {
  if (!Number.isFinite(ms)) return "—";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 2) return "now";
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** @param {number} n bytes */
export function bytes(n) {
  if (!Number.isFinite(n)) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/**
 * Milliseconds since the epoch of an ISO timestamp (NaN for null).
 * @param {string|null|undefined} iso
 */
export function ms(iso) {
  return iso ? Date.parse(iso) : NaN;
}

/**
 * A timestamp as local date and time with seconds.
 * @param {string|null|undefined} iso
 */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${d.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/**
 * Seconds as a setting reads best: "30 s", "24 h".
 * @param {number} s
 */
export function seconds(s) {
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0 && s >= 60) return `${s / 60} min`;
  return `${s} s`;
}
