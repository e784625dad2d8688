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
 * Flush pacing under heavy fan-out. A flush round that took at least BUSY_FLUSH_MS (about a
 * thousand socket writes) is followed by a pause as long as it took (at most MAX_FLUSH_GAP_MS)
 * before the next round: frames queued meanwhile then share each connection's next write, and
 * the server reads its input between rounds. Without it, a server saturated by publications
 * arriving one at a time writes one frame per socket per round and falls behind; with it the
 * number of writes per delivery drops as the load grows. Light traffic never waits.
 */
const BUSY_FLUSH_MS = 1;
const MAX_FLUSH_GAP_MS = 5;
const BACKLOG_MS = 0.5;
let lastFlushEnd = 0;
let lastFlushTook = 0;

function scheduleFlush(): void {
  flushScheduled = true;
  if (lastFlushTook >= BUSY_FLUSH_MS) {
    const since = performance.now() - lastFlushEnd;
    // Input that was already waiting when the last round ended means a backlog: pace. Input that
    // came later (one message in flight, sparse traffic) is flushed at once.
    if (since < BACKLOG_MS) {
      setTimeout(flushAll, Math.min(lastFlushTook, MAX_FLUSH_GAP_MS) - since);
      return;
    }
  }
  setImmediate(flushAll);
}

/**
 * Above this many queued bytes a flush hands the frames to one writev (cork/uncork) instead of
 * concatenating them: copying tens of kilobytes into a fresh buffer per subscriber per turn cost
 * more than the write itself (2 KB publications, window of 32, 1,000 subscribers: 2.5 → 1.0 µs
 * of server CPU per delivery; see docs/performance.md). Below it, one concatenated write is as cheap.
 */
const WRITEV_MIN_BYTES = 16 * 1024;

/**
 * The last concatenation a flush made, with the frames it was made of. Subscribers of the same
 * channels get the same frames in the same turn, so the next connection's queue is usually the
 * very same buffers: comparing references is much cheaper than copying them again, and one buffer
 * can be written to any number of sockets. Dropped at the end of every flush round.
 */
let lastParts: Buffer[] | undefined;
let lastJoined: Buffer | undefined;

function joined(q: Buffer[], bytes: number): Buffer {
  const parts = lastParts;
  if (parts !== undefined && parts.length === q.length) {
    let same = true;
    for (let i = 0; i < q.length; i++) {
      if (parts[i] !== q[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastJoined!;
  }
  const data = Buffer.concat(q, bytes);
  lastParts = q.slice();
  lastJoined = data;
  return data;
}

function flushAll(): void {
  flushScheduled = false;
  const t0 = performance.now();
  // A flush never queues more frames, so the list cannot grow while we walk it.
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  lastFlushEnd = performance.now();
  lastFlushTook = lastFlushEnd - t0;
  dirty.length = 0;
  lastParts = undefined;
  lastJoined = undefined;
}

// The `ws` listeners are module-level functions that find their transport on the socket, not
// closures per connection: four closures and their context cost about 300 bytes per idle connection.
const TRANSPORT = Symbol('hubbub.transport');
type TransportSocket = WebSocket & { [TRANSPORT]: WsTransport };

function onWsMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  (this as TransportSocket)[TRANSPORT].handlerOf?.onMessage(data, isBinary);
}
function onWsPong(this: WebSocket): void {
  (this as TransportSocket)[TRANSPORT].handlerOf?.onPong();
}
function onWsClose(this: WebSocket, code: number, reason: Buffer): void {
  (this as TransportSocket)[TRANSPORT].closed(code, reason.toString());
}
// Protocol errors (oversize frame: 1009, invalid UTF-8: 1007, bad framing: 1002) are answered by
// `ws` with the right close code and followed by 'close'; nothing else to do here.
function onWsError(): void {}

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
    (ws as TransportSocket)[TRANSPORT] = this;
    ws.on('message', onWsMessage);
    ws.on('pong', onWsPong);
    ws.on('close', onWsClose);
    ws.on('error', onWsError);
  }

  /** Called by the 'close' listener. */
  closed(code: number, reason: string): void {
    this.closing = true;
    clearTimeout(this.overLimit);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.handler?.onClose(code, reason);
  }

  /** The handler the 'message' and 'pong' listeners hand over to. */
  get handlerOf(): TransportHandler | undefined {
    return this.handler;
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
      if (!flushScheduled) scheduleFlush();
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
      const data = q.length === 1 ? q[0]! : joined(q, bytes);
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
