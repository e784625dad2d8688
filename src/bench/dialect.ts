/**
 * What the benchmark generator needs to know about a server's protocol: where to upgrade, how to
 * finish the application handshake, how to subscribe, the bytes of one publication, and how to read
 * the benchmark's data back out of a delivered message (sampled subscribers only; the others just
 * count frames). Hubbub's two encodings are here; bench/lib adds Socket.IO for the comparisons.
 * The raw `ws` and Bun comparison servers speak the subset of Hubbub's JSON frames used here.
 */
import type { ServerFrame } from '../protocol/frames.js';
import { parseServerFrame } from '../protocol/json-codec.js';
import { decodeServerFrame, encodeFrame } from '../protocol/proto-codec.js';
import { encodeClientFrame, OP_BINARY, OP_TEXT } from './frame-parser.js';
import type { LeanClient } from './lean-client.js';

/** The benchmark's data in every publication: sequence number (per publisher) and publish time (µs, monotonic clock). */
export interface BenchData {
  s: number;
  t: number;
}

/** Limits a server announces at the handshake (Hubbub's welcome). */
export interface ServerLimits {
  /** Frames per second one connection may send (0: no limit). */
  messageRate?: number;
}

export interface Dialect {
  readonly name: string;
  /** Path (and query) of the WebSocket upgrade, e.g. '/ws'. */
  readonly path: string;
  /** Subprotocols to ask for. */
  readonly protocols?: string[];
  /** After the 101: whatever the server expects before the connection is usable (e.g. read `welcome`); may return the limits the server announced. */
  handshake(c: LeanClient, timeoutMs: number): Promise<ServerLimits | void>;
  /** Subscribe to a channel and wait until the server confirmed it. */
  subscribe(c: LeanClient, channel: string, timeoutMs: number): Promise<void>;
  /** The masked WebSocket frame that publishes `dataJson` (a JSON object's text) on `channel`, unacknowledged. */
  publishFrame(channel: string, dataJson: string): Buffer;
  /** The benchmark data of a delivered message, or undefined when it is not a publication of the benchmark. */
  read(payload: Buffer, binary: boolean): BenchData | undefined;
  /** The error code of a message the server sent the publisher, if it is an error (e.g. rate_limited). */
  errorCode?(payload: Buffer, binary: boolean): string | undefined;
}

function benchData(d: unknown): BenchData | undefined {
  if (typeof d !== 'object' || d === null) return undefined;
  const { s, t } = d as { s?: unknown; t?: unknown };
  return typeof s === 'number' && typeof t === 'number' ? { s, t } : undefined;
}

/** Hubbub (and the comparison servers that speak its JSON subset), JSON encoding. */
export const hubbubJson: Dialect = {
  name: 'json',
  path: '/ws',
  protocols: undefined,
  async handshake(c, timeoutMs) {
    const welcome = JSON.parse((await c.next(timeoutMs)).toString('utf8')) as { type?: string; message_rate?: number };
    if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(welcome).slice(0, 200)}`);
    return { messageRate: welcome.message_rate };
  },
  async subscribe(c, channel, timeoutMs) {
    c.sendText(JSON.stringify({ type: 'subscribe', id: 1, channel }));
    const reply = JSON.parse((await c.next(timeoutMs)).toString('utf8')) as { type?: string; id?: unknown; code?: string; message?: string };
    if (reply.type !== 'reply' || reply.id !== 1) throw new Error(`subscribe ${channel}: ${reply.type === 'error' ? `${reply.code}: ${reply.message}` : JSON.stringify(reply).slice(0, 200)}`);
  },
  publishFrame(channel, dataJson) {
    return encodeClientFrame(OP_TEXT, `{"type":"publish","channel":${JSON.stringify(channel)},"data":${dataJson}}`);
  },
  read(payload) {
    const f = JSON.parse(payload.toString('utf8')) as { type?: string; data?: unknown };
    return f.type === 'message' ? benchData(f.data) : undefined;
  },
  errorCode(payload) {
    const f = JSON.parse(payload.toString('utf8')) as { type?: string; code?: string };
    return f.type === 'error' ? f.code : undefined;
  },
};

const encoder = new TextEncoder();

/** Hubbub, Protocol Buffers encoding (subprotocol hubbub.v1.protobuf). */
export const hubbubProtobuf: Dialect = {
  name: 'protobuf',
  path: '/ws',
  protocols: ['hubbub.v1.protobuf'],
  async handshake(c, timeoutMs) {
    const welcome = decodeServerFrame(await c.next(timeoutMs));
    if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${welcome.type}`);
    return { messageRate: welcome.message_rate };
  },
  async subscribe(c, channel, timeoutMs) {
    c.sendBinary(encodeFrame({ frame: { case: 'subscribe', value: { id: 1, channel } } }));
    const reply: ServerFrame = decodeServerFrame(await c.next(timeoutMs));
    if (reply.type !== 'reply' || reply.id !== 1) throw new Error(`subscribe ${channel}: ${reply.type === 'error' ? `${reply.code}: ${reply.message}` : reply.type}`);
  },
  publishFrame(channel, dataJson) {
    const bytes = encodeFrame({ frame: { case: 'publish', value: { channel, data: encoder.encode(dataJson), json: true } } });
    return encodeClientFrame(OP_BINARY, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  },
  read(payload, binary) {
    const f = binary ? decodeServerFrame(payload) : parseServerFrame(payload.toString('utf8'));
    return f.type === 'message' ? benchData(f.data instanceof Uint8Array ? undefined : f.data) : undefined;
  },
  errorCode(payload, binary) {
    const f = binary ? decodeServerFrame(payload) : parseServerFrame(payload.toString('utf8'));
    return f.type === 'error' ? f.code : undefined;
  },
};

export const DIALECTS: Record<string, Dialect> = { json: hubbubJson, protobuf: hubbubProtobuf };

/** The dialect a worker process should speak (see DialectRef). */
export async function loadDialect(ref: { name: string; module?: string }): Promise<Dialect> {
  if (!ref.module) {
    const d = DIALECTS[ref.name];
    if (!d) throw new Error(`unknown dialect ${ref.name}`);
    return d;
  }
  const mod = (await import(ref.module)) as Record<string, unknown>;
  const d = mod[ref.name] as Dialect | undefined;
  if (!d || typeof d.publishFrame !== 'function') throw new Error(`${ref.module} exports no dialect ${ref.name}`);
  return d;
}
