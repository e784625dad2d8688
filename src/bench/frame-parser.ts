/**
 * A WebSocket frame parser for the client side of a benchmark (RFC 6455 §5.2): it reads the
 * unmasked frames a server sends straight from socket chunks, with no dependency on a socket, so it
 * can be tested with bytes. Frames may be split across chunks at any byte and a chunk may hold many
 * frames. Data-frame payloads are only collected when `collect` is true; otherwise the parser skips
 * them without copying and reports only their length, which keeps counting subscribers cheap.
 * With permessage-deflate negotiated (RFC 7692), RSV1 marks the first frame of a compressed message;
 * the parser reports it and leaves inflating to the caller (see `inflateMessage`).
 *
 * Also here: `encodeClientFrame`, which builds the masked frames a client must send.
 */
import { randomFillSync } from 'node:crypto';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/**
 * Called once per complete frame. `payload` is undefined for a data frame (text, binary,
 * continuation) parsed while `collect` was false; control frames always carry their payload.
 * A payload may be a view into the chunk that was pushed: copy it to keep it past the call.
 * `compressed`: the frame belongs to a message whose first frame had RSV1 set (permessage-deflate).
 */
export type FrameHandler = (opcode: number, fin: boolean, payload: Buffer | undefined, length: number, compressed: boolean) => void;

export class FrameError extends Error {
  override name = 'FrameError';
}

export interface FrameParserOptions {
  /** Largest payload accepted, in bytes (default 64 MiB). */
  maxPayload?: number;
  /** permessage-deflate was negotiated: RSV1 is allowed on the first frame of a data message. */
  perMessageDeflate?: boolean;
}

const HEADER = 0;
const PAYLOAD = 1;
const EMPTY = Buffer.alloc(0);

/** Bytes of header implied by the second header byte (server frames are unmasked). */
function headerSize(b1: number): number {
  const len7 = b1 & 0x7f;
  return len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
}

export class FrameParser {
  /** Whether data-frame payloads are collected; read at the first frame of each message. */
  collect = true;
  /** Frames parsed so far (all opcodes). */
  frames = 0;

  private readonly maxPayload: number;
  private readonly deflate: boolean;
  private state = HEADER;
  private readonly hdr = Buffer.alloc(10);
  private hdrLen = 0;
  private opcode = 0;
  private fin = false;
  private length = 0;
  private remaining = 0;
  private collecting = false;
  private payload: Buffer | undefined;
  private payloadOff = 0;
  /** Inside a fragmented data message (a data frame without FIN was seen). */
  private fragmented = false;
  /** Whether the current fragmented message is being collected (decided at its first frame). */
  private messageCollect = true;
  /** Whether the current message is compressed (RSV1 on its first frame). */
  private compressed = false;
  private failed = false;

  constructor(
    private readonly onFrame: FrameHandler,
    options: FrameParserOptions = {},
  ) {
    this.maxPayload = options.maxPayload ?? 64 * 1024 * 1024;
    this.deflate = options.perMessageDeflate === true;
  }

  /** Feed bytes from the socket. Throws FrameError on a protocol violation (the parser is then unusable). */
  push(chunk: Buffer): void {
    if (this.failed) throw new FrameError('parser already failed');
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.state === HEADER) {
        if (this.hdrLen === 0 && end - pos >= 2) {
          // Fast path: the whole header is in this chunk.
          const need = this.checkSecondByte(chunk[pos + 1]!);
          if (end - pos >= need) {
            this.parseHeader(chunk, pos);
            pos += need;
            continue;
          }
        }
        // Slow path: gather the header byte by byte across chunks.
        while (pos < end) {
          this.hdr[this.hdrLen++] = chunk[pos++]!;
          if (this.hdrLen >= 2 && this.hdrLen === this.checkSecondByte(this.hdr[1]!)) {
            this.hdrLen = 0;
            this.parseHeader(this.hdr, 0);
            break;
          }
        }
        continue;
      }
      // PAYLOAD
      const avail = end - pos;
      const take = avail < this.remaining ? avail : this.remaining;
      if (!this.collecting) {
        pos += take;
        this.remaining -= take;
        if (this.remaining === 0) this.emit(undefined);
      } else if (this.payload === undefined && take === this.remaining) {
        // The whole payload is in this chunk: hand out a view, no copy.
        const p = chunk.subarray(pos, pos + take);
        pos += take;
        this.remaining = 0;
        this.emit(p);
      } else {
        this.payload ??= Buffer.allocUnsafe(this.length);
        chunk.copy(this.payload, this.payloadOff, pos, pos + take);
        this.payloadOff += take;
        pos += take;
        this.remaining -= take;
        if (this.remaining === 0) {
          const p = this.payload;
          this.payload = undefined;
          this.payloadOff = 0;
          this.emit(p);
        }
      }
    }
  }

  private fail(message: string): never {
    this.failed = true;
    throw new FrameError(message);
  }

  private checkSecondByte(b1: number): number {
    if (b1 & 0x80) this.fail('masked frame from the server');
    return headerSize(b1);
  }

  private parseHeader(buf: Buffer, o: number): void {
    const b0 = buf[o]!;
    const b1 = buf[o + 1]!;
    const rsv1 = (b0 & 0x40) !== 0;
    if (b0 & 0x30) this.fail('RSV2/RSV3 bits set (no extension uses them)');
    if (rsv1 && !this.deflate) this.fail('RSV bits set (no extension was negotiated)');
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    let len = b1 & 0x7f;
    if (len === 126) {
      len = buf.readUInt16BE(o + 2);
    } else if (len === 127) {
      const hi = buf.readUInt32BE(o + 2);
      if (hi > 0x1fffff) this.fail('payload length above 2^53 - 1');
      len = hi * 0x100000000 + buf.readUInt32BE(o + 6);
    }
    if (len > this.maxPayload) this.fail(`payload of ${len} bytes exceeds the limit of ${this.maxPayload}`);
    let collecting: boolean;
    if (opcode >= 0x8) {
      if (opcode > OP_PONG) this.fail(`reserved control opcode ${opcode}`);
      if (!fin) this.fail('fragmented control frame');
      if (len > 125) this.fail('control frame payload above 125 bytes');
      if (rsv1) this.fail('RSV1 set on a control frame');
      collecting = true;
    } else if (opcode === OP_CONTINUATION) {
      if (!this.fragmented) this.fail('continuation frame outside a fragmented message');
      if (rsv1) this.fail('RSV1 set on a continuation frame');
      collecting = this.messageCollect;
      if (fin) this.fragmented = false;
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.fragmented) this.fail('new data frame inside a fragmented message');
      this.compressed = rsv1;
      collecting = this.collect;
      if (!fin) {
        this.fragmented = true;
        this.messageCollect = collecting;
      }
    } else {
      this.fail(`reserved data opcode ${opcode}`);
    }
    this.opcode = opcode;
    this.fin = fin;
    this.length = len;
    this.remaining = len;
    this.collecting = collecting;
    if (len === 0) {
      this.emit(collecting ? EMPTY : undefined);
    } else {
      this.state = PAYLOAD;
    }
  }

  private emit(payload: Buffer | undefined): void {
    this.state = HEADER;
    this.frames++;
    this.onFrame(this.opcode, this.fin, payload, this.length, this.opcode < 0x8 && this.compressed);
  }
}

const MASK = Buffer.allocUnsafe(4);

/** The empty stored block that ends a sync flush: RFC 7692 §7.2.1 has senders drop it and receivers add it back. */
const SYNC_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** Inflate the payload of a permessage-deflate message (compressed with no context takeover, as Hubbub sends). */
export function inflateMessage(payload: Buffer): Buffer {
  return inflateRawSync(Buffer.concat([payload, SYNC_TAIL]), { finishFlush: constants.Z_SYNC_FLUSH });
}

/** Deflate a message payload for permessage-deflate, without context takeover (one message on its own). */
export function deflateMessage(payload: Buffer | string): Buffer {
  const z = deflateRawSync(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload, { finishFlush: constants.Z_SYNC_FLUSH });
  return z.subarray(0, z.length - SYNC_TAIL.length);
}

/**
 * One masked client frame (FIN set). The mask key is random unless given (tests pass one). The
 * payload is masked into a new buffer; the argument is left alone. `rsv1` marks a payload that
 * permessage-deflate compressed (see `deflateMessage`).
 */
export function encodeClientFrame(opcode: number, payload: Buffer | string, maskKey?: Buffer, rsv1 = false): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const len = data.length;
  const hlen = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hlen + 4 + len);
  out[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (len < 126) {
    out[1] = 0x80 | len;
  } else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(len / 0x100000000), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  const key = maskKey ?? randomFillSync(MASK);
  key.copy(out, hlen, 0, 4);
  const k0 = key[0]!;
  const k1 = key[1]!;
  const k2 = key[2]!;
  const k3 = key[3]!;
  const base = hlen + 4;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    out[base + i] = data[i]! ^ k0;
    out[base + i + 1] = data[i + 1]! ^ k1;
    out[base + i + 2] = data[i + 2]! ^ k2;
    out[base + i + 3] = data[i + 3]! ^ k3;
  }
  for (; i < len; i++) out[base + i] = data[i]! ^ key[i & 3]!;
  return out;
}
