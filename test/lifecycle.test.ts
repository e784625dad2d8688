/** Limits, heartbeat, slow consumers and shutdown: the server protecting itself and everyone else. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { TestClient, startServer, type Frame } from './helpers.js';

const isMsg = (f: Frame) => f.type === 'message';

describe('oversize frames', () => {
  it('closes a connection that sends a frame above max_message_size with 1009, and no one else', async () => {
    const srv = await startServer({ max_message_size: 1024 });
    try {
      const big = await TestClient.connect(srv.url);
      const other = await TestClient.connect(srv.url);
      await other.request({ type: 'subscribe', channel: 'calm' });
      // Exactly at the limit is fine.
      const atLimit = JSON.stringify({ type: 'echo', id: 1, data: '' });
      big.send(JSON.stringify({ type: 'echo', id: 1, data: 'x'.repeat(1024 - atLimit.length) }));
      assert.equal((await big.next((f) => f.id === 1)).type, 'reply');
      big.send({ type: 'echo', data: 'x'.repeat(2000) });
      assert.equal((await big.closed).code, 1009);
      await other.request({ type: 'publish', channel: 'calm', data: 'fine' });
      assert.equal((await other.next(isMsg)).data, 'fine');
      await other.close();
    } finally {
      await srv.close();
    }
  });
});

describe('heartbeat', () => {
  it('closes a client that does not answer pings within about two heartbeat periods with 4000', async () => {
    const srv = await startServer({ heartbeat: 200 });
    try {
      const ws = new WebSocket(srv.url, { autoPong: false });
      const pings: number[] = [];
      ws.on('ping', () => pings.push(Date.now()));
      const opened = Date.now();
      await new Promise((r) => ws.once('open', r));
      const { code, reason } = await new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (c, r) => resolve({ code: c, reason: r.toString() })));
      const lasted = Date.now() - opened;
      assert.equal(code, 4000);
      assert.equal(reason, 'heartbeat timeout');
      assert.ok(pings.length >= 1, 'the server pinged');
      assert.ok(lasted >= 400 && lasted < 1200, `closed after ${lasted} ms (heartbeat 200 ms)`);
    } finally {
      await srv.close();
    }
  });

  it('keeps a client that answers pings, even when it sends nothing', async () => {
    const srv = await startServer({ heartbeat: 200 });
    try {
      const c = await TestClient.connect(srv.url);
      let pinged = 0;
      c.ws.on('ping', () => pinged++);
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(pinged >= 3, `pinged ${pinged} times`);
      assert.equal(c.ws.readyState, WebSocket.OPEN);
      assert.equal((await c.request({ type: 'ping' })).type, 'pong');
      await c.close();
    } finally {
      await srv.close();
    }
  });
});

describe('slow consumers', () => {
  it('closes a client that does not read (4001) while others get every message', async () => {
    const srv = await startServer({ max_message_size: 16384, max_queue_bytes: 1 << 20, message_rate: 0 });
    try {
      const slow = await TestClient.connect(srv.url);
      const fast = await TestClient.connect(srv.url);
      const pub = await TestClient.connect(srv.url);
      await slow.request({ type: 'subscribe', channel: 'firehose' });
      await fast.request({ type: 'subscribe', channel: 'firehose' });
      // Stop reading: the kernel buffers fill, then the server's queue for this client grows.
      const rawSocket = (slow.ws as unknown as { _socket: import('node:net').Socket })._socket;
      rawSocket.pause();
      const payload = 'x'.repeat(8000);
      const rounds = 60;
      const perRound = 50; // 60 x 50 x 8 kB = 24 MB: far beyond what socket buffers absorb
      let received = 0;
      fast.ws.on('message', () => received++);
      const slowId = slow.welcome.client as string;
      for (let r = 1; r <= rounds; r++) {
        for (let i = 0; i < perRound; i++) pub.send({ type: 'publish', channel: 'firehose', data: payload });
        const deadline = Date.now() + 5000;
        while (received < r * perRound && Date.now() < deadline) await new Promise((res) => setTimeout(res, 2));
        assert.equal(received, r * perRound, `round ${r}: the healthy subscriber keeps up`);
      }
      const deadline = Date.now() + 5000;
      while (srv.server.hub.clients.has(slowId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(srv.server.hub.clients.has(slowId), false, 'the slow client was dropped');
      rawSocket.resume();
      const closed = await slow.closed;
      assert.ok(closed.code === 4001 || closed.code === 1006, `close code ${closed.code}`);
      assert.ok(srv.server.hub.clients.has(fast.welcome.client as string), 'the healthy subscriber is still connected');
      await fast.close();
      await pub.close();
    } finally {
      await srv.close();
    }
  });
});

describe('connection limits and upgrade refusals', () => {
  it('refuses upgrades beyond max_connections with HTTP 503 and a JSON body', async () => {
    const srv = await startServer({ max_connections: 2 });
    try {
      const a = await TestClient.connect(srv.url);
      const b = await TestClient.connect(srv.url);
      const refusal = await upgradeRefusal(srv.url);
      assert.equal(refusal.status, 503);
      assert.equal(refusal.body.error.code, 'too_many_connections');
      await a.close();
      await new Promise((r) => setTimeout(r, 50));
      const c = await TestClient.connect(srv.url); // a slot is free again
      await Promise.all([b.close(), c.close()]);
    } finally {
      await srv.close();
    }
  });

  it('refuses upgrades on other paths with 404', async () => {
    const srv = await startServer();
    try {
      const refusal = await upgradeRefusal(srv.url.replace('/ws', '/elsewhere'));
      assert.equal(refusal.status, 404);
      assert.equal(refusal.body.error.code, 'not_found');
    } finally {
      await srv.close();
    }
  });

  it('serves the endpoint on a configured ws_path', async () => {
    const srv = await startServer({ ws_path: '/realtime' });
    try {
      assert.match(srv.url, /\/realtime$/);
      const page = await (await fetch(`${srv.http}/`)).text();
      assert.match(page, /<meta name="hubbub-ws-path" content="\/realtime">/, 'the test page connects to the configured path');
      const c = await TestClient.connect(srv.url);
      assert.equal(c.welcome.type, 'welcome');
      await c.close();
    } finally {
      await srv.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('flushes queued frames, closes every client with 1001 and stops accepting', async () => {
    const srv = await startServer();
    const a = await TestClient.connect(srv.url);
    const b = await TestClient.connect(srv.url);
    await a.request({ type: 'subscribe', channel: 'last/words' });
    b.send({ type: 'publish', channel: 'last/words', data: 'goodbye' });
    await b.request({ type: 'ping' }); // the publish has been handled once this answer is back
    const closing = srv.close();
    const [ca, cb] = await Promise.all([a.closed, b.closed]);
    assert.deepEqual(ca, { code: 1001, reason: 'server shutting down' });
    assert.deepEqual(cb, { code: 1001, reason: 'server shutting down' });
    assert.equal((await a.next(isMsg)).data, 'goodbye');
    await closing;
    await assert.rejects(TestClient.connect(srv.url));
  });

  it('drops clients that do not close within shutdown_timeout', async () => {
    const srv = await startServer({ shutdown_timeout: 300 });
    const c = await TestClient.connect(srv.url);
    // Stop reading so the close handshake cannot complete.
    (c.ws as unknown as { _socket: import('node:net').Socket })._socket.pause();
    const t0 = Date.now();
    await srv.close();
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 3000, `shutdown took ${took} ms`);
    (c.ws as unknown as { _socket: import('node:net').Socket })._socket.resume();
    // The close frame may be read from the buffer (1001), or the connection simply found dropped (1006).
    const { code } = await c.closed;
    assert.ok(code === 1001 || code === 1006, `close code ${code}`);
  });
});

async function upgradeRefusal(url: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => reject(new Error('upgrade was accepted')));
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
  });
}
