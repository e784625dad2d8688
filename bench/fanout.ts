/**
 * Fan-out benchmark: 1 publisher, S subscribers on one channel, Hubbub vs a minimal raw `ws` server
 * (bench/baseline-ws-server.ts) in the same run.
 *
 *   npm run bench:fanout -- [--subscribers 1000] [--messages 1000] [--window 32] [--size 64]
 *                           [--sample 50] [--warmup 200] [--targets hubbub,ws] [--timeout 300]
 *                           [--json out.json] [--profile <dir>] [--no-pin]
 *
 * Each server runs as a child process pinned to core 0 (`taskset -c 0`); this generator pins itself
 * to core 1. Both servers are started and loaded with S+1 lean connections each (bench/lib), then
 * the phases run target after target, so that the two servers are measured close together in time:
 *
 *   serial:  one publication in flight: publish, wait until all S subscribers got it, repeat.
 *   window:  up to W publications outstanding (published but not yet delivered to every subscriber).
 *
 * Per phase and server: deliveries/s, server CPU (utime+stime from /proc/<pid>/stat, in clock
 * ticks) per delivery, generator CPU, and publish→deliver latency from sampled subscribers, which
 * read the publisher's `performance.now()` out of the message (same process, same clock).
 * Everything is bounded: per-phase stall detection and an overall timeout; the children are killed
 * on every exit path.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { runScript, coreTicks, cpuTicks, fmt, freePort, hasTaskset, killServers, openFileLimit, percentiles, readClkTck, Run, sleep, startServer, stopServer, type Latency, type Sample, type Sink } from './lib/harness.js';
import { Args } from './lib/options.js';
import { LeanClient } from '../src/bench/lean-client.js';

// ---- options ---------------------------------------------------------------------------------

interface Options {
  subscribers: number;
  messages: number;
  window: number;
  size: number;
  sample: number;
  warmup: number;
  targets: TargetKind[];
  timeoutSec: number;
  json: string | undefined;
  profile: string | undefined;
  pin: boolean;
}

type TargetKind = 'hubbub' | 'ws';

const USAGE = `usage: npm run bench:fanout -- [options]
  --subscribers N   subscriber connections per server (default 1000)
  --messages N      publications per phase (default 1000)
  --window W        publications outstanding in the window phase (default 32)
  --size B          bytes of the JSON "data" of each publication (default 64)
  --sample K        subscribers that parse payloads for latency (default 50)
  --warmup N        unmeasured publications per phase kind before measuring (default 200)
  --targets LIST    hubbub,ws (default both)
  --timeout SEC     hard limit for the whole run (default 300)
  --json FILE       write the results as JSON
  --profile DIR     run Hubbub with --cpu-prof, writing the profile into DIR
  --no-pin          do not pin processes to cores`;

function parseArgs(argv: string[]): Options {
  const args = new Args(argv, USAGE, ['subscribers', 'messages', 'window', 'size', 'sample', 'warmup', 'timeout', 'targets', 'json', 'profile'], ['no-pin']);
  const subscribers = args.int('subscribers', 1000, 1, 100_000);
  return {
    subscribers,
    messages: args.int('messages', 1000, 1, 1_000_000),
    window: args.int('window', 32, 1, 10_000),
    size: args.int('size', 64, 0, 512 * 1024),
    sample: Math.min(args.int('sample', 50, 0, 100_000), subscribers),
    warmup: args.int('warmup', 200, 0, 100_000),
    targets: args.list<TargetKind>('targets', ['hubbub', 'ws'], ['hubbub', 'ws']),
    timeoutSec: args.int('timeout', 300, 5, 3600),
    json: args.string('json'),
    profile: args.string('profile'),
    pin: !args.flag('no-pin'),
  };
}

// ---- processes ---------------------------------------------------------------------------------

const allClients: LeanClient[] = [];

interface Target {
  kind: TargetKind;
  label: string;
  port: number;
  child: ChildProcess;
  pid: number;
  output: string[];
  publisher?: LeanClient;
  subscribers: LeanClient[];
}

async function startTarget(kind: TargetKind, opts: Options, pinned: boolean): Promise<Target> {
  const port = await freePort();
  const nodeArgs: string[] = [];
  if (kind === 'hubbub' && opts.profile) {
    mkdirSync(opts.profile, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', resolve(opts.profile));
  }
  const script =
    kind === 'hubbub'
      ? ['src/cli/main.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn']
      : ['bench/baseline-ws-server.ts', '--port', String(port), '--host', '127.0.0.1'];
  const label = kind === 'hubbub' ? 'Hubbub' : 'raw ws';
  const s = await startServer(label, port, script, { pinned, nodeArgs });
  const t: Target = { kind, label, port, child: s.child, pid: s.pid, output: s.output, subscribers: [] };
  return t;
}

async function stopTarget(t: Target): Promise<void> {
  for (const c of [t.publisher, ...t.subscribers]) c?.destroy();
  await stopServer({ label: t.label, port: t.port, pid: t.pid, child: t.child, output: t.output });
}

/** Last resort on any exit path: kill whatever we started that is still running. */
function killChildren(): void {
  for (const c of allClients) c.destroy();
  killServers();
}

let clkTck = 100;
let pinnedCores = false;

async function hubbubStats(t: Target): Promise<Record<string, number> | undefined> {
  if (t.kind !== 'hubbub') return undefined;
  const r = await fetch(`http://127.0.0.1:${t.port}/api/stats`);
  return (await r.json()) as Record<string, number>;
}

// ---- connections ---------------------------------------------------------------------------------

/**
 * Source address for connection i: the kernel's choice (127.0.0.1) for the first 20,000, then
 * 127.0.0.2, 127.0.0.3, … so that each source address stays well inside the ~28k ephemeral ports.
 * Only past 20,000 do we bind explicitly: bind-before-connect picks a port without looking at the
 * destination, which on a loopback full of TIME_WAIT sockets from earlier runs made connecting
 * thousands of clients take tens of seconds; a plain connect() avoids those collisions.
 */
const sourceAddress = (i: number): string | undefined => (i < 20_000 ? undefined : `127.0.0.${1 + Math.floor(i / 20_000)}`);

let connIndex = 0;

function totalReads(t: Target): number {
  let n = 0;
  for (const c of t.subscribers) n += c.reads;
  return n;
}

async function openClient(t: Target): Promise<LeanClient> {
  const c = await LeanClient.connect({ host: '127.0.0.1', port: t.port, path: '/ws', localAddress: sourceAddress(connIndex++) });
  allClients.push(c);
  const welcome = await c.nextJson();
  if (welcome.type !== 'welcome') throw new Error(`${t.label}: expected welcome, got ${JSON.stringify(welcome)}`);
  return c;
}

/** Is subscriber i one of the `sample` latency samplers? Spread evenly over the subscription order. */
const isSampled = (i: number, opts: Options): boolean => opts.sample > 0 && i % Math.floor(opts.subscribers / opts.sample) === 0 && i / Math.floor(opts.subscribers / opts.sample) < opts.sample;

async function connectAll(t: Target, opts: Options): Promise<void> {
  const concurrency = 100;
  const subs: LeanClient[] = new Array(opts.subscribers);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < opts.subscribers) {
      const i = next++;
      const c = await openClient(t);
      c.sendText(JSON.stringify({ type: 'subscribe', id: 1, channel: 'bench' }));
      const reply = await c.nextJson();
      if (reply.type !== 'reply' || reply.id !== 1) throw new Error(`${t.label}: subscribe answered with ${JSON.stringify(reply)}`);
      c.collect = isSampled(i, opts);
      c.onMessage = (payload, _length, binary, compressed) => current.deliver(i, payload, binary, compressed);
      c.onClose = () => {
        if (!shuttingDown) current.fail(new Error(`${t.label}: subscriber ${i} disconnected (close code ${c.closeCode ?? 'none'})`));
      };
      subs[i] = c;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, opts.subscribers) }, worker));
  t.subscribers = subs;
  const pub = await openClient(t);
  pub.collect = false;
  pub.onMessage = () => current.fail(new Error(`${t.label}: the publisher received a message`));
  t.publisher = pub;
  const stats = await hubbubStats(t);
  if (stats && stats.subscriptions !== opts.subscribers) throw new Error(`${t.label}: ${stats.subscriptions} subscriptions, expected ${opts.subscribers}`);
}

// ---- phases ---------------------------------------------------------------------------------------

let shuttingDown = false;
const idle: Sink = {
  deliver: () => {
    unexpected++;
  },
  fail: (err) => {
    console.error(`warning: ${err.message}`);
  },
};
let unexpected = 0;
let current: Sink = idle;

/** A sampled subscriber's reading of a message: the publisher's sequence number and clock. */
function readSample(payload: Buffer): Sample | undefined {
  const m = JSON.parse(payload.toString('utf8')) as { type: string; data: { seq: number; t: number } };
  return m.type === 'message' ? m.data : undefined;
}

interface PhaseResult {
  target: TargetKind;
  phase: 'serial' | 'window';
  messages: number;
  window: number;
  subscribers: number;
  deliveries: number;
  seconds: number;
  deliveriesPerSec: number;
  serverCpuSec: number;
  /** The part of serverCpuSec spent in user mode and in the kernel (on loopback, the kernel time includes the receiver's TCP processing). */
  serverUserSec: number;
  serverSysSec: number;
  serverUsPerDelivery: number;
  serverCpuPct: number;
  generatorCpuSec: number;
  generatorUsPerDelivery: number;
  generatorCpuPct: number;
  latencyMs: Latency;
  frameBytes: number;
  /** Messages per socket read on the subscribers' side: how many frames the server packed per write, roughly. */
  framesPerRead: number;
  serverMessagesOut: number | undefined;
  disorder: number;
  /** CPU used on the server's core by anything but the server, % of wall time (NaN when not pinned). */
  otherOnServerCorePct: number;
  /** CPU stolen by the hypervisor, both cores, % of wall time. */
  stealPct: number;
  loadAvg1: number;
}

function publisherFor(t: Target, opts: Options): (k: number) => void {
  const pub = t.publisher!;
  // Pad the data so that its JSON is about --size bytes.
  const probe = JSON.stringify({ seq: 1000, t: 123456.789012, pad: '' }).length;
  const pad = 'x'.repeat(Math.max(0, opts.size - probe));
  return (k) => {
    const t = performance.now();
    pub.sendText(`{"type":"publish","channel":"bench","data":{"seq":${k},"t":${t},"pad":"${pad}"}}`);
  };
}

async function runPhase(t: Target, opts: Options, phase: 'serial' | 'window', messages: number, measure: boolean): Promise<PhaseResult | undefined> {
  const window = phase === 'serial' ? 1 : opts.window;
  const run = new Run(opts.subscribers, messages, publisherFor(t, opts), readSample);
  const statsBefore = measure ? await hubbubStats(t) : undefined;
  await sleep(100); // let the previous phase's tail settle
  const reads0 = totalReads(t);
  const cores0 = coreTicks();
  const cpu0 = process.cpuUsage();
  const ticks0 = cpuTicks(t.pid);
  current = run;
  let ms: number;
  try {
    ms = await run.go(window, 15_000, `${t.label} ${phase}`);
  } finally {
    current = idle;
  }
  const ticks1 = cpuTicks(t.pid);
  const cpu = process.cpuUsage(cpu0);
  const cores1 = coreTicks();
  const reads = totalReads(t) - reads0;
  if (run.extra > 0 || run.disorder > 0 || run.undecodable > 0) {
    throw new Error(`${t.label} ${phase}: ${run.extra} extra deliveries, ${run.disorder} out of order, ${run.undecodable} sampled messages that were not the publication`);
  }
  if (!measure) return undefined;
  const statsAfter = await hubbubStats(t);
  const deliveries = messages * opts.subscribers;
  const seconds = ms / 1000;
  const serverUserSec = (ticks1.user - ticks0.user) / clkTck;
  const serverSysSec = (ticks1.sys - ticks0.sys) / clkTck;
  const serverCpuSec = serverUserSec + serverSysSec;
  const generatorCpuSec = (cpu.user + cpu.system) / 1e6;
  // Background load: what else ran on the server's core (core 0 when pinned) and what the
  // hypervisor stole from both cores, as % of the phase's wall time.
  const serverCore = pinnedCores ? 0 : undefined;
  const coreSec = (i: number, k: 'busy' | 'steal'): number => ((cores1[i]?.[k] ?? 0) - (cores0[i]?.[k] ?? 0)) / clkTck;
  const otherOnServerCorePct = serverCore === undefined ? NaN : Math.max(0, (100 * (coreSec(serverCore, 'busy') - serverCpuSec)) / seconds);
  const stealPct = (100 * cores0.reduce((sum, _c, i) => sum + coreSec(i, 'steal'), 0)) / seconds;
  return {
    target: t.kind,
    phase,
    messages,
    window,
    subscribers: opts.subscribers,
    deliveries,
    seconds,
    deliveriesPerSec: deliveries / seconds,
    serverCpuSec,
    serverUserSec,
    serverSysSec,
    serverUsPerDelivery: (serverCpuSec * 1e6) / deliveries,
    serverCpuPct: (100 * serverCpuSec) / seconds,
    generatorCpuSec,
    generatorUsPerDelivery: (generatorCpuSec * 1e6) / deliveries,
    generatorCpuPct: (100 * generatorCpuSec) / seconds,
    latencyMs: percentiles(run.latencies),
    frameBytes: run.frameBytes,
    framesPerRead: deliveries / reads,
    serverMessagesOut: statsBefore && statsAfter ? statsAfter.messages_out - statsBefore.messages_out : undefined,
    disorder: run.disorder,
    otherOnServerCorePct,
    stealPct,
    loadAvg1: loadavg()[0]!,
  };
}

// ---- report ---------------------------------------------------------------------------------------

function printPhase(results: PhaseResult[], phase: 'serial' | 'window', opts: Options): void {
  const h = results.find((r) => r.phase === phase && r.target === 'hubbub');
  const w = results.find((r) => r.phase === phase && r.target === 'ws');
  const title = phase === 'serial' ? `one publication in flight, ${opts.messages} publications` : `window of ${opts.window} publications, ${opts.messages} publications`;
  console.log(`\nPhase ${phase}: ${title} × ${opts.subscribers} subscribers`);
  const rows: [string, (r: PhaseResult) => number, number, boolean][] = [
    // label, value, decimals, show the ratio
    ['deliveries/s', (r) => r.deliveriesPerSec, 0, true],
    ['server CPU µs/delivery', (r) => r.serverUsPerDelivery, 3, true],
    ['server CPU % of a core', (r) => r.serverCpuPct, 0, true],
    ['server kernel share %', (r) => (100 * r.serverSysSec) / r.serverCpuSec, 0, false],
    ['generator CPU µs/delivery', (r) => r.generatorUsPerDelivery, 3, true],
    ['generator CPU % of a core', (r) => r.generatorCpuPct, 0, true],
    ['latency p50 ms', (r) => r.latencyMs.p50, 2, true],
    ['latency p99 ms', (r) => r.latencyMs.p99, 2, true],
    ['latency max ms', (r) => r.latencyMs.max, 2, true],
    ['frame bytes', (r) => r.frameBytes, 0, true],
    ['messages per subscriber read', (r) => r.framesPerRead, 2, true],
    ['other load on server core %', (r) => r.otherOnServerCorePct, 0, false],
    ['steal % (both cores)', (r) => r.stealPct, 0, false],
  ];
  const pad = (s: string, n: number): string => s.padStart(n);
  console.log(`  ${'metric'.padEnd(29)}${pad('Hubbub', 12)}${pad('raw ws', 14)}${pad('Hubbub/ws', 12)}`);
  for (const [label, get, d, ratio] of rows) {
    const hv = h ? get(h) : NaN;
    const wv = w ? get(w) : NaN;
    console.log(`  ${label.padEnd(29)}${pad(fmt(hv, d), 12)}${pad(fmt(wv, d), 14)}${pad(h && w && ratio ? fmt(hv / wv, 2) : '', 12)}`);
  }
  if (h?.serverMessagesOut !== undefined && h.serverMessagesOut !== h.deliveries) {
    console.log(`  note: Hubbub counted ${h.serverMessagesOut} messages out, expected ${h.deliveries}`);
  }
}

// ---- main -----------------------------------------------------------------------------------------

async function main(opts: Options): Promise<void> {
  clkTck = readClkTck();
  const cores = availableParallelism();
  let pinned = false;
  if (opts.pin && hasTaskset() && cores >= 2) {
    execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
    pinned = true;
    pinnedCores = true;
  }
  const needFds = opts.targets.length * (opts.subscribers + 1) + 100;
  const fdLimit = openFileLimit();
  if (fdLimit !== undefined && needFds > fdLimit) {
    throw new Error(`${needFds} file descriptors needed but the limit is ${fdLimit}: lower --subscribers or run one target at a time (--targets)`);
  }
  console.log(
    `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n` +
      `fan-out benchmark: ${opts.subscribers} subscribers, 1 publisher, ${opts.messages} publications per phase, window ${opts.window}, data ~${opts.size} B, ` +
      `${opts.sample} latency samplers, warm-up ${opts.warmup}\n` +
      `machine: ${cores} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, CLK_TCK ${clkTck}; ` +
      (pinned ? 'servers pinned to core 0 (taskset -c 0), generator to core 1' : 'no pinning') +
      `; the generator needs ~${needFds} file descriptors`,
  );

  const targets: Target[] = [];
  const connectMs: Partial<Record<TargetKind, number>> = {};
  for (const kind of opts.targets) {
    const t = await startTarget(kind, opts, pinned);
    targets.push(t);
    const c0 = performance.now();
    await connectAll(t, opts);
    connectMs[kind] = performance.now() - c0;
    console.log(`${t.label}: pid ${t.pid}, port ${t.port}, ${opts.subscribers} subscribers connected and subscribed in ${fmt(connectMs[kind])} ms (cold, 100 at a time)`);
  }

  if (opts.warmup > 0) {
    for (const t of targets) {
      await runPhase(t, opts, 'serial', opts.warmup, false);
      await runPhase(t, opts, 'window', opts.warmup, false);
    }
  }

  // Interleave the servers phase by phase so both see similar background noise.
  const results: PhaseResult[] = [];
  for (const phase of ['serial', 'window'] as const) {
    for (const t of targets) {
      const r = (await runPhase(t, opts, phase, opts.messages, true))!;
      results.push(r);
      console.log(
        `  ${t.label} ${phase}: ${fmt(r.deliveriesPerSec)} deliveries/s in ${fmt(r.seconds, 2)} s, server ${fmt(r.serverUsPerDelivery, 3)} µs/delivery ` +
          `(${fmt(r.serverCpuPct)}% CPU), generator ${fmt(r.generatorCpuPct)}% CPU, latency p50 ${fmt(r.latencyMs.p50, 2)} ms, ` +
          `other load on server core ${fmt(r.otherOnServerCorePct)}%, steal ${fmt(r.stealPct)}%`,
      );
    }
  }

  shuttingDown = true;
  for (const t of targets) await stopTarget(t);

  printPhase(results, 'serial', opts);
  printPhase(results, 'window', opts);
  if (unexpected > 0) console.log(`\nnote: ${unexpected} messages arrived between phases`);
  const busy = results.filter((r) => r.generatorCpuPct > 85);
  if (busy.length > 0) {
    console.log(`\nnote: the generator used more than 85% of its core in ${busy.map((r) => `${r.target} ${r.phase}`).join(', ')}: those figures may be generator-bound.`);
  }
  if (opts.profile) console.log(`\nHubbub CPU profile written to ${resolve(opts.profile)}`);

  if (opts.json) {
    const out = {
      date: new Date().toISOString(),
      options: { ...opts, targets: opts.targets },
      machine: { cores, cpu: cpus()[0]?.model, node: process.version, clkTck, pinned },
      connectMs,
      results,
    };
    writeFileSync(opts.json, JSON.stringify(out, null, 2) + '\n');
    console.log(`\nresults written to ${opts.json}`);
  }
}

runScript('fanout', () => parseArgs(process.argv.slice(2)), main, () => {
  shuttingDown = true;
  killChildren();
});
