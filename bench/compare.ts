/**
 * `npm run bench:compare`: the same fan-out scenario, the same generator (src/bench: lean clients in
 * generator processes, one publisher here) and the same parameters against, one after another in
 * one run:
 *   hubbub-json, hubbub-protobuf  Hubbub (`hubbub serve --message-rate 0 --storage memory`)
 *   ws                            bench/baseline-ws-server.ts: a minimal raw `ws` broadcast server
 *   socketio                      bench/servers/socketio-server.ts: Socket.IO 4 room broadcast
 *   bun                           bench/servers/bun-server.ts: Bun's built-in pub/sub (uWebSockets)
 * Each server runs pinned to core 0 (taskset), the generator to core 1; server CPU comes from
 * /proc/<pid>/stat. Phases per server and round:
 *   idle    N connections, each subscribed to a channel of its own group: server RSS per connection
 *   serial  one publication in flight: publish, wait until all S subscribers have it, repeat
 *   burst   W publications at once, the next burst when all S subscribers have them
 *   rate    fixed rates in deliveries/s (R/S publications/s) for a few seconds each
 * The order of the servers rotates between rounds; the report gives medians over the rounds and
 * ratios against Hubbub (JSON). Every phase is bounded (stall, drain and overall deadlines) and only
 * the processes started here are killed, on every exit path.
 *
 *   npm run bench:compare -- [--rounds 3] [--subscribers 1000] [--targets hubbub-json,ws,...]
 *                            [--phases idle,serial,burst,rate] [--burst 64] [--json out.json]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { Generator, openPublisher, publishPhase, type Publisher, type Target as GenTarget } from '../src/bench/generator.js';
import { latencyStats, median } from '../src/bench/stats.js';
import type { LatencyStats } from '../src/bench/summary.js';
import type { DialectRef } from '../src/bench/worker-protocol.js';
import { Args } from './lib/options.js';
import { BUN, runScript, cpuTicks, fmt, freePort, hasTaskset, killServers, readClkTck, rssBytes, sleep, startServer, stopServer, type ServerProcess } from './lib/harness.js';

// ---- options ---------------------------------------------------------------------------------------

const TARGETS = ['hubbub-json', 'hubbub-protobuf', 'ws', 'socketio', 'bun'] as const;
type TargetName = (typeof TARGETS)[number];
const PHASES = ['idle', 'serial', 'burst', 'rate'] as const;

const USAGE = `usage: npm run bench:compare -- [options]
  --targets LIST        ${TARGETS.join(',')} (default all)
  --phases LIST         ${PHASES.join(',')} (default all)
  --rounds N            rounds; the report gives medians (default 3)
  --subscribers S       subscribers for serial, burst and rate (default 1000)
  --serial N            publications in the serial phase (default 300)
  --burst W             publications per burst (default 64)
  --bursts N            publications in the burst phase (default 3000)
  --rates LIST          fixed rates in deliveries/s (default 50000,200000,500000)
  --rate-seconds N      seconds per fixed rate (default 5)
  --idle N              idle connections for the memory phase (default 10000)
  --size B              bytes of each publication's data (default 64)
  --sample K            subscribers that measure latency (default 50)
  --timeout SEC         hard limit for the whole run (default 3600)
  --json FILE           write every measurement and the medians as JSON
  --no-pin              do not pin the server and the generator to cores`;

function options() {
  const args = new Args(process.argv.slice(2), USAGE, ['targets', 'phases', 'rounds', 'subscribers', 'serial', 'burst', 'bursts', 'rates', 'rate-seconds', 'idle', 'size', 'sample', 'timeout', 'json'], ['no-pin']);
  if (args.positionals.length > 0) throw new Error(`unexpected argument ${args.positionals[0]}`);
  return {
    targets: args.list('targets', [...TARGETS], TARGETS),
    phases: args.list('phases', [...PHASES], PHASES),
    rounds: args.int('rounds', 3, 1, 20),
    subscribers: args.int('subscribers', 1000, 1, 15_000),
    serial: args.int('serial', 300, 1, 100_000),
    burst: args.int('burst', 64, 1, 10_000),
    bursts: args.int('bursts', 3000, 1, 1_000_000),
    rates: args.ints('rates', [50_000, 200_000, 500_000], 1, 100_000_000),
    rateSeconds: args.int('rate-seconds', 5, 1, 600),
    idle: args.int('idle', 10_000, 1, 15_000),
    size: args.int('size', 64, 0, 65_536),
    sample: args.int('sample', 50, 0, 15_000),
    timeoutSec: args.int('timeout', 3600, 10, 86_400),
    json: args.string('json'),
    pin: !args.flag('no-pin'),
  };
}
type Options = ReturnType<typeof options>;

// ---- servers ---------------------------------------------------------------------------------------

const LABEL: Record<TargetName, string> = { 'hubbub-json': 'Hubbub JSON', 'hubbub-protobuf': 'Hubbub protobuf', ws: 'raw ws', socketio: 'Socket.IO', bun: 'Bun' };
const DIALECT: Record<TargetName, DialectRef> = {
  'hubbub-json': { name: 'json' },
  'hubbub-protobuf': { name: 'protobuf' },
  ws: { name: 'json' },
  socketio: { name: 'socketIo', module: new URL('./lib/socketio-dialect.ts', import.meta.url).href },
  bun: { name: 'json' },
};

async function startTarget(name: TargetName, pinned: boolean): Promise<ServerProcess> {
  const port = await freePort();
  const common = ['--port', String(port), '--host', '127.0.0.1'];
  switch (name) {
    case 'hubbub-json':
    case 'hubbub-protobuf':
      // No per-connection rate limit (the one publisher sends thousands of frames/s), no disk.
      return startServer(LABEL[name], port, ['src/cli/main.ts', 'serve', ...common, '--log-level', 'warn', '--message-rate', '0', '--storage', 'memory'], { pinned });
    case 'ws':
      return startServer(LABEL[name], port, ['bench/baseline-ws-server.ts', ...common], { pinned });
    case 'socketio':
      return startServer(LABEL[name], port, ['bench/servers/socketio-server.ts', ...common], { pinned });
    case 'bun':
      return startServer(LABEL[name], port, ['bench/servers/bun-server.ts', ...common], { pinned, command: [BUN] });
  }
}

// ---- measuring -------------------------------------------------------------------------------------

let clkTck = 100;
const serverCpuUs = (pid: number): number => {
  const t = cpuTicks(pid);
  return ((t.user + t.sys) * 1e6) / clkTck;
};

interface PhaseResult {
  target: TargetName;
  round: number;
  phase: string;
  deliveries: number;
  expected: number;
  lost: number;
  seconds: number;
  deliveriesPerSec: number;
  serverUsPerDelivery: number;
  serverCpuPct: number;
  generatorCpuPct: number;
  latency: LatencyStats;
  /** Idle phase: server RSS growth per connection, bytes. */
  rssPerConnection?: number;
  note?: string;
}

/** Wait until a whole second passes without deliveries (leftovers of a phase a server could not keep up with). */
async function settle(gen: Generator, maxMs: number): Promise<boolean> {
  const deadline = performance.now() + maxMs;
  await gen.tick();
  while (performance.now() < deadline) {
    await sleep(1000);
    if ((await gen.tick()).delivered === 0) return true;
  }
  return false;
}

async function fanoutPhase(gen: Generator, pub: Publisher, s: ServerProcess, o: Options, name: TargetName, round: number, phase: string, p: { rounds: number; window: number; burst?: boolean; rate?: number; durationMs?: number }): Promise<PhaseResult> {
  const cpu0 = serverCpuUs(s.pid);
  const own0 = process.cpuUsage();
  const r = await publishPhase(gen, pub, {
    channels: ['bench/0'],
    rounds: p.rounds,
    window: p.window,
    burst: p.burst,
    rate: p.rate,
    durationMs: p.durationMs,
    pad: Math.max(0, o.size - 40),
    lateMs: 1000,
    stallMs: 10_000,
    drainMs: 5000,
  });
  const serverUs = serverCpuUs(s.pid) - cpu0;
  const own = process.cpuUsage(own0);
  const delivered = r.ticks.reduce((sum, t) => sum + t.delivered, 0);
  const genUs = r.ticks.reduce((sum, t) => sum + t.cpuUs, 0) + own.user + own.system;
  const expected = r.rounds * o.subscribers;
  const seconds = r.durationMs / 1000;
  const undecodable = r.ticks.reduce((sum, t) => sum + t.undecodable + t.disorder, 0);
  const notes = [];
  if (r.stalled) notes.push('stalled');
  if (undecodable > 0) notes.push(`${undecodable} sampled messages out of order or not the publication`);
  return {
    target: name,
    round,
    phase,
    deliveries: delivered,
    expected,
    lost: Math.max(0, expected - delivered),
    seconds,
    deliveriesPerSec: delivered / seconds,
    serverUsPerDelivery: serverUs / delivered,
    serverCpuPct: serverUs / 1e4 / seconds,
    generatorCpuPct: genUs / 1e4 / seconds,
    latency: latencyStats(r.ticks.flatMap((t) => t.latencies)),
    note: notes.join('; ') || undefined,
  };
}

async function idlePhase(gen: Generator, s: ServerProcess, target: GenTarget, o: Options, name: TargetName, round: number): Promise<PhaseResult> {
  await sleep(500);
  const before = rssBytes(s.pid);
  const t0 = performance.now();
  const c = await gen.connect(target, { count: o.idle, channel: 'idle/{c}', channelCount: 100, sampleEvery: 0, concurrency: 200, timeoutMs: 20_000 });
  const seconds = (performance.now() - t0) / 1000;
  await sleep(2000); // let allocation settle
  const after = rssBytes(s.pid);
  await gen.closeAll();
  return {
    target: name,
    round,
    phase: 'idle',
    deliveries: 0,
    expected: 0,
    lost: 0,
    seconds,
    deliveriesPerSec: NaN,
    serverUsPerDelivery: NaN,
    serverCpuPct: NaN,
    generatorCpuPct: NaN,
    latency: latencyStats(c.handshakeMs),
    rssPerConnection: c.ok > 0 ? (after - before) / c.ok : NaN,
    note: c.failed > 0 ? `${c.failed} of ${o.idle} connections failed: ${JSON.stringify(c.errors)}` : undefined,
  };
}

async function runTarget(gen: Generator, o: Options, name: TargetName, round: number, pinned: boolean, results: PhaseResult[]): Promise<void> {
  const s = await startTarget(name, pinned);
  const target: GenTarget = { host: '127.0.0.1', port: s.port, dialect: DIALECT[name] };
  const log = (r: PhaseResult): void => {
    results.push(r);
    const what =
      r.phase === 'idle'
        ? `${fmt((r.rssPerConnection ?? NaN) / 1024, 1)} KiB RSS per connection`
        : `${fmt(r.deliveriesPerSec)} deliveries/s, server ${fmt(r.serverUsPerDelivery, 3)} µs/delivery (${fmt(r.serverCpuPct)}% CPU), generator ${fmt(r.generatorCpuPct)}%, p50 ${fmt(r.latency.p50, 2)} p99 ${fmt(r.latency.p99, 2)} ms${r.lost ? `, lost ${fmt(r.lost)}` : ''}`;
    console.log(`  round ${round} ${LABEL[name].padEnd(16)} ${r.phase.padEnd(12)} ${what}${r.note ? ` (${r.note})` : ''}`);
  };
  try {
    if (o.phases.includes('idle')) log(await idlePhase(gen, s, target, o, name, round));
    const fan = o.phases.filter((p) => p !== 'idle');
    if (fan.length === 0) return;
    const c = await gen.connect(target, { count: o.subscribers, channel: 'bench/0', sampleEvery: o.sample > 0 ? Math.max(1, Math.floor(o.subscribers / o.sample)) : 0, concurrency: 100, timeoutMs: 20_000 });
    if (c.failed > 0) throw new Error(`${LABEL[name]}: ${c.failed} subscribers failed to connect: ${c.firstErrors[0]}`);
    const pub = await openPublisher(target, 10_000);
    try {
      // Warm-up (JIT, buffers), not measured.
      await fanoutPhase(gen, pub, s, o, name, round, 'warm-up', { rounds: Math.min(500, o.bursts), window: o.burst, burst: true });
      await settle(gen, 30_000);
      if (fan.includes('serial')) {
        log(await fanoutPhase(gen, pub, s, o, name, round, 'serial', { rounds: o.serial, window: 1 }));
        await settle(gen, 30_000);
      }
      if (fan.includes('burst')) {
        log(await fanoutPhase(gen, pub, s, o, name, round, `burst ${o.burst}`, { rounds: o.bursts, window: o.burst, burst: true }));
        await settle(gen, 30_000);
      }
      if (fan.includes('rate')) {
        for (const rate of o.rates) {
          const perSec = rate / o.subscribers;
          const r = await fanoutPhase(gen, pub, s, o, name, round, `${rate / 1000}k/s`, { rounds: Math.ceil(perSec * o.rateSeconds), window: Infinity, rate: perSec, durationMs: o.rateSeconds * 1000 });
          log(r);
          if (!(await settle(gen, 60_000))) {
            console.log(`  round ${round} ${LABEL[name]}: still delivering a backlog after 60 s; skipping its higher rates`);
            break;
          }
          if (r.deliveriesPerSec < 0.8 * rate) {
            console.log(`  round ${round} ${LABEL[name]}: could not keep up with ${rate}/s; skipping its higher rates`);
            break;
          }
        }
      }
    } finally {
      pub.client.destroy();
      await gen.closeAll();
    }
  } finally {
    await stopServer(s);
  }
}

// ---- report ----------------------------------------------------------------------------------------

function medianOf(results: PhaseResult[], get: (r: PhaseResult) => number): number {
  return median(results.map(get));
}

function printPhase(all: PhaseResult[], phase: string, targets: TargetName[]): void {
  const rows: [string, (r: PhaseResult) => number, number, 'lower' | 'higher' | ''][] =
    phase === 'idle'
      ? [
          ['RSS per idle connection KiB', (r) => (r.rssPerConnection ?? NaN) / 1024, 1, 'lower'],
          ['connect+subscribe p50 ms', (r) => r.latency.p50, 1, ''],
          ['connect+subscribe p99 ms', (r) => r.latency.p99, 1, ''],
        ]
      : [
          ['deliveries/s', (r) => r.deliveriesPerSec, 0, 'higher'],
          ['server CPU µs/delivery', (r) => r.serverUsPerDelivery, 3, 'lower'],
          ['deliveries per server-CPU-s', (r) => 1e6 / r.serverUsPerDelivery, 0, 'higher'],
          ['server CPU % of a core', (r) => r.serverCpuPct, 0, ''],
          ['generator CPU % of a core', (r) => r.generatorCpuPct, 0, ''],
          ['latency p50 ms', (r) => r.latency.p50, 2, 'lower'],
          ['latency p90 ms', (r) => r.latency.p90, 2, 'lower'],
          ['latency p99 ms', (r) => r.latency.p99, 2, 'lower'],
          ['latency p99.9 ms', (r) => r.latency.p999, 2, 'lower'],
          ['latency max ms', (r) => r.latency.max, 2, 'lower'],
          ['lost deliveries', (r) => r.lost, 0, ''],
        ];
  const present = targets.filter((t) => all.some((r) => r.phase === phase && r.target === t));
  if (present.length === 0) return;
  const rounds = Math.max(...present.map((t) => all.filter((r) => r.phase === phase && r.target === t).length));
  console.log(`\n${phase} (median of ${rounds} round${rounds > 1 ? 's' : ''}; × = value ÷ Hubbub JSON's)`);
  const w = 17;
  console.log(`  ${'metric'.padEnd(30)}${present.map((t) => LABEL[t].padStart(w)).join('')}`);
  for (const [label, get, d, ratio] of rows) {
    const vals = present.map((t) => medianOf(all.filter((r) => r.phase === phase && r.target === t), get));
    const base = present[0] === 'hubbub-json' ? vals[0]! : NaN;
    const cells = vals.map((v, i) => {
      const x = ratio && i > 0 && Number.isFinite(base) && base !== 0 ? ` ${fmt(v / base, 2)}×` : '';
      return `${fmt(v, d)}${x}`.padStart(w);
    });
    console.log(`  ${label.padEnd(30)}${cells.join('')}`);
  }
}

// ---- main ------------------------------------------------------------------------------------------

async function main(o: Options, gen: Generator, pinned: boolean): Promise<void> {
  const results: PhaseResult[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    // Rotate the order so that no server always runs first (or last) in the machine's noise.
    const k = (round - 1) % o.targets.length;
    const order = [...o.targets.slice(k), ...o.targets.slice(0, k)];
    for (const name of order) {
      try {
        await runTarget(gen, o, name, round, pinned, results);
      } catch (err) {
        console.log(`  round ${round} ${LABEL[name]}: failed: ${(err as Error).message}`);
        await gen.closeAll().catch(() => {});
      }
    }
  }
  const phases = [...new Set(results.map((r) => r.phase))];
  for (const phase of phases) printPhase(results, phase, o.targets);
  if (o.json) {
    const medians: Record<string, Record<string, Record<string, number>>> = {};
    for (const phase of phases) {
      medians[phase] = {};
      for (const t of o.targets) {
        const rs = results.filter((r) => r.phase === phase && r.target === t);
        if (rs.length === 0) continue;
        medians[phase]![t] = {
          deliveriesPerSec: medianOf(rs, (r) => r.deliveriesPerSec),
          serverUsPerDelivery: medianOf(rs, (r) => r.serverUsPerDelivery),
          p50: medianOf(rs, (r) => r.latency.p50),
          p99: medianOf(rs, (r) => r.latency.p99),
          rssPerConnection: medianOf(rs, (r) => r.rssPerConnection ?? NaN),
        };
      }
    }
    writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), options: o, machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, pinned }, medians, results }, null, 2) + '\n');
    console.log(`\nresults written to ${o.json}`);
  }
}

let gen: Generator | undefined;

runScript(
  'compare',
  options,
  async (o) => {
    clkTck = readClkTck();
    let pinned = false;
    if (o.pin && hasTaskset() && cpus().length >= 2) {
      // This process and the generator processes it forks run on core 1; the servers on core 0.
      execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
      pinned = true;
    }
    console.log(
      `compare: ${o.targets.map((t) => LABEL[t]).join(', ')}; phases ${o.phases.join(', ')}; ${o.rounds} round(s); ${o.subscribers} subscribers, burst ${o.burst}, data ~${o.size} B, ${o.sample} latency samplers\n` +
        `machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
        (pinned ? 'servers on core 0, generator on core 1 (taskset)' : 'no pinning'),
    );
    gen = await Generator.start(1);
    await main(o, gen, pinned);
    await gen.stop();
  },
  () => {
    gen?.kill();
    killServers();
  },
);
