/**
 * A lean WebSocket client for load generation: a raw `net` socket that does the HTTP upgrade
 * itself and then runs the frame parser straight on the socket's chunks. A subscriber that only
 * counts messages never copies or decodes a payload, so one generator process can keep up with
 * thousands of connections; a sampled subscriber gets the payload to read a timestamp from it.
 * It can ask for a subprotocol (e.g. hubbub.v1.protobuf, whose frames are binary) and offer
 * permessage-deflate; compressed messages are then flagged, and inflated only where read.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { deflateMessage, encodeClientFrame, FrameParser, inflateMessage, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT } from './frame-parser.js';

export { deflateMessage, encodeClientFrame, FrameError, FrameParser, inflateMessage } from './frame-parser.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * Every client reads into this one buffer (net's `onread` option): reads are handled synchronously
 * one at a time, and the parser copies whatever it keeps across reads, so sharing is safe and saves
 * a Buffer allocation and a stream 'data' event per read.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

export interface LeanClientOptions {
  host: string;
  port: number;
  /** Request path of the WebSocket endpoint (default /ws). */
  path?: string;
  /** Source address, to spread very many connections over 127.0.0.x (ephemeral ports run out at ~28k per pair). */
  localAddress?: string;
  /** Connect + upgrade deadline in ms (default 10 s). */
  timeoutMs?: number;
  /** Subprotocols to ask for (Sec-WebSocket-Protocol); the server must pick one of them. */
  protocols?: string[];
  /**
   * Offer permessage-deflate. Whether the server accepted shows in `deflate`; it must then also
   * have agreed to server_no_context_takeover, since messages are inflated one by one.
   */
  deflate?: boolean;
  /** Extra request headers, e.g. {authorization: 'Bearer …'}. */
  headers?: Record<string, string>;
}

/**
 * Receives each complete data message. `payload` is undefined when the client does not collect
 * payloads (see `collect`); `length` is the message size in bytes as it travelled; `compressed`
 * says permessage-deflate compressed it (then `payload` is still compressed: see `inflateMessage`).
 */
export type MessageHandler = (payload: Buffer | undefined, length: number, binary: boolean, compressed: boolean) => void;

export class LeanClient {
  /** Data messages received. */
  messages = 0;
  /** Payload bytes of the data messages received. */
  bytes = 0;
  /** Socket reads (chunks handed to the parser) since the upgrade. */
  reads = 0;
  /** Bytes read from the socket since the upgrade (frame headers included). */
  wireBytes = 0;
  /** Set once the socket has closed; `closeCode` holds the code of a received close frame, if any. */
  closed = false;
  closeCode: number | undefined;
  /** Where messages go; when unset they are queued for `next()`. */
  onMessage: MessageHandler | undefined;
  onClose: (() => void) | undefined;

  private readonly parser: FrameParser;
  private readonly queue: Buffer[] = [];
  private waiters: { resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private fragmentBinary = false;

  private constructor(
    readonly socket: Socket,
    /** The subprotocol the server picked ('' when none was asked for). */
    readonly protocol: string,
    /** Whether permessage-deflate was negotiated. */
    readonly deflate: boolean,
  ) {
    this.parser = new FrameParser((opcode, fin, payload, length, compressed) => this.onFrame(opcode, fin, payload, length, compressed), { perMessageDeflate: deflate });
  }

  /** Whether message payloads are collected (needed for `next()` and for sampled subscribers). */
  get collect(): boolean {
    return this.parser.collect;
  }
  set collect(on: boolean) {
    this.parser.collect = on;
  }

  /** Open a TCP connection and upgrade it; resolves once the server answered 101. */
  static connect(options: LeanClientOptions): Promise<LeanClient> {
    const path = options.path ?? '/ws';
    const timeoutMs = options.timeoutMs ?? 10_000;
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    return new Promise((resolve, reject) => {
      let client: LeanClient | undefined;
      let head: Buffer = Buffer.alloc(0);
      let done = false;
      let protocol = '';
      let deflate = false;
      // Reads land in one buffer shared by every client (see READ_BUFFER) and are handed to the
      // upgrade parser, then to the frame parser, without going through the stream machinery.
      const socket = connect({
        host: options.host,
        port: options.port,
        localAddress: options.localAddress,
        onread: {
          buffer: READ_BUFFER,
          callback: (n: number, buf: Uint8Array): boolean => {
            const chunk = (buf as Buffer).subarray(0, n);
            if (client) client.onBytes(chunk);
            else onHandshakeBytes(chunk);
            return true;
          },
        },
      });
      socket.setNoDelay(true);
      const timer = setTimeout(() => finish(new Error(`upgrade timed out after ${timeoutMs} ms`)), timeoutMs);
      const finish = (err: Error | undefined, rest?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.off('error', onError);
        socket.off('close', onEarlyClose);
        if (err) {
          socket.destroy();
          reject(err);
          return;
        }
        client = new LeanClient(socket, protocol, deflate);
        client.start(rest ?? Buffer.alloc(0));
        resolve(client);
      };
      const onHandshakeBytes = (chunk: Buffer): void => {
        if (done) return;
        head = Buffer.concat([head, chunk]); // copies: the read buffer is reused
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 16384) finish(new Error('upgrade response headers too large'));
          return;
        }
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
        if (!status || status[1] !== '101') {
          finish(new Error(`upgrade refused: ${lines[0] ?? '(no status line)'}`));
          return;
        }
        const acceptLine = lines.find((l) => l.toLowerCase().startsWith('sec-websocket-accept:'));
        if (acceptLine?.slice(acceptLine.indexOf(':') + 1).trim() !== accept) {
          finish(new Error('upgrade: bad Sec-WebSocket-Accept'));
          return;
        }
        const header = (name: string): string | undefined => {
          const line = lines.find((l) => l.toLowerCase().startsWith(`${name}:`));
          return line?.slice(line.indexOf(':') + 1).trim();
        };
        protocol = header('sec-websocket-protocol') ?? '';
        if (options.protocols?.length ? !options.protocols.includes(protocol) : protocol !== '') {
          finish(new Error(`upgrade: the server picked subprotocol "${protocol}"`));
          return;
        }
        const extensions = (header('sec-websocket-extensions') ?? '').toLowerCase();
        deflate = extensions.includes('permessage-deflate');
        if (deflate && (!options.deflate || !extensions.includes('server_no_context_takeover'))) {
          finish(new Error(`upgrade: unexpected extension answer "${extensions}"`));
          return;
        }
        finish(undefined, head.subarray(end + 4));
      };
      const onError = (err: Error): void => finish(err);
      const onEarlyClose = (): void => finish(new Error('connection closed during the upgrade'));
      socket.on('error', onError);
      socket.on('close', onEarlyClose);
      socket.write(
        `GET ${path} HTTP/1.1\r\n` +
          `Host: ${options.host}:${options.port}\r\n` +
          'Upgrade: websocket\r\n' +
          'Connection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${key}\r\n` +
          (options.protocols?.length ? `Sec-WebSocket-Protocol: ${options.protocols.join(', ')}\r\n` : '') +
          (options.deflate ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : '') +
          Object.entries(options.headers ?? {})
            .map(([k, v]) => `${k}: ${v}\r\n`)
            .join('') +
          'Sec-WebSocket-Version: 13\r\n\r\n',
      );
    });
  }

  private start(rest: Buffer): void {
    const socket = this.socket;
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.failAll(new Error('connection closed'));
      this.onClose?.();
    });
    if (rest.length > 0) this.onBytes(rest);
  }

  private onBytes(chunk: Buffer): void {
    this.reads++;
    this.wireBytes += chunk.length;
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.failAll(err as Error);
      this.socket.destroy();
    }
  }

  private onFrame(opcode: number, fin: boolean, payload: Buffer | undefined, length: number, compressed: boolean): void {
    switch (opcode) {
      case OP_TEXT:
      case OP_BINARY:
        if (fin) {
          this.deliver(payload, length, opcode === OP_BINARY, compressed);
        } else {
          this.fragmentBinary = opcode === OP_BINARY;
          this.addFragment(payload, length);
        }
        return;
      case OP_CONTINUATION:
        this.addFragment(payload, length);
        if (fin) {
          const whole = this.fragments.length > 0 ? Buffer.concat(this.fragments) : undefined;
          const total = this.fragmentBytes;
          this.fragments = [];
          this.fragmentBytes = 0;
          this.deliver(whole, total, this.fragmentBinary, compressed);
        }
        return;
      case OP_PING:
        if (!this.socket.destroyed) this.socket.write(encodeClientFrame(OP_PONG, payload ?? Buffer.alloc(0)));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE: {
        this.closeCode = payload && payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        // Echo the close and let the server end the TCP connection.
        if (!this.socket.destroyed) this.socket.end(encodeClientFrame(OP_CLOSE, payload && payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0)));
        return;
      }
    }
  }

  private addFragment(payload: Buffer | undefined, length: number): void {
    if (payload) this.fragments.push(Buffer.from(payload)); // copy: the view dies with the chunk
    this.fragmentBytes += length;
  }

  private deliver(payload: Buffer | undefined, length: number, binary: boolean, compressed: boolean): void {
    this.messages++;
    this.bytes += length;
    if (this.onMessage) {
      this.onMessage(payload, length, binary, compressed);
      return;
    }
    if (!payload) return;
    const copy = compressed ? inflateMessage(payload) : Buffer.from(payload);
    const w = this.waiters.shift();
    if (w) {
      clearTimeout(w.timer);
      w.resolve(copy);
    } else {
      this.queue.push(copy);
    }
  }

  private failAll(err: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** The next queued message, inflated (only while `onMessage` is unset and `collect` is on). */
  next(timeoutMs = 10_000): Promise<Buffer> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const w = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`no message within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** The next message parsed as JSON. */
  async nextJson(timeoutMs?: number): Promise<Record<string, unknown>> {
    return JSON.parse((await this.next(timeoutMs)).toString('utf8')) as Record<string, unknown>;
  }

  /** Send one masked text frame. Returns false when the socket buffer is full (see `socket.writableLength`). */
  sendText(text: string): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(encodeClientFrame(OP_TEXT, text));
  }

  /** Send one masked binary frame. */
  sendBinary(bytes: Uint8Array): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(encodeClientFrame(OP_BINARY, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)));
  }

  /** Send one text message compressed with permessage-deflate (RSV1); needs `deflate`. */
  sendCompressedText(text: string): boolean {
    if (!this.deflate) throw new Error('permessage-deflate was not negotiated');
    if (this.socket.destroyed) return false;
    return this.socket.write(encodeClientFrame(OP_TEXT, deflateMessage(text), undefined, true));
  }

  /** Send a pre-built (masked) frame as is. */
  sendRaw(frame: Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(frame);
  }

  /** Start the close handshake (1000) and drop the socket if the server does not finish it in time. */
  close(graceMs = 1000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), graceMs);
      timer.unref();
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      const code = Buffer.allocUnsafe(2);
      code.writeUInt16BE(1000, 0);
      if (!this.socket.destroyed) this.socket.write(encodeClientFrame(OP_CLOSE, code));
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
