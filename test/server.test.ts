/** The WebSocket protocol end to end: a real server on loopback, real `ws` clients. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, startServer, type Frame, type TestServer } from './helpers.js';

let srv: TestServer;
const open: TestClient[] = [];
async function client(hello?: Record<string, unknown>): Promise<TestClient> {
  const c = await TestClient.connect(srv.url);
  open.push(c);
  if (hello) {
    const r = await c.request({ type: 'hello', ...hello });
    assert.equal(r.type, 'reply', JSON.stringify(r));
  }
  return c;
}
const isMsg = (channel?: string) => (f: Frame) => f.type === 'message' && (channel === undefined || f.channel === channel);

before(async () => {
  // No message rate limit here: these tests send bursts on purpose (limits: test/access.test.ts).
  srv = await startServer({ message_rate: 0 });
});
after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await srv.close();
});

describe('connection and identity', () => {
  it('sends a welcome on open', async () => {
    const c = await client();
    const w = c.welcome;
    assert.equal(w.server, 'hubbub');
    assert.equal(w.protocol, 1);
    assert.match(w.client as string, /^[0-9a-f-]{36}$/);
    assert.match(w.version as string, /^\d+\.\d+\.\d+/);
    assert.equal(w.heartbeat, 25000);
  });

  it('answers hello with the identity, once per connection', async () => {
    const c = await client();
    const r = await c.request({ type: 'hello', name: 'Alice', user: 'alice', version: '1.0' });
    assert.deepEqual(r, { type: 'reply', id: r.id, data: { client: c.welcome.client, user: 'alice', name: 'Alice' } });
    const again = await c.request({ type: 'hello', name: 'Bob' });
    assert.equal(again.type, 'error');
    assert.equal(again.code, 'bad_request');
  });

  it('answers ping with pong, with and without id', async () => {
    const c = await client();
    const before = Date.now();
    const p = await c.request({ type: 'ping' });
    assert.equal(p.type, 'pong');
    assert.ok((p.ts as number) >= before);
    c.send({ type: 'ping' });
    const bare = await c.next((f) => f.type === 'pong');
    assert.equal(bare.id, undefined);
  });

  it('echoes data unchanged, with string and number ids', async () => {
    const c = await client();
    const data = { a: [1, 'two', null, true, { d: 1.5 }], e: 'ünï😀', n: -0.25 };
    c.send({ type: 'echo', id: 'req-1', data });
    assert.deepEqual(await c.next((f) => f.id === 'req-1'), { type: 'reply', id: 'req-1', data: { data } });
    c.send({ type: 'echo', id: 42, data: null });
    assert.deepEqual(await c.next((f) => f.id === 42), { type: 'reply', id: 42, data: { data: null } });
  });

  it('lists connected clients', async () => {
    const a = await client({ name: 'Lister', user: 'lister' });
    const r = await a.request({ type: 'clients' });
    const data = r.data as { count: number; clients: Record<string, unknown>[] };
    assert.equal(data.count, data.clients.length);
    const me = data.clients.find((x) => x.client === a.welcome.client);
    assert.ok(me);
    assert.equal(me.user, 'lister');
    assert.equal(me.name, 'Lister');
    assert.equal(typeof me.connected_at, 'number');
  });
});

describe('publish and subscribe', () => {
  it('delivers to subscribers, including the sender, with the documented message shape', async () => {
    const pub = await client({ name: 'P', user: 'p1' });
    const sub = await client();
    assert.deepEqual((await sub.request({ type: 'subscribe', channel: 'news/today' })).data, {});
    assert.deepEqual((await pub.request({ type: 'subscribe', channel: 'news/today' })).data, {});
    const r = await pub.request({ type: 'publish', channel: 'news/today', data: { headline: 'hi' } });
    assert.deepEqual(r.data, {});
    for (const c of [sub, pub]) {
      const m = await c.next(isMsg('news/today'));
      assert.deepEqual(Object.keys(m), ['type', 'channel', 'pattern', 'data', 'kind', 'from', 'ts']);
      assert.equal(m.pattern, 'news/today');
      assert.deepEqual(m.data, { headline: 'hi' });
      assert.equal(m.kind, 'text');
      assert.deepEqual(m.from, { client: pub.welcome.client, user: 'p1', name: 'P' });
      assert.equal(typeof m.ts, 'number');
    }
  });

  it('carries a custom kind', async () => {
    const c = await client();
    await c.request({ type: 'subscribe', channel: 'kinds' });
    await c.request({ type: 'publish', channel: 'kinds', data: 'x', kind: 'notification' });
    assert.equal((await c.next(isMsg('kinds'))).kind, 'notification');
  });

  it('is silent on success without id', async () => {
    const c = await client();
    c.send({ type: 'subscribe', channel: 'quiet' });
    c.send({ type: 'publish', channel: 'quiet', data: 1 });
    const m = await c.next(isMsg('quiet'));
    assert.equal(m.data, 1);
    const extra = await c.nothing((f) => f.type !== 'message');
    assert.deepEqual(extra, []);
  });

  it('delivers every accepted publication in order, none lost', async () => {
    const pub = await client();
    const sub = await client();
    await sub.request({ type: 'subscribe', channel: 'order' });
    const n = 2000;
    for (let i = 0; i < n; i++) pub.send({ type: 'publish', id: i + 1, channel: 'order', data: i });
    const seen: number[] = [];
    for (let i = 0; i < n; i++) seen.push((await sub.next(isMsg('order'))).data as number);
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i));
    for (let i = 0; i < n; i++) await pub.next((f) => f.id === i + 1 && f.type === 'reply');
  });

  it('stops delivering after unsubscribe; unsubscribe needs the exact pattern', async () => {
    const c = await client();
    await c.request({ type: 'subscribe', channel: 'u/+' });
    const wrong = await c.request({ type: 'unsubscribe', channel: 'u/a' });
    assert.equal(wrong.type, 'error');
    assert.equal(wrong.code, 'not_found');
    assert.deepEqual((await c.request({ type: 'unsubscribe', channel: 'u/+' })).data, {});
    await c.request({ type: 'publish', channel: 'u/a', data: 1 });
    assert.deepEqual(await c.nothing(isMsg('u/a')), []);
  });

  it('refuses invalid channels and patterns with invalid_channel', async () => {
    const c = await client();
    for (const frame of [
      { type: 'publish', channel: 'a/+', data: 1 },
      { type: 'publish', channel: 'a/#', data: 1 },
      { type: 'publish', channel: 'a//b', data: 1 },
      { type: 'publish', channel: 'x'.repeat(256), data: 1 },
      { type: 'subscribe', channel: 'a/#/b' },
      { type: 'subscribe', channel: 'a+' },
      { type: 'subscribe', channel: '' },
      { type: 'unsubscribe', channel: '/a' },
      { type: 'presence', channel: 'a/+' },
    ]) {
      const r = await c.request(frame);
      assert.equal(r.type, 'error', JSON.stringify(frame));
      assert.equal(r.code, 'invalid_channel', JSON.stringify(frame));
      assert.equal(typeof r.message, 'string');
    }
    // still usable
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
  });
});

describe('wildcards', () => {
  it('+ matches one level, # any number including the parent, and non-matches get nothing', async () => {
    const plus = await client();
    const hash = await client();
    const root = await client();
    const other = await client();
    const pub = await client();
    await plus.request({ type: 'subscribe', channel: 'w/+/temp' });
    await hash.request({ type: 'subscribe', channel: 'w/#' });
    await root.request({ type: 'subscribe', channel: '#' });
    await other.request({ type: 'subscribe', channel: 'x/+' });
    for (const channel of ['w/kitchen/temp', 'w', 'w/a/b/c', 'w/kitchen/humidity']) {
      await pub.request({ type: 'publish', channel, data: channel });
    }
    const got = async (c: TestClient, count: number) => {
      const out: string[] = [];
      for (let i = 0; i < count; i++) out.push((await c.next(isMsg())).channel as string);
      out.push(...(await c.nothing(isMsg())).map((f) => f.channel as string));
      return out;
    };
    assert.deepEqual(await got(plus, 1), ['w/kitchen/temp']);
    assert.deepEqual(await got(hash, 4), ['w/kitchen/temp', 'w', 'w/a/b/c', 'w/kitchen/humidity']);
    assert.deepEqual(await got(root, 4), ['w/kitchen/temp', 'w', 'w/a/b/c', 'w/kitchen/humidity']);
    assert.deepEqual(await got(other, 0), []);
  });

  it('sends one copy when several subscriptions match, carrying the most specific pattern', async () => {
    const c = await client();
    for (const channel of ['m/#', 'm/+', 'm/x', '#']) await c.request({ type: 'subscribe', channel });
    await c.request({ type: 'publish', channel: 'm/x', data: 1 });
    const m = await c.next(isMsg('m/x'));
    assert.equal(m.pattern, 'm/x');
    assert.deepEqual(await c.nothing(isMsg('m/x')), [], 'exactly one copy');
    await c.request({ type: 'publish', channel: 'm/y', data: 2 });
    const m2 = await c.next(isMsg('m/y'));
    assert.equal(m2.pattern, 'm/+');
    assert.deepEqual(await c.nothing(isMsg('m/y')), []);
  });

  it('tells each subscriber the pattern it subscribed with', async () => {
    const a = await client();
    const b = await client();
    await a.request({ type: 'subscribe', channel: 'p/+' });
    await b.request({ type: 'subscribe', channel: 'p/#' });
    await a.request({ type: 'publish', channel: 'p/q', data: 0 });
    assert.equal((await a.next(isMsg('p/q'))).pattern, 'p/+');
    assert.equal((await b.next(isMsg('p/q'))).pattern, 'p/#');
  });
});

describe('presence', () => {
  it('lists exact-channel members; wildcard subscribers are not members', async () => {
    const a = await client({ name: 'A', user: 'ua' });
    const b = await client({ name: 'B' });
    const w = await client();
    await a.request({ type: 'subscribe', channel: 'room/1' });
    await b.request({ type: 'subscribe', channel: 'room/1' });
    await w.request({ type: 'subscribe', channel: 'room/+' });
    const r = await w.request({ type: 'presence', channel: 'room/1' });
    const data = r.data as { channel: string; clients: Record<string, unknown>[] };
    assert.equal(data.channel, 'room/1');
    const ids = data.clients.map((x) => x.client).sort();
    assert.deepEqual(ids, [a.welcome.client, b.welcome.client].sort());
    const entryA = data.clients.find((x) => x.client === a.welcome.client)!;
    assert.equal(entryA.user, 'ua');
    assert.equal(entryA.name, 'A');
    assert.equal(typeof entryA.connected_at, 'number');
    const empty = await w.request({ type: 'presence', channel: 'room/empty' });
    assert.deepEqual(empty.data, { channel: 'room/empty', clients: [] });
  });

  it('sends join and leave to members that asked for presence, on subscribe, unsubscribe and disconnect', async () => {
    const watcher = await client({ name: 'Watcher' });
    const quiet = await client();
    await watcher.request({ type: 'subscribe', channel: 'lobby', presence: true });
    await quiet.request({ type: 'subscribe', channel: 'lobby' });
    const joinQuiet = await watcher.next((f) => f.type === 'join');
    assert.deepEqual(joinQuiet, { type: 'join', channel: 'lobby', client: { client: quiet.welcome.client } });

    const bob = await client({ name: 'Bob', user: 'bob' });
    await bob.request({ type: 'subscribe', channel: 'lobby', presence: true });
    assert.deepEqual(await watcher.next((f) => f.type === 'join'), { type: 'join', channel: 'lobby', client: { client: bob.welcome.client, user: 'bob', name: 'Bob' } });
    // Bob learns of later joins; the non-presence member never receives join/leave.
    await bob.request({ type: 'unsubscribe', channel: 'lobby' });
    assert.deepEqual(await watcher.next((f) => f.type === 'leave'), { type: 'leave', channel: 'lobby', client: { client: bob.welcome.client, user: 'bob', name: 'Bob' } });

    await quiet.close();
    assert.deepEqual(await watcher.next((f) => f.type === 'leave'), { type: 'leave', channel: 'lobby', client: { client: quiet.welcome.client } });
    assert.deepEqual(quiet.pending('join'), []);
    assert.deepEqual(quiet.pending('leave'), []);
    // The subject does not receive its own join.
    assert.deepEqual(watcher.pending('join').filter((f) => (f.client as Frame).client === watcher.welcome.client), []);
  });

  it('sends no join/leave for wildcard subscriptions', async () => {
    const watcher = await client();
    await watcher.request({ type: 'subscribe', channel: 'hall', presence: true });
    const w = await client();
    await w.request({ type: 'subscribe', channel: 'hall/#', presence: true });
    await w.request({ type: 'subscribe', channel: '+', presence: true });
    assert.deepEqual(await watcher.nothing((f) => f.type === 'join' || f.type === 'leave'), []);
  });
});

describe('direct messages and broadcast', () => {
  it('sends to one connection by client id', async () => {
    const a = await client({ name: 'A' });
    const b = await client();
    const r = await a.request({ type: 'send', to: { client: b.welcome.client }, data: { hi: 1 }, kind: 'notification' });
    assert.deepEqual(r.data, { delivered: 1 });
    const d = await b.next((f) => f.type === 'direct');
    assert.deepEqual(Object.keys(d), ['type', 'data', 'kind', 'from', 'ts']);
    assert.deepEqual(d.data, { hi: 1 });
    assert.equal(d.kind, 'notification');
    assert.deepEqual(d.from, { client: a.welcome.client, name: 'A' });
  });

  it('sends to every connection of a user', async () => {
    const s = await client();
    const u1 = await client({ user: 'carol' });
    const u2 = await client({ user: 'carol' });
    const notCarol = await client({ user: 'dave' });
    const r = await s.request({ type: 'send', to: { user: 'carol' }, data: 'yo' });
    assert.deepEqual(r.data, { delivered: 2 });
    assert.equal((await u1.next((f) => f.type === 'direct')).data, 'yo');
    assert.equal((await u2.next((f) => f.type === 'direct')).data, 'yo');
    assert.deepEqual(await notCarol.nothing((f) => f.type === 'direct'), []);
  });

  it('reports zero deliveries for unknown targets', async () => {
    const s = await client();
    assert.deepEqual((await s.request({ type: 'send', to: { client: 'no-such-client' }, data: 1 })).data, { delivered: 0 });
    assert.deepEqual((await s.request({ type: 'send', to: { user: 'nobody' }, data: 1 })).data, { delivered: 0 });
  });

  it('broadcasts to every connected client, the sender included', async () => {
    const a = await client({ name: 'Caster' });
    const b = await client();
    const r = await a.request({ type: 'broadcast', data: 'all hands' });
    const delivered = (r.data as { delivered: number }).delivered;
    assert.equal(delivered, srv.server.hub.clients.size);
    for (const c of [a, b]) {
      const m = await c.next((f) => f.type === 'broadcast' && f.data === 'all hands');
      assert.equal(m.kind, 'text');
      assert.deepEqual(m.from, { client: a.welcome.client, name: 'Caster' });
    }
  });
});

describe('bad input', () => {
  it('answers malformed frames with errors and stays usable', async () => {
    const c = await client();
    c.send('{not json');
    assert.equal((await c.next((f) => f.type === 'error')).code, 'bad_request');
    c.send('[1,2]');
    assert.match((await c.next((f) => f.type === 'error')).message as string, /object/);
    c.send('{"id":3}');
    assert.deepEqual(await c.next((f) => f.type === 'error'), { type: 'error', id: 3, code: 'bad_request', message: 'type must be a string' });
    c.send({ type: 'teleport', id: 'x' });
    assert.equal((await c.next((f) => f.id === 'x')).code, 'unknown_type');
    c.send({ type: 'publish', id: 5, channel: 'a' });
    assert.equal((await c.next((f) => f.id === 5)).code, 'bad_request');
    c.send({ type: 'send', id: 6, to: 'bob', data: 1 });
    assert.equal((await c.next((f) => f.id === 6)).code, 'bad_request');
    c.ws.send(Buffer.from('{"type":"ping"}'), { binary: true });
    const bin = await c.next((f) => f.type === 'error');
    assert.equal(bin.code, 'bad_request');
    assert.match(bin.message as string, /binary/);
    assert.equal((await c.request({ type: 'echo', data: 'still here' })).type, 'reply');
  });

  it('keeps serving everyone else while one client floods garbage', async () => {
    const flooder = await client();
    const pub = await client();
    const sub = await client();
    await sub.request({ type: 'subscribe', channel: 'calm' });
    const n = 500;
    for (let i = 0; i < 5000; i++) flooder.send(i % 2 ? '{"type":' : '"just a string"');
    for (let i = 0; i < n; i++) pub.send({ type: 'publish', channel: 'calm', data: i });
    for (let i = 0; i < n; i++) assert.equal((await sub.next(isMsg('calm'), 5000)).data, i);
    for (let i = 0; i < 5000; i++) await flooder.next((f) => f.type === 'error', 5000);
    assert.equal((await flooder.request({ type: 'ping' })).type, 'pong');
  });
});
