/**
 * The Protocol Buffers encoding of protocol version 1 (subprotocol `hubbub.v1.protobuf`): the
 * frames of frames.ts to and from `hubbub.v1.Frame` (proto/hubbub.proto). Pure functions over
 * bytes, shared by the server and the client SDK. Kept apart from the JSON codec so that a JSON-only
 * client never loads @bufbuild/protobuf.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { ErrorCode } from './errors.js';
import type { ClientFrame, ClientFrameType, ClientInfo, ClientListEntry, Data, DirectTarget, FrameId, Json, Sender, ServerFrame, StreamPosition } from './frames.js';
import { fieldsError, isClientFrameType, type ParseResult } from './json-codec.js';
import { Payload } from './payload.js';
import * as pb from './gen/hubbub_pb.js';

export const PROTOBUF_SUBPROTOCOL = 'hubbub.v1.protobuf';

type FrameInit = MessageInitShape<typeof pb.FrameSchema>;
type Fields = Record<string, unknown>;

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();
const READ = { readUnknownFields: false };

/** Bytes of one Frame. */
export function encodeFrame(init: FrameInit): Uint8Array {
  return toBinary(pb.FrameSchema, create(pb.FrameSchema, init));
}

// ---- the hot path -------------------------------------------------------------------------------

interface NodeBufferApi {
  byteLength(s: string, enc: 'utf8'): number;
  allocUnsafe(n: number): OutBuffer;
}
/** `utf8Write` is the undocumented fast path behind Buffer#write(s, offset, "utf8"); it skips argument parsing. */
type OutBuffer = Uint8Array & { utf8Write(s: string, offset: number): number };
const NodeBuffer = (globalThis as unknown as { Buffer?: NodeBufferApi & { prototype: Partial<OutBuffer> } }).Buffer;
const fastPath = typeof NodeBuffer?.prototype.utf8Write === 'function';

const varintLength = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : longVarintLength(n));

/** Counted by division, which is exact: Math.log2 rounds, and gave 7 bytes instead of 8 for 2^49. */
function longVarintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** Length of a length-delimited field (tag below 16): tag, length, bytes. */
const fieldLength = (n: number): number => 1 + varintLength(n) + n;

function writeVarint(out: Uint8Array, o: number, n: number): number {
  while (n >= 0x80) {
    out[o++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[o++] = n;
  return o;
}

function writeString(out: OutBuffer, o: number, tag: number, s: string, len: number): number {
  out[o++] = tag;
  o = writeVarint(out, o, len);
  return o + out.utf8Write(s, o);
}

/** What a `message` frame may carry beyond a publication: its place in the stream, and the retained flag. */
export interface MessageExtras {
  offset?: number;
  epoch?: string;
  retained?: boolean;
}

/** Encoded Sender messages, per sender object: a client's info object is reused for all it sends. */
const senderBytes = new WeakMap<Sender, Uint8Array>();

function encodeSender(from: Sender): Uint8Array {
  let bytes = senderBytes.get(from);
  if (bytes === undefined) {
    bytes = toBinary(pb.SenderSchema, create(pb.SenderSchema, senderToProto(from)));
    senderBytes.set(from, bytes);
  }
  return bytes;
}

/**
 * The `message` push, encoded by hand: the hub builds one per publication and pattern, so this is
 * the protobuf hot path. Gives exactly the bytes of `encodeServerFrame` (fields in number order,
 * proto3 defaults omitted) in a fraction of the time. Needs Node's Buffer (the server has it).
 */
export function encodeMessageFrame(channel: string, pattern: string, payload: Payload, kind: string, from: Sender, ts: number, stream?: MessageExtras): Uint8Array {
  if (!fastPath || !NodeBuffer) return encodeServerFrame({ type: 'message', channel, pattern, data: null, kind, from, ts, ...stream }, { payload });
  const data = payload.protoData();
  const json = !payload.binary;
  const sender = encodeSender(from);
  const chLen = NodeBuffer.byteLength(channel, 'utf8');
  const patLen = channel === pattern ? chLen : NodeBuffer.byteLength(pattern, 'utf8');
  const kindLen = NodeBuffer.byteLength(kind, 'utf8');
  const offset = stream?.offset;
  const epoch = stream?.epoch;
  const epochLen = epoch === undefined ? -1 : NodeBuffer.byteLength(epoch, 'utf8');
  const streamLen = (offset === undefined ? 0 : 1 + varintLength(offset)) + (epochLen < 0 ? 0 : fieldLength(epochLen)) + (stream?.retained ? 2 : 0);
  const msgLen =
    streamLen +
    (chLen > 0 ? fieldLength(chLen) : 0) +
    (patLen > 0 ? fieldLength(patLen) : 0) +
    (data.length > 0 ? fieldLength(data.length) : 0) +
    (json ? 2 : 0) +
    (kindLen > 0 ? fieldLength(kindLen) : 0) +
    fieldLength(sender.length) +
    (ts > 0 ? 1 + varintLength(ts) : 0);
  const out = NodeBuffer.allocUnsafe(1 + varintLength(msgLen) + msgLen);
  out[0] = (14 << 3) | 2; // Frame.message
  let o = writeVarint(out, 1, msgLen);
  if (chLen > 0) o = writeString(out, o, (1 << 3) | 2, channel, chLen);
  if (patLen > 0) o = writeString(out, o, (2 << 3) | 2, pattern, patLen);
  if (data.length > 0) {
    out[o++] = (3 << 3) | 2;
    o = writeVarint(out, o, data.length);
    out.set(data, o);
    o += data.length;
  }
  if (json) {
    out[o++] = 4 << 3;
    out[o++] = 1;
  }
  if (kindLen > 0) o = writeString(out, o, (5 << 3) | 2, kind, kindLen);
  out[o++] = (6 << 3) | 2; // Message.from
  o = writeVarint(out, o, sender.length);
  out.set(sender, o);
  o += sender.length;
  if (ts > 0) {
    out[o++] = 7 << 3;
    o = writeVarint(out, o, ts);
  }
  if (offset !== undefined) {
    out[o++] = 8 << 3; // optional: written even when 0
    o = writeVarint(out, o, offset);
  }
  if (epochLen >= 0) o = writeString(out, o, (9 << 3) | 2, epoch!, epochLen);
  if (stream?.retained) {
    out[o++] = 10 << 3;
    out[o++] = 1;
  }
  return out;
}

// ---- small conversions -------------------------------------------------------------------------

const protoId = (id: FrameId | undefined): number | undefined => (typeof id === 'number' ? id : undefined);
const withId = <T extends object>(o: T, id: number | undefined): T & { id?: FrameId } => (id === undefined ? o : { ...o, id });
const big = (n: number | undefined): bigint | undefined => (n === undefined ? undefined : BigInt(Math.max(0, Math.trunc(n))));

function senderToProto(from: Sender | undefined): MessageInitShape<typeof pb.SenderSchema> | undefined {
  if (from === undefined) return undefined;
  if ('server' in from) return { server: true };
  return { client: from.client, user: from.user, name: from.name };
}

function senderFromProto(s: pb.Sender | undefined): Sender | undefined {
  if (!s) return undefined;
  if (s.server) return { server: true };
  return clientInfoFromProto(s);
}

function clientInfoFromProto(c: { client: string; user?: string; name?: string } | undefined): ClientInfo {
  const info: ClientInfo = { client: c?.client ?? '' };
  if (c?.user !== undefined) info.user = c.user;
  if (c?.name !== undefined) info.name = c.name;
  return info;
}

function entryToProto(e: ClientListEntry): MessageInitShape<typeof pb.ClientListEntrySchema> {
  return { client: e.client, user: e.user, name: e.name, connectedAt: BigInt(e.connected_at), info: e.info === undefined ? undefined : JSON.stringify(e.info) };
}

function entryFromProto(e: pb.ClientListEntry): ClientListEntry {
  const entry: ClientListEntry = { ...clientInfoFromProto(e), connected_at: Number(e.connectedAt) };
  if (e.info !== undefined) entry.info = JSON.parse(e.info) as Json;
  return entry;
}

const positionToProto = (p: StreamPosition): MessageInitShape<typeof pb.PositionSchema> => ({ offset: BigInt(p.offset), epoch: p.epoch });
const positionFromProto = (p: pb.Position): StreamPosition => ({ offset: Number(p.offset), epoch: p.epoch });
function positionsToProto(m: Record<string, StreamPosition>): Record<string, MessageInitShape<typeof pb.PositionSchema>> {
  const out: Record<string, MessageInitShape<typeof pb.PositionSchema>> = {};
  for (const [k, v] of Object.entries(m)) out[k] = positionToProto(v);
  return out;
}
function positionsFromProto(m: Record<string, pb.Position>): Record<string, StreamPosition> {
  const out: Record<string, StreamPosition> = {};
  for (const [k, v] of Object.entries(m)) out[k] = positionFromProto(v);
  return out;
}

const targetToProto = (to: DirectTarget | undefined): MessageInitShape<typeof pb.TargetSchema> | undefined =>
  to === undefined ? undefined : 'client' in to ? { target: { case: 'client', value: to.client } } : { target: { case: 'user', value: to.user } };

function targetFromProto(t: pb.Target | undefined): DirectTarget | undefined {
  if (t?.target.case === 'client') return { client: t.target.value };
  if (t?.target.case === 'user') return { user: t.target.value };
  return undefined;
}

/** A payload as the two protobuf fields `data` and `json`. */
function dataToProto(data: Data | Payload): { data: Uint8Array; json: boolean } {
  if (data instanceof Payload) return { data: data.protoData(), json: !data.binary };
  if (data instanceof Uint8Array) return { data, json: false };
  return { data: encoder.encode(JSON.stringify(data)), json: true };
}

/** For the SDK: the JSON value, or the bytes. */
function dataFromProto(data: Uint8Array, json: boolean): Data {
  return json ? (JSON.parse(decoder.decode(data)) as Json) : data;
}

/** For the server: a payload, checking that bytes flagged as JSON are JSON. */
function payloadFromProto(data: Uint8Array, json: boolean): Payload | string {
  if (!json) return Payload.bytes(data);
  try {
    return Payload.jsonBytes(data, JSON.parse(decoder.decode(data)) as Json);
  } catch {
    return 'data is flagged as JSON but is not valid UTF-8 JSON text';
  }
}

// ---- client frames -------------------------------------------------------------------------------

/** Encode a client frame (SDK). `data` may be a JSON value or bytes. */
export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  return encodeFrame(clientFrameToProto(frame));
}

function clientFrameToProto(f: ClientFrame): FrameInit {
  const id = protoId(f.id);
  switch (f.type) {
    case 'hello':
      return { frame: { case: 'hello', value: { id, name: f.name, version: f.version, token: f.token, user: f.user } } };
    case 'ping':
      return { frame: { case: 'ping', value: { id } } };
    case 'echo':
      return { frame: { case: 'echo', value: { id, ...dataToProto(f.data) } } };
    case 'subscribe': {
      const since = f.since as Fields | undefined;
      const single = since !== undefined && ('offset' in since || 'epoch' in since);
      return {
        frame: {
          case: 'subscribe',
          value: {
            id,
            channel: f.channel,
            presence: f.presence === true,
            since: single ? positionToProto(since as unknown as StreamPosition) : undefined,
            sinceChannels: since !== undefined && !single ? positionsToProto(since as Record<string, StreamPosition>) : {},
          },
        },
      };
    }
    case 'unsubscribe':
      return { frame: { case: 'unsubscribe', value: { id, channel: f.channel } } };
    case 'publish':
      return { frame: { case: 'publish', value: { id, channel: f.channel, kind: f.kind, retain: f.retain === true, ...dataToProto(f.data) } } };
    case 'send':
      return { frame: { case: 'send', value: { id, to: targetToProto(f.to), kind: f.kind, persist: f.persist === true, ...dataToProto(f.data) } } };
    case 'history':
      return { frame: { case: 'history', value: { id, channel: f.channel, since: f.since ? positionToProto(f.since) : undefined, limit: f.limit, reverse: f.reverse === true } } };
    case 'ack':
      return { frame: { case: 'ack', value: { id, ids: f.ids } } };
    case 'broadcast':
      return { frame: { case: 'broadcast', value: { id, kind: f.kind, ...dataToProto(f.data) } } };
    case 'presence':
      return { frame: { case: 'presence', value: { id, channel: f.channel } } };
    case 'clients':
      return { frame: { case: 'clients', value: { id } } };
    case 'refresh':
      return { frame: { case: 'refresh', value: { id, token: f.token } } };
    case 'chunk':
      return { frame: { case: 'chunk', value: chunkToProto(f) } };
    case 'abort':
      return { frame: { case: 'abort', value: { id, transfer: f.transfer, code: f.code ?? '', message: f.message ?? '', from: senderToProto(f.from), channel: f.channel } } };
  }
}

function chunkToProto(f: Extract<ClientFrame | ServerFrame, { type: 'chunk' }>, data?: Uint8Array): MessageInitShape<typeof pb.ChunkSchema> {
  return {
    id: protoId(f.id),
    transfer: f.transfer,
    seq: f.seq,
    last: f.last === true,
    data: data ?? (f.data instanceof Uint8Array ? f.data : encoder.encode(f.data)),
    crc: f.crc,
    compression: f.compression,
    channel: f.channel,
    to: targetToProto(f.to),
    kind: f.kind,
    name: f.name,
    size: big(f.size),
    totalCrc: f.total_crc,
    pattern: f.pattern,
    from: senderToProto(f.from),
    ts: big(f.ts) ?? 0n,
  };
}

function chunkFromProto(c: pb.Chunk): Fields {
  return defined({
    type: 'chunk',
    id: c.id,
    transfer: c.transfer,
    seq: c.seq,
    last: c.last || undefined,
    data: c.data,
    crc: c.crc,
    compression: c.compression || undefined,
    channel: c.channel,
    to: targetFromProto(c.to),
    kind: c.kind,
    name: c.name,
    size: c.size === undefined ? undefined : Number(c.size),
    total_crc: c.totalCrc,
    pattern: c.pattern,
    from: senderFromProto(c.from),
    ts: c.ts === 0n ? undefined : Number(c.ts),
  });
}

/**
 * Parse one binary frame from a client (server side). Never throws: undecodable bytes and invalid
 * fields give the same `bad_request` / `unknown_type` answers as the JSON codec.
 */
export function decodeClientFrame(bytes: Uint8Array): ParseResult {
  let frame: pb.Frame;
  try {
    frame = fromBinary(pb.FrameSchema, bytes, READ);
  } catch (err) {
    return { ok: false, code: ErrorCode.BadRequest, message: `malformed protobuf frame: ${(err as Error).message}` };
  }
  const c = frame.frame;
  if (c.case === undefined) return { ok: false, code: ErrorCode.UnknownType, message: 'the frame holds no frame type this server knows' };
  if (!isClientFrameType(c.case)) return { ok: false, id: (c.value as { id?: number }).id, code: ErrorCode.UnknownType, message: `${c.case} is not a frame a client sends` };
  const v = c.value;
  let f: Fields;
  let payload: Payload | string | undefined;
  switch (c.case) {
    case 'hello':
      f = { name: c.value.name, version: c.value.version, token: c.value.token, user: c.value.user };
      break;
    case 'ping':
    case 'clients':
      f = {};
      break;
    case 'subscribe': {
      const map = c.value.sinceChannels;
      const since = c.value.since ? positionFromProto(c.value.since) : Object.keys(map).length > 0 ? positionsFromProto(map) : undefined;
      f = { channel: c.value.channel, presence: c.value.presence || undefined, since };
      break;
    }
    case 'history':
      f = { channel: c.value.channel, since: c.value.since ? positionFromProto(c.value.since) : undefined, limit: c.value.limit, reverse: c.value.reverse || undefined };
      break;
    case 'ack':
      f = { ids: c.value.ids };
      break;
    case 'unsubscribe':
    case 'presence':
      f = { channel: c.value.channel };
      break;
    case 'refresh':
      f = { token: c.value.token };
      break;
    case 'echo':
      f = { data: c.value.data };
      payload = payloadFromProto(c.value.data, c.value.json);
      break;
    case 'publish':
      f = { channel: c.value.channel, data: c.value.data, kind: c.value.kind, retain: c.value.retain || undefined };
      payload = payloadFromProto(c.value.data, c.value.json);
      break;
    case 'send':
      f = { to: targetFromProto(c.value.to), data: c.value.data, kind: c.value.kind, persist: c.value.persist || undefined };
      payload = payloadFromProto(c.value.data, c.value.json);
      break;
    case 'broadcast':
      f = { data: c.value.data, kind: c.value.kind };
      payload = payloadFromProto(c.value.data, c.value.json);
      break;
    case 'chunk':
      f = chunkFromProto(c.value);
      payload = Payload.bytes(c.value.data);
      break;
    case 'abort':
      f = { transfer: c.value.transfer, code: c.value.code || undefined, message: c.value.message || undefined };
      break;
  }
  const type = c.case as ClientFrameType;
  const id = (v as { id?: number }).id;
  // type and id go first: V8 (Node 20) takes a slow path for a spread followed by more properties (~2 µs a frame).
  f = defined({ type, id, ...f });
  const problem = fieldsError(type, f);
  if (problem) return { ok: false, id, code: ErrorCode.BadRequest, message: `${type}: ${problem}` };
  if (typeof payload === 'string') return { ok: false, id, code: ErrorCode.BadRequest, message: `${type}: ${payload}` };
  return { ok: true, frame: f as unknown as ClientFrame, payload };
}

// ---- server frames -------------------------------------------------------------------------------

/**
 * Encode a server frame. `payload`, when given, is the frame's data (the hub passes the shared
 * Payload of a publication); otherwise `data` of the frame is used. Replies need the type of the
 * request they answer.
 */
export function encodeServerFrame(frame: ServerFrame, options: { payload?: Payload; request?: ClientFrameType } = {}): Uint8Array {
  return encodeFrame(serverFrameToProto(frame, options.payload, options.request));
}

function serverFrameToProto(f: ServerFrame, payload: Payload | undefined, request: ClientFrameType | undefined): FrameInit {
  switch (f.type) {
    case 'welcome':
      return {
        frame: {
          case: 'welcome',
          value: { client: f.client, server: f.server, version: f.version, protocol: f.protocol, heartbeat: f.heartbeat, maxMessageSize: f.max_message_size ?? 0, maxTransferSize: big(f.max_transfer_size) ?? 0n, messageRate: f.message_rate ?? 0, messageBurst: f.message_burst ?? 0 },
        },
      };
    case 'reply':
      return { frame: { case: 'reply', value: replyToProto(protoId(f.id) ?? 0, request, f.data as Fields) } };
    case 'pong':
      return { frame: { case: 'pong', value: { id: protoId(f.id), ts: BigInt(f.ts) } } };
    case 'error':
      return { frame: { case: 'error', value: { id: protoId(f.id), code: f.code, message: f.message } } };
    case 'message':
      return {
        frame: {
          case: 'message',
          value: { channel: f.channel, pattern: f.pattern, kind: f.kind, from: senderToProto(f.from), ts: BigInt(f.ts), offset: big(f.offset), epoch: f.epoch, retained: f.retained === true, ...dataToProto(payload ?? f.data) },
        },
      };
    case 'direct':
      return { frame: { case: 'direct', value: { kind: f.kind, from: senderToProto(f.from), ts: BigInt(f.ts), id: f.id, stored: f.stored === true, ...dataToProto(payload ?? f.data) } } };
    case 'broadcast':
      return { frame: { case: 'broadcast', value: { kind: f.kind, from: senderToProto(f.from), ts: BigInt(f.ts), ...dataToProto(payload ?? f.data) } } };
    case 'join':
    case 'leave':
      return { frame: { case: f.type, value: { channel: f.channel, client: { client: f.client.client, user: f.client.user, name: f.client.name } } } };
    case 'chunk':
      return { frame: { case: 'chunk', value: chunkToProto(f, payload?.protoData()) } };
    case 'abort':
      return { frame: { case: 'abort', value: { id: protoId(f.id), transfer: f.transfer, code: f.code ?? '', message: f.message ?? '', from: senderToProto(f.from), channel: f.channel } } };
  }
}

function replyToProto(id: number, request: ClientFrameType | undefined, d: Fields): MessageInitShape<typeof pb.ReplySchema> {
  switch (request) {
    case 'hello':
      return { id, data: { case: 'hello', value: { client: d.client as string, user: d.user as string | undefined, name: d.name as string | undefined, expiresAt: big(d.expires_at as number | undefined) } } };
    case 'echo':
      return { id, data: { case: 'echo', value: dataToProto(d.data as Data | Payload) } };
    case 'send':
    case 'broadcast':
    case 'chunk':
      return { id, data: { case: request, value: { delivered: (d.delivered as number) ?? 0, id: d.id as string | undefined } } };
    case 'subscribe':
      return {
        id,
        data: {
          case: 'subscribe',
          value: { recovered: d.recovered as boolean | undefined, offset: big(d.offset as number | undefined), epoch: d.epoch as string | undefined, positions: d.positions ? positionsToProto(d.positions as Record<string, StreamPosition>) : {} },
        },
      };
    case 'publish':
      return { id, data: { case: 'publish', value: { offset: big(d.offset as number | undefined), epoch: d.epoch as string | undefined } } };
    case 'history':
      return {
        id,
        data: {
          case: 'history',
          value: {
            offset: BigInt(d.offset as number),
            epoch: d.epoch as string,
            publications: (d.publications as { offset: number; data: Payload; kind: string; from: Sender; ts: number }[]).map((p) => ({ offset: BigInt(p.offset), kind: p.kind, from: senderToProto(p.from), ts: BigInt(p.ts), ...dataToProto(p.data) })),
          },
        },
      };
    case 'ack':
      return { id, data: { case: 'ack', value: { acked: d.acked as number } } };
    case 'presence':
      return { id, data: { case: 'presence', value: { channel: d.channel as string, clients: (d.clients as ClientListEntry[]).map(entryToProto) } } };
    case 'clients':
      return { id, data: { case: 'clients', value: { count: d.count as number, clients: (d.clients as ClientListEntry[]).map(entryToProto) } } };
    case 'refresh':
      return { id, data: { case: 'refresh', value: { user: d.user as string, expiresAt: big(d.expires_at as number | undefined) } } };
    case 'unsubscribe':
    case 'abort':
      return { id, data: { case: request, value: {} } };
    default:
      return { id };
  }
}

/** Decode a frame the server sent (SDK side). Payload data becomes a JSON value or a Uint8Array. Throws on malformed input. */
export function decodeServerFrame(bytes: Uint8Array): ServerFrame {
  const c = fromBinary(pb.FrameSchema, bytes, READ).frame;
  switch (c.case) {
    case 'welcome': {
      const w = c.value;
      return { type: 'welcome', client: w.client, server: 'hubbub', version: w.version, protocol: w.protocol, heartbeat: w.heartbeat, max_message_size: w.maxMessageSize, max_transfer_size: Number(w.maxTransferSize), message_rate: w.messageRate, message_burst: w.messageBurst };
    }
    case 'reply':
      return { type: 'reply', id: c.value.id, data: replyFromProto(c.value) };
    case 'pong':
      return withId({ type: 'pong' as const, ts: Number(c.value.ts) }, c.value.id);
    case 'error':
      return withId({ type: 'error' as const, code: c.value.code, message: c.value.message }, c.value.id);
    case 'message': {
      const m = c.value;
      const frame: ServerFrame = { type: 'message', channel: m.channel, pattern: m.pattern, data: dataFromProto(m.data, m.json), kind: m.kind, from: senderFromProto(m.from) ?? { server: true }, ts: Number(m.ts) };
      if (m.offset !== undefined) frame.offset = Number(m.offset);
      if (m.epoch !== undefined) frame.epoch = m.epoch;
      if (m.retained) frame.retained = true;
      return frame;
    }
    case 'direct': {
      const m = c.value;
      const frame: ServerFrame = { type: 'direct', data: dataFromProto(m.data, m.json), kind: m.kind, from: senderFromProto(m.from) ?? { server: true }, ts: Number(m.ts) };
      if (m.id !== undefined) frame.id = m.id;
      if (m.stored) frame.stored = true;
      return frame;
    }
    case 'broadcast': {
      const m = c.value;
      return { type: c.case, data: dataFromProto(m.data, m.json), kind: m.kind ?? '', from: senderFromProto(m.from) ?? { server: true }, ts: Number(m.ts) };
    }
    case 'join':
    case 'leave':
      return { type: c.case, channel: c.value.channel, client: clientInfoFromProto(c.value.client) };
    case 'chunk':
      return chunkFromProto(c.value) as unknown as ServerFrame;
    case 'abort':
      return defined({ type: 'abort', transfer: c.value.transfer, code: c.value.code, message: c.value.message, from: senderFromProto(c.value.from), channel: c.value.channel }) as unknown as ServerFrame;
    default:
      throw new Error(c.case === undefined ? 'the server sent an empty frame' : `the server sent a ${c.case} frame, which only clients send`);
  }
}

function replyFromProto(r: pb.Reply): unknown {
  const d = r.data;
  switch (d.case) {
    case 'hello':
      return defined({ client: d.value.client, user: d.value.user, name: d.value.name, expires_at: d.value.expiresAt === undefined ? undefined : Number(d.value.expiresAt) });
    case 'echo':
      return { data: dataFromProto(d.value.data, d.value.json) };
    case 'send':
    case 'broadcast':
    case 'chunk':
      return defined({ delivered: d.value.delivered, id: d.value.id });
    case 'subscribe':
      return defined({
        recovered: d.value.recovered,
        offset: d.value.offset === undefined ? undefined : Number(d.value.offset),
        epoch: d.value.epoch,
        positions: Object.keys(d.value.positions).length > 0 ? positionsFromProto(d.value.positions) : undefined,
      });
    case 'publish':
      return defined({ offset: d.value.offset === undefined ? undefined : Number(d.value.offset), epoch: d.value.epoch });
    case 'history':
      return {
        offset: Number(d.value.offset),
        epoch: d.value.epoch,
        publications: d.value.publications.map((p) => ({ offset: Number(p.offset), data: dataFromProto(p.data, p.json), kind: p.kind, from: senderFromProto(p.from) ?? { server: true }, ts: Number(p.ts) })),
      };
    case 'ack':
      return { acked: d.value.acked };
    case 'presence':
      return { channel: d.value.channel, clients: d.value.clients.map(entryFromProto) };
    case 'clients':
      return { count: d.value.count, clients: d.value.clients.map(entryFromProto) };
    case 'refresh':
      return defined({ user: d.value.user, expires_at: d.value.expiresAt === undefined ? undefined : Number(d.value.expiresAt) });
    default:
      return {};
  }
}

/** A copy of `o` without its undefined fields (a copy rather than `delete`, which turns the object into a slow dictionary). */
function defined<T extends Fields>(o: T): T {
  const out: Fields = {};
  for (const k in o) {
    const v = o[k];
    if (v !== undefined) out[k] = v;
  }
  return out as T;
}
