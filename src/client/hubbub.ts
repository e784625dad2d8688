/**
 * The Hubbub client SDK: one connection to a Hubbub server, with promise-based requests,
 * subscriptions, automatic reconnection (exponential backoff, full jitter) and dead-server detection.
 * Runs in browsers (global WebSocket) and in Node (the `ws` package).
 */
import { isWildcard, matchPattern, patternError } from '../protocol/channel.js';
import { crc32 } from '../protocol/crc32.js';
import { isTerminalCloseCode } from '../protocol/errors.js';
import { encodeClientFrame, parseServerFrame } from '../protocol/json-codec.js';
import type {
  AbortFrame,
  ChunkFrame,
  ClientFrame,
  ClientListEntry,
  Compression,
  Data,
  DirectTarget,
  FrameId,
  Json,
  MessageFrame,
  DirectFrame,
  BroadcastPushFrame,
  PresenceEventFrame,
  ServerFrame,
  Sender,
  StreamPosition,
  WelcomeFrame,
  ErrorFrame,
} from '../protocol/frames.js';
import { TokenBucket } from '../limits/token-bucket.js';
import { backoffDelay } from './backoff.js';
import { compress, concat, decompress } from './compress.js';
import { Emitter } from './emitter.js';

/** The wire encodings, by WebSocket subprotocol. */
export type Encoding = 'json' | 'protobuf';
const SUBPROTOCOL: Record<Encoding, string> = { json: 'hubbub.v1.json', protobuf: 'hubbub.v1.protobuf' };

/** Turns frames into wire messages and back, for one encoding. */
interface WireCodec {
  encode(frame: ClientFrame): string | Uint8Array;
  decode(data: unknown): ServerFrame;
}

const jsonWire: WireCodec = {
  encode: encodeClientFrame,
  decode(data) {
    if (typeof data !== 'string') throw new Error('the server sent a binary frame on a JSON connection');
    return parseServerFrame(data);
  },
};

let protobufWire: Promise<WireCodec> | undefined;
/** Loaded on first use, so that JSON-only clients (and browsers) never load @bufbuild/protobuf. */
function loadProtobufWire(): Promise<WireCodec> {
  protobufWire ??= import('../protocol/proto-codec.js').then((m) => ({
    encode: m.encodeClientFrame,
    decode(data) {
      if (typeof data === 'string') throw new Error('the server sent a text frame on a protobuf connection');
      return m.decodeServerFrame(data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer));
    },
  }));
  // A failed load (a browser without an import map, say) is retried on the next connection attempt.
  protobufWire.catch(() => {
    protobufWire = undefined;
  });
  return protobufWire;
}

/** A client frame without its `id` (the SDK assigns ids). */
export type RequestFrame = ClientFrame extends unknown ? (ClientFrame extends infer F ? (F extends unknown ? Omit<F, 'id'> : never) : never) : never;

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Timers, injectable so that tests can drive time. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** The subset of the WHATWG WebSocket the SDK uses; `ws` and browsers both provide it. */
export interface SocketLike {
  readonly readyState: number;
  /** The negotiated subprotocol. */
  readonly protocol?: string;
  binaryType?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type SocketFactory = (url: string, protocols: string[]) => SocketLike | Promise<SocketLike>;

export interface HubbubClientOptions {
  /** Wire encoding: JSON text frames (default) or Protocol Buffers binary frames. */
  encoding?: Encoding;
  /** Byte payloads larger than this are published or sent as transfers. Default: 3/4 of the server's max_message_size minus 4 KiB. */
  transferThreshold?: number;
  /** Largest incoming transfer this client reassembles; larger ones are ignored with an error event. Default 64 MiB. */
  maxTransferSize?: number;
  /** An incoming transfer that receives no chunk for this long is dropped. Default 60 000 ms. */
  transferTimeout?: number;
  /** Display name sent in `hello`. */
  name?: string;
  /** Client software version sent in `hello`. */
  version?: string;
  /** Development identity (see docs/protocol.md): a self-declared user id sent in `hello`. */
  user?: string;
  /** A token sent in `hello`. */
  token?: string;
  /** Called before every (re)connection for a fresh token; wins over `token`. */
  getToken?: () => string | Promise<string>;
  /** How long a request waits for its answer, including time spent waiting for a connection. Default 10 000 ms. */
  requestTimeout?: number;
  /** Most requests kept waiting while disconnected; more fail at once. Default 1000. */
  maxQueuedRequests?: number;
  /** Reconnect after a connection is lost. Default true. */
  reconnect?: boolean;
  /** First reconnect delay cap, ms. Default 500. */
  minReconnectDelay?: number;
  /** Largest reconnect delay cap, ms. Default 20 000. */
  maxReconnectDelay?: number;
  /** Reconnect attempts in a row before giving up (state `closed`). Default Infinity. */
  maxReconnectAttempts?: number;
  /** How long one connection attempt may take (open, welcome, hello, resubscribe). Default 10 000 ms. */
  connectTimeout?: number;
  /** Ping the server when it has been silent this long; default: the server's heartbeat from `welcome`. */
  pingInterval?: number;
  /** Declare the server dead when a ping gets no answer within this. Default 10 000 ms. */
  pongTimeout?: number;
  /** Send pings when the server is silent (dead-server detection). Default true. */
  autoPing?: boolean;
  /** With getToken: refresh the token this long before it expires (or halfway, if sooner). Default 30 000 ms. */
  refreshBefore?: number;
  /** How to open a socket; default: the global WebSocket in browsers, `ws` in Node. */
  socket?: SocketFactory;
  /** Injected time (tests). */
  clock?: Clock;
  /** Injected randomness for jitter (tests). */
  random?: () => number;
  /** Acknowledge stored direct messages (those with an id) once the `direct` event has been emitted. Default true. */
  autoAck?: boolean;
  /** Ask to recover missed publications when resubscribing (channels with history). Default true. */
  recover?: boolean;
}

/** Receives a message's data: a JSON value, or a Uint8Array for byte payloads (and completed transfers). */
export type MessageHandler = (data: Data, message: MessageFrame) => void;

export interface TransferOptions {
  /** Shown to receivers (for example a file name). */
  name?: string;
  kind?: string;
  /** Bytes of payload per chunk, before compression. Default 16 KiB. */
  chunkSize?: number;
  /** Compress each chunk (sent raw when that does not make it smaller). */
  compression?: Compression;
  /** Chunks sent ahead of the server's answers. Default 8. */
  window?: number;
  /** Called after each acknowledged chunk. */
  onProgress?: (sent: number, total: number) => void;
  /** How long each chunk waits for the server's answer. Default: requestTimeout. */
  timeout?: number;
}

export interface TransferResult {
  transfer: string;
  chunks: number;
  bytes: number;
  /** Receivers of the last chunk. */
  delivered: number;
}

export interface Subscription {
  readonly pattern: string;
  /**
   * Resolves once the server has confirmed the subscription on the current connection (after a
   * reconnect, a new promise that resolves once it is restored); rejects if refused or the client closes.
   */
  readonly ready: Promise<void>;
  /** Stop this handler; the server subscription ends when its last handler goes. */
  unsubscribe(): Promise<void>;
}

export interface SubscribedInfo {
  pattern: string;
  /** True after a reconnect (a resubscription). */
  resubscribed: boolean;
  /** Set when recovery was asked for. */
  recovered?: boolean;
  /** A channel with history: its position now. */
  offset?: number;
  epoch?: string;
  /** A pattern: the positions of the channels it asked to recover. */
  positions?: Record<string, StreamPosition>;
}

/** What a publish gives back: on a channel with history, the publication's place in the stream. */
export interface PublishResult {
  offset?: number;
  epoch?: string;
}

export interface HistoryResult {
  publications: { offset: number; data: Data; kind: string; from: Sender; ts: number }[];
  offset: number;
  epoch: string;
}

export interface DisconnectInfo {
  code: number;
  reason: string;
  /** Whether the client will try again. */
  willReconnect: boolean;
}

export interface HubbubEvents {
  connected: (info: { client: string; reconnected: boolean; welcome: WelcomeFrame }) => void;
  disconnected: (info: DisconnectInfo) => void;
  reconnecting: (info: { attempt: number; delay: number }) => void;
  /** The client stopped for good: `close()` was called, a terminal close code or refusal came, or reconnect attempts ran out. */
  closed: (info: { code: number; reason: string }) => void;
  /** Errors the server sent for frames without id, refused resubscriptions, connection failures. */
  error: (err: HubbubError) => void;
  message: (message: MessageFrame) => void;
  /**
   * The server confirmed a subscription (also after each reconnect). `recovered` is set when the
   * SDK asked to recover from its last positions: true means nothing was lost (the missed messages
   * follow), false means the gap could not be filled and the application should reload its state.
   */
  subscribed: (info: SubscribedInfo) => void;
  direct: (message: DirectFrame) => void;
  broadcast: (message: BroadcastPushFrame) => void;
  join: (event: PresenceEventFrame) => void;
  leave: (event: PresenceEventFrame) => void;
  /** Every frame from the server, raw (for tools and debugging). */
  frame: (frame: ServerFrame) => void;
}

/**
 * An error from the server (`code` is a catalogue code such as `forbidden`) or from the client
 * itself: `timeout`, `disconnected` (the connection was lost before an answer), `closed` (the
 * client is closed), `queue_full`, `connect_failed`.
 */
export class HubbubError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The request frame type this answers, when it answers one. */
    readonly request?: string,
  ) {
    super(message);
    this.name = 'HubbubError';
  }
}

/** Close codes the client itself reports. */
export const ClientCloseCode = {
  /** The server stopped answering pings. */
  ServerTimeout: 4000,
  /** Connection could not be established (refused, unreachable, handshake failed). */
  ConnectFailed: 1006,
} as const;

interface Pending {
  type: string;
  resolve: (value: never) => void;
  reject: (err: HubbubError) => void;
  timer: unknown;
}

interface Waiting extends Pending {
  frame: RequestFrame;
  /** The request's timeout covers its wait for the connection too. */
  deadline: number;
}

interface SubEntry {
  pattern: string;
  presence: boolean;
  handlers: Set<MessageHandler>;
  settled: boolean;
  /** Settles the current `ready` promise. */
  confirm: (() => void) | undefined;
  refuse: ((err: HubbubError) => void) | undefined;
  ready: Promise<void>;
}

type Resolved<O> = Required<
  Pick<O, Extract<keyof O, 'requestTimeout' | 'maxQueuedRequests' | 'reconnect' | 'minReconnectDelay' | 'maxReconnectDelay' | 'maxReconnectAttempts' | 'connectTimeout' | 'pongTimeout' | 'autoPing' | 'refreshBefore' | 'encoding' | 'maxTransferSize' | 'transferTimeout' | 'autoAck' | 'recover'>>
>;

const DEFAULTS: Resolved<HubbubClientOptions> = {
  requestTimeout: 10_000,
  maxQueuedRequests: 1000,
  reconnect: true,
  minReconnectDelay: 500,
  maxReconnectDelay: 20_000,
  maxReconnectAttempts: Infinity,
  connectTimeout: 10_000,
  pongTimeout: 10_000,
  autoPing: true,
  refreshBefore: 30_000,
  encoding: 'json',
  maxTransferSize: 64 * 1024 * 1024,
  transferTimeout: 60_000,
  autoAck: true,
  recover: true,
};

/** Ids of stored direct messages remembered to drop redeliveries. */
const SEEN_IDS = 10_000;

/** A transfer being received. */
interface Incoming {
  key: string;
  chunk: ChunkFrame;
  next: number;
  parts: Uint8Array[];
  received: number;
  size: number;
  crc: number;
  /** Chunks are decompressed in order, one after the other. */
  work: Promise<void>;
  timer: unknown;
  failed: boolean;
}

let transferCounter = 0;

const OPEN = 1;

export class Hubbub extends Emitter<HubbubEvents> {
  readonly options: HubbubClientOptions & Resolved<HubbubClientOptions>;
  private readonly clock: Clock;
  private _state: ConnectionState = 'idle';
  private socket: SocketLike | undefined;
  private _client: string | undefined;
  private welcome: WelcomeFrame | undefined;
  private nextId = 1;
  private readonly pending = new Map<FrameId, Pending>();
  private readonly waiting: Waiting[] = [];
  private readonly subs = new Map<string, SubEntry>();
  private attempt = 0;
  private everConnected = false;
  private reconnectTimer: unknown;
  private livenessTimer: unknown;
  private refreshTimer: unknown;
  /** When the connection's token expires (from the hello reply), in ms since the epoch. */
  private expiresAt: number | undefined;
  private lastSeen = 0;
  private pingOutstanding = false;
  private connectWaiters: { resolve: () => void; reject: (err: HubbubError) => void }[] = [];
  private retryInitial = true;
  /** Bumped for every socket, so that events of an abandoned socket are ignored. */
  private generation = 0;
  private wire: WireCodec = jsonWire;
  /** Paces transfer chunks under the server's message_rate (shared by all transfers of this client). */
  private chunkPacer: TokenBucket | undefined;
  private pacerRate = -1;
  private readonly incoming = new Map<string, Incoming>();
  /** The last position seen per channel with history: sent as `since` on resubscribe, and used to drop duplicates. */
  private readonly positions = new Map<string, StreamPosition>();
  private readonly seenIds = new Set<string>();
  private ackQueue: string[] = [];
  private ackTimer: unknown;

  constructor(
    readonly url: string,
    options: HubbubClientOptions = {},
  ) {
    super();
    this.options = { ...DEFAULTS, ...stripUndefined(options) };
    this.clock = options.clock ?? realClock;
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** This connection's id from the server's welcome (changes on every reconnect). */
  get clientId(): string | undefined {
    return this._client;
  }

  /**
   * Connect, and resolve once connected (welcome received, `hello` answered, subscriptions
   * restored). If the first attempt fails the client keeps trying by its reconnect rules, unless
   * `retry: false`, which makes a failed first attempt reject the promise.
   */
  connect(options: { retry?: boolean } = {}): Promise<void> {
    if (this._state === 'connected') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this._state === 'idle' || this._state === 'closed') {
      this.retryInitial = options.retry ?? true;
      this.attempt = 0;
      this.everConnected = false;
      void this.open();
    }
    return p;
  }

  /** Close for good: no reconnect; waiting and pending requests fail with `closed`. */
  close(code = 1000, reason = 'client closed'): void {
    if (this._state === 'closed') return;
    const wasConnected = this._state === 'connected';
    this._state = 'closed';
    this.clock.clearTimeout(this.reconnectTimer);
    this.stopLiveness();
    const socket = this.socket;
    this.socket = undefined;
    this.generation++;
    if (socket) {
      try {
        socket.close(code, reason);
      } catch {
        /* already closing */
      }
    }
    this.dropIncoming(); // their timers would keep a Node process alive for transferTimeout
    this.clock.clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.ackQueue = [];
    this.failAll(new HubbubError('closed', 'the client was closed'));
    this.settleConnect(new HubbubError('closed', 'the client was closed before it connected'));
    if (wasConnected) this.emit('disconnected', { code, reason, willReconnect: false });
    this.emit('closed', { code, reason });
  }

  // ---- requests ---------------------------------------------------------------------------------

  /** Send any request frame and resolve with the `data` of its reply (or the pong). */
  request<T = unknown>(frame: RequestFrame, options: { timeout?: number } = {}): Promise<T> {
    const timeout = options.timeout ?? this.options.requestTimeout;
    return new Promise<T>((resolve, reject) => {
      if (this._state === 'closed' || this._state === 'idle') {
        reject(new HubbubError('closed', `${frame.type}: the client is not connected (call connect() first)`, frame.type));
        return;
      }
      if (this._state !== 'connected') {
        if (this.waiting.length >= this.options.maxQueuedRequests) {
          reject(new HubbubError('queue_full', `${frame.type}: ${this.waiting.length} requests already wait for the connection`, frame.type));
          return;
        }
        const w: Waiting = { type: frame.type, frame, resolve: resolve as (v: never) => void, reject, timer: undefined, deadline: this.clock.now() + timeout };
        w.timer = this.clock.setTimeout(() => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new HubbubError('timeout', `${frame.type}: not connected within ${timeout} ms`, frame.type));
        }, timeout);
        this.waiting.push(w);
        return;
      }
      this.transmit(frame, { type: frame.type, resolve: resolve as (v: never) => void, reject, timer: undefined }, timeout);
    });
  }

  private transmit(frame: RequestFrame, p: Pending, timeout: number): void {
    const id = this.nextId++;
    p.timer = this.clock.setTimeout(() => {
      this.pending.delete(id);
      p.reject(new HubbubError('timeout', `${p.type}: no answer within ${timeout} ms`, p.type));
    }, timeout);
    const wire = this.wire.encode({ ...frame, id } as ClientFrame);
    // A frame over the server's limit would close the connection (1009): refuse it here instead.
    const max = this.welcome?.max_message_size;
    if (max !== undefined && max > 0 && byteLength(wire, max) > max) {
      this.clock.clearTimeout(p.timer);
      p.reject(new HubbubError('too_large', `${p.type}: the frame is larger than the server's max_message_size of ${max} bytes${p.type === 'publish' || p.type === 'send' ? ' (send bytes as a transfer)' : ''}`, p.type));
      return;
    }
    this.pending.set(id, p);
    this.socket!.send(wire);
  }

  echo<T extends Data>(data: T, options?: { timeout?: number }): Promise<T> {
    return this.request<{ data: T }>({ type: 'echo', data }, options).then((r) => r.data);
  }

  /**
   * Publish to a channel; on a channel with history it resolves once stored, with the offset. With
   * `retain` the publication also becomes the channel's retained message (data null clears it).
   * Bytes larger than `transferThreshold` go as a transfer (see `transfer`).
   */
  async publish(channel: string, data: Data, options: { kind?: string; retain?: boolean; timeout?: number } = {}): Promise<PublishResult> {
    if (data instanceof Uint8Array && data.length > this.transferThreshold() && !options.retain) {
      await this.transfer({ channel }, data, { kind: options.kind, timeout: options.timeout });
      return {};
    }
    return this.request<PublishResult>(
      { type: 'publish', channel, data, ...(options.kind !== undefined && { kind: options.kind }), ...(options.retain && { retain: true }) },
      options,
    );
  }

  /** A page of a channel's history (publications after `since`, at most `limit`, oldest first unless `reverse`). */
  history(channel: string, options: { since?: StreamPosition; limit?: number; reverse?: boolean; timeout?: number } = {}): Promise<HistoryResult> {
    const { timeout, ...query } = options;
    return this.request<HistoryResult>({ type: 'history', channel, ...defined(query) } as RequestFrame, { timeout });
  }

  /** Acknowledge stored direct messages by id (done automatically unless `autoAck: false`). */
  ack(ids: string[], options?: { timeout?: number }): Promise<number> {
    return this.request<{ acked: number }>({ type: 'ack', ids }, options).then((r) => r.acked);
  }

  /** The last position this client saw on a channel with history. */
  position(channel: string): StreamPosition | undefined {
    return this.positions.get(channel);
  }

  /** A direct message to one connection (`{client}`) or every connection of a user (`{user}`); resolves with the number delivered. */
  async send(to: DirectTarget, data: Data, options: { kind?: string; persist?: boolean; timeout?: number } = {}): Promise<number> {
    if (data instanceof Uint8Array && data.length > this.transferThreshold() && !options.persist) return (await this.transfer({ to }, data, { kind: options.kind, timeout: options.timeout })).delivered;
    return this.request<{ delivered: number }>({ type: 'send', to, data, ...(options.kind !== undefined && { kind: options.kind }), ...(options.persist && { persist: true }) }, options).then((r) => r.delivered);
  }

  broadcast(data: Data, options: { kind?: string; timeout?: number } = {}): Promise<number> {
    return this.request<{ delivered: number }>({ type: 'broadcast', data, ...(options.kind !== undefined ? { kind: options.kind } : {}) }, options).then((r) => r.delivered);
  }

  presence(channel: string, options?: { timeout?: number }): Promise<ClientListEntry[]> {
    return this.request<{ clients: ClientListEntry[] }>({ type: 'presence', channel }, options).then((r) => r.clients);
  }

  clients(options?: { timeout?: number }): Promise<{ count: number; clients: ClientListEntry[] }> {
    return this.request({ type: 'clients' }, options);
  }

  /** Round trip to the server, in ms. */
  async ping(options?: { timeout?: number }): Promise<number> {
    const t0 = this.clock.now();
    await this.request({ type: 'ping' }, options);
    return this.clock.now() - t0;
  }

  // ---- transfers -----------------------------------------------------------------------------------

  /** The size above which publish() and send() turn bytes into a transfer. */
  private transferThreshold(): number {
    if (this.options.transferThreshold !== undefined) return this.options.transferThreshold;
    const max = this.welcome?.max_message_size ?? 1024 * 1024;
    return Math.max(1024, Math.floor(((max - 4096) * 3) / 4));
  }

  /**
   * Send a payload of any size (up to the server's max_transfer_size) to a channel's subscribers or
   * to a direct target, as numbered chunks with CRC-32s (docs/protocol.md, "Transfers"). Receivers
   * using this SDK get one `message` (or `direct`) with the whole bytes. Rejects, and the transfer is
   * aborted, if the server refuses a chunk or the connection is lost.
   */
  async transfer(dest: { channel: string } | { to: DirectTarget }, data: Uint8Array, options: TransferOptions = {}): Promise<TransferResult> {
    const chunkSize = Math.max(1, options.chunkSize ?? 16 * 1024);
    const window = Math.max(1, options.window ?? 8);
    const transfer = `t${++transferCounter}-${Math.floor((this.options.random ?? Math.random)() * 2 ** 32).toString(36)}`;
    const total = crc32(data);
    const chunks = Math.max(1, Math.ceil(data.length / chunkSize));
    const inFlight = new Set<Promise<unknown>>();
    let failure: unknown;
    let inFlightEver = false;
    let acked = 0;
    let delivered = 0;
    for (let seq = 0; seq < chunks && failure === undefined; seq++) {
      await this.paceChunk();
      const raw = data.subarray(seq * chunkSize, Math.min(data.length, (seq + 1) * chunkSize));
      let body = raw;
      let method: Compression | undefined;
      if (options.compression) {
        let packed: Uint8Array;
        try {
          packed = await compress(options.compression, raw);
        } catch (err) {
          failure = new HubbubError('compression_unavailable', `transfer: ${(err as Error).message}`, 'chunk');
          break;
        }
        if (packed.length < raw.length) {
          body = packed;
          method = options.compression;
        }
      }
      const last = seq === chunks - 1;
      const frame: ChunkFrame = { type: 'chunk', transfer, seq, data: body, crc: crc32(body) };
      if (method) frame.compression = method;
      if (seq === 0) {
        Object.assign(frame, 'channel' in dest ? { channel: dest.channel } : { to: dest.to }, { size: data.length });
        if (options.kind !== undefined) frame.kind = options.kind;
        if (options.name !== undefined) frame.name = options.name;
      }
      if (last) Object.assign(frame, { last: true, total_crc: total });
      const sent = this.request<{ delivered?: number }>(frame, { timeout: options.timeout }).then(
        (r) => {
          acked += raw.length;
          if (last) delivered = r.delivered ?? 0;
          options.onProgress?.(acked, data.length);
        },
        (err: unknown) => {
          failure ??= err;
        },
      );
      inFlight.add(sent);
      inFlightEver = true;
      void sent.finally(() => inFlight.delete(sent));
      if (inFlight.size >= window) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) {
      const err = failure as HubbubError;
      // The server aborts for its own refusals; otherwise tell it (and so the receivers) to stop.
      if (inFlightEver && err.code !== 'transfer_aborted' && this._state === 'connected') void this.request({ type: 'abort', transfer, message: `the sender gave up: ${err.message}` }).catch(() => {});
      throw err;
    }
    return { transfer, chunks, bytes: data.length, delivered };
  }

  /**
   * Wait until one more chunk fits in half the server's message_rate (a quarter of its burst), so
   * that a long transfer is not refused with rate_limited mid-way and other requests still have room.
   */
  private async paceChunk(): Promise<void> {
    const rate = this.welcome?.message_rate ?? 0;
    if (rate <= 0) return;
    if (this.pacerRate !== rate || !this.chunkPacer) {
      this.pacerRate = rate;
      this.chunkPacer = new TokenBucket(rate / 2, Math.max(1, Math.floor((this.welcome?.message_burst ?? rate) / 4)), this.clock.now());
    }
    while (!this.chunkPacer.take(this.clock.now())) {
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, Math.max(1, Math.ceil(2000 / rate))));
    }
  }

  private remember(id: string): void {
    this.seenIds.add(id);
    if (this.seenIds.size > SEEN_IDS) this.seenIds.delete(this.seenIds.values().next().value!);
  }

  /** Acks leave together, one frame per turn; a lost one is harmless (the message comes again, and is dropped as seen). */
  private queueAck(id: string): void {
    this.ackQueue.push(id);
    this.scheduleAck();
  }

  private scheduleAck(): void {
    if (this.ackTimer !== undefined) return;
    this.ackTimer = this.clock.setTimeout(() => {
      this.ackTimer = undefined;
      const ids = this.ackQueue.splice(0, 1000); // the server takes at most 1000 ids per ack
      if (this.ackQueue.length > 0) this.scheduleAck();
      // While (re)connecting, request() waits for the handshake: stored messages arrive during it.
      if (ids.length > 0 && this._state !== 'closed' && this._state !== 'idle') this.ack(ids).catch(() => {});
    }, 0);
  }

  private receiveChunk(frame: ChunkFrame): void {
    const key = `${frame.from && 'client' in frame.from ? frame.from.client : ''}|${frame.transfer}`;
    let t = this.incoming.get(key);
    if (t === undefined) {
      if (frame.seq !== 0) return; // a transfer that started before this client subscribed
      const size = frame.size ?? 0;
      t = { key, chunk: frame, next: 0, parts: [], received: 0, size, crc: 0, work: Promise.resolve(), timer: undefined, failed: false };
      this.incoming.set(key, t);
      if (size > this.options.maxTransferSize) {
        this.failIncoming(t, `it is ${size} bytes, over this client's maxTransferSize of ${this.options.maxTransferSize}`);
        return;
      }
    }
    if (t.failed) return;
    const it = t;
    this.clock.clearTimeout(it.timer);
    it.timer = this.clock.setTimeout(() => this.failIncoming(it, `no chunk for ${this.options.transferTimeout} ms`), this.options.transferTimeout);
    if (frame.seq !== it.next) return this.failIncoming(it, `chunk ${frame.seq} arrived where ${it.next} was expected`);
    it.next++;
    const body = frame.data as Uint8Array;
    if (crc32(body) !== frame.crc) return this.failIncoming(it, `chunk ${frame.seq} failed its CRC-32 check`);
    it.work = it.work.then(async () => {
      if (it.failed) return;
      const part = frame.compression ? await decompress(frame.compression, body, it.size - it.received) : body;
      if (it.received + part.length > it.size) throw new Error(`more bytes than the declared size ${it.size}`);
      it.parts.push(part);
      it.received += part.length;
      it.crc = crc32(part, it.crc);
      if (!frame.last) return;
      this.incoming.delete(it.key);
      this.clock.clearTimeout(it.timer);
      if (it.received !== it.size) throw new Error(`${it.received} bytes arrived, not the declared ${it.size}`);
      if (it.crc !== frame.total_crc) throw new Error('the whole payload failed its CRC-32 check');
      this.completeIncoming(it, concat(it.parts, it.received));
    });
    it.work.catch((err: unknown) => this.failIncoming(it, (err as Error).message));
  }

  /** A reassembled transfer becomes one message (channel transfers) or one direct message. */
  private completeIncoming(t: Incoming, data: Uint8Array): void {
    const c = t.chunk;
    const transfer = { id: c.transfer, size: t.size, ...(c.name !== undefined && { name: c.name }) };
    const from = c.from ?? { server: true as const };
    if (c.channel !== undefined) {
      this.dispatch({ type: 'message', channel: c.channel, pattern: c.pattern ?? c.channel, data, kind: c.kind ?? 'text', from, ts: c.ts ?? 0, transfer });
    } else {
      this.dispatch({ type: 'direct', data, kind: c.kind ?? 'text', from, ts: c.ts ?? 0, transfer });
    }
  }

  private failIncoming(t: Incoming, why: string, code = 'transfer_failed'): void {
    if (t.failed) return;
    t.failed = true;
    t.parts = [];
    this.clock.clearTimeout(t.timer);
    // Kept (failed) until a timeout so that its remaining chunks are ignored quietly.
    t.timer = this.clock.setTimeout(() => this.incoming.delete(t.key), this.options.transferTimeout);
    this.emit('error', new HubbubError(code, `transfer ${t.chunk.transfer}${t.chunk.name ? ` (${t.chunk.name})` : ''}: ${why}`));
  }

  private receiveAbort(frame: AbortFrame): void {
    const key = `${frame.from && 'client' in frame.from ? frame.from.client : ''}|${frame.transfer}`;
    const t = this.incoming.get(key);
    if (t) this.failIncoming(t, `aborted: ${frame.message ?? 'no reason given'}`, frame.code ?? 'transfer_aborted');
  }

  private dropIncoming(): void {
    for (const t of this.incoming.values()) this.clock.clearTimeout(t.timer);
    this.incoming.clear();
  }

  // ---- subscriptions ------------------------------------------------------------------------------

  /**
   * Subscribe `handler` to a channel or pattern. The handler receives every message whose channel
   * matches `pattern`, also when the server's copy names another of this client's patterns. The
   * subscription survives reconnects. With `presence: true` the client also gets `join`/`leave` events.
   */
  subscribe(pattern: string, handler: MessageHandler, options: { presence?: boolean } = {}): Subscription {
    const problem = patternError(pattern);
    if (problem) throw new HubbubError('invalid_channel', `subscribe: ${problem}`, 'subscribe');
    if (this._state === 'closed') throw new HubbubError('closed', 'subscribe: the client is closed', 'subscribe');
    const presence = options.presence === true;
    let entry = this.subs.get(pattern);
    if (!entry) {
      entry = this.newEntry(pattern, presence);
      this.subs.set(pattern, entry);
      if (this._state === 'connected') this.sendSubscribe(entry);
    } else if (presence && !entry.presence) {
      entry.presence = true;
      this.renewReady(entry);
      if (this._state === 'connected') this.sendSubscribe(entry);
    }
    entry.handlers.add(handler);
    const e = entry;
    let active = true;
    return {
      pattern,
      get ready() {
        return e.ready;
      },
      unsubscribe: async () => {
        if (!active) return;
        active = false;
        e.handlers.delete(handler);
        if (e.handlers.size > 0 || this.subs.get(pattern) !== e) return;
        this.subs.delete(pattern);
        e.refuse?.(new HubbubError('closed', `subscribe: unsubscribed from ${pattern} before the server confirmed`, 'subscribe'));
        if (this._state === 'connected') {
          await this.request({ type: 'unsubscribe', channel: pattern }).catch((err: HubbubError) => {
            if (err.code !== 'not_found') throw err; // already gone on the server: that is what we wanted
          });
        }
      },
    };
  }

  private newEntry(pattern: string, presence: boolean): SubEntry {
    const entry = { pattern, presence, handlers: new Set<MessageHandler>() } as SubEntry;
    this.renewReady(entry);
    return entry;
  }

  /** A new `ready` promise, unless the current one is still pending (then whoever awaits it keeps waiting for the same outcome). */
  private renewReady(entry: SubEntry): void {
    if (entry.settled === false) return;
    entry.settled = false;
    entry.ready = new Promise<void>((resolve, reject) => {
      entry.confirm = () => {
        entry.settled = true;
        resolve();
      };
      entry.refuse = (err) => {
        entry.settled = true;
        reject(err);
      };
    });
    entry.ready.catch(() => {}); // observed through `ready` or the `error` event; never an unhandled rejection
  }

  /** The subscribe frame of an entry, with `since` from the positions seen, for recovery. */
  private subscribeFrame(entry: SubEntry): RequestFrame {
    return { type: 'subscribe', channel: entry.pattern, ...(entry.presence && { presence: true }), ...this.sinceFor(entry.pattern) } as RequestFrame;
  }

  private sinceFor(pattern: string): { since?: StreamPosition | Record<string, StreamPosition> } {
    if (!this.options.recover) return {};
    if (!isWildcard(pattern)) {
      const p = this.positions.get(pattern);
      return p ? { since: p } : {};
    }
    const map: Record<string, StreamPosition> = {};
    let n = 0;
    for (const [channel, p] of this.positions) {
      if (n >= 1000) break; // the server's limit per subscribe
      if (matchPattern(pattern, channel)) {
        map[channel] = p;
        n++;
      }
    }
    return n > 0 ? { since: map } : {};
  }

  /** The subscribe reply: record positions, and tell the application whether recovery worked. */
  private subscribed(pattern: string, reply: Omit<SubscribedInfo, 'pattern' | 'resubscribed'>, resubscribed: boolean): void {
    // With recovered true the missed messages follow and move the position; otherwise start from the reply's.
    // Never backwards in an epoch: live messages may have been handled before this reply settled.
    // For a pattern, a channel in the same epoch may have been recovered (its missed messages follow).
    if (reply.recovered !== true) {
      if (reply.offset !== undefined && reply.epoch !== undefined && !isWildcard(pattern)) {
        const known = this.positions.get(pattern);
        if (!known || known.epoch !== reply.epoch || known.offset < reply.offset) this.positions.set(pattern, { offset: reply.offset, epoch: reply.epoch });
      }
      if (reply.positions) for (const [channel, p] of Object.entries(reply.positions)) if (this.positions.get(channel)?.epoch !== p.epoch) this.positions.set(channel, p);
    }
    this.emit('subscribed', { pattern, resubscribed, ...reply });
  }

  private sendSubscribe(entry: SubEntry): Promise<void> {
    return this.request<Omit<SubscribedInfo, 'pattern' | 'resubscribed'>>(this.subscribeFrame(entry)).then(
      (reply) => {
        entry.confirm?.();
        this.subscribed(entry.pattern, reply ?? {}, false);
      },
      (err: HubbubError) => {
        if (err.code === 'disconnected' || err.code === 'closed') return; // retried on reconnect
        if (this.subs.get(entry.pattern) === entry) this.subs.delete(entry.pattern);
        entry.refuse?.(err);
        this.emit('error', err);
      },
    );
  }

  // ---- connection lifecycle -----------------------------------------------------------------------

  private async open(): Promise<void> {
    this._state = this.everConnected ? 'reconnecting' : 'connecting';
    const gen = ++this.generation;
    let socket: SocketLike;
    try {
      this.wire = this.options.encoding === 'protobuf' ? await loadProtobufWire() : jsonWire;
      socket = await (this.options.socket ?? defaultSocketFactory)(this.url, [SUBPROTOCOL[this.options.encoding]]);
      socket.binaryType = 'arraybuffer';
    } catch (err) {
      if (gen === this.generation) this.lost(ClientCloseCode.ConnectFailed, `cannot open ${this.url}: ${(err as Error).message}`, false);
      return;
    }
    if (gen !== this.generation) {
      socket.close();
      return;
    }
    this.socket = socket;
    let opened = false;
    let handshakeDone = false;
    const handshakeTimer = this.clock.setTimeout(() => {
      if (gen !== this.generation || handshakeDone) return;
      this.abandon(ClientCloseCode.ConnectFailed, `connection to ${this.url} not established within ${this.options.connectTimeout} ms`, opened);
    }, this.options.connectTimeout);
    socket.onopen = () => {
      opened = true;
    };
    socket.onerror = () => {
      /* followed by onclose */
    };
    let failure: string | undefined;
    let refusedStatus = 0;
    socket.onclose = (ev) => {
      this.clock.clearTimeout(handshakeTimer);
      if (gen !== this.generation) return;
      const reason = ev.reason || (opened ? 'connection closed' : `cannot connect to ${this.url}${failure ? `: ${failure}` : ''}`);
      // An HTTP 4xx refusal of the upgrade (wrong path, bad credentials) will not change by retrying.
      if (refusedStatus >= 400 && refusedStatus < 500 && refusedStatus !== 408 && refusedStatus !== 429) {
        this.giveUp(ev.code, reason, new HubbubError('connect_failed', reason));
        return;
      }
      this.lost(ev.code, reason, opened);
    };
    socket.onmessage = (ev) => {
      if (gen !== this.generation) return;
      this.lastSeen = this.clock.now();
      this.pingOutstanding = false;
      let frame: ServerFrame;
      try {
        frame = this.wire.decode(ev.data);
      } catch (err) {
        this.emit('error', new HubbubError('bad_frame', `the server sent a frame that cannot be decoded: ${(err as Error).message}`));
        return;
      }
      if (frame.type === 'welcome' && !this.welcome) {
        this.welcome = frame;
        this._client = frame.client;
        void this.handshake(gen).then(
          () => {
            handshakeDone = true;
            this.clock.clearTimeout(handshakeTimer);
          },
          (err: HubbubError) => {
            handshakeDone = true;
            this.clock.clearTimeout(handshakeTimer);
            if (gen !== this.generation) return;
            // A refused hello (bad token…) will not get better by retrying.
            const terminal = err.code === 'unauthorized' || err.code === 'forbidden' || err.code === 'bad_request';
            this.emit('error', err);
            if (terminal) this.giveUp(4500, `hello refused: ${err.message}`, err);
            else this.abandon(ClientCloseCode.ConnectFailed, `handshake failed: ${err.message}`, true);
          },
        );
      }
      this.dispatch(frame);
    };
    // In Node, `ws` exposes the server's WebSocket pings: they prove the server is alive too.
    const nodeSocket = socket as unknown as { on?: (ev: string, fn: (arg?: Error) => void) => void };
    if (typeof nodeSocket.on === 'function') {
      nodeSocket.on('ping', () => {
        if (gen === this.generation) this.lastSeen = this.clock.now();
      });
      // Browsers hide why a connection failed; `ws` tells (ECONNREFUSED, "Unexpected server response: 404").
      nodeSocket.on('error', (err) => {
        failure = err?.message;
        const m = /Unexpected server response: (\d+)/.exec(failure ?? '');
        if (m) refusedStatus = Number(m[1]);
      });
    }
  }

  /** After welcome: hello, then restore subscriptions, then release waiting requests. */
  private async handshake(gen: number): Promise<void> {
    // Requests are sent directly here: the public request() queues until `connected`.
    const direct = <T>(frame: RequestFrame): Promise<T> =>
      new Promise<T>((resolve, reject) => this.transmit(frame, { type: frame.type, resolve: resolve as (v: never) => void, reject, timer: undefined }, this.options.connectTimeout));
    const o = this.options;
    let token: string | undefined;
    try {
      token = o.getToken ? await o.getToken() : o.token;
    } catch (err) {
      throw new HubbubError('token_unavailable', `getToken() failed: ${(err as Error)?.message ?? String(err)}`, 'hello');
    }
    if (gen !== this.generation) return;
    if (o.name !== undefined || o.user !== undefined || o.version !== undefined || token !== undefined) {
      const hello = await direct<{ expires_at?: number }>({ type: 'hello', ...defined({ name: o.name, user: o.user, version: o.version, token }) } as RequestFrame);
      this.expiresAt = hello.expires_at;
    } else {
      this.expiresAt = undefined;
    }
    // Subscriptions made while this runs are picked up by the next round.
    const sent = new Set<SubEntry>();
    for (;;) {
      const todo = [...this.subs.values()].filter((e) => !sent.has(e));
      if (todo.length === 0) break;
      for (const e of todo) sent.add(e);
      await this.restore(todo, direct);
      if (gen !== this.generation) return;
    }
    // Unsubscribed meanwhile: the server still has them.
    for (const e of sent) if (this.subs.get(e.pattern) !== e) void direct({ type: 'unsubscribe', channel: e.pattern }).catch(() => {});
    const reconnected = this.everConnected;
    this._state = 'connected';
    this.everConnected = true;
    this.attempt = 0;
    this.startLiveness();
    this.scheduleRefresh();
    this.emit('connected', { client: this._client!, reconnected, welcome: this.welcome! });
    this.settleConnect();
    const waiting = this.waiting.splice(0);
    for (const w of waiting) {
      this.clock.clearTimeout(w.timer);
      this.transmit(w.frame, w, Math.max(1, w.deadline - this.clock.now()));
    }
  }

  /** Re-send subscribe for these entries; a refusal drops the entry, a lost connection fails the handshake. */
  private async restore(entries: SubEntry[], direct: <T>(frame: RequestFrame) => Promise<T>): Promise<void> {
    const results = await Promise.allSettled(
      entries.map((entry) =>
        direct<Omit<SubscribedInfo, 'pattern' | 'resubscribed'>>(this.subscribeFrame(entry)).then(
          (reply) => {
            entry.confirm?.();
            this.subscribed(entry.pattern, reply ?? {}, this.everConnected);
          },
          (err: HubbubError) => {
            if (err.code === 'disconnected' || err.code === 'timeout') throw err;
            if (this.subs.get(entry.pattern) === entry) this.subs.delete(entry.pattern);
            entry.refuse?.(err);
            this.emit('error', err);
          },
        ),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  private dispatch(frame: ServerFrame): void {
    this.emit('frame', frame);
    switch (frame.type) {
      case 'reply':
      case 'pong':
      case 'error': {
        if (frame.id === undefined) {
          if (frame.type === 'error') this.emit('error', new HubbubError(frame.code, frame.message));
          return;
        }
        const p = this.pending.get(frame.id);
        if (!p) return;
        this.pending.delete(frame.id);
        this.clock.clearTimeout(p.timer);
        if (frame.type === 'error') p.reject(new HubbubError((frame as ErrorFrame).code, frame.message, p.type));
        else p.resolve((frame.type === 'pong' ? { ts: frame.ts } : frame.data) as never);
        return;
      }
      case 'message': {
        // A retained message is the channel's state, sent on subscribe: not a duplicate, and not a position.
        if (frame.offset !== undefined && frame.epoch !== undefined && frame.retained !== true) {
          const known = this.positions.get(frame.channel);
          // Already seen (a recovery overlapping what arrived live): drop the copy.
          if (known && known.epoch === frame.epoch && frame.offset <= known.offset) return;
          this.positions.set(frame.channel, { offset: frame.offset, epoch: frame.epoch });
        }
        for (const entry of this.subs.values()) {
          if (entry.pattern === frame.pattern || matchPattern(entry.pattern, frame.channel)) {
            for (const h of entry.handlers) {
              try {
                h(frame.data, frame);
              } catch (err) {
                queueMicrotask(() => {
                  throw err; // surfaces like any uncaught error, without costing the other handlers this message
                });
              }
            }
          }
        }
        this.emit('message', frame);
        return;
      }
      case 'chunk':
        this.receiveChunk(frame);
        return;
      case 'abort':
        this.receiveAbort(frame);
        return;
      case 'direct':
        if (frame.id !== undefined) {
          const duplicate = this.seenIds.has(frame.id);
          if (!duplicate) this.remember(frame.id);
          if (this.options.autoAck) this.queueAck(frame.id);
          if (duplicate) return; // redelivered: the application has it already
        }
        this.emit('direct', frame);
        return;
      case 'broadcast':
      case 'join':
      case 'leave':
        // Pushes are re-emitted as events of the same name.
        (this.emit as (event: typeof frame.type, f: typeof frame) => void)(frame.type, frame);
        return;
      default:
        return; // welcome (handled above) and frame types from newer servers
    }
  }

  /** Drop the current socket without waiting for a close handshake, and carry on as if it closed. */
  private abandon(code: number, reason: string, opened: boolean): void {
    const socket = this.socket;
    this.generation++;
    this.socket = undefined;
    if (socket) {
      const s = socket as unknown as { terminate?: () => void };
      try {
        if (typeof s.terminate === 'function') s.terminate();
        else socket.close(code === ClientCloseCode.ConnectFailed ? 1000 : code, reason);
      } catch {
        /* ignore */
      }
    }
    this.lost(code, reason, opened);
  }

  /** The connection is gone: fail in-flight requests and decide whether to reconnect. */
  private lost(code: number, reason: string, opened: boolean): void {
    this.socket = undefined;
    this.welcome = undefined;
    this.dropIncoming(); // their remaining chunks went out on the lost connection
    this.stopLiveness();
    const wasConnected = this._state === 'connected';
    if (wasConnected) for (const entry of this.subs.values()) this.renewReady(entry);
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      this.clock.clearTimeout(p.timer);
      p.reject(new HubbubError('disconnected', `${p.type}: the connection was lost before the server answered`, p.type));
    }
    if (this._state === 'closed') return;
    const terminal = isTerminalCloseCode(code) || (!this.everConnected && !this.retryInitial);
    const attempt = this.attempt + 1;
    const exhausted = !this.options.reconnect || attempt > this.options.maxReconnectAttempts;
    if (terminal || exhausted) {
      this.giveUp(code, reason, new HubbubError(opened ? 'disconnected' : 'connect_failed', reason), wasConnected);
      return;
    }
    if (wasConnected) this.emit('disconnected', { code, reason, willReconnect: true });
    this.attempt = attempt;
    const delay = backoffDelay(attempt, { minDelay: this.options.minReconnectDelay, maxDelay: this.options.maxReconnectDelay }, this.options.random);
    this._state = 'reconnecting';
    this.emit('reconnecting', { attempt, delay });
    this.reconnectTimer = this.clock.setTimeout(() => {
      if (this._state === 'reconnecting') void this.open();
    }, delay);
  }

  private giveUp(code: number, reason: string, err: HubbubError, wasConnected = this._state === 'connected'): void {
    const socket = this.socket;
    this.generation++;
    this.socket = undefined;
    if (socket) {
      try {
        socket.close(1000, 'giving up');
      } catch {
        /* ignore */
      }
    }
    this._state = 'closed';
    this.stopLiveness();
    this.failAll(new HubbubError('closed', `the client stopped: ${reason}`));
    this.settleConnect(err);
    if (wasConnected) this.emit('disconnected', { code, reason, willReconnect: false });
    if (!wasConnected && this.everConnected) this.emit('error', err);
    this.emit('closed', { code, reason });
  }

  private failAll(err: HubbubError): void {
    for (const entry of this.subs.values()) entry.refuse?.(new HubbubError(err.code, `subscribe ${entry.pattern}: ${err.message}`, 'subscribe'));
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      this.clock.clearTimeout(p.timer);
      p.reject(new HubbubError(err.code, `${p.type}: ${err.message}`, p.type));
    }
    for (const w of this.waiting.splice(0)) {
      this.clock.clearTimeout(w.timer);
      w.reject(new HubbubError(err.code, `${w.type}: ${err.message}`, w.type));
    }
  }

  private settleConnect(err?: HubbubError): void {
    const waiters = this.connectWaiters.splice(0);
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  // ---- dead-server detection ----------------------------------------------------------------------

  private startLiveness(): void {
    this.stopLiveness();
    if (!this.options.autoPing) return;
    const interval = this.options.pingInterval ?? this.welcome?.heartbeat ?? 25_000;
    const gen = this.generation;
    this.lastSeen = this.clock.now();
    this.pingOutstanding = false;
    const tick = (): void => {
      if (gen !== this.generation || this._state !== 'connected') return;
      const silent = this.clock.now() - this.lastSeen;
      if (silent >= interval && !this.pingOutstanding) {
        this.pingOutstanding = true;
        this.request({ type: 'ping' }, { timeout: this.options.pongTimeout }).catch((err: HubbubError) => {
          if (err.code === 'timeout' && gen === this.generation) {
            this.abandon(ClientCloseCode.ServerTimeout, `the server did not answer a ping within ${this.options.pongTimeout} ms`, true);
          }
        });
      }
      // Next look: when the silence would reach the interval (a ping in flight has its own timeout).
      this.livenessTimer = this.clock.setTimeout(tick, silent >= interval ? interval : interval - silent);
    };
    this.livenessTimer = this.clock.setTimeout(tick, interval);
  }

  private stopLiveness(): void {
    this.clock.clearTimeout(this.livenessTimer);
    this.livenessTimer = undefined;
    this.clock.clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
  }

  // ---- token refresh ------------------------------------------------------------------------------

  /**
   * With `getToken`, renew the connection's token before it expires (the server closes an expired
   * connection with 4005): at `refreshBefore` ms before expiry, or halfway for short-lived tokens.
   */
  private scheduleRefresh(): void {
    this.clock.clearTimeout(this.refreshTimer);
    const getToken = this.options.getToken;
    const expiresAt = this.expiresAt;
    if (!getToken || expiresAt === undefined) return;
    const left = expiresAt - this.clock.now();
    const wait = Math.max(0, Math.min(left - this.options.refreshBefore, left / 2));
    const gen = this.generation;
    this.refreshTimer = this.clock.setTimeout(() => {
      if (gen !== this.generation || this._state !== 'connected') return;
      Promise.resolve()
        .then(() => getToken())
        .then((token) => this.request<{ expires_at?: number }>({ type: 'refresh', token }))
        .then(
          (r) => {
            if (gen !== this.generation) return;
            this.expiresAt = r.expires_at;
            this.scheduleRefresh();
          },
          (err: unknown) => {
            // The server will close with 4005 at expiry; the reconnect then asks getToken() again.
            this.emit('error', err instanceof HubbubError ? err : new HubbubError('refresh_failed', `token refresh failed: ${(err as Error).message}`, 'refresh'));
          },
        );
    }, wait);
  }
}

/** Size in bytes of a wire message, computed exactly only when it could be over `max`. */
function byteLength(wire: string | Uint8Array, max: number): number {
  if (typeof wire !== 'string') return wire.length;
  if (wire.length * 3 <= max) return wire.length; // UTF-8 takes at most 3 bytes per UTF-16 unit
  return new TextEncoder().encode(wire).length;
}

async function defaultSocketFactory(url: string, protocols: string[]): Promise<SocketLike> {
  const g = globalThis as unknown as { WebSocket?: new (url: string, protocols: string[]) => SocketLike; process?: { versions?: { node?: string } } };
  // In Node prefer `ws`: it reports HTTP refusals and the server's pings; browsers use their own WebSocket.
  if (g.process?.versions?.node) {
    const { WebSocket } = await import('ws');
    return new WebSocket(url, protocols) as unknown as SocketLike;
  }
  if (!g.WebSocket) throw new Error('no WebSocket implementation: pass the `socket` option');
  return new g.WebSocket(url, protocols);
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function stripUndefined<T extends object>(o: T): T {
  return defined(o as Record<string, unknown>) as T;
}
