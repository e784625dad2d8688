import type { Outgoing } from './outgoing.js';

/**
 * What the hub needs from a connection, whatever carries it (WebSocket now, QUIC later).
 * A transport owns its outgoing queue: sends are queued and written in batches, and a transport
 * that cannot keep up reports itself through `onClose` rather than buffering without bound.
 */
export interface Transport {
  /** The peer's IP address, as seen by this server. */
  readonly remoteAddress: string;
  /** Bytes accepted by `send` but not yet handed to the network. */
  readonly bufferedAmount: number;
  /** False once the transport is closing or closed: sends are then dropped. */
  readonly open: boolean;
  /** Queue one frame. Returns false when it was dropped (closed, or the queue limit was hit and the transport is now closing). */
  send(frame: Outgoing): boolean;
  /** Flush what is queued, then close with a code and a short reason. */
  close(code: number, reason: string): void;
  /** Drop the connection at once, without a close handshake. */
  terminate(): void;
  /** Send a transport-level keepalive probe; the answer arrives as `onPong`. */
  ping(): void;
  /** Called once by the hub to receive the connection's events. */
  attach(handler: TransportHandler): void;
}

export interface TransportHandler {
  /** One complete message from the peer. `data` is only valid during the call. */
  onMessage(data: Buffer, binary: boolean): void;
  /** The peer answered a keepalive probe. */
  onPong(): void;
  /** The connection is gone; called exactly once. */
  onClose(code: number, reason: string): void;
}
