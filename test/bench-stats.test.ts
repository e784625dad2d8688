/**
 * The statistics the benchmarks report (src/bench/stats.ts, also through bench/lib/harness.ts): if these are wrong, every figure in
 * docs/performance.md is. Percentiles are nearest-rank: the smallest value with at least q of the
 * samples at or below it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { median, percentiles } from '../bench/lib/harness.js';
import { histogram, latencyStats, slope } from '../src/bench/stats.js';

describe('benchmark statistics', () => {
  it('percentiles are nearest-rank over the samples, whatever their order', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted on purpose
    assert.deepEqual(percentiles(hundred), { samples: 100, p50: 50, p99: 99, max: 100 });
    const thousand = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 1000); // a permutation of 0 … 999
    assert.deepEqual(percentiles(thousand), { samples: 1000, p50: 499, p99: 989, max: 999 });
  });

  it('percentiles of few samples, and of none', () => {
    assert.deepEqual(percentiles([5]), { samples: 1, p50: 5, p99: 5, max: 5 });
    assert.deepEqual(percentiles([3, 1]), { samples: 2, p50: 1, p99: 3, max: 3 });
    const none = percentiles([]);
    assert.equal(none.samples, 0);
    assert.ok(Number.isNaN(none.p50) && Number.isNaN(none.max));
  });

  it('percentiles compare numbers as numbers (10 is above 9)', () => {
    assert.deepEqual(percentiles([10, 9, 100, 2]), { samples: 4, p50: 9, p99: 100, max: 100 });
  });

  it('median of odd and even counts, ignoring NaN rounds', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([10, Number.NaN, 30]), 20);
    assert.ok(Number.isNaN(median([])));
  });

  it('latencyStats gives every reported percentile, nearest-rank, with min and mean', () => {
    const thousand = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 1000 + 1); // a permutation of 1 … 1000
    assert.deepEqual(latencyStats(thousand), { samples: 1000, min: 1, mean: 500.5, p50: 500, p90: 900, p99: 990, p999: 999, max: 1000 });
    const few = latencyStats([2, 4]);
    assert.deepEqual([few.p50, few.p90, few.p999, few.mean], [2, 4, 4, 3]);
    const none = latencyStats([]);
    assert.equal(none.samples, 0);
    assert.ok([none.min, none.mean, none.p90, none.p999].every(Number.isNaN));
  });

  it('histogram counts a value equal to a bound into that bound\'s bucket, and larger ones into the overflow', () => {
    const h = histogram([0, 1, 1.0001, 2, 2.5, 5, 7, 1e9], [1, 2, 5]);
    assert.deepEqual(h.bounds, [1, 2, 5]);
    assert.deepEqual(h.counts, [2, 2, 2, 2]);
    assert.deepEqual(histogram([], [1]).counts, [0, 0]);
    const many = Array.from({ length: 10_000 }, (_, i) => i / 100);
    assert.equal(histogram(many).counts.reduce((a, b) => a + b, 0), 10_000, 'every sample lands in one bucket');
  });

  it('slope is the least-squares trend, and undefined with fewer than two points', () => {
    assert.equal(slope([1, 2, 3, 4], [10, 12, 14, 16]), 2);
    assert.equal(slope([1, 2, 3], [5, 5, 5]), 0);
    assert.ok(Math.abs(slope([0, 1, 2, 3], [0, 1, 1, 2]) - 0.6) < 1e-12);
    assert.ok(Number.isNaN(slope([1], [1])));
  });
});
