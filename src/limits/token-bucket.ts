/**
 * A token bucket: `rate` tokens per second, holding at most `burst`. Time is passed in, so one
 * `Date.now()` can serve many buckets and tests need no clock tricks.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Take one token if there is one. */
  take(now: number): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** True when the bucket has refilled completely (and can be forgotten). */
  full(now: number): boolean {
    return this.tokens + ((now - this.last) * this.rate) / 1000 >= this.burst;
  }
}

/** Buckets keyed by a string (an IP address), forgetting full ones now and then so the map stays small. */
export class KeyedBuckets {
  private readonly buckets = new Map<string, TokenBucket>();
  private lastSweep = 0;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  take(key: string, now = Date.now()): boolean {
    if (now - this.lastSweep > 10_000) {
      this.lastSweep = now;
      for (const [k, b] of this.buckets) if (b.full(now)) this.buckets.delete(k);
    }
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = new TokenBucket(this.rate, this.burst, now)));
    return bucket.take(now);
  }
}
