import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import type { Broker, BrokerMessage, Delivered, RelayedChunk, TransferDestination } from '../engine/broker.js';
import { InboxFullError, type HistoryPolicy, type InboxLimits, type Store, type StoredPublication, type StreamPosition } from '../engine/store.js';
import { CloseCode, ErrorCode, HubbubError } from '../protocol/errors.js';
import type { ClientInfo, ClientListEntry, DirectTarget, Sender } from '../protocol/frames.js';
import { isWildcard, matchPattern } from '../protocol/channel.js';
import { MAX_HISTORY_LIMIT } from '../protocol/json-codec.js';
import type { Payload } from '../protocol/payload.js';
import type { Outgoing } from '../transport/outgoing.js';
import { Client, type Subscription } from './client.js';
import { TopicTrie, type TrieNode } from './topic-trie.js';
import { chunkPush, directPush, presencePush, Push, PublicationPushes } from './encode.js';

export interface HubOptions {
  broker: Broker;
  logger: Logger;
  /** Heartbeat period in ms: the server pings every client this often. */
  heartbeatMs: number;
  /** Read permission for filtered (wildcard) subscriptions: may this client receive a publication on this channel? */
  canRead?: (client: Client, channel: string) => boolean;
  /** Durable state: history, retained and stored direct messages. Without it those features are off. */
  store?: Store;
  /** The history a channel keeps (from its namespace rule); undefined: none. */
  historyOf?: (channel: string) => HistoryPolicy | undefined;
  /** Per-user bounds on stored direct messages. */
  inbox?: InboxLimits;
}

/** What a publish did: the deliveries on this node, and the publication's place in the stream (channels with history). */
export interface PublishOutcome {
  delivered: Delivered;
  offset?: number;
  epoch?: string;
}

/** The answer to a subscribe, and the deliveries that must follow it (missed and retained messages). */
export interface SubscribeOutcome {
  reply: { recovered?: boolean; offset?: number; epoch?: string; positions?: Record<string, StreamPosition> };
  /** Send what the subscription catches up on, then what was held meanwhile; call right after the reply. */
  deliver(): void;
}

/** A publication waiting, in publish order, for its store to finish before delivery. */
interface DurableDelivery {
  ready: boolean;
  error?: unknown;
  message: Extract<BrokerMessage, { type: 'publication' }>;
  resolve: (o: PublishOutcome) => void;
  reject: (err: unknown) => void;
  /** Called once this entry has left the queue. */
  after?: (() => void)[];
}

const DEFAULT_INBOX: InboxLimits = { count: 1000, bytes: 4 * 1024 * 1024, ttl: 7 * 86_400_000 }; // the config defaults

export interface HubStats {
  connections: number;
  /** Exact channel names with subscribers. */
  channels: number;
  /** Wildcard patterns with subscribers. */
  patterns: number;
  subscriptions: number;
  users: number;
  messages_in: number;
  messages_out: number;
  bytes_in: number;
  bytes_out: number;
  publications: number;
}

/** How long a heartbeat-timed-out client gets to take its close frame before the socket is dropped. */
const CLOSE_GRACE_MS = 1000;

/**
 * The hub owns this node's connections, their subscriptions (in a topic trie) and presence, and
 * routes every message that the broker brings to the connections it concerns. Operations that
 * concern other nodes too (publish, broadcast, direct, join/leave, disconnect) go out through the
 * broker and come back in through `deliver`, on this node and every other.
 */
export class Hub {
  readonly clients = new Map<string, Client>();
  private readonly users = new Map<string, Set<Client>>();
  private readonly trie = new TopicTrie<Client, Subscription>();
  /** Per exact channel, the members that asked for join/leave events: kept apart so that a join costs O(watchers), not O(members). */
  private readonly watchers = new Map<string, Set<Client>>();
  private readonly broker: Broker;
  private readonly logger: Logger;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sweeps = 0;
  private publicationSeq = 0;
  /** Subscriptions whose deliveries are checked one by one; while there are none, the hot path skips the check. */
  private filteredSubs = 0;
  private readonly matched: TrieNode<Client, Subscription>[] = [];
  private readonly collect = (node: TrieNode<Client, Subscription>): void => {
    this.matched.push(node);
  };
  readonly counters = { messages_in: 0, messages_out: 0, bytes_in: 0, bytes_out: 0, publications: 0 };
  /** Durable publications whose delivery waits for their store: later ones queue behind, to keep order. */
  private readonly durable: DurableDelivery[] = [];
  readonly startedAt = Date.now();

  constructor(private readonly options: HubOptions) {
    this.broker = options.broker;
    this.logger = options.logger;
  }

  get brokerName(): string {
    return this.broker.name;
  }

  async start(): Promise<void> {
    await this.broker.start((m) => this.deliver(m));
    // Sweep at half the heartbeat: ping every other sweep, and close a client that has been silent
    // for four sweeps, i.e. about two heartbeat periods.
    const every = Math.max(50, Math.floor(this.options.heartbeatMs / 2));
    this.heartbeatTimer = setInterval(() => this.sweep(), every);
    this.heartbeatTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    await this.broker.close();
  }

  // ---- connections ---------------------------------------------------------------------------

  add(client: Client): void {
    this.clients.set(client.id, client);
  }

  /** Number of this node's connections of a user. */
  userConnections(user: string): number {
    return this.users.get(user)?.size ?? 0;
  }

  /** Record the identity (from `hello` or a token) and index the client by user. */
  identify(client: Client, fields: { user?: string; name?: string; version?: string }): void {
    if (client.user !== undefined && client.user !== fields.user) {
      const set = this.users.get(client.user);
      set?.delete(client);
      if (set?.size === 0) this.users.delete(client.user);
    }
    client.identify(fields);
    if (client.user !== undefined) {
      let set = this.users.get(client.user);
      if (!set) this.users.set(client.user, (set = new Set()));
      set.add(client);
    }
  }

  /** Forget a client whose transport has closed: its subscriptions end and its presence leaves. */
  remove(client: Client): void {
    if (!this.clients.delete(client.id)) return;
    for (const sub of client.subs.values()) this.dropSubscription(client, sub);
    client.subs.clear();
    if (client.user !== undefined) {
      const set = this.users.get(client.user);
      set?.delete(client);
      if (set?.size === 0) this.users.delete(client.user);
    }
  }

  // ---- subscriptions -------------------------------------------------------------------------

  /** Subscribe (or update the presence flag of an existing subscription). Pattern already validated. */
  subscribe(client: Client, pattern: string, presence: boolean, filtered = false): void {
    const exact = !isWildcard(pattern);
    const existing = client.subs.get(pattern);
    if (existing) {
      if (existing.filtered !== filtered) this.filteredSubs += filtered ? 1 : -1;
      existing.filtered = filtered;
      this.setWatching(client, pattern, (existing.presence = presence && exact));
      return;
    }
    const sub: Subscription = { pattern, presence: presence && exact, filtered };
    if (filtered) this.filteredSubs++;
    client.subs.set(pattern, sub);
    this.trie.add(pattern, client, sub);
    if (exact) {
      this.setWatching(client, pattern, sub.presence);
      this.announce('join', pattern, client.info());
    }
  }

  private setWatching(client: Client, channel: string, on: boolean): void {
    let set = this.watchers.get(channel);
    if (on) {
      if (!set) this.watchers.set(channel, (set = new Set()));
      set.add(client);
    } else if (set?.delete(client) && set.size === 0) {
      this.watchers.delete(channel);
    }
  }

  /** Returns false when the client had no subscription to exactly this pattern. */
  unsubscribe(client: Client, pattern: string): boolean {
    const sub = client.subs.get(pattern);
    if (!sub) return false;
    client.subs.delete(pattern);
    this.dropSubscription(client, sub);
    return true;
  }

  private dropSubscription(client: Client, sub: Subscription): void {
    const pattern = sub.pattern;
    if (sub.filtered) this.filteredSubs--;
    this.trie.remove(pattern, client);
    if (!isWildcard(pattern)) {
      this.setWatching(client, pattern, false);
      this.announce('leave', pattern, client.info());
    }
  }

  private announce(type: 'join' | 'leave', channel: string, client: ClientInfo): void {
    const warn = (err: unknown) => this.logger.warn({ err, channel }, `could not announce ${type}`);
    try {
      const result = this.broker.publish({ type, channel, client });
      if (result instanceof Promise) result.catch(warn);
    } catch (err) {
      warn(err);
    }
  }

  // ---- operations (from clients and from the HTTP API) ----------------------------------------

  /**
   * Publish to a channel. On a channel with history (or with `retain`) the publication is stored
   * first and delivered once stored, with its offset; the outcome resolves then. Publications are
   * delivered in the order publish was called, also when only some of them are stored.
   */
  publish(channel: string, payload: Payload, kind: string, from: Sender, retain = false): PublishOutcome | Promise<PublishOutcome> {
    const ts = Date.now();
    const store = this.options.store;
    const policy = store ? this.options.historyOf?.(channel) : undefined;
    if (!store || (!policy && !retain)) {
      if (this.durable.length === 0) return settle(this.broker.publish({ type: 'publication', channel, payload, kind, from, ts }), (delivered) => ({ delivered }));
      return this.enqueue(undefined, { type: 'publication', channel, payload, kind, from, ts });
    }
    // Started now, so that appends of one turn share one write; delivered in publish order.
    const stored: Promise<StreamPosition | undefined> = retain
      ? (async () => {
          const pos = policy ? await store.append(channel, { payload, kind, from, ts }, policy) : undefined;
          await store.retain(channel, isNull(payload) ? null : { channel, offset: pos?.offset ?? 0, ...(pos && { epoch: pos.epoch }), payload, kind, from, ts });
          return pos;
        })()
      : store.append(channel, { payload, kind, from, ts }, policy!);
    return this.enqueue(stored, { type: 'publication', channel, payload, kind, from, ts });
  }

  /**
   * Queue a publication behind those still being stored: the queue is delivered from its head as
   * entries become ready, so deliveries keep publish order whatever order the stores finish in.
   */
  private enqueue(stored: Promise<StreamPosition | undefined> | undefined, message: Extract<BrokerMessage, { type: 'publication' }>): Promise<PublishOutcome> {
    return new Promise<PublishOutcome>((resolve, reject) => {
      const entry: DurableDelivery = { ready: stored === undefined, message, resolve, reject };
      this.durable.push(entry);
      if (stored === undefined) {
        this.drain();
        return;
      }
      stored.then(
        (pos) => {
          if (pos) {
            message.offset = pos.offset;
            message.epoch = pos.epoch;
          }
          entry.ready = true;
          this.drain();
        },
        (err: unknown) => {
          entry.error = err;
          entry.ready = true;
          this.drain();
        },
      );
    });
  }

  private drain(): void {
    const q = this.durable;
    while (q.length > 0 && q[0]!.ready) {
      const e = q.shift()!;
      if (e.error !== undefined) {
        e.reject(e.error);
      } else {
        const m = e.message;
        try {
          const delivered = this.broker.publish(m);
          const outcome = (n: Delivered): PublishOutcome => (m.offset === undefined ? { delivered: n } : { delivered: n, offset: m.offset, epoch: m.epoch });
          if (delivered instanceof Promise) delivered.then((n) => e.resolve(outcome(n)), e.reject);
          else e.resolve(outcome(delivered));
        } catch (err) {
          e.reject(err);
        }
      }
      if (e.after) for (const wake of e.after) wake();
    }
  }

  /** Resolves once every publication queued so far has been handed to the broker. */
  private whenDrained(): Promise<void> {
    const last = this.durable[this.durable.length - 1];
    if (!last) return Promise.resolve();
    return new Promise((resolve) => (last.after ??= []).push(resolve));
  }

  /** Retained message of a channel (HTTP API). */
  async retainedOf(channel: string): Promise<StoredPublication | undefined> {
    const store = this.requireStore();
    return (await store.retained(channel))[0];
  }

  async clearRetained(channel: string): Promise<boolean> {
    const store = this.requireStore();
    const had = (await store.retained(channel)).length > 0;
    await store.retain(channel, null);
    return had;
  }

  /** A page of a channel's history; undefined when the channel keeps none. */
  async history(channel: string, query: { since?: StreamPosition; limit?: number; reverse?: boolean }): Promise<{ publications: StoredPublication[]; position: StreamPosition } | undefined> {
    const policy = this.options.historyOf?.(channel);
    const store = this.options.store;
    if (!policy || !store) return undefined;
    // One page is at most MAX_HISTORY_LIMIT publications, whatever history_size is (page further with since).
    const page = await store.history(channel, { since: query.since, limit: Math.min(query.limit ?? policy.size, policy.size, MAX_HISTORY_LIMIT), reverse: query.reverse }, policy);
    return { publications: page.publications, position: page.position };
  }

  private requireStore(): Store {
    if (!this.options.store) throw new HubbubError(ErrorCode.Unavailable, 'this server has no storage engine');
    return this.options.store;
  }

  broadcast(payload: Payload, kind: string, from: Sender): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'broadcast', payload, kind, from, ts: Date.now() });
  }

  /**
   * A direct message. With `persist` (to a user) it is stored first, until one of the user's
   * connections acknowledges it, and carries an id.
   */
  send(to: DirectTarget, payload: Payload, kind: string, from: Sender, persist = false): { delivered: Delivered; id?: string } | Promise<{ delivered: Delivered; id?: string }> {
    const ts = Date.now();
    if (!persist) return settle(this.broker.publish({ type: 'direct', to, payload, kind, from, ts }), (delivered) => ({ delivered }));
    if (!('user' in to)) throw new HubbubError(ErrorCode.BadRequest, 'send: persist needs a user target');
    const store = this.requireStore();
    const id = randomUUID();
    return store.storeDirect({ id, user: to.user, payload, kind, from, ts }, this.inbox).then(
      async () => ({ delivered: await this.broker.publish({ type: 'direct', to, payload, kind, from, ts, id }), id }),
      (err: unknown) => {
        if (err instanceof InboxFullError) throw new HubbubError(ErrorCode.QuotaExceeded, `send: ${err.message}`);
        throw err;
      },
    );
  }

  private get inbox(): InboxLimits {
    return this.options.inbox ?? DEFAULT_INBOX;
  }

  /** Send a user's stored direct messages to one of their connections, oldest first (on connect). */
  async deliverStored(client: Client): Promise<number> {
    const store = this.options.store;
    if (!store || client.user === undefined) return 0;
    const pending = await store.pendingDirect(client.user, this.inbox);
    let n = 0;
    for (const m of pending) if (this.sendPush(client, directPush('direct', m.payload, m.kind, m.from, m.ts, { id: m.id, stored: true }))) n++;
    return n;
  }

  /** A connection acknowledges stored messages of its user. */
  ack(client: Client, ids: string[]): Promise<number> {
    if (client.user === undefined) throw new HubbubError(ErrorCode.Forbidden, 'ack: stored messages belong to users; this connection has no user id');
    return this.requireStore().ackDirect(client.user, ids);
  }

  // ---- recovery ---------------------------------------------------------------------------------

  /**
   * After a subscription is added: its position, recovery from `since`, and its retained messages.
   * Deliveries to the client are held until `deliver()` of the outcome, so that the reply comes
   * first, then missed publications in order, then retained messages, then anything newer.
   */
  catchUp(
    client: Client,
    pattern: string,
    since: StreamPosition | Record<string, StreamPosition> | undefined,
    /** Replaying missed publications reads history: may this client read this channel's? */
    mayReplay: (channel: string) => boolean = () => true,
  ): SubscribeOutcome | Promise<SubscribeOutcome> {
    const store = this.options.store;
    if (!store) return { reply: since ? { recovered: false } : {}, deliver: () => {} };
    this.hold(client);
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        this.release(client);
      }
    };
    return this.collectCatchUp(client, store, pattern, since, mayReplay).then(
      ({ reply, frames }) => ({
        reply,
        deliver: () => {
          for (const f of frames) this.sendPush(client, f);
          release();
        },
      }),
      (err: unknown) => {
        release();
        throw err;
      },
    );
  }

  private async collectCatchUp(
    client: Client,
    store: Store,
    pattern: string,
    since: StreamPosition | Record<string, StreamPosition> | undefined,
    mayReplay: (channel: string) => boolean,
  ): Promise<{ reply: SubscribeOutcome['reply']; frames: Push[] }> {
    const reply: SubscribeOutcome['reply'] = {};
    const frames: Push[] = [];
    const recovered = new Set<string>();
    const canRead = (channel: string): boolean => {
      const sub = client.subs.get(pattern);
      return !sub?.filtered || !this.options.canRead || this.options.canRead(client, channel);
    };
    const recover = async (channel: string, from: StreamPosition | undefined): Promise<{ ok: boolean; position?: StreamPosition }> => {
      const policy = this.options.historyOf?.(channel);
      if (!policy) return { ok: false };
      const page = await store.history(channel, { since: from, limit: policy.size }, policy);
      // Without the `history` right, since would be a way around it: report the position, replay nothing.
      if (!from || !mayReplay(channel)) return { ok: false, position: page.position };
      const p = page.position;
      // Every publication after `from` must still be kept, in the same epoch.
      const ok = from.epoch === p.epoch && from.offset <= p.offset && from.offset >= page.oldest - 1;
      if (ok) {
        for (const pub of page.publications) frames.push(new PublicationPushes(channel, pub.payload, pub.kind, pub.from, pub.ts, { offset: pub.offset, epoch: p.epoch }).forPattern(pattern));
        (client.recoveredTo ??= new Map()).set(channel, p.offset);
        recovered.add(channel);
      }
      return { ok, position: p };
    };
    if (!isWildcard(pattern)) {
      const r = await recover(pattern, since as StreamPosition | undefined);
      if (r.position) {
        reply.offset = r.position.offset;
        reply.epoch = r.position.epoch;
      }
      if (since) reply.recovered = r.ok;
    } else if (since) {
      const positions: Record<string, StreamPosition> = {};
      let all = true;
      for (const [channel, from] of Object.entries(since as Record<string, StreamPosition>)) {
        if (!matchPattern(pattern, channel) || isWildcard(channel) || !canRead(channel)) {
          all = false;
          continue;
        }
        const r = await recover(channel, from);
        if (r.position) positions[channel] = r.position;
        all &&= r.ok;
      }
      reply.recovered = all;
      reply.positions = positions;
    }
    // Publications already stored (so in the pages just read) may still wait in the durable chain for
    // their delivery: let them reach the client while it is held, where release() drops those a
    // recovery sent, rather than after the release, as duplicates.
    if (recovered.size > 0 && this.durable.length > 0) await this.whenDrained();
    // A recovered channel's state is already known to the client: its retained message is not repeated.
    for (const m of await store.retained(pattern)) {
      if (recovered.has(m.channel) || !canRead(m.channel)) continue;
      frames.push(new PublicationPushes(m.channel, m.payload, m.kind, m.from, m.ts, { ...(m.epoch !== undefined && { offset: m.offset, epoch: m.epoch }), retained: true }).forPattern(pattern));
    }
    return { reply, frames };
  }

  private hold(client: Client): void {
    client.holds++;
    client.held ??= [];
  }

  /** End one hold; the last one sends what was held, except publications a recovery already sent. */
  private release(client: Client): void {
    if (--client.holds > 0) return;
    const held = client.held ?? [];
    const upTo = client.recoveredTo;
    client.held = undefined;
    client.recoveredTo = undefined;
    for (const h of held) {
      if (upTo && h.channel !== undefined && h.offset !== undefined && h.offset <= (upTo.get(h.channel) ?? -1)) continue;
      if (client.transport.send(h.frame)) {
        this.counters.messages_out++;
        this.counters.bytes_out += h.frame.size;
      }
    }
  }

  /** Relay one checked transfer chunk to the transfer's receivers. */
  relayChunk(dest: TransferDestination, chunk: RelayedChunk, payload: Payload): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'chunk', dest, chunk, payload });
  }

  /** Tell a transfer's receivers that it ended without its last chunk. */
  abortTransfer(dest: TransferDestination, transfer: string, code: string, message: string, from: Sender): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'abort', dest, transfer, code, message, from });
  }

  disconnect(target: DirectTarget, code: number, reason: string): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'disconnect', target, code, reason });
  }

  // ---- queries ---------------------------------------------------------------------------------

  /** Members of a channel: clients subscribed to exactly that name. */
  presence(channel: string): ClientListEntry[] {
    const node = this.trie.find(channel);
    return node ? [...node.subs.keys()].map((c) => c.listEntry()) : [];
  }

  clientList(): ClientListEntry[] {
    return [...this.clients.values()].map((c) => c.listEntry());
  }

  /** Subscriber count per exact channel, and per wildcard pattern. */
  channelCounts(): { channels: Record<string, number>; patterns: Record<string, number> } {
    const channels: Record<string, number> = {};
    const patterns: Record<string, number> = {};
    for (const node of this.trie.nodes()) {
      (isWildcard(node.pattern) ? patterns : channels)[node.pattern] = node.subs.size;
    }
    return { channels, patterns };
  }

  stats(): HubStats {
    const { channels, patterns } = this.channelCounts();
    return {
      connections: this.clients.size,
      channels: Object.keys(channels).length,
      patterns: Object.keys(patterns).length,
      subscriptions: this.trie.subscriptionCount,
      users: this.users.size,
      ...this.counters,
    };
  }

  // ---- delivery -------------------------------------------------------------------------------

  /** Send one frame to one client, counting it (never held: used for answers and catch-up). */
  sendPush(client: Client, push: Push): boolean {
    return this.sendTo(client, push.for(client));
  }

  /** Send one frame to one client, counting it. */
  sendTo(client: Client, frame: Outgoing): boolean {
    if (!client.transport.send(frame)) return false;
    this.counters.messages_out++;
    this.counters.bytes_out += frame.size;
    return true;
  }

  /** Deliver a message from the broker to this node's connections; returns how many got it. */
  deliver(m: BrokerMessage): number {
    switch (m.type) {
      case 'publication': {
        this.counters.publications++;
        const pushes = new PublicationPushes(m.channel, m.payload, m.kind, m.from, m.ts, m.offset === undefined ? undefined : { offset: m.offset, epoch: m.epoch });
        return this.deliverToChannel(m.channel, (pattern) => pushes.forPattern(pattern), m.offset);
      }
      case 'broadcast':
        return this.deliverToAll(directPush('broadcast', m.payload, m.kind, m.from, m.ts), this.clients.values());
      case 'direct':
        return this.deliverToAll(directPush('direct', m.payload, m.kind, m.from, m.ts, m.id === undefined ? undefined : { id: m.id }), this.targets(m.to));
      case 'chunk': {
        const { dest, chunk, payload } = m;
        if ('to' in dest) return this.deliverToAll(chunkPush(chunk, undefined, undefined, payload), this.targets(dest.to));
        return this.deliverToChannel(dest.channel, (pattern) => chunkPush(chunk, dest.channel, pattern, payload));
      }
      case 'abort': {
        const frame = { type: 'abort' as const, transfer: m.transfer, code: m.code, message: m.message, from: m.from };
        if ('to' in m.dest) return this.deliverToAll(Push.of(frame), this.targets(m.dest.to));
        const push = Push.of({ ...frame, channel: m.dest.channel });
        return this.deliverToChannel(m.dest.channel, () => push);
      }
      case 'join':
      case 'leave':
        return this.deliverPresenceEvent(m.type, m.channel, m.client);
      case 'disconnect': {
        let n = 0;
        for (const client of this.targets(m.target)) {
          client.transport.close(m.code, m.reason);
          n++;
        }
        return n;
      }
    }
  }

  private *targets(to: DirectTarget): Iterable<Client> {
    if ('client' in to) {
      const c = this.clients.get(to.client);
      if (c) yield c;
    } else {
      const set = this.users.get(to.user);
      if (set) yield* [...set];
    }
  }

  private deliverToAll(push: Push, clients: Iterable<Client>): number {
    let n = 0;
    let bytes = 0;
    for (const client of clients) {
      const frame = push.for(client);
      if (client.held !== undefined) {
        client.held.push({ frame });
        n++;
        continue;
      }
      if (client.transport.send(frame)) {
        n++;
        bytes += frame.size;
      }
    }
    this.counters.messages_out += n;
    this.counters.bytes_out += bytes;
    return n;
  }

  // The fan-out hot path: one trie walk, and per matching pattern one frame per encoding in use (the
  // `pattern` field differs between patterns), the same bytes written to every subscriber of it.
  private deliverToChannel(channel: string, pushFor: (pattern: string) => Push, offset?: number): number {
    const matched = this.matched;
    matched.length = 0;
    this.trie.match(channel, this.collect);
    if (matched.length === 0) return 0;
    // With several matching patterns one client may hold more than one of them: send one copy.
    const dedupe = matched.length > 1;
    const seq = ++this.publicationSeq;
    const canRead = this.filteredSubs === 0 ? undefined : this.options.canRead;
    let n = 0;
    let bytes = 0;
    for (let i = 0; i < matched.length; i++) {
      const node = matched[i]!;
      const push = pushFor(node.pattern);
      const subs = node.subs;
      // Two loops so that the common case (no filtered subscription anywhere) walks keys only,
      // without allocating an entry per subscriber.
      if (canRead === undefined) {
        for (const client of subs.keys()) {
          if (dedupe) {
            if (client.lastPublication === seq) continue;
            client.lastPublication = seq;
          }
          const frame = push.for(client);
          if (client.held !== undefined) {
            client.held.push({ frame, channel, offset });
            n++;
          } else if (client.transport.send(frame)) {
            n++;
            bytes += frame.size;
          }
        }
      } else {
        for (const [client, sub] of subs) {
          if (sub.filtered && !canRead(client, channel)) continue;
          if (dedupe) {
            if (client.lastPublication === seq) continue;
            client.lastPublication = seq;
          }
          const frame = push.for(client);
          if (client.held !== undefined) {
            client.held.push({ frame, channel, offset });
            n++;
          } else if (client.transport.send(frame)) {
            n++;
            bytes += frame.size;
          }
        }
      }
    }
    matched.length = 0;
    this.counters.messages_out += n;
    this.counters.bytes_out += bytes;
    return n;
  }

  private deliverPresenceEvent(type: 'join' | 'leave', channel: string, subject: ClientInfo): number {
    const watchers = this.watchers.get(channel);
    if (!watchers) return 0;
    let push: Push | undefined;
    let n = 0;
    for (const client of watchers) {
      if (client.id === subject.client) continue;
      push ??= presencePush(type, channel, subject);
      if (client.held !== undefined) {
        client.held.push({ frame: push.for(client) });
        n++;
      } else if (this.sendPush(client, push)) n++;
    }
    return n;
  }

  // ---- heartbeat ------------------------------------------------------------------------------

  private sweep(): void {
    const ping = this.sweeps++ % 2 === 0;
    for (const client of this.clients.values()) {
      if (client.seen) {
        client.seen = false;
        client.silentSweeps = 0;
      } else if (++client.silentSweeps >= 4) {
        this.logger.debug({ client: client.id }, 'heartbeat timeout');
        client.transport.close(CloseCode.HeartbeatTimeout, 'heartbeat timeout');
        const t = client.transport;
        setTimeout(() => t.terminate(), CLOSE_GRACE_MS).unref();
        continue;
      }
      if (ping) client.transport.ping();
    }
  }
}

/** Map a broker result, staying synchronous when it is (the in-memory broker keeps replies in request order). */
function settle<T>(result: Delivered | Promise<Delivered>, map: (n: Delivered) => T): T | Promise<T> {
  return result instanceof Promise ? result.then(map) : map(result);
}

/** A JSON null payload: publishing it with retain clears the retained message. */
function isNull(payload: Payload): boolean {
  return !payload.binary && payload.jsonData() === 'null';
}
