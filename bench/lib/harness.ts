/**
 * Pieces shared by the fan-out benchmarks (bench/fanout.ts, bench/fanout-compare.ts): server child
 * processes that are always killed, CPU readings from /proc, the bookkeeping of one measured phase
 * (which subscriber got which publication), and small formatting helpers.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { latencyStats, median } from '../../src/bench/stats.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The Bun executable of the `bun` devDependency (the native binary itself once its postinstall has run). */
export const BUN = resolve(ROOT, 'node_modules/.bin/bun');

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

export function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function readClkTck(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** utime and stime of a process (all its threads), in clock ticks: fields 14 and 15 of /proc/<pid>/stat. */
export function cpuTicks(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state), so field n is f[n - 3].
  return { user: Number(f[11]), sys: Number(f[12]) };
}

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Busy (user+nice+system+irq+softirq) and steal ticks per core, from /proc/stat. */
export function coreTicks(): { busy: number; steal: number }[] {
  const out: { busy: number; steal: number }[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = m[2]!.trim().split(/\s+/).map(Number);
    out[Number(m[1])] = { busy: user + nice + system + irq + softirq, steal };
  }
  return out;
}

export { openFileLimit } from '../../src/bench/generator.js';

export interface Latency {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

/** The p50/p99/max subset of src/bench/stats.ts's latencyStats, as the older benchmarks print it. */
export function percentiles(values: number[]): Latency {
  const { samples, p50, p99, max } = latencyStats(values);
  return { samples, p50, p99, max };
}

export { median };

export const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-');

// ---- server processes ------------------------------------------------------------------------------

const children = new Set<ChildProcess>();

export interface ServerProcess {
  label: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** The last lines the process printed (for error messages). */
  output: string[];
}

/**
 * Start `node --import tsx <script…>` (or `command` instead of `node --import tsx`, e.g. [BUN]) from
 * the repository root (pinned to core 0 when `pinned`) and wait until GET /health answers. Node runs
 * directly, not through a launcher, so that `pid` is the server itself (its CPU time is what gets read).
 */
export async function startServer(label: string, port: number, script: string[], opts: { pinned: boolean; nodeArgs?: string[]; env?: NodeJS.ProcessEnv; command?: string[] }): Promise<ServerProcess> {
  const argv = [...(opts.command ?? [process.execPath, '--import', 'tsx', ...(opts.nodeArgs ?? [])]), ...script];
  const [cmd, ...args] = opts.pinned ? ['taskset', '-c', '0', ...argv] : argv;
  const child = spawn(cmd!, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  children.add(child);
  const output: string[] = [];
  const keep = (b: Buffer): void => {
    output.push(b.toString());
    if (output.length > 50) output.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.once('exit', () => children.delete(child));
  if (child.pid === undefined) throw new Error(`could not start ${label}`);
  const server: ServerProcess = { label, port, pid: child.pid, child, output };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${label} exited during start-up:\n${output.join('')}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`);
      await r.text();
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`${label} did not answer /health within 30 s:\n${output.join('')}`);
    await sleep(100);
  }
  return server;
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. */
export async function stopServer(s: ServerProcess): Promise<void> {
  const child = s.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Last resort on any exit path: SIGKILL every server this process started that still runs. */
export function killServers(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

// ---- one measured phase ------------------------------------------------------------------------------

/** What a sampled subscriber reads out of a publication: its sequence number and publish time. */
export interface Sample {
  seq: number;
  t: number;
}

/** Reads a sampled payload (throws or returns undefined when it is not the expected message). */
export type SampleReader = (payload: Buffer, binary: boolean, compressed: boolean) => Sample | undefined;

export interface Sink {
  deliver(i: number, payload: Buffer | undefined, binary: boolean, compressed: boolean): void;
  fail(err: Error): void;
}

/** Publication bookkeeping for one phase: which publications every subscriber has received. */
export class Run implements Sink {
  readonly counts: Uint32Array;
  /** reached[k]: subscribers that have received at least k publications of this run. */
  readonly reached: Uint32Array;
  fully = 0;
  sent = 0;
  delivered = 0;
  /** Deliveries that arrived compressed (permessage-deflate). */
  compressed = 0;
  /** Deliveries that arrived as binary WebSocket messages. */
  binary = 0;
  extra = 0;
  disorder = 0;
  /** Sampled payloads that did not decode to the expected message. */
  undecodable = 0;
  latencies: number[] = [];
  frameBytes = 0;
  private onFully: () => void = () => {};
  private reject: (err: Error) => void = () => {};

  constructor(
    readonly subscribers: number,
    readonly total: number,
    private readonly publish: (seq: number) => void,
    private readonly read: SampleReader,
  ) {
    this.counts = new Uint32Array(subscribers);
    this.reached = new Uint32Array(total + 1);
  }

  deliver(i: number, payload: Buffer | undefined, binary: boolean, compressed: boolean): void {
    this.delivered++;
    if (compressed) this.compressed++;
    if (binary) this.binary++;
    const k = ++this.counts[i]!;
    if (k > this.total) {
      this.extra++;
      return;
    }
    if (payload) {
      const now = performance.now();
      let m: Sample | undefined;
      try {
        m = this.read(payload, binary, compressed);
      } catch {
        m = undefined;
      }
      if (m === undefined) this.undecodable++;
      else {
        if (m.seq !== k) this.disorder++;
        this.latencies.push(now - m.t);
      }
      this.frameBytes = payload.length;
    }
    if (++this.reached[k]! === this.subscribers) {
      this.fully = k;
      this.onFully();
    }
  }

  fail(err: Error): void {
    this.reject(err);
  }

  send(): void {
    this.publish(++this.sent);
  }

  /** Run to completion with at most `window` publications outstanding; resolves with the elapsed ms. */
  go(window: number, stallMs: number, label: string): Promise<number> {
    return new Promise((resolvePhase, rejectPhase) => {
      let lastDelivered = -1;
      const watchdog = setInterval(() => {
        if (this.delivered === lastDelivered) {
          done(new Error(`${label}: stalled, ${this.fully}/${this.total} publications fully delivered, ${this.delivered} deliveries`));
        }
        lastDelivered = this.delivered;
      }, stallMs);
      let t0 = 0;
      const done = (err?: Error): void => {
        clearInterval(watchdog);
        this.onFully = () => {};
        this.reject = () => {};
        if (err) rejectPhase(err);
        else resolvePhase(performance.now() - t0);
      };
      this.reject = done;
      this.onFully = () => {
        if (this.fully === this.total) {
          done();
          return;
        }
        while (this.sent < this.total && this.sent - this.fully < window) this.send();
      };
      t0 = performance.now();
      while (this.sent < this.total && this.sent - this.fully < window) this.send();
    });
  }
}

// ---- running a benchmark script ----------------------------------------------------------------------

/**
 * Run a benchmark script's `main` with the exit paths every script needs: bad options exit 2;
 * an error, Ctrl-C, SIGTERM or the overall timeout print why, run `cleanup` (which kills only what
 * the script started) and exit 1, 130, 143 or 3; after success, lingering sockets or fetch
 * keep-alives do not keep the process alive. `cleanup` also runs on every exit.
 */
export function runScript<O extends { timeoutSec: number }>(name: string, parse: () => O, main: (o: O) => Promise<void>, cleanup: () => void): void {
  let exiting = false;
  const abort = (message: string, code: number): void => {
    if (exiting) return;
    exiting = true;
    console.error(`\n${name}: ${message}`);
    cleanup();
    process.exit(code);
  };
  process.on('exit', cleanup);
  process.on('SIGINT', () => abort('interrupted', 130));
  process.on('SIGTERM', () => abort('terminated', 143));
  let options: O;
  try {
    options = parse();
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}`);
    process.exit(2);
  }
  const hardStop = setTimeout(() => abort(`overall timeout of ${options.timeoutSec} s reached; stopping`, 3), options.timeoutSec * 1000);
  main(options).then(
    () => {
      clearTimeout(hardStop);
      cleanup();
      setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
    },
    (err: unknown) => abort(err instanceof Error ? (err.stack ?? err.message) : String(err), 1),
  );
}

/** Deterministic pseudo-random bytes (xorshift32 from `seed`): payloads a compressor or base64 cannot take shortcuts on. */
export function pseudoRandomBytes(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
