/**
 * Server-to-client WebSocket framing (RFC 6455 §5.2). Server frames are never masked, so the bytes
 * of a frame are the same for every recipient: the hub frames a publication once and writes that one
 * buffer to every subscriber's socket.
 */

const OP_TEXT = 0x1;
const OP_BINARY = 0x2;

function headerLength(payloadLength: number): number {
  return payloadLength < 126 ? 2 : payloadLength < 65536 ? 4 : 10;
}

function writeHeader(out: Buffer, opcode: number, len: number, compressed = false): void {
  out[0] = 0x80 | (compressed ? 0x40 : 0) | opcode; // FIN (one unfragmented message), RSV1 when permessage-deflate compressed it
  if (len < 126) {
    out[1] = len;
  } else if (len < 65536) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 0x100000000), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
}

/** One complete text frame holding `text` as UTF-8. */
export function wsTextFrame(text: string): Buffer {
  const len = Buffer.byteLength(text, 'utf8');
  const hlen = headerLength(len);
  const out = Buffer.allocUnsafe(hlen + len);
  writeHeader(out, OP_TEXT, len);
  out.write(text, hlen, 'utf8');
  return out;
}

/** One complete binary frame holding `bytes`. */
export function wsBinaryFrame(bytes: Uint8Array): Buffer {
  return wsFrame(OP_BINARY, bytes, false);
}

/** One complete frame of a text (`text` true) or binary message whose payload permessage-deflate compressed to `bytes`. */
export function wsCompressedFrame(text: boolean, bytes: Uint8Array): Buffer {
  return wsFrame(text ? OP_TEXT : OP_BINARY, bytes, true);
}

function wsFrame(opcode: number, bytes: Uint8Array, compressed: boolean): Buffer {
  const len = bytes.length;
  const hlen = headerLength(len);
  const out = Buffer.allocUnsafe(hlen + len);
  writeHeader(out, opcode, len, compressed);
  out.set(bytes, hlen);
  return out;
}
