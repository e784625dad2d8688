/**
 * The load generator of `hubbub bench` and `npm run bench:compare`: a coordinator (this module, in
 * the calling process) and generator processes (worker.ts) that hold the connections. Connections
 * are spread over processes because one process may open only so many file descriptors (20,000
 * here), and over source addresses because one source address has only ~28,000 ephemeral ports
 * towards one server port. The coordinator holds the publisher, paces it (a window of outstanding
 * publications, or a fixed rate), and collects one tick per second from every process.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDialect, type Dialect } from './dialect.js';
import { LeanClient } from './lean-client.js';
import { nowUs } from './stats.js';
import type { ConnectSpec, DialectRef, ThroughputSpec, ToCoordinator, ToWorker } from './worker-protocol.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** worker.ts under tsx, worker.js once built. */
const WORKER = join(HERE, `worker${extname(fileURLToPath(import.meta.url))}`);

/** Connections one generator process takes when the count is split automatically (well under 20,000 fds). */
export const PER_PROCESS = 15_000;
/** Connections per source address before the next one is used (of ~28,000 ephemeral ports). */
export const PER_ADDRESS = 20_000;

/** The soft limit on open files of this process. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The ephemeral port range (net.ipv4.ip_local_port_range). */
export function ephemeralPorts(): { low: number; high: number } | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low && high ? { low, high } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The source address of connection i. Explicit addresses are used in blocks of `perAddress`. For a
 * loopback server without explicit addresses the first PER_ADDRESS connections leave it to the
 * kernel and the rest bind 127.0.0.2, 127.0.0.3, …: binding an address makes the kernel choose the
 * port without looking at the destination, which is slower on a loopback full of TIME_WAIT
 * sockets, so it is only done where the default address would run out.
 */
export function sourceAddress(i: number, explicit: string[] | undefined, loopback: boolean, perAddress = PER_ADDRESS): string | undefined {
  if (explicit && explicit.length > 0) return explicit[Math.floor(i / perAddress) % explicit.length];
  if (!loopback || i < perAddress) return undefined;
  return `127.0.0.${1 + Math.floor(i / perAddress)}`;
}

export interface Target {
  host: string;
  port: number;
  path?: string;
  dialect: DialectRef;
  token?: string;
}

export interface ConnectOptions {
  count: number;
  /** Channel to subscribe each connection to ('{i}': its global index; '{c}': the index modulo channelCount). */
  channel?: string;
  channelCount?: number;
  /** Every sampleEvery-th connection reads latency (0: none). */
  sampleEvery: number;
  /** Connection attempts in flight at once, per process. */
  concurrency: number;
  timeoutMs: number;
  sourceAddresses?: string[];
  onProgress?: (ok: number, failed: number) => void;
}

export interface ConnectResult {
  ok: number;
  failed: number;
  errors: Record<string, number>;
  handshakeMs: number[];
  firstErrors: string[];
  ms: number;
  addresses: string[];
}

export interface Tick {
  delivered: number;
  latencies: number[];
  disorder: number;
  late: number;
  undecodable: number;
  cpuUs: number;
  /** Least `fully` over the processes that hold connections. */
  fully: number;
  closed: number;
  open: number;
}

class Worker {
  private waiters: { ev: ToCoordinator['ev']; resolve: (m: ToCoordinator) => void; reject: (e: Error) => void }[] = [];
  fully = 0;
  connections = 0;
  onFully: (() => void) | undefined;
  onProgress: ((ok: number, failed: number) => void) | undefined;
  exited = false;

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: ToCoordinator) => this.onMessage(m));
    child.on('exit', (code, signal) => {
      this.exited = true;
      this.failAll(new Error(`generator process ${child.pid} exited (${signal ?? code})`));
    });
  }

  private onMessage(m: ToCoordinator): void {
    if (m.ev === 'fully') {
      this.fully = m.n;
      this.onFully?.();
      return;
    }
    if (m.ev === 'progress') {
      this.onProgress?.(m.ok, m.failed);
      return;
    }
    if (m.ev === 'error') {
      this.failAll(new Error(`generator process: ${m.message}`));
      return;
    }
    const i = this.waiters.findIndex((w) => w.ev === m.ev);
    if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
  }

  private failAll(err: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }

  send(m: ToWorker): void {
    if (!this.exited) this.child.send(m);
  }

  request<E extends ToCoordinator['ev']>(m: ToWorker, ev: E): Promise<Extract<ToCoordinator, { ev: E }>> {
    return new Promise((resolve, reject) => {
      if (this.exited) {
        reject(new Error('generator process is gone'));
        return;
      }
      this.waiters.push({ ev, resolve: resolve as (m: ToCoordinator) => void, reject });
      this.child.send(m);
    });
  }
}

export class Generator {
  private nextIndex = 0;
  /** The least per-connection frame rate the server announced (undefined: no limit seen). */
  messageRate: number | undefined;
  private constructor(private readonly workers: Worker[]) {}

  /** Fork `processes` generator processes and wait until they are ready. */
  static async start(processes: number): Promise<Generator> {
    const workers = Array.from({ length: processes }, () => {
      const child = fork(WORKER, [], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
      return new Worker(child);
    });
    await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
      w.child.once('message', () => resolve());
      w.child.once('error', reject);
      w.child.once('exit', () => reject(new Error('a generator process exited during start-up')));
    })));
    return new Generator(workers);
  }

  get processes(): number {
    return this.workers.length;
  }

  get pids(): number[] {
    return this.workers.map((w) => w.child.pid!);
  }

  /** Open `count` connections spread over the processes, each subscribed to its channel when given. */
  async connect(target: Target, o: ConnectOptions): Promise<ConnectResult> {
    const t0 = performance.now();
    const share = Math.ceil(o.count / this.workers.length);
    const loopback = /^127\.|^localhost$|^::1$/.test(target.host);
    const progress = this.workers.map(() => ({ ok: 0, failed: 0 }));
    const addresses = new Set<string>();
    const jobs = this.workers.map((w, wi) => {
      const count = Math.max(0, Math.min(share, o.count - wi * share));
      const firstIndex = this.nextIndex + wi * share;
      const localAddress = Array.from({ length: count }, (_, j) => sourceAddress(firstIndex + j, o.sourceAddresses, loopback));
      for (const a of localAddress) addresses.add(a ?? (loopback ? '127.0.0.1' : 'default'));
      const spec: ConnectSpec = { host: target.host, port: target.port, path: target.path, dialect: target.dialect, token: target.token, count, firstIndex, localAddress, concurrency: o.concurrency, channel: o.channel, channelCount: o.channelCount, sampleEvery: o.sampleEvery, timeoutMs: o.timeoutMs };
      w.onProgress = (ok, failed) => {
        progress[wi] = { ok, failed };
        o.onProgress?.(
          progress.reduce((s, p) => s + p.ok, 0),
          progress.reduce((s, p) => s + p.failed, 0),
        );
      };
      return count === 0 ? undefined : w.request({ op: 'connect', spec }, 'connected').then((r) => {
        w.connections += r.added;
        if (r.messageRate) this.messageRate = Math.min(this.messageRate ?? Infinity, r.messageRate);
        return r;
      });
    });
    this.nextIndex += o.count;
    const results = (await Promise.all(jobs)).filter((r) => r !== undefined);
    const errors: Record<string, number> = {};
    for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
    return {
      ok: results.reduce((s, r) => s + r.ok, 0),
      failed: results.reduce((s, r) => s + r.failed, 0),
      errors,
      handshakeMs: results.flatMap((r) => r.handshakeMs),
      firstErrors: results.flatMap((r) => r.firstErrors).slice(0, 3),
      ms: performance.now() - t0,
      addresses: [...addresses],
    };
  }

  /** Start a new count on every process; `onFully` fires whenever the least `fully` may have grown. */
  async reset(lateMs: number, onFully?: () => void): Promise<void> {
    await Promise.all(this.workers.map((w) => {
      w.fully = 0;
      w.onFully = onFully;
      return w.request({ op: 'reset', lateMs }, 'ready');
    }));
  }

  /** The highest k every subscriber (of every process) has received. */
  fully(): number {
    let min = Infinity;
    for (const w of this.workers) if (w.connections > 0 && w.fully < min) min = w.fully;
    return min === Infinity ? 0 : min;
  }

  async tick(): Promise<Tick> {
    const rs = await Promise.all(this.workers.map((w) => w.request({ op: 'tick' }, 'tick')));
    let fully = Infinity;
    rs.forEach((r, i) => {
      if (this.workers[i]!.connections > 0) fully = Math.min(fully, r.fully);
    });
    return {
      delivered: rs.reduce((s, r) => s + r.delivered, 0),
      latencies: rs.flatMap((r) => r.latencies),
      disorder: rs.reduce((s, r) => s + r.disorder, 0),
      late: rs.reduce((s, r) => s + r.late, 0),
      undecodable: rs.reduce((s, r) => s + r.undecodable, 0),
      cpuUs: rs.reduce((s, r) => s + r.cpuUs, 0),
      fully: fully === Infinity ? 0 : fully,
      closed: rs.reduce((s, r) => s + r.closed, 0),
      open: rs.reduce((s, r) => s + r.open, 0),
    };
  }

  throughput(spec: ThroughputSpec): void {
    for (const w of this.workers) if (w.connections > 0) w.send({ op: 'throughput', spec });
  }

  /** Close every connection (close handshake, then drop). */
  async closeAll(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.request({ op: 'close' }, 'closed').then(() => (w.connections = 0))));
    this.nextIndex = 0;
  }

  /** End the generator processes. */
  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => new Promise<void>((resolve) => {
      if (w.exited) return resolve();
      const timer = setTimeout(() => w.child.kill('SIGKILL'), 3000);
      w.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      w.send({ op: 'exit' });
    })));
  }

  /** Last resort: kill the processes at once. */
  kill(): void {
    for (const w of this.workers) if (!w.exited) w.child.kill('SIGKILL');
  }
}

// ---- the publisher ------------------------------------------------------------------------------

export interface Publisher {
  client: LeanClient;
  dialect: Dialect;
  /** Error frames the server answered publications with, by code. */
  errors: Record<string, number>;
  /** Frames per second the server lets one connection send (0 or undefined: no limit). */
  messageRate?: number;
}

/** Open the publishing connection in this process. */
export async function openPublisher(target: Target, timeoutMs: number): Promise<Publisher> {
  const dialect = await loadDialect(target.dialect);
  const client = await LeanClient.connect({
    host: target.host,
    port: target.port,
    path: target.path ?? dialect.path,
    protocols: dialect.protocols,
    timeoutMs,
    headers: target.token ? { authorization: `Bearer ${target.token}` } : undefined,
  });
  const limits = await dialect.handshake(client, timeoutMs);
  const p: Publisher = { client, dialect, errors: {}, messageRate: limits ? limits.messageRate : undefined };
  client.onMessage = (payload, _length, binary) => {
    const code = payload && dialect.errorCode ? dialect.errorCode(payload, binary) : undefined;
    const key = code ?? 'unexpected message';
    p.errors[key] = (p.errors[key] ?? 0) + 1;
  };
  return p;
}

export interface PublishOptions {
  channels: string[];
  /** Rounds to publish (one publication per channel each). */
  rounds: number;
  /** Stop publishing after this long. */
  durationMs?: number;
  /** Rounds per second at most (unpaced when unset). */
  rate?: number;
  /** Rounds outstanding at most (published but not yet received by every subscriber); Infinity for none. */
  window: number;
  /**
   * Publish in bursts: `window` rounds at once, then wait until every subscriber has all of them.
   * (A sliding window instead tops up one round per delivered round, so the server mostly sees
   * one publication per read; bursts show what it does with many at once.)
   */
  burst?: boolean;
  /** Padding characters in each publication's data (its size). */
  pad: number;
  /** Deliveries counted as late past this (ms). */
  lateMs: number;
  /** Give up when nothing is delivered for this long. */
  stallMs: number;
  /** How long to wait for the last deliveries after the last publication. */
  drainMs: number;
  /** Called once a second with the tick and the rounds published in that second. */
  onSecond?: (tick: Tick, published: number, second: number) => void | Promise<void>;
  /** Called often (~10/s) with rounds published and fully delivered, for a progress bar. */
  onProgress?: (published: number, fully: number) => void;
}

export interface PublishResult {
  rounds: number;
  durationMs: number;
  /** Whether the run stopped because nothing arrived for stallMs. */
  stalled: boolean;
  /** The ticks, one per second (the last may be shorter). */
  ticks: Tick[];
  /** Rounds published in each tick's second. */
  published: number[];
}

/**
 * Publish rounds, within the window and at the rate, and count deliveries until every subscriber
 * has every round (or the drain or stall deadline passes). Returns per-second ticks; the caller
 * turns them into a summary.
 */
export async function publishPhase(gen: Generator, pub: Publisher, o: PublishOptions): Promise<PublishResult> {
  const pad = 'x'.repeat(o.pad);
  let sent = 0;
  const round = (): void => {
    sent++;
    for (const ch of o.channels) pub.client.sendRaw(pub.dialect.publishFrame(ch, `{"s":${sent},"t":${nowUs()},"p":"${pad}"}`));
  };
  let pump = (): void => {};
  await gen.reset(o.lateMs, () => pump());
  const t0 = performance.now();
  const perMs = o.rate === undefined ? Infinity : o.rate / 1000;
  const ticks: Tick[] = [];
  const published: number[] = [];
  let sentAtLastTick = 0;
  let lastDelivered = performance.now();
  let stalled = false;
  let publishingDone = false;
  let doneAt = 0;

  return new Promise<PublishResult>((resolve, reject) => {
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearInterval(secondTimer);
      clearInterval(progressTimer);
      if (timer) clearTimeout(timer);
      pump = () => {};
      // One last tick collects what arrived since the last full second.
      gen.tick().then((t) => {
        ticks.push(t);
        published.push(sent - sentAtLastTick);
        resolve({ rounds: sent, durationMs: performance.now() - t0, stalled, ticks, published });
      }, reject);
    };
    pump = () => {
      if (finished) return;
      const elapsed = performance.now() - t0;
      if (!publishingDone) {
        const due = Math.min(o.rounds, perMs === Infinity ? o.rounds : Math.floor(elapsed * perMs) + 1);
        // Never more than a second's worth at once, should the event loop have stalled.
        let burst = perMs === Infinity ? Infinity : Math.max(1, Math.ceil(perMs * 1000));
        if (!o.burst || gen.fully() >= sent) {
          // Publications due together leave in one TCP segment, as a real burst would.
          const socket = pub.client.socket;
          socket.cork();
          while (sent < due && sent - gen.fully() < o.window && burst-- > 0) round();
          socket.uncork();
        }
        if (sent >= o.rounds || (o.durationMs !== undefined && elapsed >= o.durationMs)) {
          publishingDone = true;
          doneAt = performance.now();
        }
      }
      if (publishingDone && gen.fully() >= sent) finish();
    };
    // Paced runs need a clock; windowed ones are driven by deliveries (onFully) alone.
    if (perMs !== Infinity || o.durationMs !== undefined) {
      const step = (): void => {
        pump();
        if (!finished && !publishingDone) timer = setTimeout(step, 1);
      };
      step();
    } else {
      pump();
    }

    let second = 0;
    let ticking = false;
    const secondTimer = setInterval(() => {
      if (ticking || finished) return;
      ticking = true;
      gen.tick().then(
        async (t) => {
          ticking = false;
          if (finished) return;
          second++;
          ticks.push(t);
          published.push(sent - sentAtLastTick);
          sentAtLastTick = sent;
          if (t.delivered > 0) lastDelivered = performance.now();
          await o.onSecond?.(t, published[published.length - 1]!, second);
          const now = performance.now();
          if (now - lastDelivered > o.stallMs && !(publishingDone && gen.fully() >= sent)) {
            stalled = true;
            finish();
          } else if (publishingDone && now - doneAt > o.drainMs) {
            finish();
          }
        },
        (err: unknown) => {
          finished = true;
          clearInterval(secondTimer);
          clearInterval(progressTimer);
          if (timer) clearTimeout(timer);
          reject(err as Error);
        },
      );
    }, 1000);
    const progressTimer = setInterval(() => o.onProgress?.(sent, gen.fully()), 100);
  });
}
