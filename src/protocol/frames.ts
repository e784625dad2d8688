/**
 * The frames of protocol version 1, as TypeScript types. Shared by the server and the client SDK,
 * so that both sides agree on every field. docs/protocol.md is the prose form of this file.
 */

export const PROTOCOL_VERSION = 1;

/** A request id chosen by the client; echoed on the single answer to that frame. */
export type FrameId = string | number;

/** Any JSON value: what `data` may hold. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

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
  data: Json;
}
export interface SubscribeFrame extends Req<'subscribe'> {
  channel: string;
  presence?: boolean;
}
export interface UnsubscribeFrame extends Req<'unsubscribe'> {
  channel: string;
}
export interface PublishFrame extends Req<'publish'> {
  channel: string;
  data: Json;
  kind?: string;
}
export interface SendFrame extends Req<'send'> {
  to: DirectTarget;
  data: Json;
  kind?: string;
}
export interface BroadcastFrame extends Req<'broadcast'> {
  data: Json;
  kind?: string;
}
export interface PresenceFrame extends Req<'presence'> {
  channel: string;
}
export type ClientsFrame = Req<'clients'>;
export interface RefreshFrame extends Req<'refresh'> {
  token: string;
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
  | RefreshFrame;

export type ClientFrameType = ClientFrame['type'];

// ---- replies (the `data` of a `reply` frame, per request type) -------------------------------

export interface ReplyData {
  hello: { client: string; user?: string; name?: string; expires_at?: number };
  echo: { data: Json };
  subscribe: Record<string, never>;
  unsubscribe: Record<string, never>;
  publish: Record<string, never>;
  send: { delivered: number };
  broadcast: { delivered: number };
  presence: { channel: string; clients: ClientListEntry[] };
  clients: { count: number; clients: ClientListEntry[] };
  refresh: { user: string; expires_at?: number };
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
export interface MessageFrame {
  type: 'message';
  channel: string;
  pattern: string;
  data: Json;
  kind: string;
  from: Sender;
  ts: number;
}
export interface DirectFrame {
  type: 'direct';
  data: Json;
  kind: string;
  from: Sender;
  ts: number;
}
export interface BroadcastPushFrame {
  type: 'broadcast';
  data: Json;
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
  | PresenceEventFrame;

/** The `kind` values clients render specially; any other string is allowed. */
export const DOCUMENTED_KINDS = ['text', 'notification', 'system'] as const;
export const DEFAULT_KIND = 'text';
