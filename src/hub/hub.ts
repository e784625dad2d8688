import type { Logger } from 'pino';
import type { Broker, BrokerMessage, Delivered } from '../engine/broker.js';
import { CloseCode } from '../protocol/errors.js';
import type { ClientInfo, ClientListEntry, DirectTarget, Json, Sender } from '../protocol/frames.js';
import { isWildcard } from '../protocol/channel.js';
import { Outgoing } from '../transport/outgoing.js';
import { Client, type Subscription } from './client.js';
import { TopicTrie, type TrieNode } from './topic-trie.js';
import { encodeMessageHead, encodeMessageTail, encodePresenceEvent, encodePush } from './encode.js';

export interface HubOptions {
  broker: Broker;
  logger: Logger;
  /** Heartbeat period in ms: the server pings every client this often. */
  heartbeatMs: number;
  /** Read permission for filtered (wildcard) subscriptions: may this client receive a publication on this channel? */
  canRead?: (client: Client, channel: string) => boolean;
}

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

  publish(channel: string, data: Json, kind: string, from: Sender): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'publication', channel, data, kind, from, ts: Date.now() });
  }

  broadcast(data: Json, kind: string, from: Sender): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'broadcast', data, kind, from, ts: Date.now() });
  }

  send(to: DirectTarget, data: Json, kind: string, from: Sender): Delivered | Promise<Delivered> {
    return this.broker.publish({ type: 'direct', to, data, kind, from, ts: Date.now() });
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
      case 'publication':
        return this.deliverPublication(m);
      case 'broadcast':
        return this.deliverToAll(new Outgoing(encodePush('broadcast', m.data, m.kind, m.from, m.ts)), this.clients.values());
      case 'direct':
        return this.deliverToAll(new Outgoing(encodePush('direct', m.data, m.kind, m.from, m.ts)), this.targets(m.to));
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

  private deliverToAll(frame: Outgoing, clients: Iterable<Client>): number {
    let n = 0;
    for (const client of clients) if (client.transport.send(frame)) n++;
    this.counters.messages_out += n;
    this.counters.bytes_out += n * frame.size;
    return n;
  }

  // The fan-out hot path: one trie walk, one JSON encoding of the payload, one frame per matching
  // pattern (the `pattern` field differs), the same bytes written to every subscriber of it.
  private deliverPublication(p: Extract<BrokerMessage, { type: 'publication' }>): number {
    this.counters.publications++;
    const matched = this.matched;
    matched.length = 0;
    this.trie.match(p.channel, this.collect);
    if (matched.length === 0) return 0;
    const head = encodeMessageHead(p.channel);
    const tail = encodeMessageTail(p.data, p.kind, p.from, p.ts);
    // With several matching patterns one client may hold more than one of them: send one copy.
    const dedupe = matched.length > 1;
    const seq = ++this.publicationSeq;
    let n = 0;
    let bytes = 0;
    for (let i = 0; i < matched.length; i++) {
      const node = matched[i]!;
      const frame = new Outgoing(head + JSON.stringify(node.pattern) + tail);
      let sent = 0;
      if (this.filteredSubs === 0) {
        for (const client of node.subs.keys()) {
          if (dedupe) {
            if (client.lastPublication === seq) continue;
            client.lastPublication = seq;
          }
          if (client.transport.send(frame)) sent++;
        }
      } else {
        const canRead = this.options.canRead;
        for (const [client, sub] of node.subs) {
          if (sub.filtered && canRead && !canRead(client, p.channel)) continue;
          if (dedupe) {
            if (client.lastPublication === seq) continue;
            client.lastPublication = seq;
          }
          if (client.transport.send(frame)) sent++;
        }
      }
      n += sent;
      if (sent > 0) bytes += sent * frame.size;
    }
    matched.length = 0;
    this.counters.messages_out += n;
    this.counters.bytes_out += bytes;
    return n;
  }

  private deliverPresenceEvent(type: 'join' | 'leave', channel: string, subject: ClientInfo): number {
    const watchers = this.watchers.get(channel);
    if (!watchers) return 0;
    let frame: Outgoing | undefined;
    let n = 0;
    for (const client of watchers) {
      if (client.id === subject.client) continue;
      frame ??= new Outgoing(encodePresenceEvent(type, channel, subject));
      if (this.sendTo(client, frame)) n++;
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
