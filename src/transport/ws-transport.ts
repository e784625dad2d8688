import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { CloseCode } from '../protocol/errors.js';
import type { Outgoing } from './outgoing.js';
import type { Transport, TransportHandler } from './transport.js';

/**
 * A connection whose pending bytes go above `maxQueueBytes` gets this long to fall back below it
 * (bursts are normal: a busy turn of the event loop can queue megabytes for a healthy reader); one
 * still above it then is closed as a slow consumer. Reaching twice the limit closes it at once.
 * The same delay is the closed consumer's time to read its close frame before the socket is dropped.
 */
const SLOW_CONSUMER_GRACE_MS = 1000;

export interface WsTransportOptions {
  /** Bound on queued plus socket-buffered bytes (see SLOW_CONSUMER_GRACE_MS). */
  maxQueueBytes: number;
  /** permessage-deflate was negotiated (with server_no_context_takeover): compress frames of at least `threshold` bytes. */
  deflate?: { threshold: number; windowBits: number };
}

// Write coalescing: frames queued for a connection during one turn of the event loop leave in a
// single socket write at the check phase (setImmediate). A fan-out of many publications to many
// subscribers then costs one write per subscriber per turn instead of one per frame.
const dirty: WsTransport[] = [];
let flushScheduled = false;

/**
 * Above this many queued bytes a flush hands the frames to one writev (cork/uncork) instead of
 * concatenating them: copying tens of kilobytes into a fresh buffer per subscriber per turn cost
 * more than the write itself (2 KB publications, window of 32, 1,000 subscribers: 2.5 → 1.0 µs
 * of server CPU per delivery; see docs/performance.md). Below it, one concatenated write is as cheap.
 */
const WRITEV_MIN_BYTES = 16 * 1024;

function flushAll(): void {
  flushScheduled = false;
  // A flush never queues more frames, so the list cannot grow while we walk it.
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  dirty.length = 0;
}

/**
 * A WebSocket connection served by `ws`, which parses incoming frames and runs the close handshake.
 * Outgoing data frames bypass `ws.send`: they are framed once per publication (see Outgoing) and
 * written straight to the upgraded socket, whole frames only, so they interleave safely with the
 * control frames (ping, pong, close) that `ws` writes itself.
 */
export class WsTransport implements Transport {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private closing = false;
  private handler: TransportHandler | undefined;
  private overLimit: NodeJS.Timeout | undefined;
  private readonly deflateThreshold: number;
  private readonly windowBits: number;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    readonly remoteAddress: string,
    private readonly options: WsTransportOptions,
  ) {
    this.deflateThreshold = options.deflate ? options.deflate.threshold : Infinity;
    this.windowBits = options.deflate?.windowBits ?? 15;
    ws.on('message', (data, isBinary) => this.handler?.onMessage(data as Buffer, isBinary));
    ws.on('pong', () => this.handler?.onPong());
    ws.on('close', (code, reason) => {
      this.closing = true;
      clearTimeout(this.overLimit);
      this.queue.length = 0;
      this.queuedBytes = 0;
      this.handler?.onClose(code, reason.toString());
    });
    // Protocol errors (oversize frame: 1009, invalid UTF-8: 1007, bad framing: 1002) are answered by
    // `ws` with the right close code and followed by 'close'; nothing else to do here.
    ws.on('error', () => {});
  }

  /** The negotiated subprotocol ('' when the client asked for none). */
  get protocol(): string {
    return this.ws.protocol;
  }

  /** Whether outgoing frames may be compressed (permessage-deflate negotiated). */
  get compressing(): boolean {
    return this.deflateThreshold !== Infinity;
  }

  attach(handler: TransportHandler): void {
    this.handler = handler;
  }

  get open(): boolean {
    return !this.closing;
  }

  get bufferedAmount(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  send(frame: Outgoing): boolean {
    if (this.closing) return false;
    const wire = frame.size >= this.deflateThreshold ? frame.wsDeflated(this.windowBits) : frame.ws();
    const pending = this.queuedBytes + this.socket.writableLength + wire.length;
    if (pending > this.options.maxQueueBytes) {
      if (pending > 2 * this.options.maxQueueBytes) {
        this.closeSlowConsumer();
        return false;
      }
      this.overLimit ??= setTimeout(() => this.checkBacklog(), SLOW_CONSUMER_GRACE_MS).unref();
    }
    if (this.queue.length === 0) {
      dirty.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
    this.queue.push(wire);
    this.queuedBytes += wire.length;
    return true;
  }

  /** Write everything queued in one socket write (a writev when it is large). */
  flush(): void {
    const q = this.queue;
    if (q.length === 0) return;
    const bytes = this.queuedBytes;
    this.queuedBytes = 0;
    if (this.socket.destroyed) {
      q.length = 0;
      return;
    }
    if (q.length === 1 || bytes < WRITEV_MIN_BYTES) {
      const data = q.length === 1 ? q[0]! : Buffer.concat(q, bytes);
      q.length = 0;
      this.socket.write(data);
      return;
    }
    // Corked writes leave in one writev of the shared frame buffers, without a copy.
    this.socket.cork();
    for (let i = 0; i < q.length; i++) this.socket.write(q[i]!);
    q.length = 0;
    this.socket.uncork();
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.flush(); // data queued before the close must reach the peer before the close frame
    this.closing = true;
    this.ws.close(code, reason);
  }

  terminate(): void {
    this.closing = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.ws.terminate();
  }

  ping(): void {
    if (!this.closing && this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  private checkBacklog(): void {
    this.overLimit = undefined;
    if (!this.closing && this.bufferedAmount > this.options.maxQueueBytes) this.closeSlowConsumer();
  }

  private closeSlowConsumer(): void {
    // Drop the backlog: the peer cannot read it in time anyway, and it bounds our memory.
    this.closing = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.ws.close(CloseCode.SlowConsumer, 'slow consumer');
    setTimeout(() => this.ws.terminate(), SLOW_CONSUMER_GRACE_MS).unref();
  }
}
