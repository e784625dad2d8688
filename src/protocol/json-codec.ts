/**
 * The JSON encoding of protocol version 1: parsing and validating client frames, and encoding
 * server frames. Pure functions over strings, shared with the client SDK and tested without sockets.
 */
import { fromBase64, toBase64 } from './base64.js';
import { ErrorCode } from './errors.js';
import { COMPRESSIONS, type ClientFrame, type ClientFrameType, type FrameId, type Json, type ServerFrame } from './frames.js';
import { Payload } from './payload.js';

export const MAX_KIND_LENGTH = 64;
export const MAX_NAME_LENGTH = 128;
export const MAX_ID_LENGTH = 128;

export const MAX_TRANSFER_ID_LENGTH = 128;
/** Most channels in one recovery map (`since` of a pattern subscription). */
export const MAX_SINCE_CHANNELS = 1000;
/** Most ids in one ack. */
export const MAX_ACK_IDS = 1000;
export const MAX_HISTORY_LIMIT = 1000;
export const MAX_FILE_NAME_LENGTH = 255;

/** A parsed client frame; `payload` is set for frames that carry one (echo, publish, send, broadcast, chunk). */
export type ParseResult =
  | { ok: true; frame: ClientFrame; payload?: Payload }
  | { ok: false; id?: FrameId; code: ErrorCode; message: string };

type Fields = Record<string, unknown>;
type Validator = (f: Fields) => string | undefined;

const isStr = (v: unknown): v is string => typeof v === 'string';
const optStr = (f: Fields, key: string, max: number): string | undefined => {
  const v = f[key];
  if (v === undefined) return undefined;
  if (!isStr(v)) return `${key} must be a string`;
  if (v.length > max) return `${key} must be at most ${max} characters`;
  return undefined;
};
const needData = (f: Fields): string | undefined => (f.data === undefined ? 'data is required' : undefined);
const needChannel = (f: Fields): string | undefined => (isStr(f.channel) ? undefined : 'channel must be a string');
const kind = (f: Fields): string | undefined => optStr(f, 'kind', MAX_KIND_LENGTH);
const encoding = (f: Fields): string | undefined => {
  if (f.encoding === undefined) return undefined;
  if (f.encoding !== 'base64') return 'encoding must be "base64" when present';
  return isStr(f.data) ? undefined : 'data must be a base64 string when encoding is "base64"';
};
const uint = (f: Fields, key: string, max: number, required: boolean): string | undefined => {
  const v = f[key];
  if (v === undefined) return required ? `${key} is required` : undefined;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max ? undefined : `${key} must be an integer from 0 to ${max}`;
};
const optBool = (f: Fields, key: string): string | undefined => (f[key] === undefined || typeof f[key] === 'boolean' ? undefined : `${key} must be a boolean`);
const UINT32 = 0xffffffff;

function target(f: Fields): string | undefined {
  const to = f.to as Fields | undefined;
  if (typeof to !== 'object' || to === null || Array.isArray(to)) return 'to must be {"client": id} or {"user": id}';
  const keys = Object.keys(to);
  if (keys.length !== 1 || (keys[0] !== 'client' && keys[0] !== 'user') || !isStr(to[keys[0]])) {
    return 'to must name exactly one of client or user, as a string';
  }
  return undefined;
}

/** Field checks per frame type; the first message found is the error. Channel syntax is checked by the hub. */
const validators: Record<ClientFrameType, Validator[]> = {
  hello: [(f) => optStr(f, 'name', MAX_NAME_LENGTH), (f) => optStr(f, 'version', MAX_NAME_LENGTH), (f) => optStr(f, 'token', 16384), (f) => optStr(f, 'user', 255)],
  ping: [],
  echo: [needData, encoding],
  subscribe: [needChannel, (f) => optBool(f, 'presence'), since],
  unsubscribe: [needChannel],
  publish: [needChannel, needData, encoding, kind, (f) => optBool(f, 'retain')],
  send: [target, needData, encoding, kind, (f) => optBool(f, 'persist'), (f) => (f.persist === true && (f.to as Fields).user === undefined ? 'persist needs a user target ({"user": id}): stored messages wait for a user, not a connection' : undefined)],
  history: [needChannel, (f) => (f.since === undefined ? undefined : position(f.since, 'since')), (f) => uint(f, 'limit', MAX_HISTORY_LIMIT, false), (f) => optBool(f, 'reverse')],
  ack: [(f) => (Array.isArray(f.ids) && f.ids.length > 0 && f.ids.length <= MAX_ACK_IDS && f.ids.every((i) => isStr(i) && i.length <= MAX_ID_LENGTH) ? undefined : `ids must be a list of 1 to ${MAX_ACK_IDS} message ids (strings)`)],
  broadcast: [needData, encoding, kind],
  presence: [needChannel],
  clients: [],
  refresh: [(f) => (isStr(f.token) && f.token.length > 0 ? optStr(f, 'token', 16384) : 'token must be a non-empty string')],
  chunk: [
    transferId,
    (f) => uint(f, 'seq', UINT32, true),
    (f) => optBool(f, 'last'),
    (f) => (isStr(f.data) || f.data instanceof Uint8Array ? undefined : 'data must be a base64 string'),
    (f) => uint(f, 'crc', UINT32, true),
    (f) => (f.compression === undefined || (COMPRESSIONS as readonly unknown[]).includes(f.compression) ? undefined : `compression must be one of ${COMPRESSIONS.join(', ')}`),
    (f) => optStr(f, 'channel', 1024),
    (f) => (f.to === undefined ? undefined : target(f)),
    kind,
    (f) => optStr(f, 'name', MAX_FILE_NAME_LENGTH),
    (f) => uint(f, 'size', Number.MAX_SAFE_INTEGER, false),
    (f) => uint(f, 'total_crc', UINT32, false),
  ],
  abort: [transferId, (f) => optStr(f, 'code', 64), (f) => optStr(f, 'message', 1024)],
};

/** A stream position `{offset, epoch}`. */
function position(v: unknown, what: string): string | undefined {
  const p = v as Fields;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) return `${what} must be {"offset": n, "epoch": "…"}`;
  if (typeof p.offset !== 'number' || !Number.isSafeInteger(p.offset) || p.offset < 0) return `${what}.offset must be a non-negative integer`;
  if (!isStr(p.epoch) || p.epoch.length > 64) return `${what}.epoch must be a string of at most 64 characters`;
  return undefined;
}

/** `since` of a subscribe: a position, or a map channel → position (checked against the pattern by the session). */
function since(f: Fields): string | undefined {
  const s = f.since as Fields | undefined;
  if (s === undefined) return undefined;
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return 'since must be a position {"offset", "epoch"} or a map of channel to position';
  if ('offset' in s || 'epoch' in s) return position(s, 'since');
  const entries = Object.entries(s);
  if (entries.length > MAX_SINCE_CHANNELS) return `since may name at most ${MAX_SINCE_CHANNELS} channels`;
  for (const [channel, p] of entries) {
    const problem = position(p, `since["${channel.slice(0, 64)}"]`);
    if (problem) return problem;
  }
  return undefined;
}

function transferId(f: Fields): string | undefined {
  return isStr(f.transfer) && f.transfer.length > 0 && f.transfer.length <= MAX_TRANSFER_ID_LENGTH ? undefined : `transfer must be a non-empty string of at most ${MAX_TRANSFER_ID_LENGTH} characters`;
}

/** Frame types whose `data` is a payload (a JSON value, or base64 bytes with `encoding`). */
const WITH_PAYLOAD = new Set<string>(['echo', 'publish', 'send', 'broadcast']);


/** Parse one text frame from a client. Never throws. */
export function parseClientFrame(text: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, code: ErrorCode.BadRequest, message: `malformed JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: ErrorCode.BadRequest, message: 'a frame must be a JSON object' };
  }
  const f = value as Fields;
  let id: FrameId | undefined;
  if (f.id !== undefined) {
    if ((typeof f.id === 'number' && Number.isFinite(f.id)) || (isStr(f.id) && f.id.length <= MAX_ID_LENGTH)) {
      id = f.id;
    } else {
      return { ok: false, code: ErrorCode.BadRequest, message: `id must be a string (at most ${MAX_ID_LENGTH} characters) or a finite number` };
    }
  }
  if (!isStr(f.type)) return { ok: false, id, code: ErrorCode.BadRequest, message: 'type must be a string' };
  if (!isClientFrameType(f.type)) return { ok: false, id, code: ErrorCode.UnknownType, message: `unknown frame type "${f.type.slice(0, 64)}"` };
  const problem = fieldsError(f.type, f);
  if (problem) return { ok: false, id, code: ErrorCode.BadRequest, message: `${f.type}: ${problem}` };
  if (f.type === 'chunk' || WITH_PAYLOAD.has(f.type)) {
    const payload = payloadOf(f, f.type === 'chunk');
    if (typeof payload === 'string') return { ok: false, id, code: ErrorCode.BadRequest, message: `${f.type}: ${payload}` };
    return { ok: true, frame: f as unknown as ClientFrame, payload };
  }
  return { ok: true, frame: f as unknown as ClientFrame };
}

/**
 * The payload of validated fields (`data`, and `encoding`); bytes when `binary` (chunks). A string
 * says what is wrong. Shared with the HTTP API, whose bodies carry the same fields.
 */
export function payloadOf(f: Record<string, unknown>, binary = false): Payload | string {
  if (binary || f.encoding === 'base64') {
    const bytes = fromBase64(f.data as string);
    return bytes ? Payload.bytes(bytes) : 'data is not valid base64 (RFC 4648, with padding)';
  }
  return Payload.json(f.data as Json);
}

export function isClientFrameType(type: string): type is ClientFrameType {
  return Object.hasOwn(validators, type);
}

/**
 * Why the fields of a frame of this type are wrong, or undefined when they are fine. Also used for
 * HTTP API bodies, which carry the same fields as the frames they stand for.
 */
export function fieldsError(type: ClientFrameType, fields: Record<string, unknown>): string | undefined {
  for (const check of validators[type]) {
    const problem = check(fields);
    if (problem) return problem;
  }
  return undefined;
}

/** Encode any server frame. The hot path builds `message` frames itself (see hub/encode.ts). */
export function encodeServerFrame(frame: ServerFrame): string {
  return JSON.stringify(frame);
}

/**
 * Parse a frame the server sent (used by the client SDK and tests). Byte payloads (base64 with
 * `"encoding":"base64"`, and chunk data) become Uint8Arrays. Throws on malformed input.
 */
export function parseServerFrame(text: string): ServerFrame {
  const value = JSON.parse(text) as unknown;
  if (typeof value !== 'object' || value === null || typeof (value as Fields).type !== 'string') {
    throw new Error('server frame is not an object with a string type');
  }
  const f = value as Fields;
  if (f.type === 'reply' && typeof f.data === 'object' && f.data !== null) {
    const data = f.data as Fields;
    decodeBytes(data, false);
    // A history reply: each publication's bytes are base64 with "encoding" too.
    if (Array.isArray(data.publications)) for (const p of data.publications) if (typeof p === 'object' && p !== null) decodeBytes(p as Fields, false);
  } else decodeBytes(f, f.type === 'chunk');
  return value as ServerFrame;
}

function decodeBytes(f: Fields, always: boolean): void {
  if ((always || f.encoding === 'base64') && typeof f.data === 'string') {
    const bytes = fromBase64(f.data);
    if (!bytes) throw new Error('server frame data is not valid base64');
    f.data = bytes;
    delete f.encoding;
  }
}

/** Encode a client frame as JSON text (used by the client SDK): Uint8Array data goes as base64. */
export function encodeClientFrame(frame: ClientFrame): string {
  const data = (frame as { data?: unknown }).data;
  if (!(data instanceof Uint8Array)) return JSON.stringify(frame);
  const wire: Fields = { ...frame, data: toBase64(data) };
  if (frame.type !== 'chunk') wire.encoding = 'base64';
  return JSON.stringify(wire);
}
