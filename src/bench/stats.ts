/**
 * The statistics `hubbub bench` reports. Percentiles are nearest-rank: the smallest sample with at
 * least q of the samples at or below it, so every figure is a value that was really observed.
 */
import type { Histogram, LatencyStats } from './summary.js';

/** The nearest-rank q-quantile (0 < q ≤ 1) of ascending-sorted samples. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function latencyStats(values: ArrayLike<number>): LatencyStats {
  const n = values.length;
  if (n === 0) return { samples: 0, min: NaN, mean: NaN, p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN };
  const s = Float64Array.from(values).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i]!;
  return { samples: n, min: s[0]!, mean: sum / n, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), p999: quantile(s, 0.999), max: s[n - 1]! };
}

export function median(values: number[]): number {
  const s = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Histogram bucket bounds for latencies: 1-2-5 steps from 0.05 ms to 10 s. */
export const LATENCY_BOUNDS_MS = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/** Count samples into buckets: counts[i] holds bounds[i-1] < v ≤ bounds[i]; the last count is v > the last bound. */
export function histogram(values: ArrayLike<number>, bounds: number[] = LATENCY_BOUNDS_MS): Histogram {
  const counts = new Array<number>(bounds.length + 1).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    let lo = 0;
    let hi = bounds.length; // binary search for the first bound ≥ v
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (bounds[mid]! >= v) hi = mid;
      else lo = mid + 1;
    }
    counts[lo]!++;
  }
  return { bounds: [...bounds], counts };
}

/** Least-squares slope of y over x (NaN with fewer than two points). */
export function slope(xs: number[], ys: number[]): number {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return NaN;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i]!;
    sy += ys[i]!;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** A monotonic clock in microseconds, shared by every process on the machine (CLOCK_MONOTONIC). */
export function nowUs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
}
