/** The HTTP server API over real HTTP: every endpoint with and without the key. */
import assert from 'node:assert/strict';
import { fromBinary } from '@bufbuild/protobuf';
import { WebSocket } from 'ws';
import { isLoopback } from '../src/http/util.js';
import { after, before, describe, it } from 'node:test';
import * as pb from '../src/protocol/gen/hubbub_pb.js';
import { PROTOBUF_SUBPROTOCOL, encodeClientFrame } from '../src/protocol/proto-codec.js';
import { TestClient, api, startServer, type Frame, type TestServer } from './helpers.js';

const KEY = 'test-key-1';
const KEY2 = 'second-key';
let srv: TestServer;
const clients: TestClient[] = [];
async function client(hello?: Record<string, unknown>): Promise<TestClient> {
  const c = await TestClient.connect(srv.url);
  clients.push(c);
  if (hello) await c.request({ type: 'hello', ...hello });
  return c;
}

before(async () => {
  srv = await startServer({ api_keys: [KEY, KEY2], max_message_size: 4096 });
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await srv.close();
});

describe('health and test page', () => {
  it('GET /health needs no key', async () => {
    const r = await api(srv.http, 'GET', '/health');
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'ok');
    assert.equal(r.body.server, 'hubbub');
    assert.equal(typeof r.body.uptime, 'number');
  });
  it('GET / serves the test page', async () => {
    const res = await fetch(`${srv.http}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /text\/html/);
    assert.match(await res.text(), /<html|<!doctype html/i);
  });
  it('unknown paths get 404 with an error body', async () => {
    const r = await api(srv.http, 'GET', '/nope');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');
  });
});

describe('API keys', () => {
  const routes: [string, string, unknown?][] = [
    ['POST', '/api/publish', { channel: 'a', data: 1 }],
    ['POST', '/api/broadcast', { data: 1 }],
    ['POST', '/api/send', { to: { user: 'x' }, data: 1 }],
    ['POST', '/api/disconnect', { user: 'x' }],
    ['GET', '/api/clients'],
    ['GET', '/api/stats'],
    ['GET', '/api/channels'],
    ['GET', '/api/channels/a/presence'],
  ];
  it('refuses every endpoint without a key, or with a wrong one, with 401', async () => {
    for (const [method, path, body] of routes) {
      for (const key of [undefined, 'wrong', `${KEY}x`, KEY.slice(0, -1)]) {
        const r = await api(srv.http, method, path, body, key);
        assert.equal(r.status, 401, `${method} ${path} key=${key}`);
        assert.equal(r.body.error.code, 'unauthorized');
        assert.match(r.headers.get('www-authenticate') ?? '', /Bearer/);
      }
    }
  });
  it('accepts every configured key', async () => {
    for (const key of [KEY, KEY2]) {
      for (const [method, path, body] of routes) {
        const r = await api(srv.http, method, path, body, key);
        assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.body)}`);
      }
    }
  });
  it('refuses a malformed Authorization header', async () => {
    const res = await fetch(`${srv.http}/api/stats`, { headers: { authorization: `Basic ${KEY}` } });
    assert.equal(res.status, 401);
  });
});

describe('publishing and messaging from the server', () => {
  it('POST /api/publish delivers with from: {server: true}', async () => {
    const sub = await client();
    await sub.request({ type: 'subscribe', channel: 'alerts/+' });
    const r = await api(srv.http, 'POST', '/api/publish', { channel: 'alerts/fire', data: { level: 3 }, kind: 'system' }, KEY);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { delivered: 1 });
    const m = await sub.next((f) => f.type === 'message');
    assert.equal(m.channel, 'alerts/fire');
    assert.equal(m.pattern, 'alerts/+');
    assert.deepEqual(m.data, { level: 3 });
    assert.equal(m.kind, 'system');
    assert.deepEqual(m.from, { server: true });
  });

  it('POST /api/broadcast reaches every client', async () => {
    const a = await client();
    const b = await client();
    const r = await api(srv.http, 'POST', '/api/broadcast', { data: 'maintenance at 5' }, KEY);
    assert.equal(r.status, 200);
    assert.equal(r.body.delivered, srv.server.hub.clients.size);
    for (const c of [a, b]) {
      const m = await c.next((f) => f.type === 'broadcast' && f.data === 'maintenance at 5');
      assert.deepEqual(m.from, { server: true });
    }
  });

  it('POST /api/send reaches a client or every connection of a user', async () => {
    const a = await client({ user: 'erin' });
    const b = await client({ user: 'erin' });
    const r = await api(srv.http, 'POST', '/api/send', { to: { user: 'erin' }, data: 'hello erin' }, KEY);
    assert.deepEqual(r.body, { delivered: 2 });
    for (const c of [a, b]) assert.deepEqual((await c.next((f) => f.type === 'direct')).from, { server: true });
    const one = await api(srv.http, 'POST', '/api/send', { to: { client: a.welcome.client }, data: 'just a' }, KEY);
    assert.deepEqual(one.body, { delivered: 1 });
    assert.equal((await a.next((f) => f.type === 'direct')).data, 'just a');
    assert.deepEqual(await b.nothing((f) => f.type === 'direct'), []);
  });

  it('answers bad bodies with 400 and the error body', async () => {
    const cases: [string, unknown, string][] = [
      ['/api/publish', '{oops', 'bad_request'],
      ['/api/publish', '[1]', 'bad_request'],
      ['/api/publish', { data: 1 }, 'bad_request'],
      ['/api/publish', { channel: 'a' }, 'bad_request'],
      ['/api/publish', { channel: 'a/+', data: 1 }, 'invalid_channel'],
      ['/api/publish', { channel: 'a', data: 1, kind: 7 }, 'bad_request'],
      ['/api/broadcast', {}, 'bad_request'],
      ['/api/send', { to: { nobody: 1 }, data: 1 }, 'bad_request'],
      ['/api/send', { to: { user: 'x' } }, 'bad_request'],
      ['/api/disconnect', {}, 'bad_request'],
      ['/api/disconnect', { client: 'a', user: 'b' }, 'bad_request'],
      ['/api/disconnect', { user: 'b', reconnect: 'yes' }, 'bad_request'],
    ];
    for (const [path, body, code] of cases) {
      const r = await api(srv.http, 'POST', path, body, KEY);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}`);
      assert.equal(r.body.error.code, code, `${path} ${JSON.stringify(body)}`);
      assert.equal(typeof r.body.error.message, 'string');
    }
  });

  it('answers an oversize body with 413 too_large', async () => {
    const r = await api(srv.http, 'POST', '/api/publish', { channel: 'a', data: 'x'.repeat(5000) }, KEY);
    assert.equal(r.status, 413);
    assert.equal(r.body.error.code, 'too_large');
  });

  it('answers a wrong method with 405 and unknown API paths with 404', async () => {
    const r = await api(srv.http, 'GET', '/api/publish', undefined, KEY);
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'POST');
    const nf = await api(srv.http, 'GET', '/api/nothing', undefined, KEY);
    assert.equal(nf.status, 404);
    assert.equal(nf.body.error.code, 'not_found');
  });
});

describe('inspection', () => {
  it('GET /api/clients lists connections', async () => {
    const c = await client({ name: 'Listed', user: 'listed' });
    const r = await api(srv.http, 'GET', '/api/clients', undefined, KEY);
    assert.equal(r.body.count, r.body.clients.length);
    const me = r.body.clients.find((x: Frame) => x.client === c.welcome.client);
    assert.deepEqual(Object.keys(me).sort(), ['client', 'connected_at', 'name', 'user']);
  });

  it('GET /api/channels and presence report subscribers', async () => {
    const a = await client({ name: 'Pa' });
    const b = await client();
    await a.request({ type: 'subscribe', channel: 'stats/room' });
    await b.request({ type: 'subscribe', channel: 'stats/room' });
    await b.request({ type: 'subscribe', channel: 'stats/#' });
    const r = await api(srv.http, 'GET', '/api/channels', undefined, KEY);
    assert.equal(r.body.channels['stats/room'], 2);
    assert.equal(r.body.patterns['stats/#'], 1);
    for (const path of ['/api/channels/stats/room/presence', '/api/channels/stats%2Froom/presence']) {
      const p = await api(srv.http, 'GET', path, undefined, KEY);
      assert.equal(p.status, 200);
      assert.equal(p.body.channel, 'stats/room');
      assert.deepEqual(p.body.clients.map((x: Frame) => x.client).sort(), [a.welcome.client, b.welcome.client].sort());
    }
    const bad = await api(srv.http, 'GET', '/api/channels/stats/+/presence', undefined, KEY);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'invalid_channel');
  });

  it('GET /api/stats counts connections, channels, subscriptions, messages, bytes and uptime', async () => {
    const before = (await api(srv.http, 'GET', '/api/stats', undefined, KEY)).body;
    const c = await client();
    await c.request({ type: 'subscribe', channel: 'count/me' });
    await c.request({ type: 'publish', channel: 'count/me', data: 'abc' });
    await c.next((f) => f.type === 'message');
    const s = (await api(srv.http, 'GET', '/api/stats', undefined, KEY)).body;
    for (const key of ['connections', 'channels', 'subscriptions', 'messages_in', 'messages_out', 'bytes_in', 'bytes_out', 'uptime', 'rss']) {
      assert.equal(typeof s[key], 'number', key);
    }
    assert.equal(s.connections, srv.server.hub.clients.size);
    assert.ok(s.messages_in >= before.messages_in + 2);
    assert.ok(s.messages_out >= before.messages_out + 4); // welcome, 2 replies, the message
    assert.ok(s.bytes_in > before.bytes_in);
    assert.ok(s.bytes_out > before.bytes_out);
    assert.ok(s.subscriptions >= 1);
  });

  it('POST /api/disconnect closes a client (terminal) or a user (reconnect)', async () => {
    const a = await client();
    const r = await api(srv.http, 'POST', '/api/disconnect', { client: a.welcome.client }, KEY);
    assert.deepEqual(r.body, { disconnected: 1 });
    assert.deepEqual(await a.closed, { code: 4500, reason: 'disconnected by the server' });
    const u1 = await client({ user: 'frank' });
    const u2 = await client({ user: 'frank' });
    const r2 = await api(srv.http, 'POST', '/api/disconnect', { user: 'frank', reconnect: true, reason: 'rebalance' }, KEY);
    assert.deepEqual(r2.body, { disconnected: 2 });
    assert.deepEqual(await u1.closed, { code: 4002, reason: 'rebalance' });
    assert.deepEqual(await u2.closed, { code: 4002, reason: 'rebalance' });
  });
});

describe('without API keys', () => {
  it('answers loopback callers', async () => {
    const open = await startServer();
    try {
      const ok = await api(open.http, 'GET', '/api/stats');
      assert.equal(ok.status, 200);
      assert.equal(typeof ok.body.connections, 'number');
    } finally {
      await open.close();
    }
  });
  // Tests only reach this server over loopback, so the refusal of other addresses is checked on the
  // predicate the API applies to the peer address.
  it('treats only 127.0.0.0/8 and ::1 (also IPv4-mapped) as loopback', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopback(a), true, a);
    for (const a of ['10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1', 'fe80::1', '128.0.0.1', '', undefined]) assert.equal(isLoopback(a), false, String(a));
  });
});

describe('channel length', () => {
  it('applies max_channel_length to the API as to clients', async () => {
    const short = await startServer({ max_channel_length: 10 });
    try {
      const ok = await api(short.http, 'POST', '/api/publish', { channel: 'x'.repeat(10), data: 1 });
      assert.equal(ok.status, 200);
      const long = await api(short.http, 'POST', '/api/publish', { channel: 'x'.repeat(11), data: 1 });
      assert.equal(long.status, 400);
      assert.equal(long.body.error.code, 'invalid_channel');
      const presence = await api(short.http, 'GET', `/api/channels/${'y'.repeat(11)}/presence`);
      assert.equal(presence.body.error.code, 'invalid_channel');
    } finally {
      await short.close();
    }
  });
});

type FrameCase = NonNullable<pb.Frame['frame']['case']>;
type FrameValue<K extends FrameCase> = Extract<pb.Frame['frame'], { case: K }>['value'];

describe('byte payloads ("encoding":"base64")', () => {
  /** A raw protobuf connection keeping every Frame it receives, to check payloads as they are on the wire. */
  class ProtoListener {
    readonly frames: pb.Frame[] = [];
    /** Text frames: a protobuf connection must get none. */
    readonly texts: string[] = [];
    id = '';
    private constructor(readonly ws: WebSocket) {
      ws.on('message', (data: Buffer, binary: boolean) => {
        if (binary) this.frames.push(fromBinary(pb.FrameSchema, data));
        else this.texts.push(data.toString());
      });
    }
    static async open(): Promise<ProtoListener> {
      const l = new ProtoListener(new WebSocket(srv.url, PROTOBUF_SUBPROTOCOL));
      listeners.push(l);
      const welcome = await l.next('welcome');
      l.id = welcome.client;
      return l;
    }
    /** The next frame of a case (consumed). */
    async next<K extends FrameCase>(k: K, timeoutMs = 3000): Promise<FrameValue<K>> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (this.texts.length > 0) throw new Error(`a protobuf connection got a text frame: ${this.texts[0]}`);
        const i = this.frames.findIndex((f) => f.frame.case === k);
        if (i >= 0) return this.frames.splice(i, 1)[0]!.frame.value as FrameValue<K>;
        if (Date.now() > deadline) throw new Error(`no ${k} frame; got ${this.frames.map((f) => f.frame.case).join(', ')}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    async request(frame: Parameters<typeof encodeClientFrame>[0] & { id: number }): Promise<void> {
      this.ws.send(encodeClientFrame(frame));
      const r = await this.next('reply');
      assert.equal(r.id, frame.id);
    }
  }
  const listeners: ProtoListener[] = [];
  after(() => {
    for (const l of listeners) l.ws.close();
  });
  const bytes = new Uint8Array([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]);
  const b64 = Buffer.from(bytes).toString('base64');

  it('POST /api/publish: bytes to protobuf subscribers, base64 to JSON subscribers', async () => {
    const p = await ProtoListener.open();
    await p.request({ type: 'subscribe', id: 1, channel: 'bin/#' });
    const j = await client();
    await j.request({ type: 'subscribe', channel: 'bin/a' });
    const r = await api(srv.http, 'POST', '/api/publish', { channel: 'bin/a', data: b64, encoding: 'base64', kind: 'blob' }, KEY);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { delivered: 2 });
    const m = await p.next('message');
    assert.equal(m.json, false);
    assert.deepEqual([...m.data], [...bytes]);
    assert.equal(m.channel, 'bin/a');
    assert.equal(m.pattern, 'bin/#');
    assert.equal(m.kind, 'blob');
    assert.equal(m.from?.server, true);
    const jm = await j.next((f) => f.type === 'message');
    assert.deepEqual(jm, { type: 'message', channel: 'bin/a', pattern: 'bin/a', data: b64, encoding: 'base64', kind: 'blob', from: { server: true }, ts: Number(m.ts) });
    // empty bytes are a payload too
    assert.equal((await api(srv.http, 'POST', '/api/publish', { channel: 'bin/a', data: '', encoding: 'base64' }, KEY)).status, 200);
    assert.equal((await p.next('message')).data.length, 0);
    const empty = await j.next((f) => f.type === 'message');
    assert.equal(empty.data, '');
    assert.equal(empty.encoding, 'base64');
    // without encoding, the same string is a JSON string
    await api(srv.http, 'POST', '/api/publish', { channel: 'bin/a', data: b64 }, KEY);
    const asText = await p.next('message');
    assert.equal(asText.json, true);
    assert.equal(Buffer.from(asText.data).toString(), JSON.stringify(b64));
    const jt = await j.next((f) => f.type === 'message');
    assert.equal(jt.data, b64);
    assert.equal('encoding' in jt, false);
  });

  it('POST /api/send: bytes to a protobuf client, base64 to a JSON client', async () => {
    const p = await ProtoListener.open();
    await p.request({ type: 'hello', id: 1, user: 'bytes-user' });
    const j = await client({ user: 'bytes-user' });
    const r = await api(srv.http, 'POST', '/api/send', { to: { user: 'bytes-user' }, data: b64, encoding: 'base64', kind: 'file' }, KEY);
    assert.deepEqual(r.body, { delivered: 2 });
    const d = await p.next('direct');
    assert.equal(d.json, false);
    assert.deepEqual([...d.data], [...bytes]);
    assert.equal(d.kind, 'file');
    assert.equal(d.from?.server, true);
    const jd = await j.next((f) => f.type === 'direct');
    assert.deepEqual(jd, { type: 'direct', data: b64, encoding: 'base64', kind: 'file', from: { server: true }, ts: Number(d.ts) });
    const one = await api(srv.http, 'POST', '/api/send', { to: { client: p.id }, data: 'AAA=', encoding: 'base64' }, KEY);
    assert.deepEqual(one.body, { delivered: 1 });
    assert.deepEqual([...(await p.next('direct')).data], [0, 0]);
  });

  it('POST /api/broadcast: bytes to protobuf clients, base64 to JSON clients', async () => {
    const p = await ProtoListener.open();
    const j = await client();
    const r = await api(srv.http, 'POST', '/api/broadcast', { data: b64, encoding: 'base64' }, KEY);
    assert.equal(r.status, 200);
    assert.equal(r.body.delivered, srv.server.hub.clients.size);
    const b = await p.next('broadcast');
    assert.equal(b.json, false);
    assert.deepEqual([...b.data], [...bytes]);
    assert.equal(b.from?.server, true);
    const jb = await j.next((f) => f.type === 'broadcast' && f.encoding === 'base64');
    assert.equal(jb.data, b64);
    assert.deepEqual(jb.from, { server: true });
  });

  it('refuses invalid base64, unknown encodings and non-string data with 400 bad_request', async () => {
    const watcher = await client();
    await watcher.request({ type: 'subscribe', channel: 'bin/#' });
    const bodies: [string, Record<string, unknown>][] = [];
    for (const data of ['AQI', 'A===', 'AQ=D', '!!!!', 'AQ-_', 'AQID\n']) {
      bodies.push(['/api/publish', { channel: 'bin/x', data, encoding: 'base64' }], ['/api/send', { to: { user: 'u' }, data, encoding: 'base64' }], ['/api/broadcast', { data, encoding: 'base64' }]);
    }
    for (const [path, body] of bodies) {
      const r = await api(srv.http, 'POST', path, body, KEY);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}`);
      assert.equal(r.body.error.code, 'bad_request');
      assert.match(r.body.error.message, /not valid base64/);
    }
    const others: [Record<string, unknown>, RegExp][] = [
      [{ channel: 'bin/x', data: 'AQID', encoding: 'hex' }, /encoding must be "base64"/],
      [{ channel: 'bin/x', data: 'AQID', encoding: null }, /encoding must be "base64"/],
      [{ channel: 'bin/x', data: 5, encoding: 'base64' }, /data must be a base64 string/],
      [{ channel: 'bin/x', data: ['AQID'], encoding: 'base64' }, /data must be a base64 string/],
    ];
    for (const [body, re] of others) {
      const r = await api(srv.http, 'POST', '/api/publish', body, KEY);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'bad_request');
      assert.match(r.body.error.message, re);
    }
    assert.deepEqual(await watcher.nothing((f) => f.type === 'message'), [], 'nothing refused was delivered');
  });
});
