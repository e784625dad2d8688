/**
 * Access control and limits end to end, against real servers on loopback: namespace rules
 * (anonymous / authenticated / token / none, presence, default_namespace, user channels), filtered
 * wildcard delivery (nothing leaks through `#`, `+/secret`, `inbox/+`), client send/broadcast
 * switches, allowed origins, connection and message limits, and TLS (WSS and HTTPS).
 * Permissions as a unit: test/permissions.test.ts.
 */
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { get as httpsGet } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { WebSocket } from 'ws';
import { defaults, type Config } from '../src/config.js';
import { TestClient, api, startServer, type Frame, type TestServer } from './helpers.js';

// ---- helpers ----------------------------------------------------------------------------------

const SECRET = 'access-test-secret-0123456789abcdef';

/** An HS256 token made with node:crypto, independent of the server's jose. */
function token(claims: Record<string, unknown>, secret = SECRET): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ iat: now, exp: now + 600, ...claims });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reject if `p` takes longer than `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface Ctx {
  srv: TestServer;
  /** Connect (optionally with a token on the URL, ws options, and a hello), tracked for cleanup. */
  connect(opts?: { hello?: Record<string, unknown>; token?: string; ws?: ConstructorParameters<typeof WebSocket>[2]; url?: string }): Promise<TestClient>;
  /** Shorthand: connect and say hello with a development user id. */
  user(name: string): Promise<TestClient>;
}

/** Run `fn` against a fresh server; every client and the server are closed afterwards, whatever happens. */
async function withServer(config: Partial<Config>, fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const srv = await startServer({ message_rate: 0, shutdown_timeout: 500, ...config });
  const clients: TestClient[] = [];
  const connect: Ctx['connect'] = async (opts = {}) => {
    const base = opts.url ?? srv.url;
    const url = opts.token === undefined ? base : `${base}?token=${encodeURIComponent(opts.token)}`;
    const c = await within(TestClient.connect(url, opts.ws ?? {}), 3000, `connect ${base}`);
    clients.push(c);
    if (opts.hello) {
      const r = await c.request({ type: 'hello', ...opts.hello });
      assert.equal(r.type, 'reply', `hello ${JSON.stringify(opts.hello)}: ${JSON.stringify(r)}`);
    }
    return c;
  };
  try {
    await fn({ srv, connect, user: (name) => connect({ hello: { user: name } }) });
  } finally {
    for (const c of clients) c.ws.terminate();
    await within(srv.close(), 5000, 'server close');
  }
}

/** Send a request and assert it was refused with `code`; returns the error frame. */
async function refused(c: TestClient, frame: Record<string, unknown>, code: string): Promise<Frame> {
  const r = await c.request(frame);
  assert.equal(r.type, 'error', `${JSON.stringify(frame)} should be refused with ${code}, got ${JSON.stringify(r)}`);
  assert.equal(r.code, code, `${JSON.stringify(frame)}: ${JSON.stringify(r)}`);
  return r;
}

/** Send a request and assert it succeeded; returns the reply data. */
async function ok(c: TestClient, frame: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await c.request(frame);
  assert.equal(r.type, 'reply', `${JSON.stringify(frame)} should succeed, got ${JSON.stringify(r)}`);
  return r.data as Record<string, unknown>;
}

/** Publish through the HTTP API (loopback, no key configured). */
async function apiPublish(srv: TestServer, channel: string, data: unknown = channel): Promise<void> {
  const r = await api(srv.http, 'POST', '/api/publish', { channel, data });
  assert.equal(r.status, 200, `API publish ${channel}: ${JSON.stringify(r.body)}`);
}

const isMsg = (f: Frame) => f.type === 'message';

/** Wait for `count` messages, then a quiet spell, and return the channels of all messages received (sorted). */
async function received(c: TestClient, count: number, quietMs = 200): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    try {
      out.push((await c.next(isMsg, 3000)).channel as string);
    } catch {
      break; // fewer than expected: the comparison below says which are missing
    }
  }
  for (const f of await c.nothing(isMsg, quietMs)) out.push(f.channel as string);
  return out.sort();
}

/** Try an upgrade that should be refused: resolves with the HTTP status and JSON body of the refusal. */
function upgradeRefusal(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}, timeoutMs = 3000): Promise<{ status: number; contentType: string; body: { error: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.on('error', () => {});
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`upgrade to ${url}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(`upgrade to ${url} was accepted; expected a refusal`));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        try {
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']), body: JSON.parse(text) });
        } catch (err) {
          reject(new Error(`refusal body is not JSON: ${JSON.stringify(text)} (${(err as Error).message})`));
        }
      });
    });
  });
}

/** Wait until the server reports `n` connections (its count drops only once a close has been processed). */
async function connectionsBecome(srv: TestServer, n: number, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (srv.server.hub.clients.size === n) return;
    if (Date.now() > deadline) assert.fail(`server still has ${srv.server.hub.clients.size} connections, expected ${n}`);
    await sleep(20);
  }
}

// ---- namespace rules --------------------------------------------------------------------------

const RULES: Partial<Config> = {
  namespaces: {
    closed: { subscribe: 'none', publish: 'none', presence: 'none' },
    members: { subscribe: 'authenticated', publish: 'authenticated', presence: 'authenticated' },
    lobby: { presence: 'authenticated' },
    quiet: { presence: 'none' },
    wo: { subscribe: 'none' }, // write-only: anyone may publish, nobody may read
    inbox: { user_channel: true },
  },
};

describe('namespace rules', () => {
  it('none refuses subscribe, publish and presence with forbidden, naming the channel', async () => {
    await withServer(RULES, async ({ srv, connect, user }) => {
      for (const c of [await connect(), await user('alice')]) {
        for (const frame of [
          { type: 'subscribe', channel: 'closed/x' },
          { type: 'subscribe', channel: 'closed/#' },
          { type: 'subscribe', channel: 'closed/+/y' },
          { type: 'subscribe', channel: 'closed' },
          { type: 'subscribe', channel: 'closed/x', presence: true },
          { type: 'publish', channel: 'closed/x', data: 1 },
          { type: 'presence', channel: 'closed/x' },
        ]) {
          const r = await refused(c, frame, 'forbidden');
          assert.ok((r.message as string).includes(frame.channel), `the message names ${frame.channel}: ${r.message}`);
        }
      }
      const channels = (await api(srv.http, 'GET', '/api/channels')).body as { channels: Record<string, number>; patterns: Record<string, number> };
      assert.deepEqual([...Object.keys(channels.channels), ...Object.keys(channels.patterns)].filter((p) => p.startsWith('closed')), [], 'a refused subscribe leaves no subscription');
    });
  });

  it('authenticated refuses anonymous clients and allows a hello user', async () => {
    await withServer(RULES, async ({ connect, user }) => {
      const anon = await connect();
      const alice = await user('alice');
      const bob = await user('bob');
      for (const frame of [
        { type: 'subscribe', channel: 'members/x' },
        { type: 'subscribe', channel: 'members/#' },
        { type: 'publish', channel: 'members/x', data: 'from anon' },
        { type: 'presence', channel: 'members/x' },
      ]) {
        const r = await refused(anon, frame, 'forbidden');
        assert.match(r.message as string, /members/);
      }
      assert.deepEqual(await ok(alice, { type: 'subscribe', channel: 'members/x', presence: true }), {});
      assert.deepEqual(await ok(bob, { type: 'subscribe', channel: 'members/#' }), {});
      const pres = (await ok(bob, { type: 'presence', channel: 'members/x' })) as { clients: { user?: string }[] };
      assert.deepEqual(pres.clients.map((x) => x.user), ['alice']);
      await ok(bob, { type: 'publish', channel: 'members/x', data: 'from bob' });
      const m = await alice.next(isMsg);
      assert.equal(m.data, 'from bob');
      assert.deepEqual((await bob.next(isMsg)).data, 'from bob');
      assert.deepEqual(await alice.nothing(isMsg), [], 'the refused anonymous publish was not delivered');
    });
  });

  it('presence has its own rule: subscribe with presence:true and presence queries are refused where it is not allowed', async () => {
    await withServer(RULES, async ({ srv, connect, user }) => {
      const anon = await connect();
      const alice = await user('alice');
      const bob = await user('bob');
      // lobby: anyone may subscribe, only users may see presence.
      assert.deepEqual(await ok(anon, { type: 'subscribe', channel: 'lobby/a' }), {});
      const r = await refused(anon, { type: 'subscribe', channel: 'lobby/b', presence: true }, 'forbidden');
      assert.match(r.message as string, /presence.*lobby\/b/);
      await refused(anon, { type: 'presence', channel: 'lobby/a' }, 'forbidden');
      assert.deepEqual(await ok(alice, { type: 'subscribe', channel: 'lobby/a', presence: true }), {});
      await ok(bob, { type: 'subscribe', channel: 'lobby/a' });
      assert.deepEqual(((await alice.next((f) => f.type === 'join')).client as Frame).user, 'bob');
      const members = (await ok(alice, { type: 'presence', channel: 'lobby/a' })) as { clients: { client: string }[] };
      assert.equal(members.clients.length, 3);
      // The refused presence subscription subscribed nothing.
      await apiPublish(srv, 'lobby/b');
      await apiPublish(srv, 'lobby/a');
      assert.deepEqual(await received(anon, 1), ['lobby/a']);
      // quiet: subscribing is open, presence is not, not even for users.
      assert.deepEqual(await ok(alice, { type: 'subscribe', channel: 'quiet/a' }), {});
      await refused(alice, { type: 'subscribe', channel: 'quiet/b', presence: true }, 'forbidden');
      await refused(alice, { type: 'presence', channel: 'quiet/a' }, 'forbidden');
    });
  });

  it('default_namespace applies to namespaces without an entry', async () => {
    const config: Partial<Config> = {
      default_namespace: { subscribe: 'authenticated', publish: 'none' },
      namespaces: { open: { subscribe: 'anonymous', publish: 'anonymous' } },
    };
    await withServer(config, async ({ srv, connect, user }) => {
      const anon = await connect();
      const alice = await user('alice');
      await refused(anon, { type: 'subscribe', channel: 'misc/x' }, 'forbidden');
      await refused(anon, { type: 'subscribe', channel: 'other' }, 'forbidden');
      await ok(alice, { type: 'subscribe', channel: 'misc/x' });
      await refused(alice, { type: 'publish', channel: 'misc/x', data: 1 }, 'forbidden');
      await ok(anon, { type: 'subscribe', channel: 'open/x' });
      await ok(anon, { type: 'publish', channel: 'open/x', data: 1 });
      assert.deepEqual(await received(anon, 1), ['open/x']);
      await apiPublish(srv, 'misc/x'); // the HTTP API is not subject to namespace rules
      assert.deepEqual(await received(alice, 1), ['misc/x']);
    });
  });

  it('token allows only the channels in the token’s channels claim', async () => {
    const config: Partial<Config> = { jwt_secret: SECRET, namespaces: { chat: { subscribe: 'token', publish: 'token', presence: 'token' } } };
    await withServer(config, async ({ connect }) => {
      const u1 = await connect({ token: token({ sub: 'u1', channels: ['chat/lobby', 'chat/team/+'] }) });
      const u2 = await connect({ token: token({ sub: 'u2', channels: ['chat/lobby'] }) });
      const noClaim = await connect({ token: token({ sub: 'u3' }) });
      const anon = await connect();
      // The token may also come in hello instead of the URL.
      const viaHello = await connect({ hello: { token: token({ sub: 'u4', channels: ['chat/team/red'] }) } });

      await ok(u1, { type: 'subscribe', channel: 'chat/lobby', presence: true });
      await ok(u1, { type: 'subscribe', channel: 'chat/team/red' });
      await ok(u1, { type: 'subscribe', channel: 'chat/team/+' });
      await ok(u1, { type: 'presence', channel: 'chat/lobby' });
      for (const frame of [
        { type: 'subscribe', channel: 'chat/secret' },
        { type: 'subscribe', channel: 'chat/team' },
        { type: 'subscribe', channel: 'chat/team/red/deep' },
        { type: 'publish', channel: 'chat/secret', data: 1 },
        { type: 'presence', channel: 'chat/secret' },
      ]) {
        const r = await refused(u1, frame, 'forbidden');
        assert.ok((r.message as string).includes(frame.channel), r.message as string);
      }
      await refused(u2, { type: 'subscribe', channel: 'chat/team/red' }, 'forbidden');
      for (const c of [noClaim, anon]) {
        await refused(c, { type: 'subscribe', channel: 'chat/lobby' }, 'forbidden');
        await refused(c, { type: 'publish', channel: 'chat/lobby', data: 1 }, 'forbidden');
      }
      await ok(viaHello, { type: 'subscribe', channel: 'chat/team/red' });
      await refused(viaHello, { type: 'subscribe', channel: 'chat/lobby' }, 'forbidden');

      await ok(u2, { type: 'publish', channel: 'chat/lobby', data: 'hi' });
      await refused(u2, { type: 'publish', channel: 'chat/team/red', data: 'no' }, 'forbidden');
      await ok(viaHello, { type: 'publish', channel: 'chat/team/red', data: 'red' });
      assert.deepEqual(await received(u1, 2), ['chat/lobby', 'chat/team/red']);
      assert.deepEqual(await received(viaHello, 1), ['chat/team/red']);
    });
  });

  it('user_channel: inbox/alice/… is only for alice', async () => {
    await withServer(RULES, async ({ srv, connect, user }) => {
      const alice = await user('alice');
      const bob = await user('bob');
      const anon = await connect();
      await ok(alice, { type: 'subscribe', channel: 'inbox/alice' });
      await ok(alice, { type: 'subscribe', channel: 'inbox/alice/notes' });
      await ok(alice, { type: 'presence', channel: 'inbox/alice' });
      for (const c of [bob, anon]) {
        await refused(c, { type: 'subscribe', channel: 'inbox/alice' }, 'forbidden');
        await refused(c, { type: 'subscribe', channel: 'inbox/alice/#' }, 'forbidden');
        await refused(c, { type: 'publish', channel: 'inbox/alice', data: 1 }, 'forbidden');
        await refused(c, { type: 'presence', channel: 'inbox/alice' }, 'forbidden');
      }
      await ok(bob, { type: 'subscribe', channel: 'inbox/bob' });
      await ok(alice, { type: 'publish', channel: 'inbox/alice/notes', data: 'note to self' });
      await apiPublish(srv, 'inbox/alice');
      assert.deepEqual(await received(alice, 2), ['inbox/alice', 'inbox/alice/notes']);
      assert.deepEqual(await received(bob, 0), []);
    });
  });
});

// ---- filtered wildcard delivery -----------------------------------------------------------------

describe('wildcard subscriptions only deliver what the subscriber may read', () => {
  it('#, +/secret and inbox/+ under authenticated, none, write-only and user-channel rules', async () => {
    await withServer(RULES, async ({ srv, connect, user }) => {
      const anonHash = await connect();
      const aliceHash = await user('alice');
      const anonPlusSecret = await connect();
      const aliceInbox = await user('alice');
      const bobInbox = await user('bob');
      const anonPublisher = await connect();
      await ok(anonHash, { type: 'subscribe', channel: '#' });
      await ok(aliceHash, { type: 'subscribe', channel: '#' });
      await ok(anonPlusSecret, { type: 'subscribe', channel: '+/secret' });
      await ok(aliceInbox, { type: 'subscribe', channel: 'inbox/+' });
      await ok(bobInbox, { type: 'subscribe', channel: 'inbox/#' });

      for (const channel of ['public/x', 'public/secret', 'members/x', 'members/secret', 'closed/x', 'closed/secret', 'wo/x', 'wo/secret', 'lobby/secret', 'inbox/alice', 'inbox/alice/x', 'inbox/bob/x', 'inbox/carol', 'inbox']) {
        await apiPublish(srv, channel);
      }
      // From clients allowed to publish there.
      await ok(aliceHash, { type: 'publish', channel: 'members/y', data: 1 });
      await ok(aliceHash, { type: 'publish', channel: 'inbox/alice/y', data: 1 });
      await ok(anonPublisher, { type: 'publish', channel: 'wo/y', data: 1 });
      await ok(anonPublisher, { type: 'publish', channel: 'public/y', data: 1 });

      const expectAnonHash = ['inbox', 'lobby/secret', 'public/secret', 'public/x', 'public/y'].sort();
      const expectAliceHash = ['inbox', 'inbox/alice', 'inbox/alice/x', 'inbox/alice/y', 'lobby/secret', 'members/secret', 'members/x', 'members/y', 'public/secret', 'public/x', 'public/y'].sort();
      assert.deepEqual(await received(anonHash, expectAnonHash.length), expectAnonHash, 'anonymous # subscriber');
      assert.deepEqual(await received(aliceHash, expectAliceHash.length), expectAliceHash, 'alice’s # subscriber');
      assert.deepEqual(await received(anonPlusSecret, 2), ['lobby/secret', 'public/secret'], 'anonymous +/secret subscriber');
      assert.deepEqual(await received(aliceInbox, 1), ['inbox/alice'], 'alice’s inbox/+ subscriber');
      assert.deepEqual(await received(bobInbox, 2), ['inbox', 'inbox/bob/x'], 'bob’s inbox/# subscriber');
    });
  });

  it('token grants: same pattern, different deliveries per client; an unrestricted subscriber gets everything', async () => {
    const config: Partial<Config> = {
      jwt_secret: SECRET,
      namespaces: { chat: { subscribe: 'token', publish: 'token' }, ops: { subscribe: 'token', publish: 'token' } },
    };
    await withServer(config, async ({ srv, connect }) => {
      const root = token({ sub: 'root', channels: ['#'] });
      const lobby = token({ sub: 'u1', channels: ['chat/lobby'] });
      const full = await connect({ token: root });
      const lobbyHash = await connect({ token: lobby });
      const lobbyChat = await connect({ token: lobby });
      const lobbyPlusSecret = await connect({ token: lobby });
      const anonHash = await connect();
      const anonExact = await connect();
      await ok(full, { type: 'subscribe', channel: '#' });
      await ok(lobbyHash, { type: 'subscribe', channel: '#' });
      await ok(lobbyChat, { type: 'subscribe', channel: 'chat/#' });
      await ok(lobbyPlusSecret, { type: 'subscribe', channel: '+/secret' });
      await ok(anonHash, { type: 'subscribe', channel: '#' });
      await ok(anonExact, { type: 'subscribe', channel: 'pub/x' });

      for (const channel of ['chat/lobby', 'chat/secret', 'chat', 'ops/x', 'ops/secret', 'pub/x', 'pub/secret']) await apiPublish(srv, channel);
      for (const channel of ['chat/secret/deep', 'ops/y', 'pub/y']) await ok(full, { type: 'publish', channel, data: 1 });
      await ok(lobbyHash, { type: 'publish', channel: 'chat/lobby', data: 2 });
      await refused(lobbyHash, { type: 'publish', channel: 'chat/secret', data: 3 }, 'forbidden');

      const everything = ['chat/lobby', 'chat/secret', 'chat', 'ops/x', 'ops/secret', 'pub/x', 'pub/secret', 'chat/secret/deep', 'ops/y', 'pub/y', 'chat/lobby'].sort();
      assert.deepEqual(await received(full, everything.length), everything, 'a # subscriber with a # grant');
      const lobbyView = ['chat/lobby', 'chat/lobby', 'pub/secret', 'pub/x', 'pub/y'];
      assert.deepEqual(await received(lobbyHash, lobbyView.length), lobbyView, '# with a chat/lobby grant');
      assert.deepEqual(await received(lobbyChat, 2), ['chat/lobby', 'chat/lobby'], 'chat/# with a chat/lobby grant');
      assert.deepEqual(await received(lobbyPlusSecret, 1), ['pub/secret'], '+/secret with a chat/lobby grant');
      assert.deepEqual(await received(anonHash, 3), ['pub/secret', 'pub/x', 'pub/y'], 'anonymous #');
      assert.deepEqual(await received(anonExact, 1), ['pub/x'], 'anonymous exact subscriber');
    });
  });
});

// ---- send and broadcast ---------------------------------------------------------------------------

describe('client send and broadcast switches', () => {
  it('defaults: clients may send, may not broadcast', () => {
    assert.equal(defaults.allow_client_send, true);
    assert.equal(defaults.allow_client_broadcast, false);
  });

  it('broadcast from clients is refused by default; send works; the HTTP API can broadcast', async () => {
    // test/helpers.ts switches broadcasts on for other suites: state the default explicitly.
    await withServer({ allow_client_broadcast: false }, async ({ srv, connect }) => {
      const a = await connect();
      const b = await connect();
      const r = await refused(a, { type: 'broadcast', data: 'all' }, 'forbidden');
      assert.match(r.message as string, /broadcast/);
      assert.deepEqual(await b.nothing((f) => f.type === 'broadcast'), []);
      assert.deepEqual(await ok(a, { type: 'send', to: { client: b.welcome.client }, data: 'dm' }), { delivered: 1 });
      assert.equal((await b.next((f) => f.type === 'direct')).data, 'dm');
      const res = await api(srv.http, 'POST', '/api/broadcast', { data: 'from server' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { delivered: 2 });
      for (const c of [a, b]) assert.deepEqual((await c.next((f) => f.type === 'broadcast')).from, { server: true });
    });
  });

  it('allow_client_broadcast lets clients broadcast', async () => {
    await withServer({ allow_client_broadcast: true }, async ({ connect }) => {
      const a = await connect({ hello: { name: 'A' } });
      const b = await connect();
      assert.deepEqual(await ok(a, { type: 'broadcast', data: 'all' }), { delivered: 2 });
      const got = await b.next((f) => f.type === 'broadcast');
      assert.equal(got.data, 'all');
      assert.deepEqual(got.from, { client: a.welcome.client, name: 'A' });
    });
  });

  it('allow_client_send false refuses direct messages from clients; the HTTP API can still send', async () => {
    await withServer({ allow_client_send: false, allow_client_broadcast: false }, async ({ srv, connect }) => {
      const a = await connect();
      const b = await connect({ hello: { user: 'bob' } });
      const r = await refused(a, { type: 'send', to: { client: b.welcome.client }, data: 'dm' }, 'forbidden');
      assert.match(r.message as string, /send/);
      await refused(a, { type: 'send', to: { user: 'bob' }, data: 'dm' }, 'forbidden');
      assert.deepEqual(await b.nothing((f) => f.type === 'direct'), []);
      const byClient = await api(srv.http, 'POST', '/api/send', { to: { client: b.welcome.client }, data: 1 });
      assert.deepEqual([byClient.status, byClient.body], [200, { delivered: 1 }]);
      const byUser = await api(srv.http, 'POST', '/api/send', { to: { user: 'bob' }, data: 2 });
      assert.deepEqual([byUser.status, byUser.body], [200, { delivered: 1 }]);
      assert.equal((await b.next((f) => f.type === 'direct')).data, 1);
      assert.equal((await b.next((f) => f.type === 'direct')).data, 2);
      const all = await api(srv.http, 'POST', '/api/broadcast', { data: 3 });
      assert.deepEqual([all.status, all.body], [200, { delivered: 2 }]);
    });
  });
});

// ---- origins ------------------------------------------------------------------------------------

describe('allowed origins', () => {
  it('with allowed_origins: a listed Origin works, another gets HTTP 403 JSON, no Origin (non-browser) works', async () => {
    await withServer({ allowed_origins: ['https://app.example', 'http://localhost:3000'] }, async ({ srv, connect }) => {
      const listed = await connect({ ws: { origin: 'https://app.example' } });
      assert.equal(listed.welcome.type, 'welcome');
      await connect({ ws: { origin: 'http://localhost:3000' } });
      for (const origin of ['https://evil.example', 'https://app.example.evil', 'http://app.example', 'null']) {
        const r = await upgradeRefusal(srv.url, { origin });
        assert.equal(r.status, 403, origin);
        assert.match(r.contentType, /application\/json/);
        assert.equal(r.body.error.code, 'forbidden', origin);
        assert.ok(r.body.error.message.includes(origin), r.body.error.message);
      }
      const noOrigin = await connect();
      await ok(noOrigin, { type: 'subscribe', channel: 'o' });
      assert.equal(srv.server.hub.clients.size, 3, 'refused upgrades left no connection behind');
    });
  });

  it('without allowed_origins any Origin works', async () => {
    await withServer({}, async ({ connect }) => {
      const c = await connect({ ws: { origin: 'https://anything.example' } });
      assert.equal(c.welcome.type, 'welcome');
    });
  });
});

// ---- limits -------------------------------------------------------------------------------------

describe('limits', () => {
  it('max_connections_per_ip: the connection over the limit gets HTTP 503 too_many_connections; a freed slot is reusable', async () => {
    await withServer({ max_connections_per_ip: 2 }, async ({ srv, connect }) => {
      const first = await connect();
      await connect();
      const r = await upgradeRefusal(srv.url);
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'too_many_connections');
      assert.match(r.body.error.message, /2 connections/);
      first.ws.close();
      await connectionsBecome(srv, 1);
      await connect();
      assert.equal((await upgradeRefusal(srv.url)).status, 503, 'still limited at 2');
    });
  });

  it('max_connections_per_ip also holds for simultaneous upgrades whose tokens are still being verified', async () => {
    // A JWKS server that answers slowly keeps every token's verification pending for a while, so all
    // upgrades pass admission before the first connection exists. Tokens signed ES256 with node:crypto.
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' };
    const jwks = createServer((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys: [jwk] }));
      }, 300);
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const es256 = (sub: string): string => {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const input = `${b64({ alg: 'ES256', typ: 'JWT', kid: 'k1' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
      return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    };
    try {
      const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
      await withServer({ jwks: url, max_connections_per_ip: 2 }, async ({ srv }) => {
        const attempts = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => within(TestClient.connect(`${srv.url}?token=${es256(`u${i}`)}`), 4000, 'connect')));
        const accepted = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
        try {
          const refusals = attempts.flatMap((a) => (a.status === 'rejected' ? [String(a.reason)] : []));
          assert.ok(refusals.every((m) => /HTTP 503/.test(m)), `refusals: ${refusals.join('; ')}`);
          assert.equal(
            accepted.length,
            2,
            `${accepted.length} of 6 simultaneous connections from one IP were accepted with max_connections_per_ip 2: ` +
              'admit() (src/server.ts) checks perIp before awaiting the token verification, and perIp is only incremented in onConnection, so every upgrade in flight passes the check',
          );
        } finally {
          for (const c of accepted) c.ws.terminate();
        }
      });
    } finally {
      jwks.closeAllConnections();
      await new Promise<void>((resolve) => jwks.close(() => resolve()));
    }
  });

  it('connection_rate_per_ip: beyond the rate, HTTP 429 rate_limited; the bucket refills', async () => {
    await withServer({ connection_rate_per_ip: 3 }, async ({ srv, connect }) => {
      for (let i = 0; i < 3; i++) await connect();
      const r = await upgradeRefusal(srv.url);
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, 'rate_limited');
      assert.equal(srv.server.hub.clients.size, 3);
      await sleep(450); // 3 per second: one new connection per 333 ms
      await connect();
    });
  });

  it('message_rate/message_burst: frames beyond the burst get rate_limited with their ids, others are served, a flooder is closed with 4003', async () => {
    await withServer({ message_rate: 2, message_burst: 5 }, async ({ connect }) => {
      const flooder = await connect();
      const sub = await connect();
      const pub = await connect();
      await ok(sub, { type: 'subscribe', channel: 'r/x' });

      // A burst of 8 publishes: 5 pass, 3 are refused and not executed.
      for (let i = 1; i <= 8; i++) flooder.send({ type: 'publish', id: i, channel: 'r/x', data: `f${i}` });
      for (let i = 1; i <= 8; i++) {
        const answer = await flooder.next((f) => f.id === i);
        if (i <= 5) assert.equal(answer.type, 'reply', `frame ${i}: ${JSON.stringify(answer)}`);
        else {
          assert.equal(answer.type, 'error', `frame ${i}: ${JSON.stringify(answer)}`);
          assert.equal(answer.code, 'rate_limited');
          assert.match(answer.message as string, /slow down/);
        }
      }

      // Another client is served in full meanwhile.
      for (let i = 1; i <= 4; i++) await ok(pub, { type: 'publish', channel: 'r/x', data: `p${i}` });
      const seen: unknown[] = [];
      for (let i = 0; i < 9; i++) seen.push((await sub.next(isMsg)).data);
      assert.deepEqual(seen, ['f1', 'f2', 'f3', 'f4', 'f5', 'p1', 'p2', 'p3', 'p4']);

      // Keep flooding: closed with 4003 once more than max(message_burst, 10) frames in a row were refused.
      for (let i = 100; i < 140; i++) flooder.send({ type: 'publish', id: i, channel: 'r/x', data: `g${i}` });
      const closed = await within(flooder.closed, 3000, 'flooder close');
      assert.equal(closed.code, 4003, JSON.stringify(closed));

      // The others are unaffected.
      await ok(pub, { type: 'publish', channel: 'r/x', data: 'p5' });
      const rest: unknown[] = [];
      for (let f = await sub.next(isMsg); ; f = await sub.next(isMsg)) {
        rest.push(f.data);
        if (f.data === 'p5') break;
      }
      // A token may have refilled since the first burst (2 per second): then the first flood frame passed
      // and restarted the count of refusals in a row; otherwise the 3 refusals above count too.
      const passed = rest.filter((d) => String(d).startsWith('g'));
      assert.ok(passed.length === 0 || (passed.length === 1 && passed[0] === 'g100'), `at most the first flood frame got through: ${JSON.stringify(rest)}`);
      const limited = flooder.pending('error').filter((f) => f.code === 'rate_limited');
      assert.equal(limited.length + (passed.length === 0 ? 3 : 0), 11, `refusals in a row before the 4003 close: ${limited.length} now (+3 earlier unless a frame passed)`);
      const firstRefused = passed.length === 0 ? 100 : 101;
      assert.deepEqual(limited.map((f) => f.id), Array.from({ length: limited.length }, (_, k) => firstRefused + k), 'each error carries the id of the frame it refuses');
      assert.deepEqual(sub.pending('error'), []);
      assert.deepEqual(pub.pending('error'), []);
    });
  });

  it('max_subscriptions: the N+1th distinct pattern is refused with rate_limited; re-subscribing is fine', async () => {
    await withServer({ max_subscriptions: 3 }, async ({ srv, connect }) => {
      const c = await connect();
      for (const channel of ['a', 'b/+', 'c/#']) await ok(c, { type: 'subscribe', channel });
      const r = await refused(c, { type: 'subscribe', channel: 'd' }, 'rate_limited');
      assert.match(r.message as string, /3 subscriptions/);
      await ok(c, { type: 'subscribe', channel: 'a' });
      await ok(c, { type: 'subscribe', channel: 'a', presence: true });
      await ok(c, { type: 'subscribe', channel: 'c/#' });
      await apiPublish(srv, 'd');
      await apiPublish(srv, 'a');
      assert.deepEqual(await received(c, 1), ['a'], 'the refused subscription delivers nothing');
      await ok(c, { type: 'unsubscribe', channel: 'b/+' });
      await ok(c, { type: 'subscribe', channel: 'd' });
      await refused(c, { type: 'subscribe', channel: 'e' }, 'rate_limited');
      // The limit is per connection.
      const other = await connect();
      for (const channel of ['x', 'y', 'z']) await ok(other, { type: 'subscribe', channel });
    });
  });

  it('max_channel_length: names and patterns above it (in UTF-8 bytes) are invalid_channel', async () => {
    await withServer({ max_channel_length: 20 }, async ({ connect }) => {
      const c = await connect();
      const at = 'x'.repeat(20);
      const over = 'x'.repeat(21);
      const accented = 'é'.repeat(10); // 10 characters, 20 bytes
      await ok(c, { type: 'subscribe', channel: at });
      await ok(c, { type: 'publish', channel: at, data: 1 });
      await ok(c, { type: 'subscribe', channel: accented });
      await ok(c, { type: 'presence', channel: at });
      await ok(c, { type: 'subscribe', channel: `a/${'x'.repeat(16)}/#` });
      for (const frame of [
        { type: 'subscribe', channel: over },
        { type: 'subscribe', channel: `${accented}a` }, // 11 characters, 21 bytes
        { type: 'subscribe', channel: `a/${'x'.repeat(17)}/#` },
        { type: 'publish', channel: over, data: 1 },
        { type: 'presence', channel: over },
        { type: 'unsubscribe', channel: over },
      ]) {
        const r = await refused(c, frame, 'invalid_channel');
        assert.match(r.message as string, /at most 20 bytes/);
      }
    });
  });
});

// ---- TLS ----------------------------------------------------------------------------------------

describe('TLS', () => {
  it('serves WSS and HTTPS with tls_cert/tls_key; clients verify the certificate; plain ws:// fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hubbub-tls-'));
    try {
      const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
        keyType: 'ec',
        curve: 'P-256',
        algorithm: 'sha256',
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, critical: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
        ],
      });
      const certFile = join(dir, 'cert.pem');
      const keyFile = join(dir, 'key.pem');
      writeFileSync(certFile, pems.cert);
      writeFileSync(keyFile, pems.private, { mode: 0o600 });
      const ca = pems.cert;

      await withServer({ tls_cert: certFile, tls_key: keyFile }, async ({ srv, connect }) => {
        const wss = `wss://127.0.0.1:${srv.port}/ws`;
        const a = await connect({ url: wss, ws: { ca } });
        const b = await connect({ url: wss, ws: { ca } });
        await ok(a, { type: 'subscribe', channel: 'tls/x' });
        await ok(b, { type: 'publish', channel: 'tls/x', data: { secure: true } });
        const m = await a.next(isMsg);
        assert.deepEqual(m.data, { secure: true });
        assert.equal((a.ws as unknown as { _socket: { encrypted?: boolean } })._socket.encrypted, true, 'the connection is TLS');

        const health = await within(
          new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
            httpsGet(`https://127.0.0.1:${srv.port}/health`, { ca }, (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (d: string) => (text += d));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
            }).on('error', reject);
          }),
          3000,
          'https GET /health',
        );
        assert.equal(health.status, 200);
        assert.equal(health.body.status, 'ok');
        assert.equal(health.body.connections, 2);

        // Without trusting the certificate, verification fails: proof that `ca` is doing the work.
        await assert.rejects(within(TestClient.connect(wss), 3000, 'wss without ca'), /self[- ]signed|certificate/i);
        // Plain WebSocket to the TLS port fails.
        await assert.rejects(within(TestClient.connect(`ws://127.0.0.1:${srv.port}/ws`), 3000, 'plain ws to the TLS port'), (err: Error) => !/no outcome within/.test(err.message));
        assert.equal(srv.server.hub.clients.size, 2);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
