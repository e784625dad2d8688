/**
 * Fan-out comparisons on Hubbub alone, side by side in one run, with the scenario of bench/fanout.ts
 * (1 publisher, S subscribers on one channel, serial and windowed publishing):
 *
 *   npm run bench:encodings -- [options]   subscribers on hubbub.v1.json vs hubbub.v1.protobuf
 *   npm run bench:deflate -- [options]     permessage-deflate off vs on, per payload size, plus
 *                                          the server's RSS per idle connection
 *
 * Each variant gets its own server (a child process pinned to core 0; this generator pins itself to
 * core 1), all connected before measuring; then every round runs each phase on each variant in turn
 * (the order rotates between rounds), and the report gives the median over the rounds. Per phase:
 * deliveries/s, server CPU per delivery (utime+stime from /proc/<pid>/stat), bytes read off the
 * subscribers' sockets per delivery (WebSocket headers included, TCP/IP not), latency from sampled
 * subscribers. The sampled subscribers decode every message they get with the SDK's decoders
 * (inflating it first when it came compressed) and check its sequence number, so the counted
 * frames are known to be the publications. Everything is bounded (per-phase stall detection, an
 * overall timeout) and only the servers started here are killed, on every exit path.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import type { Json, ServerFrame } from '../src/protocol/frames.js';
import { parseServerFrame } from '../src/protocol/json-codec.js';
import { decodeServerFrame, encodeClientFrame as encodeProtoClient, encodeFrame } from '../src/protocol/proto-codec.js';
import { pseudoRandomBytes, runScript, coreTicks, cpuTicks, fmt, freePort, hasTaskset, killServers, median, openFileLimit, percentiles, readClkTck, rssBytes, Run, sleep, startServer, stopServer, type Sample, type ServerProcess, type Sink } from './lib/harness.js';
import { Args } from './lib/options.js';
import { inflateMessage, LeanClient } from '../src/bench/lean-client.js';

// ---- options ---------------------------------------------------------------------------------------

type Mode = 'encodings' | 'deflate';
type Phase = 'serial' | 'window';
type PayloadKind = 'json' | 'bytes';
type Encoding = 'json' | 'protobuf';

interface Options {
  mode: Mode;
  subscribers: number;
  messages: number;
  window: number;
  sample: number;
  warmup: number;
  rounds: number;
  phases: Phase[];
  sizes: number[];
  payload: PayloadKind;
  variants: string[];
  threshold: number;
  idle: number;
  timeoutSec: number;
  json: string | undefined;
  pin: boolean;
}

const VARIANTS: Record<Mode, string[]> = { encodings: ['json', 'protobuf', 'mixed'], deflate: ['off', 'on'] };

const USAGE = `usage: npm run bench:encodings -- [options]
       npm run bench:deflate -- [options]
  --subscribers N   subscriber connections per server (default 1000)
  --messages N      publications per phase (default 1000)
  --window W        publications outstanding in the window phase (default 32)
  --rounds R        measured rounds; the report shows medians (default 3)
  --phases LIST     serial,window (default: both for encodings, window for deflate)
  --sizes LIST      bytes of the payload (default 64 for encodings, 100,2048 for deflate)
  --payload KIND    json (an object of numbers and short strings) or bytes (default json)
  --variants LIST   encodings: json,protobuf,mixed (default json,protobuf; mixed = half of each);
                    deflate: off,on (default both)
  --threshold B     deflate: the server's compression_threshold (default 0: compress every frame)
  --idle N          deflate: idle connections for the RSS measurement (default 2000; 0 skips it)
  --sample K        subscribers that decode every message (default 20)
  --warmup N        unmeasured publications per variant, size and phase before measuring (default 200)
  --timeout SEC     hard limit for the whole run (default 600)
  --json FILE       write all results as JSON
  --no-pin          do not pin processes to cores`;

function parseArgs(argv: string[]): Options {
  const args = new Args(argv, USAGE, ['subscribers', 'messages', 'window', 'rounds', 'phases', 'sizes', 'payload', 'variants', 'threshold', 'idle', 'sample', 'warmup', 'timeout', 'json'], ['no-pin']);
  const mode = args.positionals[0];
  if ((mode !== 'encodings' && mode !== 'deflate') || args.positionals.length > 1) throw new Error(`the first argument must be encodings or deflate\n${USAGE}`);
  const subscribers = args.int('subscribers', 1000, 1, 50_000);
  return {
    mode,
    subscribers,
    messages: args.int('messages', 1000, 1, 1_000_000),
    window: args.int('window', 32, 1, 10_000),
    sample: Math.min(args.int('sample', 20, 0, 100_000), subscribers),
    warmup: args.int('warmup', 200, 0, 100_000),
    rounds: args.int('rounds', 3, 1, 50),
    phases: args.list<Phase>('phases', mode === 'encodings' ? ['serial', 'window'] : ['window'], ['serial', 'window']),
    sizes: args.ints('sizes', mode === 'encodings' ? [64] : [100, 2048], 16, 512 * 1024),
    payload: args.choice<PayloadKind>('payload', 'json', ['json', 'bytes']),
    variants: args.list('variants', VARIANTS[mode], VARIANTS[mode]),
    threshold: args.int('threshold', 0, 0, 64 * 1024 * 1024),
    idle: args.int('idle', mode === 'deflate' ? 2000 : 0, 0, 15_000),
    timeoutSec: args.int('timeout', 600, 5, 3600),
    json: args.string('json'),
    pin: !args.flag('no-pin'),
  };
}

// ---- variants ---------------------------------------------------------------------------------------

interface Variant {
  name: string;
  label: string;
  /** Extra `hubbub serve` options. */
  serverArgs: string[];
  /** Encoding of subscriber i. */
  encodingOf(i: number): Encoding;
  publisher: Encoding;
  /** Subscribers offer permessage-deflate. */
  deflate: boolean;
}

function variantsOf(opts: Options): Variant[] {
  const all: Record<string, Variant> = {
    json: { name: 'json', label: 'JSON', serverArgs: [], encodingOf: () => 'json', publisher: 'json', deflate: false },
    protobuf: { name: 'protobuf', label: 'protobuf', serverArgs: [], encodingOf: () => 'protobuf', publisher: 'protobuf', deflate: false },
    mixed: { name: 'mixed', label: 'mixed', serverArgs: [], encodingOf: (i) => (i % 2 === 0 ? 'json' : 'protobuf'), publisher: 'json', deflate: false },
    off: { name: 'off', label: 'deflate off', serverArgs: [], encodingOf: () => 'json', publisher: 'json', deflate: false },
    on: {
      name: 'on',
      label: 'deflate on',
      serverArgs: ['--permessage-deflate', 'true', '--compression-threshold', String(opts.threshold)],
      encodingOf: () => 'json',
      publisher: 'json',
      deflate: true,
    },
  };
  return opts.variants.map((v) => all[v]!);
}

const SUBPROTOCOL: Record<Encoding, string> = { json: 'hubbub.v1.json', protobuf: 'hubbub.v1.protobuf' };

// ---- payloads ---------------------------------------------------------------------------------------

/**
 * The JSON text of `"items":[…]` that pads a `{"seq":…,"t":…,"items":…}` object to about `size`
 * bytes with application-like data (numbers, short strings, booleans): it compresses the way real
 * JSON does, not like a run of one letter.
 */
function itemsText(size: number): string {
  const items: Json[] = [];
  const probe = (): number => `{"seq":1000,"t":123456.789012,"items":${JSON.stringify(items)}}`.length;
  let i = 0;
  while (probe() < size) {
    items.push({ id: i, name: `item-${(i * 2654435761) % 100000}`, x: Math.round(((i * 7.31) % 100) * 100) / 100, on: i % 3 === 0 });
    i++;
  }
  // The last item overshoots: a string instead of it brings the object to the size.
  if (items.length > 0 && probe() > size) {
    items[items.length - 1] = '';
    items[items.length - 1] = FILL.slice(0, Math.max(0, size - probe()));
  }
  return JSON.stringify(items);
}

const FILL = 'lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua';

/** Fixed pseudo-random filler for byte payloads. */
const filler = (size: number): Buffer => pseudoRandomBytes(size, 0x2545f491);

/** A function that publishes publication `k` of the given size from `pub`. */
function publisherFor(pub: LeanClient, encoding: Encoding, kind: PayloadKind, size: number): (k: number) => void {
  if (kind === 'json') {
    const items = itemsText(size);
    if (encoding === 'json') return (k) => pub.sendText(`{"type":"publish","channel":"bench","data":{"seq":${k},"t":${performance.now()},"items":${items}}}`);
    return (k) => {
      const data = Buffer.from(`{"seq":${k},"t":${performance.now()},"items":${items}}`, 'utf8');
      pub.sendBinary(encodeFrame({ frame: { case: 'publish', value: { channel: 'bench', data, json: true } } }));
    };
  }
  // Bytes: seq (uint32) and t (float64) up front, the rest filler.
  const base = filler(Math.max(12, size));
  return (k) => {
    const data = Buffer.from(base);
    data.writeUInt32BE(k, 0);
    data.writeDoubleBE(performance.now(), 4);
    if (encoding === 'json') pub.sendText(`{"type":"publish","channel":"bench","data":"${data.toString('base64')}","encoding":"base64"}`);
    else pub.sendBinary(encodeFrame({ frame: { case: 'publish', value: { channel: 'bench', data, json: false } } }));
  };
}

/** The SDK's reading of a delivered frame: inflate if compressed, decode by encoding, check it is a publication. */
function readerFor(kind: PayloadKind, size: number): (payload: Buffer, binary: boolean, compressed: boolean) => Sample | undefined {
  return (payload, binary, compressed) => {
    const bytes = compressed ? inflateMessage(payload) : payload;
    const frame: ServerFrame = binary ? decodeServerFrame(bytes) : parseServerFrame(bytes.toString('utf8'));
    if (frame.type !== 'message' || frame.channel !== 'bench') return undefined;
    if (kind === 'bytes') {
      const d = frame.data;
      if (!(d instanceof Uint8Array) || d.length !== Math.max(12, size)) return undefined;
      const b = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
      return { seq: b.readUInt32BE(0), t: b.readDoubleBE(4) };
    }
    const d = frame.data as { seq?: unknown; t?: unknown; items?: unknown };
    return typeof d.seq === 'number' && typeof d.t === 'number' && Array.isArray(d.items) ? { seq: d.seq, t: d.t } : undefined;
  };
}

// ---- servers and connections ------------------------------------------------------------------------

const allClients: LeanClient[] = [];
let pinned = false;
let clkTck = 100;
let shuttingDown = false;

function killAll(): void {
  for (const c of allClients) c.destroy();
  killServers();
}

interface Target {
  variant: Variant;
  server: ServerProcess;
  subscribers: LeanClient[];
  publisher: LeanClient;
}

async function startHubbub(label: string, extra: string[]): Promise<ServerProcess> {
  const port = await freePort();
  // The per-connection rate limit (1,000 frames/s by default) would throttle the one publisher: off.
  const script = ['src/cli/main.ts', 'serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn', '--message-rate', '0', ...extra];
  return startServer(label, port, script, { pinned });
}

async function stats(port: number): Promise<Record<string, number>> {
  const r = await fetch(`http://127.0.0.1:${port}/api/stats`);
  return (await r.json()) as Record<string, number>;
}

/** Connect, read the welcome, subscribe to `channel` and wait for the reply, in the client's encoding. */
async function openSubscriber(port: number, encoding: Encoding, deflate: boolean, channel: string | undefined): Promise<LeanClient> {
  const c = await LeanClient.connect({ host: '127.0.0.1', port, path: '/ws', protocols: [SUBPROTOCOL[encoding]], deflate });
  allClients.push(c);
  if (c.deflate !== deflate) throw new Error(`permessage-deflate ${deflate ? 'was not' : 'was'} negotiated`);
  const next = async (): Promise<ServerFrame> => {
    const b = await c.next();
    return encoding === 'json' ? parseServerFrame(b.toString('utf8')) : decodeServerFrame(b);
  };
  const welcome = await next();
  if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${welcome.type}`);
  if (channel !== undefined) {
    const sub = { type: 'subscribe' as const, id: 1, channel };
    if (encoding === 'json') c.sendText(JSON.stringify(sub));
    else c.sendBinary(encodeProtoClient(sub));
    const reply = await next();
    if (reply.type !== 'reply' || reply.id !== 1) throw new Error(`subscribe answered with ${JSON.stringify(reply)}`);
  }
  return c;
}

const isSampled = (i: number, opts: Options): boolean => opts.sample > 0 && i % Math.floor(opts.subscribers / opts.sample) === 0 && i / Math.floor(opts.subscribers / opts.sample) < opts.sample;

const idle: Sink = {
  deliver: () => {
    unexpected++;
  },
  fail: (err) => console.error(`warning: ${err.message}`),
};
let unexpected = 0;
let current: Sink = idle;

async function startTarget(variant: Variant, opts: Options): Promise<Target> {
  const server = await startHubbub(`Hubbub (${variant.label})`, variant.serverArgs);
  const subs: LeanClient[] = new Array(opts.subscribers);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < opts.subscribers) {
      const i = next++;
      const c = await openSubscriber(server.port, variant.encodingOf(i), variant.deflate, 'bench');
      c.collect = isSampled(i, opts);
      c.onMessage = (payload, _length, binary, compressed) => current.deliver(i, payload, binary, compressed);
      c.onClose = () => {
        if (!shuttingDown) current.fail(new Error(`${variant.label}: subscriber ${i} disconnected (close code ${c.closeCode ?? 'none'})`));
      };
      subs[i] = c;
    }
  };
  await Promise.all(Array.from({ length: Math.min(100, opts.subscribers) }, worker));
  const publisher = await openSubscriber(server.port, variant.publisher, false, undefined);
  publisher.collect = false;
  publisher.onMessage = () => current.fail(new Error(`${variant.label}: the publisher received a message`));
  const s = await stats(server.port);
  if (s.subscriptions !== opts.subscribers) throw new Error(`${variant.label}: ${s.subscriptions} subscriptions, expected ${opts.subscribers}`);
  return { variant, server, subscribers: subs, publisher };
}

// ---- phases -----------------------------------------------------------------------------------------

interface PhaseResult {
  round: number;
  variant: string;
  phase: Phase;
  size: number;
  payload: PayloadKind;
  deliveries: number;
  seconds: number;
  deliveriesPerSec: number;
  serverUsPerDelivery: number;
  serverKernelPct: number;
  serverCpuPct: number;
  generatorCpuPct: number;
  wireBytesPerDelivery: number;
  framesPerRead: number;
  compressedPct: number;
  binaryPct: number;
  latencyP50: number;
  latencyP99: number;
  sampled: number;
  otherOnServerCorePct: number;
  serverMessagesOut: number;
}

async function runPhase(t: Target, opts: Options, phase: Phase, size: number, messages: number, round: number): Promise<PhaseResult> {
  const window = phase === 'serial' ? 1 : opts.window;
  const run = new Run(opts.subscribers, messages, publisherFor(t.publisher, t.variant.publisher, opts.payload, size), readerFor(opts.payload, size));
  const before = await stats(t.server.port);
  await sleep(100); // let the previous phase's tail settle
  let reads0 = 0;
  let wire0 = 0;
  for (const c of t.subscribers) {
    reads0 += c.reads;
    wire0 += c.wireBytes;
  }
  const cores0 = coreTicks();
  const cpu0 = process.cpuUsage();
  const ticks0 = cpuTicks(t.server.pid);
  current = run;
  let ms: number;
  try {
    ms = await run.go(window, 15_000, `${t.variant.label} ${phase} ${size} B`);
  } finally {
    current = idle;
  }
  const ticks1 = cpuTicks(t.server.pid);
  const cpu = process.cpuUsage(cpu0);
  const cores1 = coreTicks();
  let reads = -reads0;
  let wire = -wire0;
  for (const c of t.subscribers) {
    reads += c.reads;
    wire += c.wireBytes;
  }
  const after = await stats(t.server.port);
  const label = `${t.variant.label} ${phase} ${size} B`;
  if (run.extra > 0 || run.disorder > 0 || run.undecodable > 0) {
    throw new Error(`${label}: ${run.extra} extra deliveries, ${run.disorder} out of order, ${run.undecodable} sampled messages that did not decode to the publication`);
  }
  if (opts.sample > 0 && run.latencies.length === 0) throw new Error(`${label}: no sampled message was decoded`);
  const deliveries = messages * opts.subscribers;
  let expectedBinary = 0;
  for (let i = 0; i < opts.subscribers; i++) if (t.variant.encodingOf(i) === 'protobuf') expectedBinary += messages;
  if (run.binary !== expectedBinary) throw new Error(`${label}: ${run.binary} binary deliveries, expected ${expectedBinary}`);
  if (!t.variant.deflate && run.compressed > 0) throw new Error(`${label}: ${run.compressed} compressed deliveries without permessage-deflate`);
  if (t.variant.deflate && opts.threshold <= size && run.compressed !== deliveries) throw new Error(`${label}: ${run.compressed} of ${deliveries} deliveries compressed`);
  const seconds = ms / 1000;
  const user = (ticks1.user - ticks0.user) / clkTck;
  const sys = (ticks1.sys - ticks0.sys) / clkTck;
  const serverCpu = user + sys;
  const coreSec = (k: 'busy', i: number): number => ((cores1[i]?.[k] ?? 0) - (cores0[i]?.[k] ?? 0)) / clkTck;
  const lat = percentiles(run.latencies);
  return {
    round,
    variant: t.variant.name,
    phase,
    size,
    payload: opts.payload,
    deliveries,
    seconds,
    deliveriesPerSec: deliveries / seconds,
    serverUsPerDelivery: (serverCpu * 1e6) / deliveries,
    serverKernelPct: serverCpu > 0 ? (100 * sys) / serverCpu : NaN,
    serverCpuPct: (100 * serverCpu) / seconds,
    generatorCpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / seconds,
    wireBytesPerDelivery: wire / deliveries,
    framesPerRead: deliveries / reads,
    compressedPct: (100 * run.compressed) / deliveries,
    binaryPct: (100 * run.binary) / deliveries,
    latencyP50: lat.p50,
    latencyP99: lat.p99,
    sampled: lat.samples,
    otherOnServerCorePct: pinned ? Math.max(0, (100 * (coreSec('busy', 0) - serverCpu)) / seconds) : NaN,
    serverMessagesOut: after.messages_out! - before.messages_out!,
  };
}

// ---- idle connections: RSS ----------------------------------------------------------------------

interface IdleResult {
  round: number;
  variant: string;
  connections: number;
  rssBefore: number;
  rssAfter: number;
  rssPerConnection: number;
  heapPerConnection: number;
}

/** Quiet time before the second RSS reading: V8 shrinks an idle heap after a few seconds. */
const IDLE_SETTLE_MS = 5000;

const IDLE_VARIANTS = [
  { name: 'off', label: 'deflate off', deflate: false, clientCompresses: false },
  { name: 'on', label: 'deflate negotiated', deflate: true, clientCompresses: false },
  { name: 'on+client', label: 'negotiated, client sent 40 KB compressed', deflate: true, clientCompresses: true },
];

/**
 * A fresh server, its RSS, N connections that each subscribe and receive one compressible ~2 KB
 * publication (compressed where negotiated: the path that could allocate per-connection state), and,
 * for the last variant, send compressed frames of their own: 20 publications of ~2 KB to a channel
 * nobody reads, then a ping. `ws` inflates them and keeps the inflate stream, whose 32 KiB window
 * these 40 KB fill, for the rest of the connection, as it would for a client that publishes now and
 * then. Then, after a settle, the RSS again. The difference per connection is the cost of an idle
 * connection.
 */
async function idleRss(opts: Options, v: (typeof IDLE_VARIANTS)[number], round: number): Promise<IdleResult> {
  // The default threshold (1024): the welcome and the replies stay uncompressed, only the publication is.
  const server = await startHubbub(`Hubbub idle (${v.label})`, ['--permessage-deflate', String(v.deflate), '--compression-threshold', '1024']);
  const clients: LeanClient[] = [];
  try {
    await sleep(1000);
    const s0 = await stats(server.port);
    const rssBefore = rssBytes(server.pid);
    const items = itemsText(2048);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < opts.idle) {
        next++;
        const c = await openSubscriber(server.port, 'json', v.deflate, 'idle');
        clients.push(c);
        if (v.clientCompresses) {
          for (let j = 0; j < 20; j++) c.sendCompressedText(`{"type":"publish","channel":"nobody","data":{"seq":${j},"t":0,"items":${items}}}`);
          c.sendCompressedText('{"type":"ping","id":2}');
          const pong = JSON.parse((await c.next()).toString('utf8')) as { type: string; id?: number };
          if (pong.type !== 'pong' || pong.id !== 2) throw new Error(`compressed ping answered with ${JSON.stringify(pong)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 100 }, worker));
    const pub = await openSubscriber(server.port, 'json', false, undefined);
    clients.push(pub);
    pub.sendText(`{"type":"publish","channel":"idle","data":{"seq":1,"t":0,"items":${items}}}`);
    const got = await Promise.all(clients.slice(0, -1).map((c) => c.next(30_000)));
    const received = got.filter((b) => b.length > 2000 && (JSON.parse(b.toString('utf8')) as { type: string }).type === 'message').length;
    if (received !== got.length) throw new Error(`${got.length - received} idle clients did not get the publication`);
    await sleep(IDLE_SETTLE_MS);
    const rssAfter = rssBytes(server.pid);
    const s1 = await stats(server.port);
    if (s1.connections !== opts.idle + 1) throw new Error(`${s1.connections} connections, expected ${opts.idle + 1}`);
    return {
      round,
      variant: v.name,
      connections: opts.idle,
      rssBefore,
      rssAfter,
      rssPerConnection: (rssAfter - rssBefore) / opts.idle,
      heapPerConnection: (s1.heap_used! - s0.heap_used!) / opts.idle,
    };
  } finally {
    for (const c of clients) c.destroy();
    await stopServer(server);
  }
}

// ---- report -------------------------------------------------------------------------------------

function printTables(results: PhaseResult[], variants: Variant[], opts: Options): void {
  const rows: [string, (r: PhaseResult) => number, number][] = [
    ['deliveries/s', (r) => r.deliveriesPerSec, 0],
    ['server CPU µs/delivery', (r) => r.serverUsPerDelivery, 3],
    ['  of which kernel %', (r) => r.serverKernelPct, 0],
    ['server CPU % of a core', (r) => r.serverCpuPct, 0],
    ['wire bytes/delivery', (r) => r.wireBytesPerDelivery, 1],
    ['messages per subscriber read', (r) => r.framesPerRead, 2],
    ['latency p50 ms', (r) => r.latencyP50, 2],
    ['latency p99 ms', (r) => r.latencyP99, 2],
    ['generator CPU % of a core', (r) => r.generatorCpuPct, 0],
    ['other load on server core %', (r) => r.otherOnServerCorePct, 0],
  ];
  const base = variants[0]!;
  for (const size of opts.sizes) {
    for (const phase of opts.phases) {
      const title = phase === 'serial' ? 'one publication in flight' : `window of ${opts.window}`;
      console.log(`\n${opts.payload} payload ~${size} B, ${title}: ${opts.messages} publications × ${opts.subscribers} subscribers, medians of ${opts.rounds} round(s)`);
      let head = `  ${'metric'.padEnd(30)}`;
      for (const v of variants) head += v.label.padStart(14);
      for (const v of variants.slice(1)) head += `${v.name}/${base.name}`.padStart(16);
      console.log(head);
      for (const [label, get, d] of rows) {
        const med = variants.map((v) => median(results.filter((r) => r.variant === v.name && r.phase === phase && r.size === size).map(get)));
        let line = `  ${label.padEnd(30)}`;
        for (const m of med) line += fmt(m, d).padStart(14);
        if (!label.includes('%')) for (const m of med.slice(1)) line += fmt(m / med[0]!, 2).padStart(16);
        console.log(line);
      }
    }
  }
}

function printIdle(results: IdleResult[], opts: Options): void {
  console.log(`\nRSS per idle connection: ${opts.idle} connections per fresh server (compression_threshold 1024), each subscribed and sent one ~2 KB publication; medians of ${opts.rounds} round(s)`);
  console.log(`  ${'variant'.padEnd(46)}${'RSS KiB/conn'.padStart(14)}${'heap KiB/conn'.padStart(15)}${'RSS before MiB'.padStart(16)}${'RSS after MiB'.padStart(15)}`);
  for (const v of IDLE_VARIANTS) {
    const rs = results.filter((r) => r.variant === v.name);
    if (rs.length === 0) continue;
    const m = (f: (r: IdleResult) => number): number => median(rs.map(f));
    console.log(
      `  ${v.label.padEnd(46)}${fmt(m((r) => r.rssPerConnection) / 1024, 1).padStart(14)}${fmt(m((r) => r.heapPerConnection) / 1024, 1).padStart(15)}${fmt(m((r) => r.rssBefore) / 2 ** 20, 1).padStart(16)}${fmt(m((r) => r.rssAfter) / 2 ** 20, 1).padStart(15)}`,
    );
  }
}

// ---- main ---------------------------------------------------------------------------------------

async function main(opts: Options): Promise<void> {
  clkTck = readClkTck();
  const cores = availableParallelism();
  if (opts.pin && hasTaskset() && cores >= 2) {
    execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
    pinned = true;
  }
  const variants = variantsOf(opts);
  const needFds = Math.max(variants.length * (opts.subscribers + 1), opts.idle + 1) + 100;
  const fdLimit = openFileLimit();
  if (fdLimit !== undefined && needFds > fdLimit) throw new Error(`${needFds} file descriptors needed but the limit is ${fdLimit}: lower --subscribers or --idle`);
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n` +
      `fan-out ${opts.mode}: ${variants.map((v) => v.label).join(' vs ')}; ${opts.subscribers} subscribers, 1 publisher, ${opts.messages} publications per phase ` +
      `(${opts.phases.join(', ')}; window ${opts.window}), ${opts.payload} payload of ${opts.sizes.join(', ')} B, ${opts.rounds} rounds, ${opts.sample} decoding samplers` +
      (opts.mode === 'deflate' ? `, compression_threshold ${opts.threshold}` : '') +
      `\nmachine: ${cores} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, CLK_TCK ${clkTck}; ` +
      (pinned ? 'servers pinned to core 0, generator to core 1' : 'no pinning'),
  );

  const targets: Target[] = [];
  for (const v of variants) {
    const c0 = performance.now();
    const t = await startTarget(v, opts);
    targets.push(t);
    console.log(`${v.label}: server pid ${t.server.pid}, ${opts.subscribers} subscribers connected in ${fmt(performance.now() - c0)} ms`);
  }
  if (opts.warmup > 0) {
    for (const t of targets) for (const size of opts.sizes) for (const phase of opts.phases) await runPhase(t, opts, phase, size, opts.warmup, 0);
  }
  const results: PhaseResult[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const size of opts.sizes) {
      for (const phase of opts.phases) {
        // Rotate the order between rounds, so that no variant always runs first or last.
        for (let j = 0; j < targets.length; j++) {
          const t = targets[(j + round - 1) % targets.length]!;
          const r = await runPhase(t, opts, phase, size, opts.messages, round);
          results.push(r);
          if (r.serverMessagesOut !== r.deliveries) console.log(`  note: the server counted ${r.serverMessagesOut} messages out, expected ${r.deliveries}`);
          console.log(
            `  round ${round} ${t.variant.label.padEnd(12)} ${phase.padEnd(6)} ${String(size).padStart(5)} B: ${fmt(r.deliveriesPerSec).padStart(9)} deliveries/s, ` +
              `server ${fmt(r.serverUsPerDelivery, 3)} µs/delivery (${fmt(r.serverCpuPct)}% CPU), ${fmt(r.wireBytesPerDelivery, 1)} wire B/delivery, ` +
              `p50 ${fmt(r.latencyP50, 2)} ms, compressed ${fmt(r.compressedPct)}%, other load on server core ${fmt(r.otherOnServerCorePct)}%`,
          );
        }
      }
    }
  }
  shuttingDown = true;
  for (const t of targets) {
    for (const c of [t.publisher, ...t.subscribers]) c.destroy();
    await stopServer(t.server);
  }
  shuttingDown = false;

  const idleResults: IdleResult[] = [];
  if (opts.mode === 'deflate' && opts.idle > 0) {
    for (let round = 1; round <= opts.rounds; round++) {
      for (const v of IDLE_VARIANTS) {
        const r = await idleRss(opts, v, round);
        idleResults.push(r);
        console.log(`  round ${round} idle ${v.label.padEnd(44)}: ${fmt(r.rssPerConnection / 1024, 1)} KiB RSS/connection, ${fmt(r.heapPerConnection / 1024, 1)} KiB heap/connection`);
      }
    }
  }

  printTables(results, variants, opts);
  if (idleResults.length > 0) printIdle(idleResults, opts);
  if (unexpected > 0) console.log(`\nnote: ${unexpected} messages arrived between phases`);
  const busy = results.filter((r) => r.generatorCpuPct > 85);
  if (busy.length > 0) console.log(`\nnote: the generator used more than 85% of its core in ${busy.length} phase(s): those figures may be generator-bound.`);
  if (opts.json) {
    writeFileSync(
      opts.json,
      JSON.stringify({ date: new Date().toISOString(), options: opts, machine: { cores, cpu: cpus()[0]?.model, node: process.version, clkTck, pinned }, results, idle: idleResults }, null, 2) + '\n',
    );
    console.log(`\nresults written to ${opts.json}`);
  }
}

runScript('fanout-compare', () => parseArgs(process.argv.slice(2)), main, () => {
  shuttingDown = true;
  killAll();
});
