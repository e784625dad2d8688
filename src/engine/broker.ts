import type { ClientInfo, DirectTarget, Json, Sender } from '../protocol/frames.js';

/**
 * What travels between the hub and the broker engine. Plain JSON-serialisable objects, because with
 * a clustered engine they cross the network and arrive from other nodes.
 */
export type BrokerMessage =
  | { type: 'publication'; channel: string; data: Json; kind: string; from: Sender; ts: number }
  | { type: 'broadcast'; data: Json; kind: string; from: Sender; ts: number }
  | { type: 'direct'; to: DirectTarget; data: Json; kind: string; from: Sender; ts: number }
  | { type: 'join' | 'leave'; channel: string; client: ClientInfo }
  | { type: 'disconnect'; target: DirectTarget; code: number; reason: string };

/** How many connections a message reached, when known. */
export type Delivered = number | undefined;

/** Delivers one message to this node's connections and says to how many. */
export type Deliver = (message: BrokerMessage) => number;

/**
 * A broker engine carries messages to every node of a deployment, this one included. The in-memory
 * engine hands them straight back; a Redis engine fans them out through Redis.
 *
 * Messages from one node arrive at every node in the order that node published them.
 */
export interface Broker {
  readonly name: string;
  /** Start receiving: every message published by any node is passed to `deliver`. */
  start(deliver: Deliver): Promise<void>;
  /**
   * Send a message to every node. Gives the number of deliveries when the engine knows it (the
   * in-memory engine always does, synchronously; a clustered engine may not), and throws or rejects
   * when the message could not be handed over.
   */
  publish(message: BrokerMessage): Delivered | Promise<Delivered>;
  close(): Promise<void>;
}
