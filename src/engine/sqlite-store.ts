import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isWildcard, matchPattern } from '../protocol/channel.js';
import type { Sender } from '../protocol/frames.js';
import { Payload } from '../protocol/payload.js';
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

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (channel TEXT PRIMARY KEY, epoch TEXT NOT NULL, top INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS publications (
  channel TEXT NOT NULL, offset INTEGER NOT NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL,
  sender TEXT NOT NULL, binary INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (channel, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained (
  channel TEXT PRIMARY KEY, offset INTEGER NOT NULL, epoch TEXT, ts INTEGER NOT NULL, kind TEXT NOT NULL,
  sender TEXT NOT NULL, binary INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, user TEXT NOT NULL, ts INTEGER NOT NULL,
  kind TEXT NOT NULL, sender TEXT NOT NULL, binary INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_user ON inbox (user, seq);
`;

interface Row {
  channel: string;
  offset: number;
  ts: number;
  kind: string;
  sender: string;
  binary: number;
  data: Buffer;
}

interface PendingAppend {
  channel: string;
  offset: number;
  epoch: string;
  publication: NewPublication;
  policy: HistoryPolicy;
  resolve: (p: StreamPosition) => void;
  reject: (err: unknown) => void;
}

export class StoreOpenError extends Error {
  override name = 'StoreOpenError';
}

/**
 * The embedded default: one SQLite file (WAL mode) through better-sqlite3. Appends are batched: all
 * publications appended during one turn of the event loop are written in one transaction, and
 * their promises resolve once it has committed. Offsets are given out at append time from the
 * streams cached in memory, so they stay in order within a batch.
 *
 * Durability: committed transactions survive a crash of the process (SIGKILL included). With
 * synchronous=NORMAL in WAL mode, the last transactions before a power loss or an OS crash may be
 * lost; that is the usual trade for not waiting on fsync at every commit.
 */
export class SqliteStore implements Store {
  readonly name = 'sqlite';
  private db!: Database.Database;
  private readonly streams = new Map<string, { epoch: string; top: number }>();
  private batch: PendingAppend[] = [];
  private flushScheduled = false;
  private statements!: ReturnType<SqliteStore['prepare']>;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(readonly file: string) {}

  async open(): Promise<void> {
    try {
      if (this.file !== ':memory:') mkdirSync(dirname(this.file), { recursive: true });
      this.db = new Database(this.file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      // Fails on a file that is not a database or is damaged, instead of the first query failing later.
      const check = this.db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`integrity check failed: ${String(check)}`);
      this.db.exec(SCHEMA);
      const version = this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get('schema_version') as string | undefined;
      if (version === undefined) this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
      else if (Number(version) > SCHEMA_VERSION) throw new Error(`schema version ${version} is newer than this server's ${SCHEMA_VERSION}`);
    } catch (err) {
      try {
        this.db?.close();
      } catch {
        /* already unusable */
      }
      throw new StoreOpenError(`cannot open the database ${this.file}: ${(err as Error).message}. Move the file away to start with an empty store, or restore it from a backup.`);
    }
    this.statements = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      stream: db.prepare<[string], { epoch: string; top: number }>('SELECT epoch, top FROM streams WHERE channel = ?'),
      upsertStream: db.prepare('INSERT INTO streams (channel, epoch, top) VALUES (?, ?, ?) ON CONFLICT(channel) DO UPDATE SET top = excluded.top'),
      insertPub: db.prepare('INSERT INTO publications (channel, offset, ts, kind, sender, binary, data) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      trimSize: db.prepare('DELETE FROM publications WHERE channel = ? AND offset <= ?'),
      trimAge: db.prepare('DELETE FROM publications WHERE channel = ? AND ts < ?'),
      oldest: db.prepare<[string], { offset: number }>('SELECT offset FROM publications WHERE channel = ? ORDER BY offset LIMIT 1'),
      page: db.prepare<[string, number, number, number], Row>('SELECT channel, offset, ts, kind, sender, binary, data FROM publications WHERE channel = ? AND offset > ? AND ts >= ? ORDER BY offset LIMIT ?'),
      pageReverse: db.prepare<[string, number, number, number], Row>('SELECT channel, offset, ts, kind, sender, binary, data FROM publications WHERE channel = ? AND offset > ? AND ts >= ? ORDER BY offset DESC LIMIT ?'),
      setRetained: db.prepare('INSERT OR REPLACE INTO retained (channel, offset, epoch, ts, kind, sender, binary, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      clearRetained: db.prepare('DELETE FROM retained WHERE channel = ?'),
      retainedOne: db.prepare<[string], Row & { epoch: string | null }>('SELECT channel, offset, epoch, ts, kind, sender, binary, data FROM retained WHERE channel = ?'),
      retainedAll: db.prepare<[], Row & { epoch: string | null }>('SELECT channel, offset, epoch, ts, kind, sender, binary, data FROM retained'),
      inboxStats: db.prepare<[string, number], { n: number; bytes: number | null }>('SELECT count(*) AS n, sum(length(data)) AS bytes FROM inbox WHERE user = ? AND ts >= ?'),
      insertInbox: db.prepare('INSERT INTO inbox (id, user, ts, kind, sender, binary, data) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      inbox: db.prepare<[string, number], Row & { id: string; user: string }>('SELECT id, user, ts, kind, sender, binary, data FROM inbox WHERE user = ? AND ts >= ? ORDER BY seq'),
      ack: db.prepare('DELETE FROM inbox WHERE user = ? AND id = ?'),
      expireInbox: db.prepare('DELETE FROM inbox WHERE ts < ?'),
    };
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.flush();
    this.db?.close();
  }

  /** Delete stored direct messages older than `ttl` every minute (reads skip them meanwhile). */
  startSweeping(inboxTtl: number): void {
    if (inboxTtl <= 0) return;
    this.sweepTimer = setInterval(() => {
      try {
        this.statements.expireInbox.run(Date.now() - inboxTtl);
      } catch {
        // A busy or failing disk: reads skip expired messages anyway; the next sweep tries again.
      }
    }, 60_000);
    this.sweepTimer.unref();
  }

  private stream(channel: string): { epoch: string; top: number } {
    let s = this.streams.get(channel);
    if (!s) {
      s = this.statements.stream.get(channel) ?? { epoch: newEpoch(), top: 0 };
      this.streams.set(channel, s);
    }
    return s;
  }

  append(channel: string, publication: NewPublication, policy: HistoryPolicy): Promise<StreamPosition> {
    const s = this.stream(channel);
    const offset = ++s.top;
    return new Promise((resolve, reject) => {
      this.batch.push({ channel, offset, epoch: s.epoch, publication, policy, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Write the batch in one transaction, then settle its promises in order. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    const st = this.statements;
    /** Per channel: the batch's last append, and the offset before its first. */
    const tops = new Map<string, { last: PendingAppend; before: number }>();
    try {
      this.db.transaction(() => {
        for (const a of batch) {
          const p = a.publication;
          st.insertPub.run(a.channel, a.offset, p.ts, p.kind, senderJson(p.from), p.payload.binary ? 1 : 0, p.payload.protoData());
          const t = tops.get(a.channel);
          if (t) t.last = a;
          else tops.set(a.channel, { last: a, before: a.offset - 1 });
        }
        for (const [channel, { last: a, before }] of tops) {
          st.upsertStream.run(channel, a.epoch, a.offset);
          // Trimming is a DELETE per channel: done when the offsets cross a multiple of TRIM_EVERY, not
          // every batch. Reads never see the few extra rows (they start above top − size, and filter by age).
          if (Math.floor(a.offset / TRIM_EVERY) !== Math.floor(before / TRIM_EVERY)) {
            st.trimSize.run(channel, a.offset - a.policy.size);
            if (a.policy.ttl > 0) st.trimAge.run(channel, Date.now() - a.policy.ttl);
          }
        }
      })();
    } catch (err) {
      // Nothing of the batch was written: forget its offsets so that the streams stay gapless
      // (every channel of the batch, not only those written before the failing statement).
      for (const a of batch) this.streams.delete(a.channel);
      for (const a of batch) a.reject(err);
      return;
    }
    for (const a of batch) a.resolve({ offset: a.offset, epoch: a.epoch });
  }

  async history(channel: string, q: HistoryQuery, policy: HistoryPolicy): Promise<HistoryPage> {
    this.flush(); // a read sees every append made before it
    const s = this.stream(channel);
    const st = this.statements;
    const cutoff = policy.ttl > 0 ? Date.now() - policy.ttl : 0;
    const floor = s.top - policy.size; // offsets at or below were trimmed (or are about to be)
    const after = Math.max(floor, q.since && q.since.epoch === s.epoch ? q.since.offset : 0);
    const rows = (q.reverse ? st.pageReverse : st.page).all(channel, after, cutoff, q.limit);
    const first = st.page.get(channel, floor, cutoff, 1);
    return {
      publications: rows.map((r) => toPublication(r)),
      position: { offset: s.top, epoch: s.epoch },
      oldest: first ? first.offset : s.top + 1,
    };
  }

  async retain(channel: string, m: RetainedMessage | null): Promise<void> {
    if (m) this.statements.setRetained.run(channel, m.offset, m.epoch ?? null, m.ts, m.kind, JSON.stringify(m.from), m.payload.binary ? 1 : 0, m.payload.protoData());
    else this.statements.clearRetained.run(channel);
  }

  async retained(pattern: string): Promise<RetainedMessage[]> {
    const st = this.statements;
    const toRetained = (r: Row & { epoch: string | null }): RetainedMessage => ({ ...toPublication(r), ...(r.epoch !== null && { epoch: r.epoch }) });
    if (!isWildcard(pattern)) {
      const r = st.retainedOne.get(pattern);
      return r ? [toRetained(r)] : [];
    }
    return st.retainedAll.all().filter((r) => matchPattern(pattern, r.channel)).map(toRetained);
  }

  async storeDirect(m: StoredDirect, limits: InboxLimits): Promise<void> {
    const st = this.statements;
    const data = m.payload.protoData();
    this.db.transaction(() => {
      const { n, bytes } = st.inboxStats.get(m.user, limits.ttl > 0 ? Date.now() - limits.ttl : 0)!;
      if (limits.count > 0 && n >= limits.count) throw new InboxFullError(`user ${m.user} already has ${limits.count} stored messages`);
      if (limits.bytes > 0 && (bytes ?? 0) + data.length > limits.bytes) throw new InboxFullError(`user ${m.user}'s stored messages would exceed ${limits.bytes} bytes`);
      st.insertInbox.run(m.id, m.user, m.ts, m.kind, JSON.stringify(m.from), m.payload.binary ? 1 : 0, data);
    })();
  }

  async pendingDirect(user: string, limits: InboxLimits): Promise<StoredDirect[]> {
    return this.statements.inbox.all(user, limits.ttl > 0 ? Date.now() - limits.ttl : 0).map((r) => ({ id: r.id, user: r.user, payload: toPayload(r), kind: r.kind, from: JSON.parse(r.sender) as Sender, ts: r.ts }));
  }

  async ackDirect(user: string, ids: string[]): Promise<number> {
    const ack = this.statements.ack;
    let n = 0;
    this.db.transaction(() => {
      for (const id of ids) n += ack.run(user, id).changes;
    })();
    return n;
  }
}

/** Rows kept beyond history_size before a channel is trimmed. */
const TRIM_EVERY = 64;

const senders = new WeakMap<object, string>();
/** JSON of a sender, once per sender object (a connection's info object is reused for all it sends). */
function senderJson(from: Sender): string {
  let s = senders.get(from);
  if (s === undefined) senders.set(from, (s = JSON.stringify(from)));
  return s;
}

function toPayload(r: { binary: number; data: Buffer }): Payload {
  return r.binary ? Payload.bytes(r.data) : Payload.jsonBytes(r.data);
}

function toPublication(r: Row): StoredPublication {
  return { channel: r.channel, offset: r.offset, payload: toPayload(r), kind: r.kind, from: JSON.parse(r.sender) as Sender, ts: r.ts };
}
