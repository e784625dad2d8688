/** The client SDK against a real server: requests, subscriptions, reconnects, dead servers, backoff. */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { Hubbub, HubbubError, backoffCap, backoffDelay, type Clock, type SocketLike } from '../src/client/index.js';
import type { MessageFrame } from '../src/protocol/frames.js';
import { TestClient, api, startServer, type TestServer, until, nextEvent } from './helpers.js';

const FAST = { minReconnectDelay: 20, maxReconnectDelay: 100 };



/** Stop the server from reading one client's socket: it looks hung to that client. */
function freeze(srv: TestServer, clientId: string): Socket {
  const client = srv.server.hub.clients.get(clientId);
  assert.ok(client, 'client is connected');
  const socket = (client.transport as unknown as { socket: Socket }).socket;
  socket.pause();
  return socket;
}

describe('backoff', () => {
  it('doubles the cap from the minimum up to the maximum', () => {
    const o = { minDelay: 500, maxDelay: 20_000 };
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 50].map((a) => backoffCap(a, o)), [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000]);
  });
  it('draws a full-jitter delay below the cap', () => {
    const o = { minDelay: 500, maxDelay: 20_000 };
    assert.equal(backoffDelay(3, o, () => 0), 0);
    assert.equal(backoffDelay(3, o, () => 0.5), 1000);
    assert.equal(backoffDelay(3, o, () => 0.9999), 1999);
    const samples = Array.from({ length: 2000 }, () => backoffDelay(4, o));
    assert.ok(samples.every((d) => d >= 0 && d < 4000));
    assert.ok(new Set(samples).size > 500, 'jittered, not constant');
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    assert.ok(mean > 1600 && mean < 2400, `mean ${mean} is about half the cap`);
  });

  it('schedules reconnects with growing, jittered delays (injected clock)', async () => {
    // A fake clock and a socket that always fails to connect: the schedule is pure arithmetic.
    let now = 0;
    const timers: { at: number; fn: () => void; id: number }[] = [];
    let ids = 0;
    const clock: Clock = {
      now: () => now,
      setTimeout: (fn, ms) => {
        const id = ++ids;
        timers.push({ at: now + ms, fn, id });
        return id;
      },
      clearTimeout: (h) => {
        const i = timers.findIndex((t) => t.id === h);
        if (i >= 0) timers.splice(i, 1);
      },
    };
    const failing = (): SocketLike => {
      const s: SocketLike = { readyState: 3, send() {}, close() {}, onopen: null, onmessage: null, onclose: null, onerror: null };
      queueMicrotask(() => s.onclose?.({ code: 1006, reason: '' }));
      return s;
    };
    const draws = [0.5, 0.25, 0.75, 0.1, 0.9, 0.5, 0.5, 0.5];
    let k = 0;
    const hub = new Hubbub('ws://unused', { socket: failing, clock, random: () => draws[k++ % draws.length]!, maxReconnectAttempts: 8 });
    const delays: number[] = [];
    hub.on('reconnecting', ({ delay }) => delays.push(delay));
    const connecting = hub.connect();
    connecting.catch(() => {});
    for (let i = 0; i < 20 && hub.state !== 'closed'; i++) {
      await new Promise((r) => setImmediate(r));
      timers.sort((a, b) => a.at - b.at);
      const t = timers.shift();
      if (!t) continue;
      now = t.at;
      t.fn();
    }
    // caps 500, 1000, 2000, 4000, 8000, 16000, 20000, 20000 times the draws
    assert.deepEqual(delays, [250, 250, 1500, 400, 7200, 8000, 10000, 10000]);
    assert.equal(hub.state, 'closed', 'gives up after maxReconnectAttempts');
    await assert.rejects(connecting, (err: HubbubError) => err.code === 'connect_failed');
  });
});

describe('SDK against a real server', () => {
  it('connects, identifies, and runs every request type', async () => {
    const srv = await startServer();
    const hub = new Hubbub(srv.url, { name: 'Sdk', user: 'sdk-user' });
    try {
      const connected = nextEvent<{ client: string; reconnected: boolean }>(hub, 'connected');
      await hub.connect();
      const info = await connected;
      assert.equal(info.reconnected, false);
      assert.equal(hub.state, 'connected');
      assert.equal(hub.clientId, info.client);
      assert.deepEqual(await hub.echo({ a: [1, 'b'] }), { a: [1, 'b'] });
      assert.equal(typeof (await hub.ping()), 'number');
      const other = await TestClient.connect(srv.url);
      await other.request({ type: 'subscribe', channel: 'sdk/x' });
      await hub.publish('sdk/x', 'hello', { kind: 'notification' });
      const m = await other.next((f) => f.type === 'message');
      assert.equal(m.kind, 'notification');
      assert.deepEqual(m.from, { client: hub.clientId, user: 'sdk-user', name: 'Sdk' });
      assert.equal(await hub.send({ client: other.welcome.client as string }, 1), 1);
      assert.equal(await hub.send({ user: 'sdk-user' }, 2), 1, 'to itself by user');
      assert.equal(await hub.broadcast('all'), 2);
      const presence = await hub.presence('sdk/x');
      assert.deepEqual(presence.map((p) => p.client), [other.welcome.client]);
      const { count, clients } = await hub.clients();
      assert.equal(count, 2);
      assert.ok(clients.some((c) => c.client === hub.clientId && c.name === 'Sdk'));
      await assert.rejects(hub.publish('bad/+', 1), (err: HubbubError) => err.code === 'invalid_channel' && err.request === 'publish');
      await other.close();
    } finally {
      hub.close();
      await srv.close();
    }
  });

  it('delivers to subscription handlers by local pattern match, and emits pushes as events', async () => {
    const srv = await startServer();
    const hub = new Hubbub(srv.url, { user: 'eve' });
    try {
      await hub.connect();
      const all: string[] = [];
      const exact: string[] = [];
      const s1 = hub.subscribe('room/#', (_d, m) => all.push(m.channel));
      const s2 = hub.subscribe('room/a', (d) => exact.push(d as string), { presence: true });
      await Promise.all([s1.ready, s2.ready]);
      const directs: unknown[] = [];
      const broadcasts: unknown[] = [];
      const joins: string[] = [];
      const leaves: string[] = [];
      hub.on('direct', (f) => directs.push(f.data));
      hub.on('broadcast', (f) => broadcasts.push(f.data));
      hub.on('join', (f) => joins.push(f.client.client));
      hub.on('leave', (f) => leaves.push(f.client.client));
      const other = await TestClient.connect(srv.url);
      await other.request({ type: 'subscribe', channel: 'room/a' });
      await other.request({ type: 'publish', channel: 'room/a', data: 'A' });
      await other.request({ type: 'publish', channel: 'room/b', data: 'B' });
      await other.request({ type: 'send', to: { user: 'eve' }, data: 'psst' });
      await other.request({ type: 'broadcast', data: 'hear ye' });
      await other.close();
      await until(() => leaves.length === 1, 'the leave');
      assert.deepEqual(all, ['room/a', 'room/b'], 'the # handler sees room/a even though the server named room/a');
      assert.deepEqual(exact, ['A']);
      assert.deepEqual(directs, ['psst']);
      assert.deepEqual(broadcasts, ['hear ye']);
      assert.deepEqual(joins, [other.welcome.client]);
      assert.deepEqual(leaves, [other.welcome.client]);
    } finally {
      hub.close();
      await srv.close();
    }
  });

  it('keeps a server subscription until its last handler unsubscribes', async () => {
    const srv = await startServer();
    const hub = new Hubbub(srv.url);
    try {
      await hub.connect();
      const a: unknown[] = [];
      const b: unknown[] = [];
      const sa = hub.subscribe('ref', (d) => a.push(d));
      const sb = hub.subscribe('ref', (d) => b.push(d));
      await Promise.all([sa.ready, sb.ready]);
      await hub.publish('ref', 1);
      await sa.unsubscribe();
      await hub.publish('ref', 2);
      await until(() => b.length === 2, 'second message');
      assert.deepEqual(a, [1]);
      assert.equal(srv.server.hub.stats().subscriptions, 1);
      await sb.unsubscribe();
      await until(() => srv.server.hub.stats().subscriptions === 0, 'server unsubscribe');
      await hub.publish('ref', 3);
      assert.deepEqual(b, [1, 2]);
      assert.throws(() => hub.subscribe('a/#/b', () => {}), (err: HubbubError) => err.code === 'invalid_channel');
    } finally {
      hub.close();
      await srv.close();
    }
  });

  it('reconnects after the server restarts on the same port, re-sends hello and resubscribes', async () => {
    const first = await startServer();
    const port = first.port;
    const hub = new Hubbub(first.url, { ...FAST, name: 'Phoenix' });
    try {
      const got: MessageFrame[] = [];
      const sub = hub.subscribe('reborn/+', (_d, m) => got.push(m), { presence: true });
      await hub.connect();
      await sub.ready;
      const firstId = hub.clientId;
      const disconnected = nextEvent<{ code: number; willReconnect: boolean }>(hub, 'disconnected');
      const reconnecting = nextEvent<{ attempt: number; delay: number }>(hub, 'reconnecting');
      await first.close();
      assert.deepEqual(await disconnected, { code: 1001, reason: 'server shutting down', willReconnect: true });
      const r = await reconnecting;
      assert.equal(r.attempt, 1);
      assert.ok(r.delay >= 0 && r.delay < 20);
      // Requests made while disconnected wait for the connection.
      const queued = hub.echo('made while down');
      const second = await startServer({ port });
      try {
        const connected = await nextEvent<{ reconnected: boolean; client: string }>(hub, 'connected');
        assert.equal(connected.reconnected, true);
        assert.notEqual(hub.clientId, firstId);
        assert.equal(await queued, 'made while down');
        const other = await TestClient.connect(second.url);
        await other.request({ type: 'publish', channel: 'reborn/1', data: 'after restart' });
        await until(() => got.length === 1, 'message after restart');
        assert.equal(got[0]!.data, 'after restart');
        const listed = (await other.request({ type: 'clients' })).data as { clients: { client: string; name?: string }[] };
        assert.ok(listed.clients.some((c) => c.client === hub.clientId && c.name === 'Phoenix'), 'hello was sent again');
        await other.close();
      } finally {
        hub.close();
        await second.close();
      }
    } finally {
      hub.close();
    }
  });

  it('times requests out when the server does not answer', async () => {
    const srv = await startServer({ shutdown_timeout: 200 });
    const hub = new Hubbub(srv.url, { requestTimeout: 200, autoPing: false });
    try {
      await hub.connect();
      freeze(srv, hub.clientId!);
      const t0 = Date.now();
      await assert.rejects(hub.echo(1), (err: HubbubError) => err.code === 'timeout' && err.request === 'echo');
      const took = Date.now() - t0;
      assert.ok(took >= 180 && took < 1000, `timed out after ${took} ms`);
      await assert.rejects(hub.echo(2, { timeout: 50 }), (err: HubbubError) => err.code === 'timeout');
    } finally {
      hub.close();
      await srv.close();
    }
  });

  it('detects a dead server (no answer to its pings) and reconnects', async () => {
    const srv = await startServer({ shutdown_timeout: 200 });
    const hub = new Hubbub(srv.url, { ...FAST, pingInterval: 150, pongTimeout: 150 });
    try {
      await hub.connect();
      const frozenId = hub.clientId!;
      freeze(srv, frozenId);
      const t0 = Date.now();
      const lost = await nextEvent<{ code: number; reason: string; willReconnect: boolean }>(hub, 'disconnected', 3000);
      assert.equal(lost.code, 4000);
      assert.match(lost.reason, /did not answer a ping/);
      assert.equal(lost.willReconnect, true);
      const waited = Date.now() - t0;
      assert.ok(waited >= 250 && waited < 1500, `declared dead after ${waited} ms`);
      await nextEvent(hub, 'connected');
      assert.notEqual(hub.clientId, frozenId);
      assert.equal(await hub.echo('alive'), 'alive');
    } finally {
      hub.close();
      await srv.close();
    }
  });

  it('stops reconnecting on terminal close codes, and reconnects on 4002', async () => {
    const srv = await startServer();
    const hub = new Hubbub(srv.url, { ...FAST, user: 'kicked' });
    try {
      await hub.connect();
      const again = nextEvent<{ code: number; willReconnect: boolean }>(hub, 'disconnected');
      await api(srv.http, 'POST', '/api/disconnect', { user: 'kicked', reconnect: true });
      assert.equal((await again).code, 4002);
      await nextEvent(hub, 'connected');
      let reconnects = 0;
      hub.on('reconnecting', () => reconnects++);
      const gone = nextEvent<{ code: number; willReconnect: boolean }>(hub, 'disconnected');
      await api(srv.http, 'POST', '/api/disconnect', { user: 'kicked' });
      assert.deepEqual(await gone, { code: 4500, reason: 'disconnected by the server', willReconnect: false });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(reconnects, 0);
      assert.equal(hub.state, 'closed');
      await assert.rejects(hub.echo(1), (err: HubbubError) => err.code === 'closed');
    } finally {
      hub.close();
      await srv.close();
    }
  });

  it('fails waiting requests after their timeout, and everything once closed', async () => {
    const srv = await startServer();
    const hub = new Hubbub(srv.url, { ...FAST, requestTimeout: 150 });
    await hub.connect();
    await srv.close();
    await until(() => hub.state === 'reconnecting', 'reconnecting');
    await assert.rejects(hub.echo('never'), (err: HubbubError) => err.code === 'timeout' && /not connected within 150 ms/.test(err.message));
    const pending = hub.echo('closing');
    hub.close();
    await assert.rejects(pending, (err: HubbubError) => err.code === 'closed');
    assert.equal(hub.state, 'closed');
  });

  it('rejects connect({retry: false}) at once when the server is unreachable or the path is wrong', async () => {
    const srv = await startServer();
    const url = srv.url;
    await srv.close();
    const hub = new Hubbub(url);
    await assert.rejects(hub.connect({ retry: false }), (err: HubbubError) => err.code === 'connect_failed' && /ECONNREFUSED/.test(err.message));
    assert.equal(hub.state, 'closed');
    const live = await startServer();
    try {
      const wrong = new Hubbub(live.url.replace('/ws', '/nope'), FAST);
      let reconnects = 0;
      wrong.on('reconnecting', () => reconnects++);
      // An HTTP 4xx refusal is terminal even with retries on.
      await assert.rejects(wrong.connect(), (err: HubbubError) => err.code === 'connect_failed' && /404/.test(err.message));
      assert.equal(reconnects, 0);
    } finally {
      await live.close();
    }
  });

  it('refreshes its token through getToken() before it expires', async () => {
    const secret = 'sdk-refresh-secret';
    // Signed with node:crypto, independently of the server's jose.
    const mint = (ttlSeconds: number): string => {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'refresher', iat: now, exp: now + ttlSeconds })}`;
      return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
    };
    const srv = await startServer({ jwt_secret: secret, jwt_clock_tolerance: 0 });
    let issued = 0;
    const hub = new Hubbub(srv.url, {
      getToken: () => {
        issued++;
        return mint(2);
      },
      refreshBefore: 1000,
    });
    const closes: number[] = [];
    hub.on('disconnected', (i) => closes.push(i.code));
    try {
      await hub.connect();
      await new Promise((r) => setTimeout(r, 3500)); // past the first token's expiry
      assert.deepEqual(closes, [], 'never closed for expiry');
      assert.ok(issued >= 3, `getToken called ${issued} times (connect + refreshes)`);
      assert.equal(hub.state, 'connected');
      const me = (await hub.clients()).clients.find((c) => c.client === hub.clientId);
      assert.equal(me?.user, 'refresher');
    } finally {
      hub.close();
      await srv.close();
    }
  });
});
