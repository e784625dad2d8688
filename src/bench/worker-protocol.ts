/** Messages between the `hubbub bench` coordinator (generator.ts) and its generator processes (worker.ts). */

/** Where a dialect lives: one of src/bench/dialect.ts's by name, or an export of another module (the comparisons' Socket.IO). */
export interface DialectRef {
  name: string;
  module?: string;
}

export interface ConnectSpec {
  host: string;
  port: number;
  /** Upgrade path; the dialect's own when unset. */
  path?: string;
  dialect: DialectRef;
  token?: string;
  /** Connections to open in this process, and the global index of the first. */
  count: number;
  firstIndex: number;
  /** Source address per connection (undefined: the kernel's choice). */
  localAddress: (string | undefined)[];
  /** Connection attempts in flight at once. */
  concurrency: number;
  /** Channel each connection subscribes to ('{i}' is replaced by its global index, '{c}' by the index modulo channelCount); none when unset. */
  channel?: string;
  channelCount?: number;
  /** Connections whose global index is a multiple of this read latency (0: none). */
  sampleEvery: number;
  timeoutMs: number;
}

export interface ThroughputSpec {
  channel: string;
  messages: number;
  window: number;
  /** Padding characters in each publication's data. */
  pad: number;
  /** Publications per second per client at most (the server's per-connection limit). */
  rate?: number;
}

export type ToWorker =
  | { op: 'connect'; spec: ConnectSpec }
  | { op: 'reset'; lateMs: number }
  | { op: 'tick' }
  | { op: 'throughput'; spec: ThroughputSpec }
  | { op: 'close' }
  | { op: 'exit' };

export type ToCoordinator =
  | { ev: 'ready' }
  | { ev: 'progress'; ok: number; failed: number }
  | { ev: 'connected'; ok: number; failed: number; errors: Record<string, number>; handshakeMs: number[]; firstErrors: string[]; added: number; messageRate?: number }
  | { ev: 'fully'; n: number }
  | { ev: 'tick'; delivered: number; latencies: number[]; disorder: number; late: number; undecodable: number; cpuUs: number; fully: number; closed: number; open: number }
  | { ev: 'closed' }
  | { ev: 'error'; message: string };
