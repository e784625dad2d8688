/**
 * The frames of protocol version 1, as TypeScript types. Shared by the server and the client SDK,
 * so that both sides agree on every field. docs/protocol.md is the prose form of this file.
 */

export const PROTOCOL_VERSION = 1;

/** A request id chosen by the client; echoed on the single answer to that frame. */
export type FrameId = string | number;

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * A payload: a JSON value or raw bytes. On the JSON wire bytes travel as a base64 string with
 * `"encoding": "base64"` beside `data`; the codecs turn them into a Uint8Array and back.
 */
export type Data = Json | Uint8Array;

/** The one non-JSON payload encoding of the JSON wire. */
export type DataEncoding = 'base64';

/** Per-chunk compression of a transfer. */
export const COMPRESSIONS = ['gzip', 'deflate', 'brotli'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/** Who a message came from: a connection, or the server API. */
export type Sender = ClientInfo | { server: true };

/** How a connection is shown to others (presence, client lists, `from`). */
export interface ClientInfo {
  client: string;
  user?: string;
  name?: string;
}

export interface ClientListEntry extends ClientInfo {
  /** Milliseconds since the Unix epoch. */
  connected_at: number;
  /** The `info` claim of the connection's token, when it has one. */
  info?: Json;
}

/** A position in a channel's stream: the last offset seen, in an epoch. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** Addresses a direct message: one connection, or every connection of a user. */
export type DirectTarget = { client: string } | { user: string };

// ---- client → server -------------------------------------------------------------------------

interface Req<T extends string> {
  type: T;
  id?: FrameId;
}

export interface HelloFrame extends Req<'hello'> {
  name?: string;
  version?: string;
  token?: string;
  /** Development identity: a self-declared user id (see docs/protocol.md). */
  user?: string;
}
export type PingFrame = Req<'ping'>;
export interface EchoFrame extends Req<'echo'> {
  data: Data;
  encoding?: DataEncoding;
}
export interface SubscribeFrame extends Req<'subscribe'> {
  channel: string;
  presence?: boolean;
  /** Recover from here: a position for a channel, a map channel → position for a pattern. */
  since?: StreamPosition | Record<string, StreamPosition>;
}
export interface UnsubscribeFrame extends Req<'unsubscribe'> {
  channel: string;
}
export interface PublishFrame extends Req<'publish'> {
  channel: string;
  data: Data;
  encoding?: DataEncoding;
  kind?: string;
  /** Also keep this publication as the channel's retained message (data null clears it). */
  retain?: boolean;
}
export interface SendFrame extends Req<'send'> {
  to: DirectTarget;
  data: Data;
  encoding?: DataEncoding;
  kind?: string;
  /** Store the message until one of the user's connections acknowledges it (`to` must be a user). */
  persist?: boolean;
}
export interface HistoryFrame extends Req<'history'> {
  channel: string;
  since?: StreamPosition;
  limit?: number;
  reverse?: boolean;
}
export interface AckFrame extends Req<'ack'> {
  ids: string[];
}
export interface BroadcastFrame extends Req<'broadcast'> {
  data: Data;
  encoding?: DataEncoding;
  kind?: string;
}
export interface PresenceFrame extends Req<'presence'> {
  channel: string;
}
export type ClientsFrame = Req<'clients'>;
export interface RefreshFrame extends Req<'refresh'> {
  token: string;
}

/**
 * One piece of a transfer: a payload too large for one frame, sent as numbered chunks that the
 * server checks and relays as they arrive (docs/protocol.md, "Transfers"). The sender's first
 * chunk names the destination; the server adds `from`, `ts` (and `pattern`) for receivers.
 */
export interface ChunkFrame extends Req<'chunk'> {
  /** Chosen by the sender, unique among its open transfers. */
  transfer: string;
  /** 0, 1, 2, … in order. */
  seq: number;
  last?: boolean;
  /** The chunk's bytes (base64 in JSON). */
  data: Uint8Array | string;
  /** CRC-32 of `data` as carried (after compression). */
  crc: number;
  compression?: Compression;
  // first chunk: the destination, and what the payload is
  channel?: string;
  to?: DirectTarget;
  kind?: string;
  name?: string;
  /** Whole payload size in bytes, before compression. */
  size?: number;
  /** Last chunk: CRC-32 of the whole payload before compression. */
  total_crc?: number;
  // relayed chunks
  pattern?: string;
  from?: Sender;
  ts?: number;
}

/** A transfer ends without its last chunk: sent by a sender that gives up, relayed by the server to receivers. */
export interface AbortFrame extends Req<'abort'> {
  transfer: string;
  code?: string;
  message?: string;
  /** Set by the server on relayed aborts. */
  from?: Sender;
  channel?: string;
}

export type ClientFrame =
  | HelloFrame
  | PingFrame
  | EchoFrame
  | SubscribeFrame
  | UnsubscribeFrame
  | PublishFrame
  | SendFrame
  | BroadcastFrame
  | PresenceFrame
  | ClientsFrame
  | RefreshFrame
  | ChunkFrame
  | AbortFrame
  | HistoryFrame
  | AckFrame;

export type ClientFrameType = ClientFrame['type'];

// ---- replies (the `data` of a `reply` frame, per request type) -------------------------------

export interface ReplyData {
  hello: { client: string; user?: string; name?: string; expires_at?: number };
  echo: { data: Data; encoding?: DataEncoding };
  subscribe: { recovered?: boolean; offset?: number; epoch?: string; positions?: Record<string, StreamPosition> };
  unsubscribe: Record<string, never>;
  publish: { offset?: number; epoch?: string };
  send: { delivered: number; id?: string };
  broadcast: { delivered: number };
  presence: { channel: string; clients: ClientListEntry[] };
  clients: { count: number; clients: ClientListEntry[] };
  refresh: { user: string; expires_at?: number };
  chunk: { delivered: number };
  abort: Record<string, never>;
  history: { publications: HistoryPublication[]; offset: number; epoch: string };
  ack: { acked: number };
}

/** A publication in a history reply. */
export interface HistoryPublication {
  offset: number;
  data: Data;
  encoding?: DataEncoding;
  kind: string;
  from: Sender;
  ts: number;
}

// ---- server → client -------------------------------------------------------------------------

export interface WelcomeFrame {
  type: 'welcome';
  client: string;
  server: 'hubbub';
  version: string;
  protocol: number;
  /** The server's heartbeat period in milliseconds. */
  heartbeat: number;
  /** Largest frame this server accepts, in bytes: larger payloads go as transfers. */
  max_message_size?: number;
  /** Largest transfer this server relays, in bytes. */
  max_transfer_size?: number;
  /** Frames per second this connection may send (0: no limit); faster senders get rate_limited. */
  message_rate?: number;
  /** Frames a connection may send at once above message_rate. */
  message_burst?: number;
}
export interface ReplyFrame<D = unknown> {
  type: 'reply';
  id: FrameId;
  data: D;
}
export interface PongFrame {
  type: 'pong';
  id?: FrameId;
  ts: number;
}
export interface ErrorFrame {
  type: 'error';
  id?: FrameId;
  code: string;
  message: string;
}
/** Set by the client SDK on a message it reassembled from a transfer; never on the wire. */
export interface TransferInfo {
  id: string;
  size: number;
  name?: string;
}

export interface MessageFrame {
  type: 'message';
  channel: string;
  pattern: string;
  data: Data;
  encoding?: DataEncoding;
  kind: string;
  from: Sender;
  ts: number;
  /** Channels with history: the publication's place in the stream. */
  offset?: number;
  epoch?: string;
  /** The channel's retained message, sent on subscribe. */
  retained?: boolean;
  transfer?: TransferInfo;
}
export interface DirectFrame {
  type: 'direct';
  data: Data;
  encoding?: DataEncoding;
  kind: string;
  from: Sender;
  ts: number;
  /** A stored (persist) message: acknowledge it with `ack`. */
  id?: string;
  /** Delivered from storage (the user was offline, or had not acknowledged it). */
  stored?: boolean;
  transfer?: TransferInfo;
}
export interface BroadcastPushFrame {
  type: 'broadcast';
  data: Data;
  encoding?: DataEncoding;
  kind: string;
  from: Sender;
  ts: number;
}
export interface PresenceEventFrame {
  type: 'join' | 'leave';
  channel: string;
  client: ClientInfo;
}

export type ServerFrame =
  | WelcomeFrame
  | ReplyFrame
  | PongFrame
  | ErrorFrame
  | MessageFrame
  | DirectFrame
  | BroadcastPushFrame
  | PresenceEventFrame
  | ChunkFrame
  | AbortFrame;

/** The `kind` values clients render specially; any other string is allowed. */
export const DOCUMENTED_KINDS = ['text', 'notification', 'system'] as const;
export const DEFAULT_KIND = 'text';
