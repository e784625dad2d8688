import { matchPattern, isWildcard } from '../protocol/channel.js';
import {
  InboxFullError,
  newEpoch,
  type HistoryPage,
  type HistoryPolicy,
  type HistoryQuery,
  type InboxLimits,
  type NewPublication,
  type RetainedMessage,
  type Store,
  type StoredDirect,
  type StoredPublication,
  type StreamPosition,
} from './store.js';

interface Stream {
  epoch: string;
  top: number;
  /** Kept publications, oldest first. */
  kept: StoredPublication[];
}

/**
 * Everything in this process's memory: nothing survives a restart, and a restarted server starts
 * every stream in a new epoch (so clients know their positions are gone).
 */
export class MemoryStore implements Store {
  readonly name = 'memory';
  private readonly streams = new Map<string, Stream>();
  private readonly retainedByChannel = new Map<string, RetainedMessage>();
  private readonly inboxes = new Map<string, StoredDirect[]>();

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  private stream(channel: string): Stream {
    let s = this.streams.get(channel);
    if (!s) this.streams.set(channel, (s = { epoch: newEpoch(), top: 0, kept: [] }));
    return s;
  }

  async append(channel: string, p: NewPublication, policy: HistoryPolicy): Promise<StreamPosition> {
    const s = this.stream(channel);
    const offset = ++s.top;
    s.kept.push({ channel, offset, ...p });
    if (s.kept.length > policy.size) s.kept.splice(0, s.kept.length - policy.size);
    return { offset, epoch: s.epoch };
  }

  async history(channel: string, q: HistoryQuery, policy: HistoryPolicy): Promise<HistoryPage> {
    const s = this.stream(channel);
    const cutoff = policy.ttl > 0 ? Date.now() - policy.ttl : -Infinity;
    let kept = s.kept;
    // Trim lazily: what is over the size or older than the ttl is gone for every reader.
    const firstFresh = kept.findIndex((p) => p.ts >= cutoff);
    const drop = Math.max(kept.length - policy.size, firstFresh < 0 ? kept.length : firstFresh);
    if (drop > 0) kept = s.kept = kept.slice(drop);
    const oldest = kept.length > 0 ? kept[0]!.offset : s.top + 1;
    const after = q.since && q.since.epoch === s.epoch ? q.since.offset : 0;
    let page = kept.filter((p) => p.offset > after);
    if (q.reverse) page = page.reverse();
    return { publications: page.slice(0, q.limit), position: { offset: s.top, epoch: s.epoch }, oldest };
  }

  async retain(channel: string, message: RetainedMessage | null): Promise<void> {
    if (message) this.retainedByChannel.set(channel, message);
    else this.retainedByChannel.delete(channel);
  }

  async retained(pattern: string): Promise<RetainedMessage[]> {
    if (!isWildcard(pattern)) {
      const m = this.retainedByChannel.get(pattern);
      return m ? [m] : [];
    }
    return [...this.retainedByChannel.values()].filter((m) => matchPattern(pattern, m.channel));
  }

  async storeDirect(message: StoredDirect, limits: InboxLimits): Promise<void> {
    const box = this.live(message.user, limits);
    if (limits.count > 0 && box.length >= limits.count) throw new InboxFullError(`user ${message.user} already has ${limits.count} stored messages`);
    const bytes = box.reduce((n, m) => n + m.payload.size, 0);
    if (limits.bytes > 0 && bytes + message.payload.size > limits.bytes) throw new InboxFullError(`user ${message.user}'s stored messages would exceed ${limits.bytes} bytes`);
    box.push(message);
    this.inboxes.set(message.user, box);
  }

  async pendingDirect(user: string, limits: InboxLimits): Promise<StoredDirect[]> {
    return [...this.live(user, limits)];
  }

  async ackDirect(user: string, ids: string[]): Promise<number> {
    const box = this.inboxes.get(user);
    if (!box) return 0;
    const gone = new Set(ids);
    const left = box.filter((m) => !gone.has(m.id));
    if (left.length === 0) this.inboxes.delete(user);
    else this.inboxes.set(user, left);
    return box.length - left.length;
  }

  /** A user's messages without the expired ones. */
  private live(user: string, limits: InboxLimits): StoredDirect[] {
    const box = this.inboxes.get(user) ?? [];
    if (limits.ttl <= 0) return box;
    const cutoff = Date.now() - limits.ttl;
    const fresh = box.filter((m) => m.ts >= cutoff);
    if (fresh.length !== box.length) this.inboxes.set(user, fresh);
    return fresh;
  }
}
