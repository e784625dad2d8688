/** Reconnect delays: exponential backoff with full jitter (a uniform draw below the exponential cap). */
export interface BackoffOptions {
  /** Cap of the first retry's delay, in ms. */
  minDelay: number;
  /** Largest cap, in ms. */
  maxDelay: number;
}

/** The cap for a retry: minDelay × 2^(attempt−1), at most maxDelay. `attempt` counts from 1. */
export function backoffCap(attempt: number, o: BackoffOptions): number {
  return Math.min(o.maxDelay, o.minDelay * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
}

/** Full jitter: a uniformly random delay in [0, cap); spreads a crowd of reconnecting clients out. */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCap(attempt, o));
}
