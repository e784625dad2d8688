/**
 * `hubbub bench` as a user runs it: the CLI in a child process (from source, under tsx: dist/ may
 * not have the bench yet) against real Hubbub servers on free ports, every scenario at small sizes.
 * Plus the two pure helpers that decide how connections are spread (source addresses, processes).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sourceAddress } from '../src/bench/generator.js';
import { processesFor } from '../src/bench/scenarios.js';
import type { BenchSummary } from '../src/bench/summary.js';
import { deadPort, startServer, type TestServer } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const KEY = 'bench-test-key';

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  ms: number;
}

/**
 * Run `hubbub bench …` to its end; killed (with its generator processes, which exit on disconnect)
 * after `timeoutMs`. `openFiles` lowers its open-file limit (inherited by the generator processes).
 */
function bench(args: string[], timeoutMs = 30_000, openFiles?: number): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('HUBBUB_')) delete env[k];
  const t0 = performance.now();
  const argv = [process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'bench', ...args];
  const [cmd, ...rest] = openFiles === undefined ? argv : ['/bin/sh', '-c', `ulimit -n ${openFiles} && exec "$@"`, 'sh', ...argv];
  const child = spawn(cmd!, rest, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, ms: performance.now() - t0 });
    });
  });
}

const show = (r: Run): string => `exit ${r.code ?? r.signal} after ${r.ms.toFixed(0)} ms\nstdout: ${r.out}\nstderr: ${r.err}`;

let dir: string;
let seq = 0;

/** Run a scenario against `server` with --json, expect exit 0, and return the summary it wrote (and the run). */
async function summary(server: TestServer, scenario: string, args: string[], timeoutMs?: number, openFiles?: number): Promise<{ s: BenchSummary; run: Run }> {
  const file = join(dir, `run-${++seq}.json`);
  const run = await bench([scenario, '--url', server.url, '--quiet', '--json', file, ...args], timeoutMs, openFiles);
  assert.equal(run.code, 0, show(run));
  return { s: JSON.parse(readFileSync(file, 'utf8')) as BenchSummary, run };
}

/** What every run that publishes must show: all delivered, none lost, in order. */
function allDelivered(s: BenchSummary, expected: number): void {
  assert.equal(s.expected, expected, 'expected');
  assert.equal(s.delivered, expected, `delivered; notes: ${s.notes.join(' | ')}`);
  assert.equal(s.lost, 0, 'lost');
  assert.equal(s.disorder, 0, 'disorder');
  assert.equal(s.connections.failed, 0, JSON.stringify(s.connections.errors));
}


describe('sourceAddress', () => {
  const per = 100;

  it('leaves a loopback connection to the kernel below perAddress, then binds 127.0.0.2, 127.0.0.3, …', () => {
    assert.equal(sourceAddress(0, undefined, true, per), undefined);
    assert.equal(sourceAddress(per - 1, undefined, true, per), undefined);
    assert.equal(sourceAddress(per, undefined, true, per), '127.0.0.2');
    assert.equal(sourceAddress(2 * per - 1, undefined, true, per), '127.0.0.2');
    assert.equal(sourceAddress(2 * per, undefined, true, per), '127.0.0.3');
    assert.equal(sourceAddress(20_000, undefined, true), '127.0.0.2', 'default perAddress is 20,000');
  });

  it('uses an explicit list in blocks of perAddress, wrapping around', () => {
    const list = ['10.0.0.1', '10.0.0.2'];
    assert.equal(sourceAddress(0, list, true, per), '10.0.0.1');
    assert.equal(sourceAddress(per - 1, list, false, per), '10.0.0.1');
    assert.equal(sourceAddress(per, list, false, per), '10.0.0.2');
    assert.equal(sourceAddress(2 * per, list, false, per), '10.0.0.1');
    assert.equal(sourceAddress(3 * per + 5, list, true, per), '10.0.0.2');
  });

  it('leaves a remote server without a list to the kernel', () => {
    for (const i of [0, per, 10 * per]) assert.equal(sourceAddress(i, undefined, false, per), undefined);
    assert.equal(sourceAddress(per, [], false, per), undefined, 'an empty list is no list');
  });
});

describe('processesFor', () => {
  it('takes the requested count as given', () => {
    assert.equal(processesFor(30_000, 1), 1);
    assert.equal(processesFor(10, 3), 3);
  });

  it('splits 30,000 connections so that each process stays under this machine\'s open-file limit', () => {
    const limit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]);
    // At least 15,500 files: 15,000 connections per process plus headroom, so 2; fewer files need more processes.
    const expected = limit >= 15_500 ? 2 : Math.ceil(30_000 / Math.max(100, limit - 500));
    const n = processesFor(30_000, 0);
    assert.equal(n, expected, `open-file limit ${limit}`);
    assert.ok(Math.ceil(30_000 / n) < limit, 'each process holds fewer connections than it may open files');
    assert.equal(processesFor(1, 0), 1);
  });
});

describe('hubbub bench', () => {
  let hub: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hubbub-bench-cli-'));
    hub = await startServer({ message_rate: 0, api_keys: [KEY] });
  });

  after(async () => {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fanout: every delivery counted and timed, server CPU read with the API key, table, JSON and HTML', async () => {
    const html = join(dir, 'fanout.html');
    const { s, run } = await summary(hub, 'fanout', ['--clients', '50', '--messages', '40', '--window', '8', '--html', html, '--api-key', KEY]);
    allDelivered(s, 50 * 40);
    assert.equal(s.published, 40);
    assert.equal(s.scenario, 'fanout');
    assert.equal(s.connections.ok, 50);
    assert.ok(s.latency.samples > 0, 'latency sampled');
    assert.ok(s.latency.p50 <= s.latency.p99 && s.latency.p99 <= s.latency.max, JSON.stringify(s.latency));
    assert.ok(s.series.length > 0, 'per-second series');
    assert.ok(s.cpu.server && s.cpu.server.seconds >= 0, `server CPU read; notes: ${s.notes.join(' | ')}`);
    assert.ok(s.serverMemory && s.serverMemory.start > 0, 'server memory read');
    assert.match(run.out, /deliveries\/s/);
    assert.match(readFileSync(html, 'utf8'), /<svg/);
  });

  it('fanout over 4 channels: each publication reaches its channel\'s subscribers only', async () => {
    const { s } = await summary(hub, 'fanout', ['--clients', '40', '--messages', '10', '--channels', '4']);
    allDelivered(s, 10 * 40);
    assert.equal(s.published, 10 * 4);
  });

  it('fanout over protobuf', async () => {
    const { s } = await summary(hub, 'fanout', ['--clients', '30', '--messages', '40', '--encoding', 'protobuf']);
    assert.equal(s.encoding, 'protobuf');
    allDelivered(s, 30 * 40);
    assert.ok(s.latency.samples > 0 && s.latency.p50 <= s.latency.p99 && s.latency.p99 <= s.latency.max, JSON.stringify(s.latency));
  });

  it('throughput: every client gets all of its own publications', async () => {
    const { s } = await summary(hub, 'throughput', ['--clients', '20', '--messages', '50']);
    allDelivered(s, 20 * 50);
    assert.equal(s.published, 1000);
  });

  it('storm: every connection opened and its handshake timed', async () => {
    const { s, run } = await summary(hub, 'storm', ['--clients', '300']);
    assert.equal(s.connections.attempted, 300);
    assert.equal(s.connections.ok, 300, JSON.stringify(s.connections.errors));
    assert.equal(s.connections.failed, 0);
    assert.equal(s.connections.handshake.samples, 300);
    assert.ok(s.connections.handshake.p50 > 0 && s.connections.handshake.p50 <= s.connections.handshake.max);
    assert.match(run.out, /storm/);
  });

  it('storm: spreads connections over as many generator processes as the open-file limit needs, and no more', async () => {
    // With 700 files a process takes 200 connections (limit - 500): 200 fit one process, 400 need two.
    const one = await summary(hub, 'storm', ['--clients', '200'], 30_000, 700);
    assert.equal(one.s.connections.processes, 1);
    assert.equal(one.s.connections.ok, 200);
    const two = await summary(hub, 'storm', ['--clients', '400'], 30_000, 700);
    assert.equal(two.s.connections.processes, 2);
    assert.equal(two.s.connections.ok, 400, JSON.stringify(two.s.connections.errors));
  });

  it('sustained: a fixed rate, second by second, with the server\'s memory in each second', async () => {
    const { s } = await summary(hub, 'sustained', ['--clients', '50', '--rate', '50', '--duration', '3', '--api-key', KEY], 40_000);
    assert.ok(s.series.length >= 3, `series of ${s.series.length}`);
    for (const p of s.series) assert.ok(typeof p.serverRss === 'number' && p.serverRss > 0, `serverRss in ${JSON.stringify(p)}`);
    assert.ok(Math.abs(s.published - 150) <= 5, `published ${s.published}`);
    allDelivered(s, s.published * 50);
  });

  it('latency: every subscriber sampled', async () => {
    const { s } = await summary(hub, 'latency', ['--clients', '20', '--rate', '50', '--duration', '2']);
    assert.ok(Math.abs(s.published - 100) <= 5, `published ${s.published}`);
    allDelivered(s, s.published * 20);
    assert.equal(s.latency.samples, s.delivered);
  });

  it('without a valid API key: the run succeeds, no server figures, and a note says how to get them', async () => {
    for (const key of [['--api-key', 'not-the-key'], []]) {
      const { s } = await summary(hub, 'fanout', ['--clients', '10', '--messages', '10', ...key]);
      allDelivered(s, 100);
      assert.equal(s.cpu.server, undefined, `cpu.server with ${key.join(' ') || 'no key'}`);
      assert.ok(s.notes.some((n) => /--api-key/.test(n) && /--server-pid/.test(n)), `notes: ${s.notes.join(' | ')}`);
    }
  });

  it('respects a server\'s message_rate: the publisher is paced to it, nothing is refused or lost', async () => {
    const limited = await startServer({ message_rate: 100 });
    try {
      const { s } = await summary(limited, 'fanout', ['--clients', '10', '--messages', '200'], 40_000);
      allDelivered(s, 200 * 10);
      assert.ok(s.notes.some((n) => /message_rate/.test(n)), `notes: ${s.notes.join(' | ')}`);
      assert.ok(!s.notes.some((n) => /errors/.test(n)), `notes: ${s.notes.join(' | ')}`);
      // 200 publications at most 95/s take more than 1.5 s: paced, not bursted and refused.
      assert.ok(s.durationMs > 1500, `duration ${s.durationMs} ms`);
    } finally {
      await limited.close();
    }
  });

  it('an unknown scenario is bad usage (exit 2) naming the scenarios', async () => {
    const r = await bench(['flood', '--url', hub.url]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.err, /unknown scenario flood/);
    assert.match(r.err, /fanout, throughput, storm, sustained, latency/);
  });

  it('--clients 0 is bad usage (exit 2)', async () => {
    const r = await bench(['fanout', '--url', hub.url, '--clients', '0']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.err, /--clients/);
  });

  it('an unreachable server fails at once (exit 1) with one line', async () => {
    const url = `ws://127.0.0.1:${await deadPort()}/ws`;
    const r = await bench(['fanout', '--url', url, '--quiet', '--clients', '5', '--messages', '5'], 15_000);
    assert.equal(r.code, 1, show(r));
    const lines = r.err.trimEnd().split('\n');
    assert.equal(lines.length, 1, show(r));
    assert.match(lines[0]!, /^hubbub bench: .*(refused|ECONNREFUSED)/);
    assert.ok(r.ms < 8000, `took ${r.ms.toFixed(0)} ms`);
    assert.equal(r.out, '', 'no table');
  });

  it('a storm where nothing could connect fails (exit 1), as --help says', async () => {
    const url = `ws://127.0.0.1:${await deadPort()}/ws`;
    const r = await bench(['storm', '--url', url, '--quiet', '--clients', '5'], 15_000);
    assert.equal(r.code, 1, show(r));
    assert.match(r.err, /^hubbub bench: .*(refused|ECONNREFUSED)/);
  });

  it('--help names the scenarios and the flags', async () => {
    const r = await bench(['--help']);
    assert.equal(r.code, 0, show(r));
    for (const word of ['fanout', 'throughput', 'storm', 'sustained', 'latency']) assert.ok(r.out.includes(word), word);
    for (const flag of ['--url', '--clients', '--messages', '--size', '--rate', '--duration', '--channels', '--encoding', '--json', '--html']) assert.ok(r.out.includes(flag), flag);
  });
});
