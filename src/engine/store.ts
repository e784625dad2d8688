import { randomBytes } from 'node:crypto';
import type { Sender } from '../protocol/frames.js';
import type { Payload } from '../protocol/payload.js';

/**
 * Durable state behind history, recovery, retained messages and stored direct messages. Every
 * implementation (memory, SQLite, later Redis) passes the same contract suite
 * (test/store-contract.ts). A promise resolves once the change is durable for that engine: for
 * SQLite, committed to the write-ahead log.
 */

/** Where a channel's stream stands: the last offset given out, in an epoch that changes when the stream is reset. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** How much history a channel keeps (from its namespace rule). */
export interface HistoryPolicy {
  /** Publications kept per channel (the newest). */
  size: number;
  /** Milliseconds a publication is kept; 0: no age limit. */
  ttl: number;
}

/** A publication as stored and replayed. */
export interface StoredPublication {
  channel: string;
  offset: number;
  payload: Payload;
  kind: string;
  from: Sender;
  ts: number;
}

export interface NewPublication {
  payload: Payload;
  kind: string;
  from: Sender;
  ts: number;
}

export interface HistoryQuery {
  /** Publications after this position (when its epoch is the stream's); from the oldest kept otherwise. */
  since?: StreamPosition;
  limit: number;
  /** Newest first. */
  reverse?: boolean;
}

export interface HistoryPage {
  publications: StoredPublication[];
  /** The stream's current position. */
  position: StreamPosition;
  /** The oldest offset still kept (position.offset + 1 when nothing is kept). */
  oldest: number;
}

/** A retained message: the last publication on a channel that asked to be retained. */
export interface RetainedMessage extends StoredPublication {
  epoch?: string;
}

/** A direct message stored for a user until one of their connections acknowledges it. */
export interface StoredDirect {
  id: string;
  user: string;
  payload: Payload;
  kind: string;
  from: Sender;
  ts: number;
}

export interface InboxLimits {
  /** Most messages stored per user; 0: no limit. */
  count: number;
  /** Most payload bytes stored per user; 0: no limit. */
  bytes: number;
  /** Milliseconds a message is kept; 0: no age limit. */
  ttl: number;
}

/** Thrown when storing a direct message would break the user's InboxLimits. */
export class InboxFullError extends Error {
  override name = 'InboxFullError';
}

export interface Store {
  readonly name: string;
  /** Open (create) the storage; rejects with a clear message when it is unreadable. */
  open(): Promise<void>;
  /** Finish pending writes and close. */
  close(): Promise<void>;

  /** Append to a channel's stream; resolves with the publication's offset and the epoch once durable. */
  append(channel: string, publication: NewPublication, policy: HistoryPolicy): Promise<StreamPosition>;
  /** A page of a channel's history (trimmed by the policy), and its current position. */
  history(channel: string, query: HistoryQuery, policy: HistoryPolicy): Promise<HistoryPage>;

  /** Set (or, with null, clear) a channel's retained message. */
  retain(channel: string, message: RetainedMessage | null): Promise<void>;
  /** Retained messages of the channels matching a pattern (or exactly a channel name). */
  retained(pattern: string): Promise<RetainedMessage[]>;

  /** Store a direct message for a user; rejects with InboxFullError over the limits. */
  storeDirect(message: StoredDirect, limits: InboxLimits): Promise<void>;
  /** A user's stored messages, oldest first (expired ones left out). */
  pendingDirect(user: string, limits: InboxLimits): Promise<StoredDirect[]>;
  /** Remove acknowledged messages of a user; resolves with how many were removed. */
  ackDirect(user: string, ids: string[]): Promise<number>;
}

/** A new epoch: random, short, URL-safe. */
export function newEpoch(): string {
  return randomBytes(6).toString('base64url');
}
