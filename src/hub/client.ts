import type { ClientInfo, ClientListEntry, Json } from '../protocol/frames.js';
import type { Outgoing } from '../transport/outgoing.js';
import type { Transport } from '../transport/transport.js';

/** A delivery kept back while the client's subscription is being recovered. */
export interface HeldFrame {
  frame: Outgoing;
  /** Set for publications of channels with history, so that a recovered one is not sent twice. */
  channel?: string;
  offset?: number;
}

export interface Subscription {
  readonly pattern: string;
  /** Receives join/leave events of the channel (exact channels only). */
  presence: boolean;
  /** Publications are checked against the client's read permission before delivery (see auth/permissions.ts). */
  filtered: boolean;
}

/** One connected client: identity, subscriptions and the transport it is reached through. */
export class Client {
  /** Patterns this client subscribes to. */
  readonly subs = new Map<string, Subscription>();
  readonly connectedAt = Date.now();
  /** Set whenever anything arrives from the peer (a frame or a pong); the heartbeat sweep clears it. */
  seen = true;
  /** Heartbeat sweeps in a row that found the peer silent. */
  silentSweeps = 0;
  /** Whether `hello` has been received (it is accepted once). */
  identified = false;
  /** Identified by a verified token, or by the development identity: namespace rule `authenticated`. */
  authenticated = false;
  /** Channel patterns granted by the token. */
  channels: string[] | undefined;
  /** The token's `info` claim, shown in presence. */
  claims: Json | undefined;
  /** When the token expires (ms since the epoch). */
  expiresAt: number | undefined;
  user: string | undefined;
  name: string | undefined;
  version: string | undefined;
  /** Sequence number of the last publication delivered, so that overlapping patterns deliver one copy. */
  lastPublication = 0;
  /**
   * While a subscription is recovered (history read, retained messages fetched), deliveries to this
   * client wait here, so that what was missed arrives before anything newer. Undefined otherwise.
   */
  held: HeldFrame[] | undefined;
  /** Recoveries in progress. */
  holds = 0;
  /** Per channel, the newest offset sent by the recoveries of the current hold. */
  recoveredTo: Map<string, number> | undefined;
  private infoCache: ClientInfo | undefined;

  constructor(
    readonly id: string,
    readonly transport: Transport,
    /** Speaks the protobuf encoding (else JSON): which encoding of a shared frame it gets. */
    readonly protobuf = false,
  ) {}

  identify(fields: { user?: string; name?: string; version?: string }): void {
    this.user = fields.user;
    this.name = fields.name;
    this.version = fields.version;
    this.infoCache = undefined;
  }

  /** How this client is shown to others. */
  info(): ClientInfo {
    if (!this.infoCache) {
      const info: ClientInfo = { client: this.id };
      if (this.user !== undefined) info.user = this.user;
      if (this.name !== undefined) info.name = this.name;
      this.infoCache = info;
    }
    return this.infoCache;
  }

  listEntry(): ClientListEntry {
    const entry: ClientListEntry = { ...this.info(), connected_at: this.connectedAt };
    if (this.claims !== undefined) entry.info = this.claims;
    return entry;
  }
}
