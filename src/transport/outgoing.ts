import { wsBinaryFrame, wsTextFrame } from './ws-frame.js';

/**
 * One encoded server frame, ready to be sent to any number of connections. Each transport asks for
 * its own wire form, which is built on first use and then shared: a publication to 10,000
 * subscribers is encoded once and framed once per transport kind.
 */
export class Outgoing {
  private wsWire: Buffer | undefined;
  private bytes = -1;

  /** @param payload the encoded frame: JSON text is sent as a text frame, bytes as a binary frame. */
  constructor(readonly payload: string | Uint8Array) {}

  /** Payload size in bytes (what the statistics count). */
  get size(): number {
    if (this.bytes < 0) {
      this.bytes = typeof this.payload === 'string' ? Buffer.byteLength(this.payload, 'utf8') : this.payload.length;
    }
    return this.bytes;
  }

  /** The complete WebSocket frame (header and payload). */
  ws(): Buffer {
    if (this.wsWire === undefined) {
      this.wsWire = typeof this.payload === 'string' ? wsTextFrame(this.payload) : wsBinaryFrame(this.payload);
    }
    return this.wsWire;
  }
}
