/**
 * The scenarios of `hubbub bench`, each turned into one BenchSummary:
 *   fanout      1 publisher → S subscribers (over C channels), a window of outstanding publications
 *   throughput  N clients, each publishing to its own channel and receiving its own publications
 *   storm       N connections opened as fast as the server takes them
 *   sustained   a fixed publication rate for a duration, second by second
 *   latency     a low fixed rate, every subscriber sampled, for a clean latency distribution
 */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { VERSION } from '../version.js';
import { Generator, openFileLimit, openPublisher, PER_PROCESS, publishPhase, type ConnectResult, type Target, type Tick } from './generator.js';
import type { Progress } from './progress.js';
import { histogram, LATENCY_BOUNDS_MS, latencyStats, slope } from './stats.js';
import type { BenchSummary, ScenarioName, SecondPoint } from './summary.js';
import type { DialectRef } from './worker-protocol.js';

export const SCENARIOS: ScenarioName[] = ['fanout', 'throughput', 'storm', 'sustained', 'latency'];

export interface BenchOptions {
  scenario: ScenarioName;
  url: string;
  encoding: 'json' | 'protobuf';
  /** Subscribers (fanout, sustained, latency), publishing clients (throughput) or connections (storm). */
  clients: number;
  /** Publications per channel (fanout) or per client (throughput). */
  messages: number;
  /** Bytes of each publication's data (JSON text). */
  size: number;
  /** Publications per second per channel (fanout: optional; sustained, latency: fixed). */
  rate?: number;
  /** Seconds (sustained, latency). */
  duration: number;
  channels: number;
  /** Publications outstanding per channel (fanout) or per client (throughput). */
  window: number;
  /** Subscribers that read latency; the rest only count. */
  sample: number;
  /** Generator processes (0: one per 15,000 connections). */
  processes: number;
  sourceAddresses?: string[];
  /** Connection attempts in flight at once per generator process. */
  concurrency: number;
  /** A delivery later than this (ms) counts as late. */
  lateMs: number;
  token?: string;
  apiKey?: string;
  /** Read the server's CPU and memory from /proc/<pid> instead of /api/stats. */
  serverPid?: number;
  /** Protocol spoken (the comparisons use other servers' dialects); Hubbub's per `encoding` by default. */
  dialect?: DialectRef;
  timeoutMs: number;
}

/** Defaults per scenario for the options the user did not give. */
export const DEFAULTS: Record<ScenarioName, { clients: number; messages: number; rate?: number; duration: number; sample: number; window: number }> = {
  fanout: { clients: 1000, messages: 1000, duration: 0, sample: 50, window: 32 },
  throughput: { clients: 100, messages: 1000, duration: 0, sample: 10, window: 8 },
  storm: { clients: 10_000, messages: 0, duration: 0, sample: 0, window: 0 },
  sustained: { clients: 1000, messages: 0, rate: 200, duration: 60, sample: 50, window: 0 },
  latency: { clients: 100, messages: 0, rate: 100, duration: 10, sample: 100, window: 0 },
};

/** The `{"s":…,"t":…,"p":""}` data without padding is about this long. */
const DATA_OVERHEAD = 40;

// ---- the server's side ----------------------------------------------------------------------------

interface ServerSample {
  rss: number;
  cpuUs: number;
}

/** Reads the server's memory and CPU time: from /proc for a local pid, else from /api/stats. */
class ServerProbe {
  note: string | undefined;
  private disabled = false;
  /** /proc counts CPU time in USER_HZ ticks, 100 a second on Linux whatever the kernel's own HZ. */
  private readonly clkTck = 100;

  constructor(
    private readonly statsUrl: string,
    private readonly apiKey: string | undefined,
    private readonly pid: number | undefined,
  ) {}

  async sample(): Promise<ServerSample | undefined> {
    if (this.disabled) return undefined;
    if (this.pid !== undefined) {
      try {
        const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
        return { cpuUs: ((Number(f[11]) + Number(f[12])) * 1e6) / this.clkTck, rss: rss ? Number(rss[1]) * 1024 : NaN };
      } catch (err) {
        this.disabled = true;
        this.note = `server CPU and memory: /proc/${this.pid} could not be read (${(err as Error).message})`;
        return undefined;
      }
    }
    try {
      const r = await fetch(this.statsUrl, { headers: this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}, signal: AbortSignal.timeout(2000) });
      const body = (await r.json()) as { rss?: number; cpu_user?: number; cpu_system?: number };
      if (!r.ok || typeof body.rss !== 'number') throw new Error(`HTTP ${r.status}`);
      return { rss: body.rss, cpuUs: (body.cpu_user ?? NaN) + (body.cpu_system ?? NaN) };
    } catch (err) {
      this.disabled = true;
      this.note = `server CPU and memory: ${this.statsUrl} answered ${(err as Error).message}; pass --api-key (or --server-pid for a server on this machine)`;
      return undefined;
    }
  }
}

function statsUrlOf(wsUrl: URL): string {
  const u = new URL(wsUrl.href);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = '/api/stats';
  u.search = '';
  return u.href;
}

// ---- assembling the summary ------------------------------------------------------------------------

class Recorder {
  readonly series: SecondPoint[] = [];
  readonly latencies: number[] = [];
  delivered = 0;
  disorder = 0;
  late = 0;
  undecodable = 0;
  generatorCpuUs = 0;
  private lastServer: ServerSample | undefined;
  private lastAt = performance.now();
  private ownCpu = process.cpuUsage();
  firstServer: ServerSample | undefined;

  constructor(private readonly probe: ServerProbe) {}

  async start(): Promise<void> {
    this.firstServer = this.lastServer = await this.probe.sample();
    this.lastAt = performance.now();
    this.ownCpu = process.cpuUsage();
  }

  /** Record one second (or the last, shorter stretch) of the run. */
  async add(t: Tick, published: number, extra: Partial<SecondPoint> = {}): Promise<void> {
    const now = performance.now();
    const seconds = (now - this.lastAt) / 1000;
    this.lastAt = now;
    const own = process.cpuUsage(this.ownCpu);
    this.ownCpu = process.cpuUsage();
    const genUs = t.cpuUs + own.user + own.system;
    this.generatorCpuUs += genUs;
    this.delivered += t.delivered;
    this.disorder += t.disorder;
    this.late += t.late;
    this.undecodable += t.undecodable;
    for (const l of t.latencies) this.latencies.push(l);
    const lat = latencyStats(t.latencies);
    const server = await this.probe.sample();
    const point: SecondPoint = {
      t: this.series.length + 1,
      published,
      delivered: t.delivered,
      p50: lat.p50,
      p99: lat.p99,
      max: lat.max,
      generatorCpu: seconds > 0 ? genUs / 1e4 / seconds : NaN,
      ...extra,
    };
    if (server) {
      point.serverRss = server.rss;
      if (this.lastServer && seconds > 0) point.serverCpu = (server.cpuUs - this.lastServer.cpuUs) / 1e4 / seconds;
      this.lastServer = server;
    }
    this.series.push(point);
  }

  get lastServerSample(): ServerSample | undefined {
    return this.lastServer;
  }
}

function cpuUse(us: number, ms: number, deliveries: number): { seconds: number; percent: number; usPerDelivery: number } {
  return { seconds: us / 1e6, percent: ms > 0 ? us / 10 / ms : NaN, usPerDelivery: deliveries > 0 ? us / deliveries : NaN };
}

function connectionStats(c: ConnectResult, attempted: number, processes: number): BenchSummary['connections'] {
  return {
    attempted,
    ok: c.ok,
    failed: c.failed,
    errors: c.errors,
    perSecond: c.ms > 0 ? (c.ok * 1000) / c.ms : NaN,
    handshake: latencyStats(c.handshakeMs),
    handshakeHistogram: histogram(c.handshakeMs, LATENCY_BOUNDS_MS),
    sourceAddresses: c.addresses,
    processes,
  };
}

// ---- running ---------------------------------------------------------------------------------------

/** Generator processes needed for `connections` (each keeps well under its file-descriptor limit). */
export function processesFor(connections: number, requested: number): number {
  if (requested > 0) return requested;
  const limit = openFileLimit() ?? 20_000;
  const per = Math.max(100, Math.min(PER_PROCESS, limit - 500));
  return Math.max(1, Math.ceil(connections / per));
}

export async function runBench(o: BenchOptions, progress: Progress): Promise<BenchSummary> {
  const url = new URL(o.url);
  if (url.protocol === 'wss:') throw new Error('wss:// is not supported by the benchmark client: benchmark the server behind TLS termination, or over ws://');
  const target: Target = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 80),
    path: url.pathname + url.search,
    dialect: o.dialect ?? { name: o.encoding },
    token: o.token,
  };
  const notes: string[] = [];
  const probe = new ServerProbe(statsUrlOf(url), o.apiKey, o.serverPid);
  const processes = processesFor(o.clients, o.processes);
  const gen = await Generator.start(processes);
  const rec = new Recorder(probe);
  const started = new Date().toISOString();
  const stopOnSignal = (): void => gen.kill();
  process.once('exit', stopOnSignal);
  try {
    const base = {
      tool: 'hubbub bench' as const,
      version: VERSION,
      scenario: o.scenario,
      started,
      url: o.url,
      encoding: o.encoding,
      options: {
        clients: o.clients, messages: o.messages, size: o.size, rate: o.rate, duration: o.duration, channels: Math.min(o.channels, o.clients), window: o.window,
        sample: o.sample, processes, concurrency: o.concurrency, lateMs: o.lateMs, sourceAddresses: o.sourceAddresses?.join(','), dialect: o.dialect?.name,
      },
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', node: process.version, loadAvg: loadavg() },
    };
    await gen.tick(); // start the generator processes' CPU accounting here
    await rec.start();
    const memBefore = rec.firstServer?.rss;

    const isStorm = o.scenario === 'storm';
    const isThroughput = o.scenario === 'throughput';
    const channelTemplate = isStorm ? undefined : isThroughput ? 'bench/{i}' : 'bench/{c}';
    const sampleEvery = o.sample > 0 ? Math.max(1, Math.floor(o.clients / o.sample)) : 0;
    const connectLabel = isStorm ? 'connecting' : 'connecting and subscribing';
    let connectedSoFar = 0;
    const conn = await gen.connect(target, {
      count: o.clients,
      channel: channelTemplate,
      channelCount: o.channels,
      sampleEvery,
      concurrency: o.concurrency,
      timeoutMs: o.timeoutMs,
      sourceAddresses: o.sourceAddresses,
      onProgress: (ok, failed) => {
        connectedSoFar = ok;
        progress.update(connectLabel, (ok + failed) / o.clients, `${ok.toLocaleString('en-US')} ok, ${failed} failed`);
      },
    });
    void connectedSoFar;
    if (conn.failed > 0) notes.push(`${conn.failed} of ${o.clients} connections failed (${Object.entries(conn.errors).map(([k, v]) => `${k}: ${v}`).join(', ')}); first: ${conn.firstErrors[0] ?? '?'}`);
    const connections = connectionStats(conn, o.clients, processes);
    if (conn.ok === 0) throw new Error(`no connection could be opened: ${conn.firstErrors[0] ?? 'unknown error'}`);

    if (isStorm) {
      const t = await gen.tick();
      const after = await probe.sample();
      await rec.add(t, 0, { connected: conn.ok });
      const genUs = rec.generatorCpuUs;
      if (memBefore !== undefined && after && conn.ok > 0) notes.push(`server memory grew by ${((after.rss - memBefore) / conn.ok / 1024).toFixed(1)} KiB per open connection (RSS ${(memBefore / 2 ** 20).toFixed(0)} → ${(after.rss / 2 ** 20).toFixed(0)} MiB)`);
      progress.update('closing', undefined, '');
      await gen.closeAll();
      progress.clear();
      if (probe.note) notes.push(probe.note);
      const serverUs = rec.firstServer && after ? after.cpuUs - rec.firstServer.cpuUs : NaN;
      return {
        ...base,
        connections,
        durationMs: conn.ms,
        published: 0,
        expected: 0,
        delivered: 0,
        lost: 0,
        late: 0,
        lateMs: o.lateMs,
        disorder: 0,
        deliveriesPerSec: NaN,
        publishesPerSec: NaN,
        latency: latencyStats([]),
        histogram: histogram([]),
        series: [],
        cpu: { ...(Number.isNaN(serverUs) ? {} : { server: cpuUse(serverUs, conn.ms, 0) }), generator: cpuUse(genUs, conn.ms, 0) },
        ...(memBefore !== undefined && after ? { serverMemory: { start: memBefore, end: after.rss, slopePerSec: NaN } } : {}),
        notes,
      };
    }

    // The measured part starts now: connecting is not charged to publishing (CPU, memory trend).
    await gen.tick();
    await rec.start();
    const subscribers = conn.ok;
    const pad = Math.max(0, o.size - DATA_OVERHEAD);
    const t0 = performance.now();
    let published: number;
    let expected: number;
    let durationMs: number;
    let stalled = false;

    if (isThroughput) {
      ({ published, durationMs, stalled } = await runThroughput(gen, o, pad, subscribers, rec, progress));
      expected = published;
    } else {
      const pub = await openPublisher(target, o.timeoutMs);
      const channels = Array.from({ length: Math.min(o.channels, subscribers) }, (_, c) => `bench/${c}`);
      let rate = o.rate;
      // A server's per-connection rate limit (Hubbub's message_rate) would refuse the excess.
      const cap = pub.messageRate ? (pub.messageRate * 0.95) / channels.length : undefined;
      if (cap !== undefined && (rate === undefined || rate > cap)) {
        notes.push(`the server lets one connection send ${pub.messageRate} frames/s (message_rate), so the publisher was held to ${cap.toFixed(0)} publications/s per channel; start the server with --message-rate 0 to measure the server rather than its limit`);
        rate = cap;
      }
      const timed = o.scenario !== 'fanout';
      const rounds = timed ? Math.ceil(rate! * o.duration) : o.messages;
      const r = await publishPhase(gen, pub, {
        channels,
        rounds,
        durationMs: timed ? o.duration * 1000 : undefined,
        rate,
        window: timed ? Infinity : o.window,
        burst: !timed,
        pad,
        lateMs: o.lateMs,
        stallMs: 15_000,
        drainMs: timed ? 5000 : 15_000,
        onSecond: (t, n) => rec.add(t, n * channels.length),
        onProgress: (sent, fully) => {
          const elapsed = (performance.now() - t0) / 1000;
          const fraction = timed ? Math.min(1, elapsed / o.duration) : fully / rounds;
          const last = rec.series[rec.series.length - 1];
          progress.update(o.scenario, fraction, `${(sent * channels.length).toLocaleString('en-US')} published, ${last ? `${last.delivered.toLocaleString('en-US')} deliveries/s, p99 ${last.p99.toFixed(2)} ms` : '…'}`);
        },
      });
      await rec.add(r.ticks[r.ticks.length - 1]!, r.published[r.published.length - 1]! * channels.length);
      const errs = Object.entries(pub.errors);
      if (errs.length > 0) notes.push(`the server answered the publisher with errors: ${errs.map(([k, v]) => `${k} ×${v}`).join(', ')}`);
      pub.client.destroy();
      published = r.rounds * channels.length;
      // Each round reaches every subscriber once (subscriber i listens on channel i mod C).
      expected = r.rounds * subscribers;
      durationMs = r.durationMs;
      stalled = r.stalled;
    }
    progress.update('closing', undefined, '');
    await gen.closeAll();
    progress.clear();

    const lost = Math.max(0, expected - rec.delivered);
    if (stalled) notes.push(`nothing was delivered for 15 s: the run was stopped with ${lost.toLocaleString('en-US')} deliveries missing`);
    if (rec.undecodable > 0) notes.push(`${rec.undecodable} sampled messages were not the benchmark's publications`);
    if (rec.delivered > expected) notes.push(`${rec.delivered - expected} more deliveries than expected`);
    if (probe.note) notes.push(probe.note);
    const genCpu = cpuUse(rec.generatorCpuUs, durationMs, rec.delivered);
    if (genCpu.percent > 85 * processes) notes.push(`the generator used ${genCpu.percent.toFixed(0)}% CPU (${processes} process${processes > 1 ? 'es' : ''}): figures may be limited by the generator, not the server`);
    const last = rec.lastServerSample;
    const serverUs = rec.firstServer && last ? last.cpuUs - rec.firstServer.cpuUs : NaN;
    // The trend of the second half: the first seconds are the heap growing to its working size.
    const rssSeries = rec.series.filter((p) => p.serverRss !== undefined);
    rssSeries.splice(0, Math.floor(rssSeries.length / 2));
    return {
      ...base,
      connections,
      durationMs,
      published,
      expected,
      delivered: rec.delivered,
      lost,
      late: rec.late,
      lateMs: o.lateMs,
      disorder: rec.disorder,
      deliveriesPerSec: (rec.delivered * 1000) / durationMs,
      publishesPerSec: (published * 1000) / durationMs,
      latency: latencyStats(rec.latencies),
      histogram: histogram(rec.latencies),
      series: rec.series,
      cpu: { ...(Number.isNaN(serverUs) ? {} : { server: cpuUse(serverUs, durationMs, rec.delivered) }), generator: genCpu },
      ...(rec.firstServer && last ? { serverMemory: { start: rec.firstServer.rss, end: last.rss, slopePerSec: slope(rssSeries.map((p) => p.t), rssSeries.map((p) => p.serverRss!)) } } : {}),
      notes,
    };
  } finally {
    process.off('exit', stopOnSignal);
    await gen.stop();
  }
}

/** Throughput: every client publishes `messages` to its own channel; done when each has all of its own. */
async function runThroughput(gen: Generator, o: BenchOptions, pad: number, clients: number, rec: Recorder, progress: Progress): Promise<{ published: number; durationMs: number; stalled: boolean }> {
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  // Completion comes from the processes' `fully` reports, not from the once-a-second tick.
  await gen.reset(o.lateMs, () => {
    if (gen.fully() >= o.messages) done();
  });
  const t0 = performance.now();
  gen.throughput({ channel: 'bench/{i}', messages: o.messages, window: o.window, pad, rate: gen.messageRate ? gen.messageRate * 0.95 : undefined });
  let lastDelivered = performance.now();
  let stalled = false;
  let complete = false;
  let total = 0;
  void finished.then(() => (complete = true));
  while (!complete) {
    await Promise.race([finished, new Promise((r) => setTimeout(r, 1000))]);
    const end = performance.now();
    const t = await gen.tick();
    total += t.delivered;
    await rec.add(t, t.delivered);
    if (complete) return { published: clients * o.messages, durationMs: end - t0, stalled };
    if (t.delivered > 0) lastDelivered = performance.now();
    const last = rec.series[rec.series.length - 1]!;
    progress.update('throughput', total / (clients * o.messages), `${total.toLocaleString('en-US')} of ${(clients * o.messages).toLocaleString('en-US')} received, ${last.delivered.toLocaleString('en-US')}/s`);
    if (performance.now() - lastDelivered > 15_000) {
      stalled = true;
      break;
    }
  }
  return { published: clients * o.messages, durationMs: performance.now() - t0, stalled };
}
