/**
 * permessage-deflate (RFC 7692) against a real server: what `ws` clients and the SDK receive, and
 * the frames on the wire, read by a hand-written WebSocket client over a raw TCP socket and inflated
 * with zlib directly.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { Hubbub, type MessageFrame } from '../src/client/index.js';
import { decodeServerFrame, encodeClientFrame } from '../src/protocol/proto-codec.js';
import type { WsTransport } from '../src/transport/ws-transport.js';
import { Outgoing } from '../src/transport/outgoing.js';
import { TestClient, startServer, type TestServer, until } from './helpers.js';

const THRESHOLD = 1024;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A compressible JSON payload of roughly `bytes` bytes. */
function bigJson(bytes: number, tag: string): { tag: string; rows: { id: number; name: string; status: string; value: number }[] } {
  const rows = [];
  for (let i = 0; JSON.stringify(rows).length < bytes; i++) rows.push({ id: i, name: `sensor-${i % 40}`, status: i % 3 === 0 ? 'ok' : 'degraded', value: i % 17 });
  return { tag, rows };
}

interface WireFrame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  /** The payload as carried (still compressed when rsv1). */
  payload: Buffer;
  /** The whole frame, header included. */
  raw: Buffer;
}

/** A minimal WebSocket client on a raw TCP socket, so that tests see frame headers and compressed payloads. */
class RawWs {
  readonly frames: WireFrame[] = [];
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private constructor(
    private readonly socket: Socket,
    readonly status: number,
    readonly headers: Record<string, string>,
    rest: Buffer,
  ) {
    socket.on('data', (d: Buffer) => this.feed(d));
    socket.on('error', () => {});
    socket.on('close', () => this.wake());
    this.feed(rest);
  }

  static connect(port: number, options: { extensions?: string; protocol?: string } = {}): Promise<RawWs> {
    const key = randomBytes(16).toString('base64');
    const lines = [
      'GET /ws HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
    ];
    if (options.extensions) lines.push(`Sec-WebSocket-Extensions: ${options.extensions}`);
    if (options.protocol) lines.push(`Sec-WebSocket-Protocol: ${options.protocol}`);
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(lines.join('\r\n') + '\r\n\r\n'));
      let head = Buffer.alloc(0);
      const onData = (d: Buffer): void => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('error', reject);
        const [statusLine, ...headerLines] = head.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of headerLines) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const status = Number(statusLine!.split(' ')[1]);
        if (status === 101) {
          const accept = createHash('sha1').update(key + GUID).digest('base64');
          if (headers['sec-websocket-accept'] !== accept) {
            reject(new Error(`bad Sec-WebSocket-Accept ${headers['sec-websocket-accept']}`));
            return;
          }
        }
        resolve(new RawWs(socket, status, headers, head.subarray(end + 4)));
      };
      socket.on('data', onData);
      socket.once('error', reject);
    });
  }

  private feed(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < 2) break;
      const b0 = this.buf[0]!;
      const b1 = this.buf[1]!;
      assert.equal(b1 & 0x80, 0, 'server frames are not masked');
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) break;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) break;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) break;
      const raw = Buffer.from(this.buf.subarray(0, off + len));
      this.frames.push({ fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, payload: raw.subarray(off), raw });
      this.buf = this.buf.subarray(off + len);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next data frame (text or binary), skipping control frames; taken off the list. */
  async next(timeoutMs = 5000): Promise<WireFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => f.opcode === 1 || f.opcode === 2);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0 || this.socket.destroyed) throw new Error('no data frame from the server');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Send one masked frame; `compress` deflates it and sets RSV1 (only valid after negotiating permessage-deflate). */
  send(data: string | Uint8Array, compress = false): void {
    const opcode = typeof data === 'string' ? 1 : 2;
    let payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    if (compress) {
      const z = deflateRawSync(payload, { finishFlush: constants.Z_SYNC_FLUSH });
      payload = z.subarray(0, z.length - 4);
    }
    const len = payload.length;
    const header = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    header[0] = 0x80 | (compress ? 0x40 : 0) | opcode;
    if (len < 126) header[1] = 0x80 | len;
    else if (len < 65536) {
      header[1] = 0x80 | 126;
      header.writeUInt16BE(len, 2);
    } else {
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = randomBytes(4);
    const masked = Buffer.alloc(len);
    for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The message a frame carries, inflated when RSV1 says it was compressed. */
function unwrap(f: WireFrame): Buffer {
  // The message ends with a sync flush, not a final block: inflate up to it.
  return f.rsv1 ? inflateRawSync(Buffer.concat([f.payload, TAIL]), { finishFlush: constants.Z_SYNC_FLUSH }) : f.payload;
}

function json(f: WireFrame): Record<string, unknown> {
  assert.equal(f.opcode, 1, 'a text frame');
  return JSON.parse(unwrap(f).toString('utf8')) as Record<string, unknown>;
}


describe('permessage-deflate enabled', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ permessage_deflate: true, compression_threshold: THRESHOLD });
  });
  after(() => srv.close());

  it('ws and SDK clients receive large and small publications intact and in order', async () => {
    const wsClient = await TestClient.connect(srv.url); // ws offers permessage-deflate by default
    assert.match(wsClient.ws.extensions, /permessage-deflate/);
    assert.equal((await wsClient.request({ type: 'subscribe', channel: 'feed/a' })).type, 'reply');
    const hub = new Hubbub(srv.url, { reconnect: false });
    const got: MessageFrame[] = [];
    hub.on('message', (m) => got.push(m));
    await hub.connect({ retry: false });
    try {
      await hub.subscribe('feed/a', () => {}).ready;
      const transport = srv.server.hub.clients.get(hub.clientId!)!.transport as WsTransport;
      assert.equal(transport.compressing, true, 'the SDK connection negotiated permessage-deflate');

      const pub = await TestClient.connect(srv.url, { perMessageDeflate: false });
      const sent = [{ n: 0 }, bigJson(20_000, 'one'), { n: 2 }, bigJson(30_000, 'three'), { n: 4, text: 'x'.repeat(THRESHOLD) }, 'tiny'];
      for (const data of sent) assert.equal((await pub.request({ type: 'publish', channel: 'feed/a', data })).type, 'reply');
      await until(() => got.length === sent.length, 'every publication at the SDK');
      assert.deepEqual(got.map((m) => m.data), sent);
      const received = [];
      for (let i = 0; i < sent.length; i++) received.push((await wsClient.next((f) => f.type === 'message')).data);
      assert.deepEqual(received, sent);
      await pub.close();
    } finally {
      hub.close();
      await wsClient.close();
    }
  });

  it('on the wire: frames at or over the threshold are compressed (RSV1) and inflate to the JSON frame; smaller ones are not', async () => {
    const raw = await RawWs.connect(srv.port, { extensions: 'permessage-deflate; client_max_window_bits' });
    try {
      assert.equal(raw.status, 101);
      const ext = raw.headers['sec-websocket-extensions'] ?? '';
      assert.match(ext, /^permessage-deflate\b/);
      assert.match(ext, /server_no_context_takeover/);
      assert.equal(raw.headers['sec-websocket-protocol'], undefined, 'no subprotocol asked, none chosen');

      const welcome = await raw.next();
      assert.equal(welcome.rsv1, false, 'the welcome is small');
      assert.equal(json(welcome).type, 'welcome');
      raw.send(JSON.stringify({ type: 'subscribe', channel: 'wire/j', id: 1 }));
      const reply = await raw.next();
      assert.equal(reply.rsv1, false);
      assert.deepEqual(json(reply), { type: 'reply', id: 1, data: {} });

      const pub = await TestClient.connect(srv.url);
      const big = bigJson(20_000, 'big');
      const big2 = bigJson(25_000, 'big2');
      assert.equal((await pub.request({ type: 'publish', channel: 'wire/j', data: big })).type, 'reply');
      assert.equal((await pub.request({ type: 'publish', channel: 'wire/j', data: { small: true } })).type, 'reply');
      assert.equal((await pub.request({ type: 'publish', channel: 'wire/j', data: big2 })).type, 'reply');

      const f1 = await raw.next();
      assert.equal(f1.fin, true);
      assert.equal(f1.opcode, 1);
      assert.equal(f1.rsv1, true, 'a large frame is compressed');
      const m1 = json(f1);
      assert.equal(m1.type, 'message');
      assert.equal(m1.channel, 'wire/j');
      assert.deepEqual(m1.data, big);
      assert.ok(f1.payload.length < unwrap(f1).length / 3, `compressed ${unwrap(f1).length} to ${f1.payload.length} bytes`);

      const f2 = await raw.next();
      assert.equal(f2.rsv1, false, 'a small frame is not compressed');
      assert.deepEqual(JSON.parse(f2.payload.toString('utf8')).data, { small: true });

      // Each compressed message stands alone (server_no_context_takeover): the second inflates without the first.
      const f3 = await raw.next();
      assert.equal(f3.rsv1, true);
      assert.deepEqual(json(f3).data, big2);

      // The threshold is exact: a frame of THRESHOLD - 1 bytes goes plain, one of THRESHOLD bytes compressed.
      assert.equal((await pub.request({ type: 'publish', channel: 'wire/j', data: 'x'.repeat(100) })).type, 'reply');
      const probe = await raw.next();
      assert.equal(probe.rsv1, false);
      const base = probe.payload.length - 100; // the frame around the string (the ts keeps its 13 digits)
      for (const size of [THRESHOLD - 1, THRESHOLD]) {
        assert.equal((await pub.request({ type: 'publish', channel: 'wire/j', data: 'x'.repeat(size - base) })).type, 'reply');
        const f = await raw.next();
        assert.equal(unwrap(f).length, size);
        assert.equal(f.rsv1, size >= THRESHOLD, `a frame of ${size} bytes`);
      }

      // The client may compress what it sends too.
      const mine = bigJson(5_000, 'from-raw');
      raw.send(JSON.stringify({ type: 'publish', channel: 'wire/j', data: mine, id: 2 }), true);
      const echoed = [await raw.next(), await raw.next()].map(json);
      assert.deepEqual(echoed.find((f) => f.type === 'message')?.data, mine);
      assert.deepEqual(echoed.find((f) => f.type === 'reply'), { type: 'reply', id: 2, data: {} });
      await pub.close();
    } finally {
      raw.close();
    }
  });

  it('on the wire with hubbub.v1.protobuf: large binary frames are compressed and inflate to a protobuf Frame', async () => {
    const raw = await RawWs.connect(srv.port, { extensions: 'permessage-deflate; client_max_window_bits', protocol: 'hubbub.v1.protobuf' });
    try {
      assert.equal(raw.status, 101);
      assert.equal(raw.headers['sec-websocket-protocol'], 'hubbub.v1.protobuf');
      assert.match(raw.headers['sec-websocket-extensions'] ?? '', /permessage-deflate.*server_no_context_takeover/);
      const welcome = await raw.next();
      assert.equal(welcome.opcode, 2);
      assert.equal(welcome.rsv1, false);
      assert.equal(decodeServerFrame(welcome.payload).type, 'welcome');
      raw.send(encodeClientFrame({ type: 'subscribe', channel: 'wire/p', id: 7 }));
      const reply = decodeServerFrame(unwrap(await raw.next()));
      assert.equal(reply.type, 'reply');

      const pub = await TestClient.connect(srv.url);
      const big = bigJson(20_000, 'proto');
      const bytes = randomBytes(200);
      assert.equal((await pub.request({ type: 'publish', channel: 'wire/p', data: big })).type, 'reply');
      assert.equal((await pub.request({ type: 'publish', channel: 'wire/p', data: bytes.toString('base64'), encoding: 'base64' })).type, 'reply');

      const f1 = await raw.next();
      assert.equal(f1.opcode, 2, 'a binary frame');
      assert.equal(f1.rsv1, true, 'compressed');
      const m1 = decodeServerFrame(unwrap(f1));
      assert.equal(m1.type, 'message');
      assert.deepEqual((m1 as MessageFrame).data, big);
      assert.ok(f1.payload.length < unwrap(f1).length / 3);

      const f2 = await raw.next();
      assert.equal(f2.opcode, 2);
      assert.equal(f2.rsv1, false, 'a small binary frame is not compressed');
      const m2 = decodeServerFrame(f2.payload) as MessageFrame;
      assert.ok(m2.data instanceof Uint8Array && Buffer.from(m2.data).equals(bytes));
      await pub.close();
    } finally {
      raw.close();
    }
  });

  it('deflate and plain clients in one channel get the same publications; the compressed frame is built once', async () => {
    const d1 = await RawWs.connect(srv.port, { extensions: 'permessage-deflate; client_max_window_bits' });
    const d2 = await RawWs.connect(srv.port, { extensions: 'permessage-deflate' });
    const plain = await RawWs.connect(srv.port);
    const wsDeflate = await TestClient.connect(srv.url);
    const wsPlain = await TestClient.connect(srv.url, { perMessageDeflate: false });
    const built: Buffer[] = [];
    const original = Outgoing.prototype.wsDeflated;
    try {
      assert.equal(plain.headers['sec-websocket-extensions'], undefined, 'nothing offered, nothing accepted');
      assert.match(wsDeflate.ws.extensions, /permessage-deflate/);
      assert.equal(wsPlain.ws.extensions, '');
      let id = 1;
      for (const raw of [d1, d2, plain]) {
        assert.equal(json(await raw.next()).type, 'welcome');
        raw.send(JSON.stringify({ type: 'subscribe', channel: 'mixed/x', id }));
        assert.deepEqual(json(await raw.next()), { type: 'reply', id: id++, data: {} });
      }
      for (const c of [wsDeflate, wsPlain]) assert.equal((await c.request({ type: 'subscribe', channel: 'mixed/x' })).type, 'reply');

      Outgoing.prototype.wsDeflated = function (this: Outgoing, bits: number) {
        const b = original.call(this, bits);
        built.push(b);
        return b;
      };
      const pub = await TestClient.connect(srv.url);
      const sent = [bigJson(20_000, 'a'), { small: 1 }, bigJson(15_000, 'b')];
      for (const data of sent) assert.equal((await pub.request({ type: 'publish', channel: 'mixed/x', data })).type, 'reply');
      await pub.close();

      const frames = await Promise.all([d1, d2, plain].map(async (raw) => [await raw.next(), await raw.next(), await raw.next()]));
      const [f1, f2, fp] = frames as [WireFrame[], WireFrame[], WireFrame[]];
      assert.deepEqual(f1.map((f) => f.rsv1), [true, false, true]);
      assert.deepEqual(f2.map((f) => f.rsv1), [true, false, true]);
      assert.deepEqual(fp.map((f) => f.rsv1), [false, false, false], 'the plain client gets plain frames');
      for (let i = 0; i < 3; i++) {
        assert.ok(f1[i]!.raw.equals(f2[i]!.raw), `deflate clients got the same bytes for publication ${i}`);
        assert.ok(unwrap(f1[i]!).equals(fp[i]!.payload), `publication ${i} inflates to what the plain client got`);
        assert.deepEqual(json(f1[i]!).data, sent[i]);
        assert.deepEqual(json(fp[i]!).data, sent[i]);
      }
      for (const c of [wsDeflate, wsPlain]) {
        const got = [];
        for (let i = 0; i < sent.length; i++) got.push((await c.next((f) => f.type === 'message')).data);
        assert.deepEqual(got, sent);
      }
      // Two large publications, each to three deflate connections: one compressed frame per publication.
      assert.equal(built.length, 6);
      assert.equal(new Set(built).size, 2, 'the compressed frame of a publication is shared by its recipients');
    } finally {
      Outgoing.prototype.wsDeflated = original;
      for (const raw of [d1, d2, plain]) raw.close();
      await wsDeflate.close();
      await wsPlain.close();
    }
  });
});

describe('permessage-deflate disabled (the default)', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ compression_threshold: THRESHOLD });
  });
  after(() => srv.close());

  it('the extension is not accepted and frames go uncompressed', async () => {
    const raw = await RawWs.connect(srv.port, { extensions: 'permessage-deflate; client_max_window_bits' });
    const wsClient = await TestClient.connect(srv.url);
    try {
      assert.equal(raw.status, 101);
      assert.equal(raw.headers['sec-websocket-extensions'], undefined);
      assert.equal(wsClient.ws.extensions, '');
      assert.equal(json(await raw.next()).type, 'welcome');
      raw.send(JSON.stringify({ type: 'subscribe', channel: 'off/x', id: 1 }));
      assert.equal(json(await raw.next()).type, 'reply');
      const big = bigJson(20_000, 'off');
      assert.equal((await wsClient.request({ type: 'publish', channel: 'off/x', data: big })).type, 'reply');
      const f = await raw.next();
      assert.equal(f.rsv1, false);
      assert.ok(f.payload.length > 20_000);
      assert.deepEqual(JSON.parse(f.payload.toString('utf8')).data, big);
    } finally {
      raw.close();
      await wsClient.close();
    }
  });
});
