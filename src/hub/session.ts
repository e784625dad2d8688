import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Identity, TokenVerifier } from '../auth/jwt.js';
import type { Permissions } from '../auth/permissions.js';
import type { Config } from '../config.js';
import type { Delivered } from '../engine/broker.js';
import { TokenBucket } from '../limits/token-bucket.js';
import { channelNameError, isWildcard, patternError } from '../protocol/channel.js';
import { CloseCode, ErrorCode, HubbubError } from '../protocol/errors.js';
import type { ClientFrame, ClientFrameType, Data, FrameId, ReplyData, ServerFrame, WelcomeFrame } from '../protocol/frames.js';
import { DEFAULT_KIND, PROTOCOL_VERSION } from '../protocol/frames.js';
import type { Payload } from '../protocol/payload.js';
import { Outgoing } from '../transport/outgoing.js';
import type { Transport, TransportHandler } from '../transport/transport.js';
import type { TransferDestination } from '../engine/broker.js';
import { Client } from './client.js';
import { jsonCodec, type SessionCodec } from './codec.js';
import type { Hub, SubscribeOutcome } from './hub.js';
import type { StoredPublication, StreamPosition } from '../engine/store.js';
import { Transfers } from './transfers.js';

export interface SessionOptions {
  hub: Hub;
  logger: Logger;
  serverVersion: string;
  config: Pick<
    Config,
    | 'heartbeat'
    | 'auth'
    | 'auth_timeout'
    | 'jwt_clock_tolerance'
    | 'allow_client_send'
    | 'allow_client_broadcast'
    | 'allow_client_list'
    | 'message_rate'
    | 'message_burst'
    | 'max_subscriptions'
    | 'max_channel_length'
    | 'max_connections_per_user'
    | 'max_message_size'
    | 'max_transfer_size'
    | 'max_transfers'
  >;
  /** The connection's wire encoding (JSON unless the protobuf subprotocol was negotiated). */
  codec?: SessionCodec;
  verifier?: TokenVerifier;
  permissions: Permissions;
  /** Identity from a token verified at the upgrade. */
  identity?: Identity;
  onClosed?: () => void;
}

/** Frames served before authentication when auth is required. */
const BEFORE_AUTH = new Set(['hello', 'ping']);
/** Frames kept while a hello token is verified; more are refused. */
const MAX_HELD_FRAMES = 256;
/** Longest a timer may be set for (Node's limit is 2^31 − 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Serves one connection: sends `welcome`, then parses each frame, checks it against the
 * connection's identity, limits and the namespace rules, runs it against the hub and answers it.
 * A bad frame gets an `error` frame and the connection stays usable.
 */
export class Session implements TransportHandler {
  readonly client: Client;
  private readonly hub: Hub;
  private childLog: Logger | undefined;
  private readonly config: SessionOptions['config'];
  private readonly bucket: TokenBucket | undefined;
  /** Refusals in a row by the rate limiter; too many closes the connection. */
  private refusals = 0;
  private authTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** While a token is being verified, later frames wait here so that they are judged with its outcome. */
  private held: { data: Buffer; binary: boolean }[] | undefined;
  private closed = false;
  /** The token in hello was refused: the connection is being closed and serves nothing more. */
  private refused = false;
  private readonly codec: SessionCodec;
  /** Made on the first chunk: most connections never send a transfer. */
  private transfersOf: Transfers | undefined;

  constructor(
    transport: Transport,
    private readonly options: SessionOptions,
  ) {
    this.hub = options.hub;
    this.config = options.config;
    this.codec = options.codec ?? jsonCodec;
    this.client = new Client(randomUUID(), transport, this.codec.name === 'protobuf');
    this.bucket = this.config.message_rate > 0 ? new TokenBucket(this.config.message_rate, Math.max(1, this.config.message_burst), Date.now()) : undefined;
    this.hub.add(this.client);
    // The session is the transport's handler itself (methods, not closures): less memory per idle connection.
    transport.attach(this);
    const welcome: WelcomeFrame = {
      type: 'welcome',
      client: this.client.id,
      server: 'hubbub',
      version: options.serverVersion,
      protocol: PROTOCOL_VERSION,
      heartbeat: this.config.heartbeat,
      max_message_size: this.config.max_message_size,
      max_transfer_size: this.config.max_transfer_size,
      message_rate: this.config.message_rate,
      message_burst: this.config.message_burst,
    };
    this.push(welcome);
    if (options.identity) {
      this.authenticate(options.identity, undefined);
    } else if (this.config.auth === 'required') {
      this.authTimer = setTimeout(() => this.close(CloseCode.Unauthorized, 'authentication timeout'), this.config.auth_timeout);
      this.authTimer.unref();
    }
    this.debug({ remote: transport.remoteAddress, user: this.client.user }, 'connected');
  }

  /** The connection's logger, made on first use: a pino child per idle connection costs memory for nothing. */
  private get log(): Logger {
    return (this.childLog ??= this.options.logger.child({ client: this.client.id }));
  }

  /** Debug lines skip making the child logger when debug is off. */
  private debug(fields: Record<string, unknown>, message: string): void {
    if (this.options.logger.isLevelEnabled('debug')) this.log.debug(fields, message);
  }

  private get transfers(): Transfers {
    return (this.transfersOf ??= new Transfers(this.hub, this.client, { maxSize: this.config.max_transfer_size, maxOpen: this.config.max_transfers }, (dest) => this.checkTransferDestination(dest)));
  }

  onPong(): void {
    this.client.seen = true;
  }

  onClose(code: number, reason: string): void {
    this.closed = true;
    clearTimeout(this.authTimer);
    clearTimeout(this.expiryTimer);
    this.transfersOf?.closeAll('the sender disconnected');
    this.hub.remove(this.client);
    this.options.onClosed?.();
    this.debug({ code, reason }, 'disconnected');
  }

  onMessage(data: Buffer, binary: boolean): void {
    if (this.refused) return;
    if (this.held) {
      // Bounded: a client cannot park unlimited frames behind a slow token verification.
      if (this.held.length >= MAX_HELD_FRAMES) this.error(undefined, ErrorCode.RateLimited, 'too many frames while the token is being verified; wait for the hello reply');
      else this.held.push({ data: Buffer.from(data), binary });
      return;
    }
    const counters = this.hub.counters;
    counters.messages_in++;
    counters.bytes_in += data.length;
    this.client.seen = true;
    if (this.bucket && !this.bucket.take(Date.now())) {
      this.rateLimited(data, binary);
      return;
    }
    this.refusals = 0;
    const parsed = this.codec.parse(data, binary);
    if (!parsed.ok) {
      this.error(parsed.id, parsed.code, parsed.message);
      return;
    }
    this.run(parsed.frame, parsed.payload);
  }

  private run(frame: ClientFrame, payload: Payload | undefined): void {
    try {
      if (!this.client.authenticated && this.config.auth === 'required' && !BEFORE_AUTH.has(frame.type)) {
        throw new HubbubError(ErrorCode.Unauthorized, `${frame.type}: authenticate first (hello with a token)`);
      }
      const result = this.handle(frame, payload!);
      if (result instanceof Promise) {
        result.then(
          (d) => {
            if (d !== undefined) this.reply(frame.type, frame.id, d);
          },
          (err: unknown) => this.fail(frame.id, err),
        );
      } else if (result !== undefined) {
        this.reply(frame.type, frame.id, result);
      }
    } catch (err) {
      this.fail(frame.id, err);
    }
  }

  /** Runs one valid frame. Returns the reply data (or a promise of it); undefined when the frame answered itself. */
  private handle(frame: ClientFrame, payload: Payload): object | Promise<object | undefined> | undefined {
    const hub = this.hub;
    const client = this.client;
    const perms = this.options.permissions;
    switch (frame.type) {
      case 'hello': {
        if (client.identified) throw new HubbubError(ErrorCode.BadRequest, 'hello: this connection has already said hello');
        if (frame.token !== undefined) return this.helloWithToken(frame.token, frame.name, frame.version);
        if (frame.user !== undefined && this.options.verifier) throw new HubbubError(ErrorCode.Forbidden, 'hello: user ids come from tokens on this server; send a token');
        if (this.config.auth === 'required' && !client.authenticated) throw new HubbubError(ErrorCode.Unauthorized, 'hello: this server requires a token');
        if (frame.user !== undefined) {
          if (client.user !== undefined && client.user !== frame.user) throw new HubbubError(ErrorCode.Forbidden, 'hello: this connection already has a user id');
        }
        client.identified = true;
        hub.identify(client, { user: client.user ?? frame.user, name: client.name ?? frame.name, version: frame.version });
        if (frame.user !== undefined && !client.authenticated) {
          client.authenticated = true; // the development identity counts as authenticated for namespace rules
          this.enforceUserLimit(true);
          this.deliverStored();
        }
        return this.helloReply();
      }
      case 'refresh':
        return this.refresh(frame.token);
      case 'ping':
        // Unlike other frames, a ping is answered even without an id: the pong is its whole point.
        this.push(frame.id === undefined ? { type: 'pong', ts: Date.now() } : { type: 'pong', id: frame.id, ts: Date.now() });
        return undefined;
      case 'echo':
        // The payload serialises to its JSON form (base64 for bytes) or to protobuf bytes.
        return payload.binary ? { data: payload, encoding: 'base64' } : { data: payload };
      case 'subscribe': {
        const pattern = frame.channel;
        checkChannel(patternError(pattern, this.config.max_channel_length), 'subscribe');
        const max = this.config.max_subscriptions;
        if (max > 0 && client.subs.size >= max && !client.subs.has(pattern)) {
          throw new HubbubError(ErrorCode.RateLimited, `subscribe: this connection already has ${max} subscriptions`);
        }
        const verdict = perms.subscribe(client, pattern);
        if (verdict === 'deny') throw new HubbubError(ErrorCode.Forbidden, `subscribe: not allowed on ${pattern}`);
        if (frame.presence === true && !isWildcard(pattern) && !perms.can(client, 'presence', pattern)) {
          throw new HubbubError(ErrorCode.Forbidden, `subscribe: presence of ${pattern} is not allowed`);
        }
        const since = frame.since;
        if (since !== undefined) {
          const single = 'offset' in since || 'epoch' in since;
          if (single === isWildcard(pattern)) {
            throw new HubbubError(ErrorCode.BadRequest, single ? 'subscribe: a pattern recovers with a map of channel to position in since' : 'subscribe: a channel recovers with one position {offset, epoch} in since');
          }
        }
        const isNew = !client.subs.has(pattern);
        hub.subscribe(client, pattern, frame.presence === true, verdict === 'filter');
        // The reply goes first, then what the subscription catches up on (missed, retained), then what is newer.
        const finish = (o: SubscribeOutcome): undefined => {
          this.reply('subscribe', frame.id, o.reply);
          o.deliver();
          return undefined;
        };
        const outcome = hub.catchUp(client, pattern, since as Parameters<Hub['catchUp']>[2], (channel) => perms.can(client, 'history', channel));
        if (!(outcome instanceof Promise)) return finish(outcome);
        return outcome.then(finish, (err: unknown) => {
          if (isNew) hub.unsubscribe(client, pattern);
          throw err;
        });
      }
      case 'history': {
        checkChannel(channelNameError(frame.channel, this.config.max_channel_length), 'history');
        if (!perms.can(client, 'history', frame.channel)) throw new HubbubError(ErrorCode.Forbidden, `history: not allowed on ${frame.channel}`);
        return hub.history(frame.channel, { since: frame.since, limit: frame.limit, reverse: frame.reverse }).then((page) => {
          if (!page) throw new HubbubError(ErrorCode.NotFound, `history: channel ${frame.channel} keeps no history (its namespace has no history_size)`);
          return historyReply(page.publications, page.position);
        });
      }
      case 'ack':
        return hub.ack(client, frame.ids).then((acked) => ({ acked }));
      case 'unsubscribe': {
        checkChannel(patternError(frame.channel, this.config.max_channel_length), 'unsubscribe');
        if (!hub.unsubscribe(client, frame.channel)) {
          throw new HubbubError(ErrorCode.NotFound, `unsubscribe: not subscribed to "${frame.channel}"`);
        }
        return {};
      }
      case 'publish': {
        checkChannel(channelNameError(frame.channel, this.config.max_channel_length), 'publish');
        if (!perms.can(client, 'publish', frame.channel)) throw new HubbubError(ErrorCode.Forbidden, `publish: not allowed on ${frame.channel}`);
        return settleOutcome(hub.publish(frame.channel, payload, frame.kind ?? DEFAULT_KIND, client.info(), frame.retain === true), (o) =>
          o.offset === undefined ? {} : { offset: o.offset, epoch: o.epoch },
        );
      }
      case 'send':
        if (!this.config.allow_client_send) throw new HubbubError(ErrorCode.Forbidden, 'send: direct messages from clients are disabled on this server');
        return settleOutcome(hub.send(frame.to, payload, frame.kind ?? DEFAULT_KIND, client.info(), frame.persist === true), (o) =>
          o.id === undefined ? { delivered: o.delivered ?? 0 } : { delivered: o.delivered ?? 0, id: o.id },
        );
      case 'broadcast':
        if (!this.config.allow_client_broadcast) throw new HubbubError(ErrorCode.Forbidden, 'broadcast: broadcasts from clients are disabled on this server');
        return settle(hub.broadcast(payload, frame.kind ?? DEFAULT_KIND, client.info()), delivered);
      case 'chunk':
        return settle(this.transfers.chunk(frame, payload), delivered);
      case 'abort':
        this.transfers.cancel(frame);
        return {};
      case 'presence': {
        checkChannel(channelNameError(frame.channel, this.config.max_channel_length), 'presence');
        if (!perms.can(client, 'presence', frame.channel)) throw new HubbubError(ErrorCode.Forbidden, `presence: not allowed on ${frame.channel}`);
        return { channel: frame.channel, clients: hub.presence(frame.channel) } satisfies ReplyData['presence'];
      }
      case 'clients': {
        if (!this.config.allow_client_list) throw new HubbubError(ErrorCode.Forbidden, 'clients: listing connections is disabled on this server');
        const clients = hub.clientList();
        return { count: clients.length, clients } satisfies ReplyData['clients'];
      }
    }
  }

  /** Who may receive a new transfer: the same rules as publish (channel) or send (to). */
  private checkTransferDestination(dest: TransferDestination): void {
    if ('channel' in dest) {
      checkChannel(channelNameError(dest.channel, this.config.max_channel_length), 'chunk');
      if (!this.options.permissions.can(this.client, 'publish', dest.channel)) throw new HubbubError(ErrorCode.Forbidden, `chunk: not allowed to publish on ${dest.channel}`);
    } else if (!this.config.allow_client_send) {
      throw new HubbubError(ErrorCode.Forbidden, 'chunk: direct messages from clients are disabled on this server');
    }
  }

  // ---- authentication ---------------------------------------------------------------------------

  private helloWithToken(token: string, name: string | undefined, version: string | undefined): Promise<object> {
    const verifier = this.options.verifier;
    if (!verifier) {
      // Same outcome as any refused token: the client expected to be authenticated.
      this.refused = true;
      setImmediate(() => this.close(CloseCode.Unauthorized, 'invalid token'));
      return Promise.reject(new HubbubError(ErrorCode.Unauthorized, 'hello: this server verifies no tokens (no jwt_secret, jwt_public_key or jwks is configured)'));
    }
    this.held = [];
    return verifier.verify(token).then(
      (identity) => {
        try {
          if (this.client.authenticated && this.client.user !== identity.user) {
            throw new HubbubError(ErrorCode.Forbidden, 'hello: the token is for another user than this connection');
          }
          this.client.identified = true;
          this.authenticate(identity, { name, version });
          return this.helloReply();
        } finally {
          // Held frames are judged with the identity just established (their answers follow hello's).
          setImmediate(() => this.release());
        }
      },
      (err: unknown) => {
        // A connection that presents a bad token is closed, and what it sent meanwhile is dropped:
        // carrying on anonymously would surprise it.
        this.held = undefined;
        this.refused = true;
        setImmediate(() => this.close(CloseCode.Unauthorized, 'invalid token'));
        throw err;
      },
    );
  }

  private authenticate(identity: Identity, hello: { name?: string; version?: string } | undefined): void {
    const client = this.client;
    const wasAuthenticated = client.authenticated;
    clearTimeout(this.authTimer);
    this.authTimer = undefined;
    this.hub.identify(client, { user: identity.user, name: identity.name ?? hello?.name, version: hello?.version });
    client.authenticated = true;
    client.channels = identity.channels;
    client.claims = identity.info;
    this.scheduleExpiry(identity.expiresAt);
    if (!wasAuthenticated) {
      this.enforceUserLimit(hello !== undefined);
      this.deliverStored();
    }
  }

  /** Once the connection has a user: the user's stored direct messages, after the hello reply. */
  private deliverStored(): void {
    setImmediate(() => {
      if (this.closed) return;
      this.hub.deliverStored(this.client).catch((err: unknown) => this.log.error({ err }, 'could not deliver stored messages'));
    });
  }

  private refresh(token: string): Promise<object> {
    const verifier = this.options.verifier;
    if (!verifier) return Promise.reject(new HubbubError(ErrorCode.Unauthorized, 'refresh: this server verifies no tokens'));
    return verifier.verify(token).then((identity) => {
      if (!this.client.authenticated || this.client.user !== identity.user) {
        throw new HubbubError(ErrorCode.Forbidden, 'refresh: the token must be for the user this connection authenticated as');
      }
      this.client.channels = identity.channels;
      this.client.claims = identity.info;
      this.scheduleExpiry(identity.expiresAt);
      // The new token may grant less: subscriptions it no longer fully covers are filtered from now on.
      for (const sub of this.client.subs.values()) {
        const filtered = this.options.permissions.subscribe(this.client, sub.pattern) !== 'allow';
        if (filtered !== sub.filtered) this.hub.subscribe(this.client, sub.pattern, sub.presence, filtered);
      }
      return identity.expiresAt === undefined ? { user: identity.user } : { user: identity.user, expires_at: identity.expiresAt };
    });
  }

  private scheduleExpiry(expiresAt: number | undefined): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.client.expiresAt = expiresAt;
    if (expiresAt === undefined) return;
    const arm = (): void => {
      const left = expiresAt + this.config.jwt_clock_tolerance - Date.now();
      if (left <= 0) {
        this.close(CloseCode.TokenExpired, 'token expired');
        return;
      }
      this.expiryTimer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      this.expiryTimer.unref();
    };
    arm();
  }

  /** Close this connection if its user now has more than max_connections_per_user; `answer` also throws for the reply. */
  private enforceUserLimit(answer: boolean): void {
    const max = this.config.max_connections_per_user;
    if (max > 0 && this.client.user !== undefined && this.hub.userConnections(this.client.user) > max) {
      setImmediate(() => this.close(CloseCode.TooManyConnections, 'too many connections for this user'));
      if (answer) throw new HubbubError(ErrorCode.TooManyConnections, `user ${this.client.user} already has ${max} connections`);
    }
  }

  private helloReply(): object {
    const reply: ReplyData['hello'] = { ...this.client.info() };
    if (this.client.expiresAt !== undefined) reply.expires_at = this.client.expiresAt;
    return reply;
  }

  /** Run the frames that arrived while a token was being verified. */
  private release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const { data, binary } of held) {
      if (this.closed) return;
      this.onMessage(data, binary);
    }
  }

  // ---- limits -----------------------------------------------------------------------------------

  private rateLimited(data: Buffer, binary: boolean): void {
    // Answer with the frame's id when it has one, so that a client's request fails fast instead of timing out.
    let id: FrameId | undefined;
    if (data.length < 4096) {
      const parsed = this.codec.parse(data, binary);
      if (parsed.ok) id = parsed.frame.id;
    }
    this.error(id, ErrorCode.RateLimited, `more than ${this.config.message_rate} frames per second; slow down`);
    if (++this.refusals > Math.max(this.config.message_burst, 10)) this.close(CloseCode.RateLimited, 'rate limit exceeded');
  }

  private close(code: number, reason: string): void {
    if (this.closed) return;
    this.debug({ code, reason }, 'closing');
    this.client.transport.close(code, reason);
  }

  // ---- answers ----------------------------------------------------------------------------------

  private push(frame: ServerFrame, request?: ClientFrameType): void {
    this.hub.sendTo(this.client, new Outgoing(this.codec.encode(frame, request)));
  }

  private reply(type: ClientFrameType, id: FrameId | undefined, data: object): void {
    if (id === undefined) return;
    this.push({ type: 'reply', id, data }, type);
  }

  private error(id: FrameId | undefined, code: string, message: string): void {
    this.push(id === undefined ? { type: 'error', code, message } : { type: 'error', id, code, message });
  }

  private fail(id: FrameId | undefined, err: unknown): void {
    if (err instanceof HubbubError) {
      this.error(id, err.code, err.message);
    } else {
      this.log.error({ err }, 'request failed');
      this.error(id, ErrorCode.Internal, 'internal error');
    }
  }
}

function settleOutcome<O, T>(result: O | Promise<O>, map: (o: O) => T): T | Promise<T> {
  return result instanceof Promise ? result.then(map) : map(result);
}

/** A history reply: payloads serialise to their JSON form (or protobuf bytes), bytes marked base64 in JSON. */
function historyReply(publications: StoredPublication[], position: StreamPosition): ReplyData['history'] {
  return {
    publications: publications.map((p) => ({ offset: p.offset, data: p.payload as unknown as Data, ...(p.payload.binary && { encoding: 'base64' as const }), kind: p.kind, from: p.from, ts: p.ts })),
    offset: position.offset,
    epoch: position.epoch,
  };
}

/** Map a broker result to reply data, staying synchronous when the broker was (replies then keep request order). */
function settle<T>(result: Delivered | Promise<Delivered>, map: (n: Delivered) => T): T | Promise<T> {
  return result instanceof Promise ? result.then(map) : map(result);
}

const delivered = (n: Delivered) => ({ delivered: n ?? 0 });

function checkChannel(problem: string | undefined, type: string): void {
  if (problem) throw new HubbubError(ErrorCode.InvalidChannel, `${type}: ${problem}`);
}
