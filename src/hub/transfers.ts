/**
 * The sending side of transfers, per connection: checks every chunk a client sends (order, CRC-32,
 * declared and configured sizes, concurrent transfers) and relays it at once, so that the server
 * never holds a whole payload. A chunk that breaks a rule aborts its transfer for the sender (an
 * error) and for the receivers (an `abort` frame). See docs/protocol.md, "Transfers".
 */
import { crc32 } from 'node:zlib';
import type { Delivered, TransferDestination } from '../engine/broker.js';
import { ErrorCode, HubbubError } from '../protocol/errors.js';
import type { AbortFrame, ChunkFrame } from '../protocol/frames.js';
import { DEFAULT_KIND } from '../protocol/frames.js';
import type { Payload } from '../protocol/payload.js';
import type { Client } from './client.js';
import type { Hub } from './hub.js';

export interface TransferLimits {
  /** Largest declared payload size, bytes. */
  maxSize: number;
  /** Most transfers one connection may have open at once (0: no limit). */
  maxOpen: number;
}

interface OpenTransfer {
  dest: TransferDestination;
  /** The seq the next chunk must have. */
  next: number;
  /** Bytes carried so far (after compression). */
  carried: number;
  size: number;
  /** No chunk so far was compressed: the server can then check the whole payload's CRC-32 itself. */
  plain: boolean;
  crc: number;
}

export class Transfers {
  private readonly open = new Map<string, OpenTransfer>();

  constructor(
    private readonly hub: Hub,
    private readonly client: Client,
    private readonly limits: TransferLimits,
    /** Checks the destination of a new transfer (channel name and permissions, or whether clients may send); throws HubbubError. */
    private readonly checkDestination: (dest: TransferDestination) => void,
  ) {}

  get count(): number {
    return this.open.size;
  }

  /** One chunk from the client. Throws HubbubError when refused; relays it otherwise. */
  chunk(frame: ChunkFrame, payload: Payload): Delivered | Promise<Delivered> {
    const bytes = payload.raw()!;
    let t = this.open.get(frame.transfer);
    if (t === undefined) {
      if (frame.seq !== 0) throw new HubbubError(ErrorCode.BadRequest, `chunk: transfer "${frame.transfer}" is not open (it starts with seq 0, or it was aborted)`);
      t = this.start(frame);
    }
    if (frame.seq !== t.next) {
      this.abort(frame.transfer, t, `chunk ${frame.seq} arrived where ${t.next} was expected (a chunk is missing or out of order)`);
    }
    if (crc32(bytes) !== frame.crc) this.abort(frame.transfer, t, `chunk ${frame.seq}: CRC-32 mismatch (the chunk was corrupted)`);
    t.carried += bytes.length;
    if (t.carried > t.size) this.abort(frame.transfer, t, `chunk ${frame.seq}: more bytes than the declared size ${t.size} (compress a chunk only when that makes it smaller)`);
    if (frame.compression !== undefined) t.plain = false;
    else if (t.plain) t.crc = crc32(bytes, t.crc);
    if (frame.last === true) {
      if (frame.total_crc === undefined) this.abort(frame.transfer, t, 'the last chunk must carry total_crc');
      if (t.plain && (t.carried !== t.size || t.crc !== frame.total_crc)) {
        this.abort(frame.transfer, t, t.carried !== t.size ? `the transfer carried ${t.carried} bytes, not the declared ${t.size}` : 'CRC-32 of the whole payload does not match total_crc');
      }
      this.open.delete(frame.transfer);
    }
    // Counted only once the chunk passed every check: receivers hear of an abort only if they got a chunk.
    t.next++;
    return this.hub.relayChunk(
      t.dest,
      {
        transfer: frame.transfer,
        seq: frame.seq,
        last: frame.last === true,
        crc: frame.crc,
        ...(frame.compression !== undefined && { compression: frame.compression }),
        ...(frame.seq === 0 && { kind: frame.kind ?? DEFAULT_KIND, size: t.size }),
        ...(frame.seq === 0 && frame.name !== undefined && { name: frame.name }),
        ...(frame.last === true && { total_crc: frame.total_crc }),
        from: this.client.info(),
        ts: Date.now(),
      },
      payload,
    );
  }

  /** The client cancels one of its transfers. */
  cancel(frame: AbortFrame): void {
    const t = this.open.get(frame.transfer);
    if (!t) throw new HubbubError(ErrorCode.NotFound, `abort: transfer "${frame.transfer}" is not open`);
    this.open.delete(frame.transfer);
    this.notify(frame.transfer, t, frame.message ?? 'the sender cancelled the transfer');
  }

  /** The connection is gone: every open transfer is aborted for its receivers. */
  closeAll(reason: string): void {
    for (const [id, t] of this.open) this.notify(id, t, reason);
    this.open.clear();
  }

  private start(frame: ChunkFrame): OpenTransfer {
    const hasChannel = frame.channel !== undefined;
    if (hasChannel === (frame.to !== undefined)) throw new HubbubError(ErrorCode.BadRequest, 'chunk: the first chunk (seq 0) names exactly one destination: channel or to');
    if (frame.size === undefined) throw new HubbubError(ErrorCode.BadRequest, 'chunk: the first chunk (seq 0) must declare the payload size');
    if (frame.size > this.limits.maxSize) throw new HubbubError(ErrorCode.TooLarge, `chunk: a transfer of ${frame.size} bytes is over this server's max_transfer_size of ${this.limits.maxSize}`);
    if (this.limits.maxOpen > 0 && this.open.size >= this.limits.maxOpen) throw new HubbubError(ErrorCode.RateLimited, `chunk: this connection already has ${this.limits.maxOpen} open transfers`);
    const dest: TransferDestination = hasChannel ? { channel: frame.channel! } : { to: frame.to! };
    this.checkDestination(dest);
    const t: OpenTransfer = { dest, next: 0, carried: 0, size: frame.size, plain: true, crc: 0 };
    this.open.set(frame.transfer, t);
    return t;
  }

  /** Abort a transfer because of a bad chunk: receivers are told, and the sender gets the error thrown here. */
  private abort(id: string, t: OpenTransfer, why: string): never {
    this.open.delete(id);
    this.notify(id, t, why);
    throw new HubbubError(ErrorCode.TransferAborted, `chunk: transfer "${id}" aborted: ${why}`);
  }

  private notify(id: string, t: OpenTransfer, why: string): void {
    // Receivers that saw seq 0 hold a partial payload; tell them it will not complete.
    if (t.next === 0) return;
    try {
      const r = this.hub.abortTransfer(t.dest, id, ErrorCode.TransferAborted, why, this.client.info());
      if (r instanceof Promise) r.catch(() => {});
    } catch {
      /* the broker is gone; receivers time the transfer out */
    }
  }
}
