/**
 * The JSON encoding of protocol version 1: parsing and validating client frames, and encoding
 * server frames. Pure functions over strings, shared with the client SDK and tested without sockets.
 */
import { ErrorCode } from './errors.js';
import type { ClientFrame, ClientFrameType, FrameId, ServerFrame } from './frames.js';

export const MAX_KIND_LENGTH = 64;
export const MAX_NAME_LENGTH = 128;
export const MAX_ID_LENGTH = 128;

export type ParseResult =
  | { ok: true; frame: ClientFrame }
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
  echo: [needData],
  subscribe: [needChannel, (f) => (f.presence === undefined || typeof f.presence === 'boolean' ? undefined : 'presence must be a boolean')],
  unsubscribe: [needChannel],
  publish: [needChannel, needData, kind],
  send: [target, needData, kind],
  broadcast: [needData, kind],
  presence: [needChannel],
  clients: [],
  refresh: [(f) => (isStr(f.token) && f.token.length > 0 ? optStr(f, 'token', 16384) : 'token must be a non-empty string')],
};

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
  return { ok: true, frame: f as unknown as ClientFrame };
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

/** Parse a frame the server sent (used by the client SDK and tests). Throws on malformed input. */
export function parseServerFrame(text: string): ServerFrame {
  const value = JSON.parse(text) as unknown;
  if (typeof value !== 'object' || value === null || typeof (value as Fields).type !== 'string') {
    throw new Error('server frame is not an object with a string type');
  }
  return value as ServerFrame;
}
