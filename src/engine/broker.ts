import type { ClientInfo, Compression, DirectTarget, Sender } from '../protocol/frames.js';
import type { Payload } from '../protocol/payload.js';

/** Where a transfer goes: the subscribers of a channel, or a direct target. */
export type TransferDestination = { channel: string } | { to: DirectTarget };

/** A transfer chunk as relayed to receivers (the chunk frame's fields, without data). */
export interface RelayedChunk {
  transfer: string;
  seq: number;
  last: boolean;
  crc: number;
  compression?: Compression;
  kind?: string;
  name?: string;
  size?: number;
  total_crc?: number;
  from: Sender;
  ts: number;
}

/**
 * What travels between the hub and the broker engine. Plain objects whose payloads are Payloads;
 * a clustered engine serialises them (a Payload is JSON text or bytes) to cross the network.
 */
export type BrokerMessage =
  | { type: 'publication'; channel: string; payload: Payload; kind: string; from: Sender; ts: number; offset?: number; epoch?: string }
  | { type: 'broadcast'; payload: Payload; kind: string; from: Sender; ts: number }
  | { type: 'direct'; to: DirectTarget; payload: Payload; kind: string; from: Sender; ts: number; id?: string }
  | { type: 'join' | 'leave'; channel: string; client: ClientInfo }
  | { type: 'disconnect'; target: DirectTarget; code: number; reason: string }
  | { type: 'chunk'; dest: TransferDestination; chunk: RelayedChunk; payload: Payload }
  | { type: 'abort'; dest: TransferDestination; transfer: string; code: string; message: string; from: Sender };

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
