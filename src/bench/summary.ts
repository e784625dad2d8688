/**
 * The result of one `hubbub bench` run: what `--json` writes and what the table and the HTML
 * report are rendered from. Times are milliseconds unless a name says otherwise; latencies are
 * publish→deliver (or connect→upgrade for handshakes), measured with the machine's monotonic clock.
 */

export type ScenarioName = 'fanout' | 'throughput' | 'storm' | 'sustained' | 'latency';

/** Percentiles of a set of samples, nearest-rank; NaN (null in JSON) when there were no samples. */
export interface LatencyStats {
  samples: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** A latency histogram: counts[i] samples fell in (bounds[i-1], bounds[i]] ms; the last bucket is open-ended (> bounds[last]). */
export interface Histogram {
  /** Upper bounds in ms, ascending; counts has one more entry than bounds. */
  bounds: number[];
  counts: number[];
}

/** One second of the run. */
export interface SecondPoint {
  /** Seconds since the measured part of the run started (the end of this second). */
  t: number;
  published: number;
  delivered: number;
  /** Connections opened (storm) in this second. */
  connected?: number;
  /** Latency of the samples taken in this second (ms); NaN when none. */
  p50: number;
  p99: number;
  max: number;
  /** Server resident memory at the end of this second (from /api/stats), bytes. */
  serverRss?: number;
  /** Server CPU in this second, % of one core (from /api/stats). */
  serverCpu?: number;
  /** Generator CPU in this second, % of one core (all generator processes). */
  generatorCpu: number;
}

export interface CpuUse {
  /** CPU seconds (user + system) during the measured part. */
  seconds: number;
  /** % of one core over the measured part. */
  percent: number;
  /** µs of CPU per delivery (NaN when nothing was delivered). */
  usPerDelivery: number;
}

export interface ConnectionStats {
  attempted: number;
  ok: number;
  failed: number;
  /** Failures by kind, e.g. {"timeout": 3, "refused": 1, "http 503": 7}. */
  errors: Record<string, number>;
  /** Successful upgrades per second over the opening phase. */
  perSecond: number;
  /** Time from starting the TCP connect to the 101 answer (and welcome), ms. */
  handshake: LatencyStats;
  handshakeHistogram: Histogram;
  /** Source addresses and generator processes the connections were spread over. */
  sourceAddresses: string[];
  processes: number;
}

export interface BenchSummary {
  tool: 'hubbub bench';
  version: string;
  scenario: ScenarioName;
  /** ISO time the run started. */
  started: string;
  url: string;
  encoding: 'json' | 'protobuf';
  /** The options as used, defaults filled in. */
  options: Record<string, string | number | boolean | undefined>;
  machine: { cpus: number; cpuModel: string; node: string; loadAvg: number[] };
  connections: ConnectionStats;
  /** Measured part of the run, ms. */
  durationMs: number;
  published: number;
  /** Deliveries expected: each publication times the subscribers it should reach. */
  expected: number;
  delivered: number;
  /** Expected deliveries that never arrived (by the end of the drain period). */
  lost: number;
  /** Deliveries that arrived later than `lateMs` after publishing (sampled subscribers only). */
  late: number;
  lateMs: number;
  /** Sampled deliveries that arrived out of order. */
  disorder: number;
  deliveriesPerSec: number;
  publishesPerSec: number;
  latency: LatencyStats;
  histogram: Histogram;
  series: SecondPoint[];
  cpu: { server?: CpuUse; generator: CpuUse };
  /** Server RSS at the start and end of the measured part (bytes), and the least-squares slope over the second half of the series (bytes/s; the first half includes the heap's warm-up). */
  serverMemory?: { start: number; end: number; slopePerSec: number };
  /** Things the reader should know, e.g. "generator CPU above 85%: figures may be generator-bound". */
  notes: string[];
}
