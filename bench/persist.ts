/**
 * Durable delivery benchmarks (issue 6): how many publications per second Hubbub stores and
 * acknowledges, and what history costs on a fan-out.
 *
 *   npm run bench:persist -- [--rounds 3] [--publications 100000] [--subscribers 500] [--fanout-messages 2000]
 *
 * 1. store:   the storage engines alone, in this process: appends per second (one turn's appends
 *             share one SQLite transaction).
 * 2. publish: a real server process; 8 connections each keep 64 publishes in flight; a publish
 *             counts when its reply arrives, i.e. once stored. Channels with history on SQLite,
 *             on memory, and without history.
 * 3. fan-out: 1 publisher → S subscribers on one channel, with and without history (SQLite);
 *             server CPU per delivery from /proc/<pid>/stat.
 * Medians of the rounds; the machine is shared, so compare within one run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { MemoryStore } from '../src/engine/memory-store.js';
import { SqliteStore } from '../src/engine/sqlite-store.js';
import type { Store } from '../src/engine/store.js';
import { Payload } from '../src/protocol/payload.js';
import { fmt, freePort, median, sleep } from './lib/harness.js';
import { Args } from './lib/options.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
function options(): { rounds: number; publications: number; subscribers: number; fanoutMessages: number } {
  try {
    const args = new Args(process.argv.slice(2), 'usage: npm run bench:persist -- [--rounds 3] [--publications 100000] [--subscribers 500] [--fanout-messages 2000]', ['rounds', 'publications', 'subscribers', 'fanout-messages']);
    return {
      rounds: args.int('rounds', 3, 1, 50),
      publications: args.int('publications', 100_000, 1, 10_000_000),
      subscribers: args.int('subscribers', 500, 1, 15_000),
      fanoutMessages: args.int('fanout-messages', 2000, 1, 1_000_000),
    };
  } catch (err) {
    console.error(`persist: ${(err as Error).message}`);
    process.exit(2);
  }
}
const { rounds: ROUNDS, publications: PUBLICATIONS, subscribers: SUBSCRIBERS, fanoutMessages: FANOUT_MESSAGES } = options();
const CONNECTIONS = 8;
const WINDOW = 64;

const children = new Set<ChildProcess>();
const dirs: string[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));


const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'hubbub-bench-'));
  dirs.push(d);
  return d;
};

// ---- 1. the engines alone -------------------------------------------------------------------------

async function storeRun(make: () => Store, channels: number): Promise<number> {
  const store = make();
  await store.open();
  const policy = { size: 1000, ttl: 0 };
  const payload = Payload.json({ text: 'a chat message of a typical size, about a hundred bytes long', n: 42 });
  const from = { client: 'bench' };
  const t0 = performance.now();
  let last: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < PUBLICATIONS; i++) {
    last = store.append(`hist/${i % channels}`, { payload, kind: 'text', from, ts: Date.now() }, policy);
    if (i % 1000 === 999) await last; // one turn's worth, as a busy server would batch
  }
  await last;
  const rate = PUBLICATIONS / ((performance.now() - t0) / 1000);
  await store.close();
  return rate;
}

// ---- server processes -------------------------------------------------------------------------------

interface Server {
  child: ChildProcess;
  url: string;
}

async function startServer(storage: 'sqlite' | 'memory'): Promise<Server> {
  const dir = tempDir();
  const config = join(dir, 'hubbub.json');
  writeFileSync(config, JSON.stringify({ namespaces: { hist: { history_size: 1000 } } }));
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/hubbub.js'), 'serve', '--host', '127.0.0.1', '--port', String(port), '--storage', storage, '--data-dir', dir, '--config', config, '--message-rate', '0', '--max-queue-bytes', '256MiB', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  children.add(child);
  const url = `ws://127.0.0.1:${port}/ws`;
  for (let i = 0; i < 100; i++) {
    try {
      await (await connect(url)).close();
      return { child, url };
    } catch {
      await sleep(100);
    }
  }
  throw new Error('the server did not start');
}

async function stopServer(s: Server): Promise<void> {
  s.child.kill('SIGTERM');
  await new Promise((r) => s.child.once('exit', r));
  children.delete(s.child);
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in ticks of 10 ms
}

/** A raw client: JSON requests with ids, replies matched by id, a counter of message frames. */
interface Conn {
  ws: WebSocket;
  messages: number;
  request(frame: Record<string, unknown>): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

function connect(url: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const pending = new Map<number, (f: Record<string, unknown>) => void>();
    let next = 1;
    const conn: Conn = {
      ws,
      messages: 0,
      request(frame) {
        const id = next++;
        return new Promise((res) => {
          pending.set(id, res);
          ws.send(JSON.stringify({ ...frame, id }));
        });
      },
      close: () =>
        new Promise((r) => {
          ws.once('close', () => r());
          ws.close();
        }),
    };
    ws.on('message', (data: Buffer) => {
      // Pushes are counted without parsing: the generator must not be the bottleneck.
      if (data[9] === 0x6d && data.subarray(0, 17).toString() === '{"type":"message"') {
        conn.messages++;
        return;
      }
      const f = JSON.parse(data.toString()) as Record<string, unknown>;
      if (f.type === 'welcome') resolve(conn);
      const done = typeof f.id === 'number' ? pending.get(f.id) : undefined;
      if (done) {
        pending.delete(f.id as number);
        done(f);
      }
    });
    ws.once('error', reject);
  });
}

// ---- 2. acknowledged publishes -------------------------------------------------------------------------

async function publishRun(server: Server, channelPrefix: string): Promise<{ rate: number; cpuUs: number }> {
  const url = server.url;
  const conns = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(url)));
  const perConn = Math.floor(PUBLICATIONS / CONNECTIONS);
  const cpu0 = cpuSeconds(server.child.pid!);
  const t0 = performance.now();
  // A lean generator: frames are pre-built strings, and replies are counted from their first bytes
  // (an error reply fails the run); each reply lets the next publish go, keeping WINDOW in flight.
  await Promise.all(
    conns.map(
      (c, ci) =>
        new Promise<void>((resolve, reject) => {
          const head = `{"type":"publish","channel":"${channelPrefix}/${ci}","data":{"text":"a chat message of a typical size, about a hundred bytes long","n":`;
          let sent = 0;
          let acked = 0;
          const sendOne = (): void => {
            sent++;
            c.ws.send(`${head}${sent}},"id":${sent}}`);
          };
          c.ws.removeAllListeners('message');
          c.ws.on('message', (data: Buffer) => {
            if (data[9] !== 0x72) {
              reject(new Error(`publish failed: ${data.toString().slice(0, 200)}`)); // not {"type":"reply"
              return;
            }
            acked++;
            if (sent < perConn) sendOne();
            else if (acked === perConn) resolve();
          });
          for (let i = 0; i < WINDOW && sent < perConn; i++) sendOne();
        }),
    ),
  );
  const rate = (perConn * CONNECTIONS) / ((performance.now() - t0) / 1000);
  const cpuUs = ((cpuSeconds(server.child.pid!) - cpu0) * 1e6) / (perConn * CONNECTIONS);
  await Promise.all(conns.map((c) => c.close()));
  return { rate, cpuUs };
}

// ---- 3. fan-out with and without history ---------------------------------------------------------------

async function fanoutRun(server: Server, channel: string): Promise<{ rate: number; cpuUs: number }> {
  const subs: Conn[] = [];
  for (let i = 0; i < SUBSCRIBERS; i += 50) subs.push(...(await Promise.all(Array.from({ length: Math.min(50, SUBSCRIBERS - i) }, () => connect(server.url)))));
  await Promise.all(subs.map((s) => s.request({ type: 'subscribe', channel })));
  const pub = await connect(server.url);
  const expected = SUBSCRIBERS * FANOUT_MESSAGES;
  const cpu0 = cpuSeconds(server.child.pid!);
  const t0 = performance.now();
  let sent = 0;
  const lanes = Array.from({ length: 32 }, async () => {
    while (sent < FANOUT_MESSAGES) {
      sent++;
      await pub.request({ type: 'publish', channel, data: { n: sent, text: 'fan-out' } });
    }
  });
  await Promise.all(lanes);
  const deadline = Date.now() + 120_000;
  const got = (): number => subs.reduce((n, s) => n + s.messages, 0);
  while (got() < expected && Date.now() < deadline) await sleep(5);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(server.child.pid!) - cpu0;
  if (got() < expected) throw new Error(`fan-out: ${got()} of ${expected} deliveries arrived`);
  await Promise.all([...subs, pub].map((c) => c.close()));
  return { rate: expected / seconds, cpuUs: (cpu * 1e6) / expected };
}

// ---- main ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  console.log(`durable delivery: ${ROUNDS} rounds, ${fmt(PUBLICATIONS)} publications, fan-out ${SUBSCRIBERS} × ${fmt(FANOUT_MESSAGES)}; node ${process.version}`);

  const storeRates: Record<string, number[]> = { 'sqlite, 1 channel': [], 'sqlite, 100 channels': [], 'memory, 100 channels': [] };
  for (let r = 0; r < ROUNDS; r++) {
    storeRates['sqlite, 1 channel']!.push(await storeRun(() => new SqliteStore(join(tempDir(), 'hubbub.db')), 1));
    storeRates['sqlite, 100 channels']!.push(await storeRun(() => new SqliteStore(join(tempDir(), 'hubbub.db')), 100));
    storeRates['memory, 100 channels']!.push(await storeRun(() => new MemoryStore(), 100));
  }
  console.log('\n1. engines alone (appends/s, median)');
  for (const [k, v] of Object.entries(storeRates)) console.log(`   ${k.padEnd(24)} ${fmt(median(v)).padStart(12)}   runs: ${v.map((x) => fmt(x)).join(', ')}`);

  const pub: Record<string, { rate: number[]; cpu: number[] }> = { 'history, sqlite': { rate: [], cpu: [] }, 'history, memory': { rate: [], cpu: [] }, 'no history, sqlite': { rate: [], cpu: [] } };
  const record = (k: string, r: { rate: number; cpuUs: number }): void => {
    pub[k]!.rate.push(r.rate);
    pub[k]!.cpu.push(r.cpuUs);
  };
  for (let r = 0; r < ROUNDS; r++) {
    const sqlite = await startServer('sqlite');
    record('history, sqlite', await publishRun(sqlite, 'hist'));
    record('no history, sqlite', await publishRun(sqlite, 'plain'));
    await stopServer(sqlite);
    const memory = await startServer('memory');
    record('history, memory', await publishRun(memory, 'hist'));
    await stopServer(memory);
  }
  console.log(`\n2. acknowledged publishes through a server (${CONNECTIONS} connections × ${WINDOW} in flight; medians)`);
  console.log(`   ${''.padEnd(24)} ${'publishes/s'.padStart(12)} ${'server µs/publish'.padStart(18)} ${'= per server core/s'.padStart(20)}`);
  for (const [k, v] of Object.entries(pub)) {
    const cpu = median(v.cpu);
    console.log(`   ${k.padEnd(24)} ${fmt(median(v.rate)).padStart(12)} ${fmt(cpu, 1).padStart(18)} ${fmt(1e6 / cpu).padStart(20)}   runs: ${v.rate.map((x) => fmt(x)).join(', ')}`);
  }

  const fan: Record<string, { rate: number[]; cpu: number[] }> = { 'no history': { rate: [], cpu: [] }, 'history (sqlite)': { rate: [], cpu: [] } };
  for (let r = 0; r < ROUNDS; r++) {
    const server = await startServer('sqlite');
    for (const [label, channel] of [['no history', 'plain/fan'], ['history (sqlite)', 'hist/fan']] as const) {
      const { rate, cpuUs } = await fanoutRun(server, channel);
      fan[label]!.rate.push(rate);
      fan[label]!.cpu.push(cpuUs);
    }
    await stopServer(server);
  }
  console.log(`\n3. fan-out 1 → ${SUBSCRIBERS} (deliveries/s and server CPU µs per delivery, medians)`);
  for (const [k, v] of Object.entries(fan)) console.log(`   ${k.padEnd(24)} ${fmt(median(v.rate)).padStart(12)} del/s   ${fmt(median(v.cpu), 2).padStart(6)} µs/delivery`);
  const ratio = median(fan['history (sqlite)']!.cpu) / median(fan['no history']!.cpu);
  console.log(`   history costs ${fmt(ratio, 2)}× the server CPU per delivery of a channel without it`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
