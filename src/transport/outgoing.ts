import { constants, deflateRawSync } from 'node:zlib';
import { wsBinaryFrame, wsCompressedFrame, wsTextFrame } from './ws-frame.js';

/** The empty stored block that ends a sync flush; RFC 7692 §7.2.1 has senders drop it. */
const SYNC_TAIL = 4;

/**
 * One encoded server frame, ready to be sent to any number of connections. Each transport asks for
 * its own wire form, which is built on first use and then shared: a publication to 10,000
 * subscribers is encoded once and framed once per transport kind.
 */
export class Outgoing {
  private wsWire: Buffer | undefined;
  private deflated: Buffer | undefined;
  private deflatedBits = 0;
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

  /**
   * The frame compressed with permessage-deflate (RSV1 set). Only valid on connections that
   * negotiated `server_no_context_takeover`: each message is then compressed on its own, so the
   * compressed bytes are the same for every such connection and are built once.
   */
  wsDeflated(windowBits: number): Buffer {
    if (this.deflated === undefined || this.deflatedBits !== windowBits) {
      const text = typeof this.payload === 'string';
      const raw = text ? Buffer.from(this.payload as string, 'utf8') : (this.payload as Uint8Array);
      const z = deflateRawSync(raw, { windowBits: Math.max(9, windowBits), finishFlush: constants.Z_SYNC_FLUSH });
      this.deflated = wsCompressedFrame(text, z.subarray(0, z.length - SYNC_TAIL));
      this.deflatedBits = windowBits;
    }
    return this.deflated;
  }
}
