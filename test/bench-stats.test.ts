/**
 * The statistics the benchmarks report (bench/lib/harness.ts): if these are wrong, every figure in
 * docs/performance.md is. Percentiles are nearest-rank: the smallest value with at least q of the
 * samples at or below it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { median, percentiles } from '../bench/lib/harness.js';

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
});
