/**
 * A generator process of `hubbub bench`: it holds a share of the benchmark's connections (one
 * process may open at most ~20,000 file descriptors), counts what they receive, samples latency on
 * some of them, and answers the coordinator (src/bench/generator.ts) over the IPC channel.
 * Counting subscribers never decode a message; sampled ones read the publication's sequence
 * number and publish time out of it.
 */
import { loadDialect, type Dialect } from './dialect.js';
import { LeanClient } from './lean-client.js';
import { nowUs } from './stats.js';
import type { ToCoordinator, ToWorker, ConnectSpec, ThroughputSpec } from './worker-protocol.js';

const send = (m: ToCoordinator): void => {
  process.send?.(m);
};

let dialect: Dialect;
const clients: LeanClient[] = [];
/** Global index of each local client (for sampling and per-client channels). */
const indexes: number[] = [];
/** Messages received per client since the last reset. */
let counts = new Uint32Array(0);
/** reached[k]: local subscribers that have received at least k messages since the reset. */
let reached = new Uint32Array(1024);
/** Clients taking part in the current count (subscribers). */
let participants = 0;
/** The highest k that every participant has received. */
let fully = 0;
let fullyReported = 0;
let reportScheduled = false;

// Figures since the last tick.
let delivered = 0;
let latencies: number[] = [];
let disorder = 0;
let late = 0;
let lateUs = Infinity;
let undecodable = 0;
let cpuMark = process.cpuUsage();
let closedUnexpectedly = 0;
let stopping = false;

function growReached(k: number): void {
  let n = reached.length;
  while (n <= k) n *= 2;
  const r = new Uint32Array(n);
  r.set(reached);
  reached = r;
}

function reportFully(): void {
  reportScheduled = false;
  if (fully !== fullyReported) {
    fullyReported = fully;
    send({ ev: 'fully', n: fully });
  }
}

function onDelivery(i: number, payload: Buffer | undefined, binary: boolean): void {
  delivered++;
  const k = ++counts[i]!;
  if (payload) {
    const now = nowUs();
    let d;
    try {
      d = dialect.read(payload, binary);
    } catch {
      d = undefined;
    }
    if (d === undefined) undecodable++;
    else {
      if (d.s !== k) disorder++;
      const us = now - d.t;
      if (us > lateUs) late++;
      latencies.push(us / 1000);
    }
  }
  if (k >= reached.length) growReached(k);
  if (++reached[k]! === participants && k > fully) {
    fully = k;
    if (!reportScheduled) {
      reportScheduled = true;
      setImmediate(reportFully);
    }
  }
}

function errorKind(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ECONNREFUSED') return 'refused';
  if (e.code === 'ECONNRESET') return 'reset';
  if (e.code === 'EADDRNOTAVAIL') return 'no free local port';
  if (e.code === 'EMFILE' || e.code === 'ENFILE') return 'too many open files';
  if (e.code) return e.code.toLowerCase();
  const m = /upgrade refused: HTTP\/1\.1 (\d{3})/.exec(e.message ?? '');
  if (m) return `http ${m[1]}`;
  if (/timed out|no message within/.test(e.message ?? '')) return 'timeout';
  if (/closed/.test(e.message ?? '')) return 'closed';
  return 'other';
}

function channelName(template: string, index: number, count = 1): string {
  return template.replace('{i}', String(index)).replace('{c}', String(index % count));
}

async function connect(spec: ConnectSpec): Promise<void> {
  dialect = await loadDialect(spec.dialect);
  const errors: Record<string, number> = {};
  const handshakeMs: number[] = [];
  const firstError: string[] = [];
  let ok = 0;
  let failed = 0;
  let next = 0;
  let messageRate: number | undefined;
  let lastProgress = 0;
  const base = clients.length;
  const opened: (LeanClient | undefined)[] = new Array(spec.count);
  const openOne = async (j: number): Promise<void> => {
    const index = spec.firstIndex + j;
    const t0 = performance.now();
    let c: LeanClient | undefined;
    try {
      c = await LeanClient.connect({
        host: spec.host,
        port: spec.port,
        path: spec.path ?? dialect.path,
        protocols: dialect.protocols,
        localAddress: spec.localAddress[j],
        timeoutMs: spec.timeoutMs,
        headers: spec.token ? { authorization: `Bearer ${spec.token}` } : undefined,
      });
      const limits = await dialect.handshake(c, spec.timeoutMs);
      if (limits && limits.messageRate) messageRate = Math.min(messageRate ?? Infinity, limits.messageRate);
      handshakeMs.push(performance.now() - t0);
      if (spec.channel !== undefined) await dialect.subscribe(c, channelName(spec.channel, index, spec.channelCount), spec.timeoutMs);
      ok++;
      opened[j] = c;
    } catch (err) {
      c?.destroy();
      failed++;
      const kind = errorKind(err);
      errors[kind] = (errors[kind] ?? 0) + 1;
      if (firstError.length < 3) firstError.push((err as Error).message);
    }
    if (performance.now() - lastProgress > 200) {
      lastProgress = performance.now();
      send({ ev: 'progress', ok, failed });
    }
  };
  const lane = async (): Promise<void> => {
    while (next < spec.count) await openOne(next++);
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.count) }, lane));
  // Wire the opened clients in index order, so that sampling is spread evenly.
  for (let j = 0; j < spec.count; j++) {
    const c = opened[j];
    if (!c) continue;
    const i = clients.length;
    const index = spec.firstIndex + j;
    clients.push(c);
    indexes.push(index);
    c.collect = spec.sampleEvery > 0 && index % spec.sampleEvery === 0;
    c.onMessage = (payload, _length, binary) => onDelivery(i, payload, binary);
    c.onClose = () => {
      if (!stopping) closedUnexpectedly++;
    };
  }
  counts = new Uint32Array(clients.length);
  send({ ev: 'connected', ok, failed, errors, handshakeMs, firstErrors: firstError, added: clients.length - base, messageRate });
}

/** Start a new count: every local client that subscribed takes part. */
function reset(lateMs: number): void {
  counts = new Uint32Array(clients.length);
  reached = new Uint32Array(1024);
  participants = clients.length;
  fully = 0;
  fullyReported = 0;
  delivered = 0;
  latencies = [];
  disorder = 0;
  late = 0;
  undecodable = 0;
  lateUs = lateMs * 1000;
}

function tick(): void {
  const cpu = process.cpuUsage(cpuMark);
  cpuMark = process.cpuUsage();
  send({ ev: 'tick', delivered, latencies, disorder, late, undecodable, cpuUs: cpu.user + cpu.system, fully, closed: closedUnexpectedly, open: clients.length - closedUnexpectedly });
  delivered = 0;
  latencies = [];
  disorder = 0;
  late = 0;
  undecodable = 0;
}

/**
 * Throughput: every local client publishes `messages` publications to its own channel (which it
 * subscribed to) with at most `window` of its own outstanding, paced to `rate` per client when set.
 */
function throughput(spec: ThroughputSpec): void {
  const sent = new Uint32Array(clients.length);
  const pad = 'x'.repeat(spec.pad);
  const publish = (i: number): void => {
    const k = ++sent[i]!;
    clients[i]!.sendRaw(dialect.publishFrame(channelName(spec.channel, indexes[i]!), `{"s":${k},"t":${nowUs()},"p":"${pad}"}`));
  };
  const t0 = performance.now();
  const perMs = spec.rate ? spec.rate / 1000 : Infinity;
  const allowed = (): number => (perMs === Infinity ? spec.messages : Math.min(spec.messages, Math.floor((performance.now() - t0) * perMs) + 1));
  const pump = (i: number): void => {
    const limit = allowed();
    if (sent[i]! >= limit || sent[i]! - counts[i]! >= spec.window) return;
    // Publications due together leave in one write.
    const socket = clients[i]!.socket;
    socket.cork();
    while (sent[i]! < limit && sent[i]! - counts[i]! < spec.window) publish(i);
    socket.uncork();
  };
  if (perMs !== Infinity) {
    // Paced: a clock lets clients that wait for their allowance (not for deliveries) go on.
    const timer = setInterval(() => {
      let behind = false;
      for (let i = 0; i < clients.length; i++) {
        if (sent[i]! < spec.messages) {
          behind = true;
          pump(i);
        }
      }
      if (!behind) clearInterval(timer);
    }, 10);
  }
  for (let i = 0; i < clients.length; i++) {
    const c = clients[i]!;
    const prev = c.onMessage!;
    c.onMessage = (payload, length, binary, compressed) => {
      prev(payload, length, binary, compressed);
      pump(i);
    };
    pump(i);
  }
}

async function closeAll(): Promise<void> {
  stopping = true;
  await Promise.all(clients.map((c) => c.close(500)));
  clients.length = 0;
  indexes.length = 0;
  counts = new Uint32Array(0);
  closedUnexpectedly = 0;
  stopping = false;
}

process.on('message', (m: ToWorker) => {
  const fail = (err: unknown): void => send({ ev: 'error', message: (err as Error).stack ?? String(err) });
  switch (m.op) {
    case 'connect':
      connect(m.spec).catch(fail);
      break;
    case 'reset':
      reset(m.lateMs);
      send({ ev: 'ready' });
      break;
    case 'tick':
      tick();
      break;
    case 'throughput':
      try {
        throughput(m.spec);
      } catch (err) {
        fail(err);
      }
      break;
    case 'close':
      closeAll().then(() => send({ ev: 'closed' }), fail);
      break;
    case 'exit':
      for (const c of clients) c.destroy();
      process.exit(0);
  }
});
// The coordinator went away: so do we.
process.on('disconnect', () => process.exit(0));
send({ ev: 'ready' });
