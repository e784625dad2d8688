/**
 * Codec micro-benchmark: the per-frame cost of the JSON and protobuf encodings, in one process and
 * one run, for payloads of about 64 B, 1 KB and 16 KB, both as a JSON value and as raw bytes.
 *
 *   npm run bench:codec -- [--rounds 7] [--round-ms 150] [--warmup-ms 300] [--sizes 64,1024,16384] [--json out.json]
 *
 * It times the code the server and the SDK run, not a model of it:
 *   - server push: what the fan-out hot path does once per publication per encoding in use:
 *     PublicationPushes → Push.for(client) → Outgoing.ws() (the framed bytes) and .size, starting
 *     from a fresh Payload as the publisher's frame produced it (so the payload is serialised anew).
 *   - server decode: SessionCodec.parse of a client `publish` frame (src/hub/codec.ts), from the bytes
 *     `ws` hands over, validation and payload extraction included.
 *   - SDK decode: a `message` frame from its wire bytes to a ServerFrame (the JSON side includes
 *     the UTF-8 decoding a browser does natively before handing over a string).
 *   - SDK encode: a `publish` frame to its wire form.
 *   - permessage-deflate: Outgoing.wsDeflated, the compressed frame the server builds once per
 *     publication when deflate is on (a fresh Outgoing per op), and the bytes it comes to.
 * Each case is warmed up, then timed in several rounds; the table shows the median ns/op of the
 * rounds and protobuf ÷ JSON.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { jsonCodec, protobufCodec } from '../src/hub/codec.js';
import type { Client } from '../src/hub/client.js';
import { PublicationPushes } from '../src/hub/encode.js';
import { Outgoing } from '../src/transport/outgoing.js';
import type { ClientFrame, Json, Sender } from '../src/protocol/frames.js';
import { encodeClientFrame as encodeJsonClient, parseServerFrame } from '../src/protocol/json-codec.js';
import { Payload } from '../src/protocol/payload.js';
import { decodeServerFrame, encodeClientFrame as encodeProtoClient } from '../src/protocol/proto-codec.js';
import { pseudoRandomBytes } from './lib/harness.js';
import { Args } from './lib/options.js';

interface Options {
  rounds: number;
  roundMs: number;
  warmupMs: number;
  sizes: number[];
  json: string | undefined;
}

const USAGE = `usage: npm run bench:codec -- [options]
  --rounds N        timed rounds per case (default 7); the median is reported
  --round-ms MS     target duration of one round (default 150)
  --warmup-ms MS    unmeasured warm-up per case (default 300)
  --sizes LIST      payload sizes in bytes (default 64,1024,16384)
  --json FILE       write the results as JSON`;

function parseArgs(argv: string[]): Options {
  const args = new Args(argv, USAGE, ['rounds', 'round-ms', 'warmup-ms', 'sizes', 'json']);
  return {
    rounds: args.int('rounds', 7, 1, 101),
    roundMs: args.int('round-ms', 150, 10, 10_000),
    warmupMs: args.int('warmup-ms', 300, 0, 60_000),
    sizes: args.ints('sizes', [64, 1024, 16384], 1, 1024 * 1024),
    json: args.string('json'),
  };
}

// ---- payloads ----------------------------------------------------------------------------------

/**
 * A JSON value whose text is about `size` bytes and looks like application data (numbers, short
 * strings, booleans, nested objects), not one long string: JSON.parse's cost depends on the shape.
 */
function jsonValue(size: number): Json {
  const value: { seq: number; t: number; items: Json[] } = { seq: 123456, t: 1732147200123.25, items: [] };
  let i = 0;
  while (JSON.stringify(value).length < size) {
    value.items.push({ id: i, name: `item-${i}`, x: (i * 7.31) % 100, y: -((i * 3.17) % 50), on: i % 2 === 0 });
    i++;
  }
  // The last item overshoots: a string instead of it brings the text to the size.
  if (i > 0 && JSON.stringify(value).length > size) {
    value.items[i - 1] = '';
    value.items[i - 1] = FILL.slice(0, Math.max(0, size - JSON.stringify(value).length));
  }
  return value;
}

const FILL = 'lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua';

/** Deterministic pseudo-random bytes (a compressor or base64 must not find shortcuts). */
const bytesOf = (size: number): Uint8Array => pseudoRandomBytes(size, 0x9e3779b9);

// ---- timing ------------------------------------------------------------------------------------

let sink = 0;

/** ns/op of `fn` per round, after a warm-up; the iteration count is sized so a round takes about roundMs. */
function time(fn: () => number, opts: Options): number[] {
  const warmEnd = performance.now() + opts.warmupMs;
  let calib = 0;
  let t0 = performance.now();
  do {
    sink += fn();
    calib++;
  } while (performance.now() < warmEnd || calib < 10);
  const perOp = (performance.now() - t0) / calib;
  const n = Math.max(10, Math.round(opts.roundMs / Math.max(perOp, 1e-6)));
  const rounds: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    t0 = performance.now();
    for (let i = 0; i < n; i++) sink += fn();
    rounds.push(((performance.now() - t0) * 1e6) / n);
  }
  return rounds;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// ---- cases -------------------------------------------------------------------------------------

const CHANNEL = 'room/bench';
const FROM: Sender = { client: '0d1f2c3b-4a59-4687-9a0b-1c2d3e4f5a6b', user: 'alice', name: 'sensor-17' };
const KIND = 'message';
const TS = 1732147200123;
const JSON_CLIENT = { protobuf: false } as Client;
const PROTO_CLIENT = { protobuf: true } as Client;

type PayloadKind = 'json' | 'bytes';

interface Row {
  group: string;
  label: string;
  size: number;
  kind: PayloadKind;
  json: number;
  protobuf: number;
  unit: 'ns/op' | 'bytes';
  jsonRounds?: number[];
  protobufRounds?: number[];
}

/** Both encodings' wire forms of the frames involved, built once per size and payload kind. */
function fixtures(size: number, kind: PayloadKind) {
  const value = jsonValue(size);
  const bytes = bytesOf(size);
  const data = kind === 'json' ? value : bytes;
  const publish: ClientFrame = { type: 'publish', channel: CHANNEL, data, kind: KIND };
  const publishJson = Buffer.from(encodeJsonClient(publish) as string, 'utf8');
  const publishProto = Buffer.from(encodeProtoClient(publish));
  // The payload as each publisher's frame produced it; a fresh Payload per op, since a Payload
  // caches its encodings (the hot path starts from a new one per publication).
  const valueText = JSON.stringify(value);
  const valueUtf8 = Buffer.from(valueText, 'utf8');
  const fromJsonPublisher = (): Payload => (kind === 'json' ? Payload.json(value) : Payload.bytes(bytes));
  const fromProtoPublisher = (): Payload => (kind === 'json' ? Payload.jsonBytes(valueUtf8, value) : Payload.bytes(bytes));
  const pushJson = new PublicationPushes(CHANNEL, fromJsonPublisher(), KIND, FROM, TS).forPattern(CHANNEL).for(JSON_CLIENT);
  const pushProto = new PublicationPushes(CHANNEL, fromProtoPublisher(), KIND, FROM, TS).forPattern(CHANNEL).for(PROTO_CLIENT);
  const messageJson = pushJson.ws();
  const messageProto = pushProto.ws();
  return { value, bytes, valueText, publish, publishJson, publishProto, fromJsonPublisher, fromProtoPublisher, messageJson, messageProto, pushJson, pushProto };
}

/** The framed bytes of a publication for one client: what the hub writes (and what it counts). */
function pushFor(payload: Payload, client: Client): number {
  const out = new PublicationPushes(CHANNEL, payload, KIND, FROM, TS).forPattern(CHANNEL).for(client);
  return out.ws().length + out.size;
}

/** Check that both encodings carry the same publication before timing anything. */
function verify(f: ReturnType<typeof fixtures>, kind: PayloadKind): void {
  const a = parseServerFrame(f.messageJson.subarray(f.messageJson.length - f.pushJson.size).toString('utf8'));
  const b = decodeServerFrame(f.messageProto.subarray(f.messageProto.length - f.pushProto.size));
  for (const m of [a, b]) {
    if (m.type !== 'message' || m.channel !== CHANNEL || m.ts !== TS) throw new Error(`decoded frame differs: ${JSON.stringify(m).slice(0, 200)}`);
    const same = kind === 'json' ? JSON.stringify(m.data) === f.valueText : Buffer.from(m.data as Uint8Array).equals(Buffer.from(f.bytes));
    if (!same) throw new Error(`${kind} payload did not survive the round trip`);
  }
  for (const [codec, wire, binary] of [
    [jsonCodec, f.publishJson, false],
    [protobufCodec, f.publishProto, true],
  ] as const) {
    const r = codec.parse(wire, binary);
    if (!r.ok || r.frame.type !== 'publish' || r.payload?.binary !== (kind === 'bytes')) throw new Error(`${codec.name} publish did not parse: ${JSON.stringify(r).slice(0, 200)}`);
  }
}

function main(opts: Options): void {
  console.log(
    `codec benchmark: ${opts.rounds} rounds of ~${opts.roundMs} ms per case after ${opts.warmupMs} ms warm-up, medians\n` +
      `machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  const rows: Row[] = [];
  const add = (group: string, label: string, size: number, kind: PayloadKind, fj: () => number, fp: () => number, opts: Options): void => {
    // Alternate which encoding goes first, so that neither always runs on a colder or hotter process.
    const first = rows.length % 2 === 0;
    const jr = first ? time(fj, opts) : undefined;
    const pr = time(fp, opts);
    const jr2 = jr ?? time(fj, opts);
    rows.push({ group, label, size, kind, json: median(jr2), protobuf: median(pr), unit: 'ns/op', jsonRounds: jr2, protobufRounds: pr });
  };
  for (const kind of ['json', 'bytes'] as const) {
    for (const size of opts.sizes) {
      const f = fixtures(size, kind);
      verify(f, kind);
      add('server', 'encode publication push', size, kind, () => pushFor(f.fromJsonPublisher(), JSON_CLIENT), () => pushFor(f.fromProtoPublisher(), PROTO_CLIENT), opts);
      if (kind === 'json') {
        // A publication from a client of the other encoding: the JSON text comes from the protobuf
        // bytes (a UTF-8 decode), the protobuf bytes from the parsed JSON value (stringify + encode).
        add('server', 'encode push, publisher of the other encoding', size, kind, () => pushFor(f.fromProtoPublisher(), JSON_CLIENT), () => pushFor(f.fromJsonPublisher(), PROTO_CLIENT), opts);
      }
      add(
        'server',
        'decode client publish',
        size,
        kind,
        () => (jsonCodec.parse(f.publishJson, false).ok ? 1 : 0),
        () => (protobufCodec.parse(f.publishProto, true).ok ? 1 : 0),
        opts,
      );
      const jsonBody = f.messageJson.subarray(f.messageJson.length - f.pushJson.size);
      const protoBody = f.messageProto.subarray(f.messageProto.length - f.pushProto.size);
      add(
        'sdk',
        'decode message',
        size,
        kind,
        () => (parseServerFrame(jsonBody.toString('utf8')).type === 'message' ? 1 : 0),
        () => (decodeServerFrame(protoBody).type === 'message' ? 1 : 0),
        opts,
      );
      add(
        'sdk',
        'encode publish',
        size,
        kind,
        () => (encodeJsonClient(f.publish) as string).length,
        () => encodeProtoClient(f.publish).length,
        opts,
      );
      add(
        'deflate',
        'compress message frame, once per publication',
        size,
        kind,
        () => new Outgoing(f.pushJson.payload).wsDeflated(15).length,
        () => new Outgoing(f.pushProto.payload).wsDeflated(15).length,
        opts,
      );
      // WebSocket frames as they travel: the server's message frame (unmasked header + payload) and the
      // client's publish frame (masked: 4 bytes more of header).
      rows.push({ group: 'wire', label: 'message frame bytes (server → client)', size, kind, json: f.messageJson.length, protobuf: f.messageProto.length, unit: 'bytes' });
      rows.push({
        group: 'wire',
        label: 'message frame bytes, permessage-deflate',
        size,
        kind,
        json: new Outgoing(f.pushJson.payload).wsDeflated(15).length,
        protobuf: new Outgoing(f.pushProto.payload).wsDeflated(15).length,
        unit: 'bytes',
      });
      const clientHeader = (n: number): number => (n < 126 ? 6 : n < 65536 ? 8 : 14);
      rows.push({
        group: 'wire',
        label: 'publish frame bytes (client → server)',
        size,
        kind,
        json: f.publishJson.length + clientHeader(f.publishJson.length),
        protobuf: f.publishProto.length + clientHeader(f.publishProto.length),
        unit: 'bytes',
      });
      process.stdout.write('.');
    }
  }
  process.stdout.write('\n');
  print(rows, opts);
  if (opts.json) {
    writeFileSync(opts.json, JSON.stringify({ date: new Date().toISOString(), options: opts, node: process.version, cpu: cpus()[0]?.model, rows }, null, 2) + '\n');
    console.log(`\nresults written to ${opts.json}`);
  }
  if (sink === 42) console.log(''); // keeps the results alive
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function print(rows: Row[], opts: Options): void {
  const order: [string, string][] = [];
  for (const r of rows) if (!order.some(([g, l]) => g === r.group && l === r.label)) order.push([r.group, r.label]);
  for (const kind of ['json', 'bytes'] as const) {
    console.log(`\n${kind === 'json' ? 'JSON value payloads (protobuf carries them as UTF-8 JSON text, flag json)' : 'byte payloads (JSON carries them as base64 with "encoding":"base64")'}`);
    console.log(`  ${'case'.padEnd(52)}${'payload'.padStart(9)}${'JSON'.padStart(12)}${'protobuf'.padStart(12)}${'pb/JSON'.padStart(9)}  spread`);
    for (const [group, label] of order) {
      for (const size of opts.sizes) {
        const r = rows.find((x) => x.group === group && x.label === label && x.size === size && x.kind === kind);
        if (!r) continue;
        // Spread: (max − min) ÷ median over the rounds, the larger of the two encodings: a noisy case shows here.
        const spread = r.jsonRounds && r.protobufRounds ? Math.max(spreadOf(r.jsonRounds), spreadOf(r.protobufRounds)) : undefined;
        console.log(
          `  ${`${group}: ${label}${r.unit === 'bytes' ? '' : ' (ns)'}`.padEnd(52)}${fmt(size).padStart(9)}${fmt(r.json).padStart(12)}${fmt(r.protobuf).padStart(12)}${fmt(r.protobuf / r.json, 2).padStart(9)}  ${spread === undefined ? '' : `${fmt(spread * 100)}%`}`,
        );
      }
    }
  }
}

function spreadOf(xs: number[]): number {
  return (Math.max(...xs) - Math.min(...xs)) / median(xs);
}

let options: Options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`codec: ${(err as Error).message}`);
  process.exit(2);
}
main(options);
