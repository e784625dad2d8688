/**
 * Token authentication end to end: a real server on loopback, real `ws` clients, and tokens minted
 * here by a tiny independent JWT signer on node:crypto (not jose, not the server's code), so that a
 * bug shared by the verifier and the signer cannot hide.
 */
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import type { Config } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { HubbubServer } from '../src/server.js';
import { TestClient, startServer, type Frame, type TestServer } from './helpers.js';

// ---- an independent JWT signer -----------------------------------------------------------------

type Alg = 'HS256' | 'HS384' | 'RS256' | 'ES256' | 'EdDSA' | 'none';
type Claims = Record<string, unknown>;

const b64url = (x: string | Buffer): string => Buffer.from(x).toString('base64url');
const nowSec = (): number => Math.floor(Date.now() / 1000);

/** header.payload.signature, signed with `key` (a string for HMAC, a private KeyObject otherwise). */
function jwt(alg: Alg, key: string | KeyObject | undefined, claims: Claims, header: Claims = {}): string {
  const input = `${b64url(JSON.stringify({ alg, typ: 'JWT', ...header }))}.${b64url(JSON.stringify(claims))}`;
  let sig: Buffer;
  switch (alg) {
    case 'HS256':
      sig = createHmac('sha256', key as string).update(input).digest();
      break;
    case 'HS384':
      sig = createHmac('sha384', key as string).update(input).digest();
      break;
    case 'RS256': // RSASSA-PKCS1-v1_5 with SHA-256 (node's default padding for RSA keys)
      sig = cryptoSign('sha256', Buffer.from(input), key as KeyObject);
      break;
    case 'ES256': // JWS wants r||s, not DER
      sig = cryptoSign('sha256', Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
      break;
    case 'EdDSA':
      sig = cryptoSign(null, Buffer.from(input), key as KeyObject);
      break;
    case 'none':
      sig = Buffer.alloc(0);
      break;
  }
  return `${input}.${b64url(sig)}`;
}

const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

const dir = mkdtempSync(join(tmpdir(), 'hubbub-auth-'));
const spki = (k: KeyObject): string => k.export({ type: 'spki', format: 'pem' }) as string;
function pemFile(name: string, key: KeyObject): string {
  const path = join(dir, name);
  writeFileSync(path, spki(key));
  return path;
}
const rsaPemFile = pemFile('rsa.pem', rsa.publicKey);
const rsaPem = spki(rsa.publicKey); // the exact bytes of the file, used as an HMAC key in the confusion attack
const ecPemFile = pemFile('ec.pem', ec.publicKey);
const edPemFile = pemFile('ed.pem', ed.publicKey);
const jwksFile = join(dir, 'jwks.json');
writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...createPublicKey(rsa.privateKey).export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }] }));

after(() => rmSync(dir, { recursive: true, force: true }));

/** Standard claims for user `sub`, valid for an hour unless overridden. */
const claims = (sub: string, extra: Claims = {}): Claims => ({ sub, iat: nowSec(), exp: nowSec() + 3600, ...extra });
const hs = (sub: string, extra: Claims = {}): string => jwt('HS256', SECRET, claims(sub, extra));

// ---- servers, clients and bounded waits ---------------------------------------------------------

interface Ctx {
  srv: TestServer;
  /** Connect (optionally with a token in the query or an Authorization header); closed at the end of the test. */
  connect(opts?: { query?: string; bearer?: string }): Promise<TestClient>;
}

/** Run `fn` against a fresh server; every client and the server are closed afterwards, whatever happens. */
async function withServer(config: Partial<Config>, fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const srv = await startServer({ message_rate: 0, ...config });
  const clients: TestClient[] = [];
  try {
    await fn({
      srv,
      async connect(opts = {}) {
        const url = opts.query !== undefined ? `${srv.url}?token=${encodeURIComponent(opts.query)}` : srv.url;
        const c = await TestClient.connect(url, opts.bearer !== undefined ? { headers: { Authorization: `Bearer ${opts.bearer}` } } : {});
        clients.push(c);
        return c;
      },
    });
  } finally {
    for (const c of clients) c.ws.terminate();
    await srv.close();
  }
}

/** `p`, or a rejection naming `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Try an upgrade that must be refused; resolves with the HTTP status and the parsed JSON body. */
function refusedUpgrade(url: string, headers?: Record<string, string>): Promise<{ status: number; body: any }> {
  return within(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, headers ? { headers } : {});
      ws.on('error', () => {});
      ws.on('open', () => {
        ws.terminate();
        reject(new Error(`the upgrade to ${url.replace(/token=[^&]*/, 'token=…')} was accepted; expected an HTTP refusal`));
      });
      ws.on('unexpected-response', (req, res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          req.destroy();
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
          } catch {
            reject(new Error(`HTTP ${res.statusCode} with a body that is not JSON: ${text}`));
          }
        });
      });
    }),
    3000,
    'the upgrade refusal',
  );
}

async function assertUpgrade401(url: string, headers?: Record<string, string>, reason?: RegExp): Promise<void> {
  const { status, body } = await refusedUpgrade(url, headers);
  assert.equal(status, 401, `expected HTTP 401, got ${status} ${JSON.stringify(body)}`);
  assert.equal(body?.error?.code, 'unauthorized', JSON.stringify(body));
  assert.equal(typeof body.error.message, 'string');
  if (reason) assert.match(body.error.message, reason);
}

/** Send hello with `token` under a known id: error `unauthorized` with that id, then close 4501. */
async function assertHelloRefused(c: TestClient, token: string, reason?: RegExp): Promise<void> {
  const id = `hello-${Math.random().toString(36).slice(2)}`;
  c.send({ type: 'hello', id, token });
  const e = await c.next((f) => f.type === 'error' || f.type === 'reply');
  assert.equal(e.type, 'error', `hello with a bad token was answered ${JSON.stringify(e)}`);
  assert.equal(e.id, id, 'the error carries the hello frame id');
  assert.equal(e.code, 'unauthorized', JSON.stringify(e));
  if (reason) assert.match(e.message as string, reason);
  const closed = await within(c.closed, 2000, 'the close after a refused hello token');
  assert.equal(closed.code, 4501, `close ${closed.code} ${closed.reason}`);
}

async function hello(c: TestClient, token: string): Promise<Frame> {
  const r = await c.request({ type: 'hello', token });
  assert.equal(r.type, 'reply', `hello with a valid token was refused: ${JSON.stringify(r)}`);
  return r;
}

const isMsg = (channel: string) => (f: Frame) => f.type === 'message' && f.channel === channel;

// ---- accepted tokens ----------------------------------------------------------------------------

describe('valid tokens', () => {
  it('HS256: hello reply shows user = sub, name from the claim, expires_at', async () => {
    await withServer({ jwt_secret: SECRET }, async ({ connect }) => {
      const exp = nowSec() + 600;
      const c = await connect();
      const r = await hello(c, jwt('HS256', SECRET, { sub: 'alice', name: 'Alice A.', exp }));
      assert.deepEqual(r.data, { client: c.welcome.client, user: 'alice', name: 'Alice A.', expires_at: exp * 1000 });
    });
  });

  for (const [alg, key, file] of [
    ['RS256', rsa.privateKey, rsaPemFile],
    ['ES256', ec.privateKey, ecPemFile],
    ['EdDSA', ed.privateKey, edPemFile],
  ] as const) {
    it(`${alg} with jwt_public_key`, async () => {
      await withServer({ jwt_public_key: file }, async ({ connect }) => {
        const c = await connect();
        const r = await hello(c, jwt(alg, key, claims(`u-${alg}`, { name: alg })));
        assert.equal((r.data as Frame).user, `u-${alg}`);
        assert.equal((r.data as Frame).name, alg);
        // And at the upgrade, with no hello at all.
        const u = await connect({ query: jwt(alg, key, claims(`q-${alg}`)) });
        const me = ((await u.request({ type: 'clients' })).data as { clients: Frame[] }).clients.find((x) => x.client === u.welcome.client);
        assert.equal(me?.user, `q-${alg}`);
      });
    });
  }

  it('RS256 via a JWKS file (kid selects the key)', async () => {
    await withServer({ jwks: jwksFile }, async ({ connect }) => {
      const c = await connect();
      const r = await hello(c, jwt('RS256', rsa.privateKey, claims('jwks-user'), { kid: 'k1' }));
      assert.equal((r.data as Frame).user, 'jwks-user');
      // A token signed by a key that is not in the set is refused.
      await assertHelloRefused(await connect(), jwt('RS256', otherRsa.privateKey, claims('jwks-user'), { kid: 'k1' }));
    });
  });

  it('exp a little in the past is accepted within the default 5 s clock tolerance', async () => {
    await withServer({ jwt_secret: SECRET }, async ({ connect }) => {
      const c = await connect();
      const r = await hello(c, hs('skewed', { exp: nowSec() - 2 }));
      assert.equal((r.data as Frame).user, 'skewed');
    });
  });
});

// ---- refused tokens -----------------------------------------------------------------------------

interface BadCase {
  name: string;
  config: Partial<Config>;
  token: () => string;
  reason?: RegExp;
  /** A good token for the same server: proves the refusal is about the token, not the setup. */
  good: () => string;
}

const ISS = 'https://issuer.example';
const AUD = 'hubbub-tests';
const rsHmac = (): string => jwt('HS256', rsaPem, claims('attacker'));
const bad: BadCase[] = [
  { name: 'expired beyond the tolerance', config: { jwt_secret: SECRET }, token: () => hs('a', { exp: nowSec() - 60 }), reason: /expired/, good: () => hs('a') },
  { name: 'not yet valid (nbf in the future)', config: { jwt_secret: SECRET }, token: () => hs('a', { nbf: nowSec() + 120 }), reason: /not yet valid/, good: () => hs('a', { nbf: nowSec() - 1 }) },
  { name: 'wrong signature (other secret)', config: { jwt_secret: SECRET }, token: () => jwt('HS256', `${SECRET}x`, claims('a')), reason: /signature/, good: () => hs('a') },
  {
    name: 'tampered payload (sub changed, signature kept)',
    config: { jwt_secret: SECRET },
    token: () => {
      const [h, , s] = hs('alice').split('.');
      return `${h}.${b64url(JSON.stringify(claims('admin')))}.${s}`;
    },
    reason: /signature/,
    good: () => hs('a'),
  },
  { name: 'wrong issuer', config: { jwt_secret: SECRET, jwt_issuer: ISS, jwt_audience: AUD }, token: () => hs('a', { iss: 'https://evil.example', aud: AUD }), reason: /issuer/, good: () => hs('a', { iss: ISS, aud: AUD }) },
  { name: 'missing issuer', config: { jwt_secret: SECRET, jwt_issuer: ISS, jwt_audience: AUD }, token: () => hs('a', { aud: AUD }), good: () => hs('a', { iss: ISS, aud: AUD }) },
  { name: 'wrong audience', config: { jwt_secret: SECRET, jwt_issuer: ISS, jwt_audience: AUD }, token: () => hs('a', { iss: ISS, aud: 'someone-else' }), reason: /audience/, good: () => hs('a', { iss: ISS, aud: [AUD, 'x'] }) },
  { name: 'alg none (unsigned)', config: { jwt_secret: SECRET }, token: () => jwt('none', undefined, claims('a')), good: () => hs('a') },
  { name: 'alg none against a public key', config: { jwt_public_key: rsaPemFile }, token: () => jwt('none', undefined, claims('a')), good: () => jwt('RS256', rsa.privateKey, claims('a')) },
  { name: 'HS/RS confusion, public key only', config: { jwt_public_key: rsaPemFile }, token: rsHmac, good: () => jwt('RS256', rsa.privateKey, claims('a')) },
  { name: 'HS/RS confusion, secret and public key', config: { jwt_secret: SECRET, jwt_public_key: rsaPemFile }, token: rsHmac, reason: /signature/, good: () => jwt('RS256', rsa.privateKey, claims('a')) },
  { name: 'alg not in jwt_algorithms', config: { jwt_secret: SECRET, jwt_algorithms: ['HS384'] }, token: () => hs('a'), reason: /algorithm/, good: () => jwt('HS384', SECRET, claims('a')) },
  { name: 'RS256 signed by another key', config: { jwt_public_key: rsaPemFile }, token: () => jwt('RS256', otherRsa.privateKey, claims('a')), reason: /signature/, good: () => jwt('RS256', rsa.privateKey, claims('a')) },
  { name: 'garbage', config: { jwt_secret: SECRET }, token: () => 'not-a-jwt', good: () => hs('a') },
  { name: 'garbage with dots', config: { jwt_secret: SECRET }, token: () => 'eyJhbGciOi.garbage.!!', good: () => hs('a') },
  { name: 'no sub', config: { jwt_secret: SECRET }, token: () => jwt('HS256', SECRET, { exp: nowSec() + 60 }), reason: /sub/, good: () => hs('a') },
];

describe('refused tokens', () => {
  for (const b of bad) {
    it(`${b.name}: 401 at the upgrade (query and header), unauthorized + 4501 on hello`, async () => {
      await withServer(b.config, async ({ srv, connect }) => {
        const token = b.token();
        await assertUpgrade401(`${srv.url}?token=${encodeURIComponent(token)}`, undefined, b.reason);
        if (!/\s/.test(token)) await assertUpgrade401(srv.url, { Authorization: `Bearer ${token}` }, b.reason);
        await assertHelloRefused(await connect(), token, b.reason);
        // Control: the same server accepts a good token both ways.
        await hello(await connect(), b.good());
        await connect({ query: b.good() });
      });
    });
  }
});

// ---- where the token comes from -----------------------------------------------------------------

describe('token at the upgrade', () => {
  it('query and Authorization header identify the connection without hello: from, presence, clients', async () => {
    await withServer({ jwt_secret: SECRET }, async ({ connect }) => {
      const a = await connect({ query: hs('alice', { name: 'Alice' }) });
      const b = await connect({ bearer: hs('bob', { name: 'Bob' }) });
      assert.deepEqual((await a.request({ type: 'subscribe', channel: 'room', presence: true })).data, {});
      assert.deepEqual((await b.request({ type: 'subscribe', channel: 'room' })).data, {});
      await b.request({ type: 'publish', channel: 'room', data: 'hi' });
      const m = await a.next(isMsg('room'));
      assert.deepEqual(m.from, { client: b.welcome.client, user: 'bob', name: 'Bob' });
      const p = (await a.request({ type: 'presence', channel: 'room' })).data as { clients: Frame[] };
      const users = p.clients.map((x) => [x.client, x.user, x.name]).sort();
      assert.deepEqual(users, [[a.welcome.client, 'alice', 'Alice'], [b.welcome.client, 'bob', 'Bob']].sort());
      // A hello afterwards keeps the token's user and reports expires_at.
      const r = await a.request({ type: 'hello', name: 'ignored' });
      assert.equal((r.data as Frame).user, 'alice');
      assert.equal(typeof (r.data as Frame).expires_at, 'number');
    });
  });

  it('a bad Bearer header is refused with 401', async () => {
    await withServer({ jwt_secret: SECRET }, async ({ srv }) => {
      await assertUpgrade401(srv.url, { Authorization: `Bearer ${jwt('HS256', 'wrong', claims('x'))}` });
    });
  });
});

describe('info and channels claims', () => {
  it('presence and clients entries show info; channels grant token-only namespaces', async () => {
    const info = { role: 'moderator', color: '#f00', tags: ['a', 1] };
    await withServer({ jwt_secret: SECRET, namespaces: { team: { subscribe: 'token', publish: 'token' } } }, async ({ connect }) => {
      const c = await connect({ query: hs('carol', { info, channels: ['team/a', 'team/x/#'] }) });
      const anon = await connect();
      assert.deepEqual((await c.request({ type: 'subscribe', channel: 'team/a', presence: true })).data, {});
      assert.deepEqual((await c.request({ type: 'subscribe', channel: 'team/x/y' })).data, {});
      const denied = await c.request({ type: 'subscribe', channel: 'team/b' });
      assert.equal(denied.code, 'forbidden', `team/b is not in the token's channels: ${JSON.stringify(denied)}`);
      assert.equal((await anon.request({ type: 'subscribe', channel: 'team/a' })).code, 'forbidden');
      const p = (await anon.request({ type: 'presence', channel: 'team/a' })).data as { clients: Frame[] };
      assert.equal(p.clients.length, 1);
      assert.deepEqual(p.clients[0]!.info, info);
      assert.equal(p.clients[0]!.user, 'carol');
      const all = ((await anon.request({ type: 'clients' })).data as { clients: Frame[] }).clients;
      assert.deepEqual(all.find((x) => x.client === c.welcome.client)?.info, info);
      assert.equal(all.find((x) => x.client === anon.welcome.client)?.info, undefined);
    });
  });
});

// ---- auth required ------------------------------------------------------------------------------

describe('auth required', () => {
  it('before hello only hello and ping are served', async () => {
    await withServer({ auth: 'required', jwt_secret: SECRET, auth_timeout: 10_000 }, async ({ connect }) => {
      const c = await connect();
      assert.equal((await c.request({ type: 'ping' })).type, 'pong');
      for (const frame of [{ type: 'subscribe', channel: 'x' }, { type: 'publish', channel: 'x', data: 1 }, { type: 'clients' }, { type: 'echo', data: 1 }]) {
        const r = await c.request(frame);
        assert.equal(r.code, 'unauthorized', `${frame.type} before authentication: ${JSON.stringify(r)}`);
      }
      await hello(c, hs('dave'));
      assert.deepEqual((await c.request({ type: 'subscribe', channel: 'x' })).data, {});
    });
  });

  it('no token within auth_timeout: closed 4501 "authentication timeout"', async () => {
    await withServer({ auth: 'required', jwt_secret: SECRET, auth_timeout: 300 }, async ({ connect }) => {
      const t0 = Date.now();
      const c = await connect();
      const closed = await within(c.closed, 3000, 'the auth_timeout close');
      assert.deepEqual(closed, { code: 4501, reason: 'authentication timeout' });
      assert.ok(Date.now() - t0 >= 250, `closed after ${Date.now() - t0} ms, before auth_timeout`);
      // A connection authenticated at the upgrade is not timed out.
      const ok = await connect({ query: hs('erin') });
      await sleep(450);
      assert.equal((await ok.request({ type: 'ping' })).type, 'pong');
    });
  });

  it('frames pipelined right after hello-with-token are served once the token verifies', async () => {
    await withServer({ auth: 'required', jwt_secret: SECRET, auth_timeout: 10_000 }, async ({ connect }) => {
      const c = await connect();
      // Same tick: the subscribe reaches the server while the token is still being verified.
      c.send({ type: 'hello', id: 'h', token: hs('frank') });
      c.send({ type: 'subscribe', id: 's', channel: 'piped' });
      c.send({ type: 'publish', id: 'p', channel: 'piped', data: 'x' });
      const h = await c.next((f) => f.id === 'h');
      assert.equal(h.type, 'reply', JSON.stringify(h));
      const s = await c.next((f) => f.id === 's');
      assert.deepEqual(s, { type: 'reply', id: 's', data: {} }, 'a subscribe pipelined behind hello-with-token must be judged after the token is accepted, not refused as unauthenticated');
      const p = await c.next((f) => f.id === 'p');
      assert.deepEqual(p, { type: 'reply', id: 'p', data: {} });
      assert.equal((await c.next(isMsg('piped'))).data, 'x');
    });
  });

  it('a server with auth required and no key fails to start', () => {
    const logger = createLogger('silent', { pretty: false });
    assert.throws(() => new HubbubServer({ config: { host: '127.0.0.1', port: 0, auth: 'required' }, logger }), /auth required/);
    // With a key it constructs (and is never listened on, so nothing to close).
    assert.ok(new HubbubServer({ config: { host: '127.0.0.1', port: 0, auth: 'required', jwt_secret: SECRET }, logger }).verifier);
  });
});

describe('frames held behind a refused hello token', () => {
  it('are not run anonymously (optional auth)', async () => {
    await withServer({ jwt_secret: SECRET }, async ({ connect }) => {
      const watcher = await connect();
      await watcher.request({ type: 'subscribe', channel: 'held' });
      const c = await connect();
      c.send({ type: 'hello', id: 'h', token: jwt('HS256', 'wrong-secret', claims('mallory')) });
      c.send({ type: 'publish', id: 'p', channel: 'held', data: 'sneaked in' });
      const h = await c.next((f) => f.id === 'h');
      assert.equal(h.code, 'unauthorized');
      assert.equal((await within(c.closed, 2000, 'close 4501')).code, 4501);
      const leaked = await watcher.nothing(isMsg('held'), 200);
      assert.deepEqual(leaked, [], 'a publish pipelined behind a refused hello token was executed anonymously before the connection was closed');
    });
  });
});

// ---- refresh and expiry -------------------------------------------------------------------------

describe('refresh and expiry', () => {
  it('refresh keeps the connection past the first exp; without it close 4005 at exp; other sub is forbidden', async () => {
    await withServer({ jwt_secret: SECRET, jwt_clock_tolerance: 0 }, async ({ connect }) => {
      const exp = nowSec() + 2;
      const refreshed = await connect();
      const lapsing = await connect();
      const other = await connect();
      await hello(refreshed, hs('gina', { exp }));
      const r0 = await hello(lapsing, hs('hank', { exp }));
      assert.equal((r0.data as Frame).expires_at, exp * 1000);
      await hello(other, hs('ivan', { exp: nowSec() + 60 }));

      const later = nowSec() + 120;
      const r = await refreshed.request({ type: 'refresh', token: hs('gina', { exp: later }) });
      assert.deepEqual(r.data, { user: 'gina', expires_at: later * 1000 }, JSON.stringify(r));
      const f = await other.request({ type: 'refresh', token: hs('someone-else') });
      assert.equal(f.code, 'forbidden', `refresh with another user's token: ${JSON.stringify(f)}`);
      const bogus = await other.request({ type: 'refresh', token: jwt('HS256', 'nope', claims('ivan')) });
      assert.equal(bogus.code, 'unauthorized', JSON.stringify(bogus));

      const closed = await within(lapsing.closed, 4000, 'the 4005 close at exp');
      const at = Date.now();
      assert.deepEqual(closed, { code: 4005, reason: 'token expired' });
      assert.ok(at >= exp * 1000 - 100, `closed ${exp * 1000 - at} ms before exp`);
      assert.ok(at <= exp * 1000 + 1500, `closed ${at - exp * 1000} ms after exp`);
      await sleep(300);
      assert.equal((await refreshed.request({ type: 'ping' })).type, 'pong', 'the refreshed connection is still open past the first exp');
      assert.equal((await other.request({ type: 'ping' })).type, 'pong');
      const me = ((await refreshed.request({ type: 'clients' })).data as { clients: Frame[] }).clients.map((x) => x.user).sort();
      assert.deepEqual(me, ['gina', 'ivan']);
    });
  });
});

// ---- development identity and servers without a verifier ----------------------------------------

describe('development identity and no verifier', () => {
  it('hello user is forbidden when a verifier is configured', async () => {
    await withServer({ jwt_secret: SECRET }, async ({ connect }) => {
      const c = await connect();
      const r = await c.request({ type: 'hello', user: 'mallory' });
      assert.equal(r.code, 'forbidden', JSON.stringify(r));
      const me = ((await c.request({ type: 'clients' })).data as { clients: Frame[] }).clients.find((x) => x.client === c.welcome.client);
      assert.equal(me?.user, undefined, 'the refused user id must not stick');
    });
  });

  it('hello user is accepted when no verifier is configured; a token is refused (401 / unauthorized)', async () => {
    await withServer({}, async ({ srv, connect }) => {
      const c = await connect();
      const r = await c.request({ type: 'hello', user: 'dev', name: 'Dev' });
      assert.deepEqual(r.data, { client: c.welcome.client, user: 'dev', name: 'Dev' });
      await assertUpgrade401(`${srv.url}?token=${hs('x')}`, undefined, /verifies no tokens/);
      await assertUpgrade401(srv.url, { Authorization: `Bearer ${hs('x')}` }, /verifies no tokens/);
      const t = await connect();
      const e = await t.request({ type: 'hello', token: hs('x') });
      assert.equal(e.code, 'unauthorized', JSON.stringify(e));
    });
  });
});

// ---- per-user connection limit ------------------------------------------------------------------

describe('max_connections_per_user', () => {
  it('upgrade: the (N+1)th connection of a user gets HTTP 503 too_many_connections', async () => {
    await withServer({ jwt_secret: SECRET, max_connections_per_user: 2 }, async ({ srv, connect }) => {
      const first = await connect({ query: hs('jo') });
      await connect({ bearer: hs('jo') });
      const { status, body } = await refusedUpgrade(`${srv.url}?token=${hs('jo')}`);
      assert.equal(status, 503, JSON.stringify(body));
      assert.equal(body.error.code, 'too_many_connections');
      await connect({ query: hs('kim') }); // another user is not affected
      await first.close();
      const deadline = Date.now() + 2000;
      while (srv.server.hub.userConnections('jo') > 1 && Date.now() < deadline) await sleep(10);
      await connect({ query: hs('jo') }); // a slot freed up
    });
  });

  it('hello: the (N+1)th connection is refused too_many_connections and closed 4004', async () => {
    await withServer({ jwt_secret: SECRET, max_connections_per_user: 2 }, async ({ connect }) => {
      await hello(await connect(), hs('lee'));
      await connect({ query: hs('lee') });
      const third = await connect();
      const r = await third.request({ type: 'hello', token: hs('lee') });
      assert.equal(r.code, 'too_many_connections', JSON.stringify(r));
      const closed = await within(third.closed, 2000, 'the 4004 close');
      assert.equal(closed.code, 4004, `close ${closed.code} ${closed.reason}`);
    });
  });
});

describe('refresh with narrower grants', () => {
  it('stops delivering channels the new token no longer grants', async () => {
    await withServer({ jwt_secret: SECRET, namespaces: { chat: { subscribe: 'token', publish: 'anonymous' } } }, async ({ srv, connect }) => {
      const c = await connect({ query: hs('narrow', { channels: ['chat/a', 'chat/b'] }) });
      for (const channel of ['chat/a', 'chat/b']) assert.equal((await c.request({ type: 'subscribe', channel })).type, 'reply');
      const r = await c.request({ type: 'refresh', token: hs('narrow', { channels: ['chat/a'] }) });
      assert.equal(r.type, 'reply', JSON.stringify(r));
      const pub = await connect();
      for (const channel of ['chat/b', 'chat/a']) await pub.request({ type: 'publish', channel, data: channel });
      assert.equal((await c.next(isMsg('chat/a'))).data, 'chat/a');
      assert.deepEqual(await c.nothing(isMsg('chat/b')), [], 'chat/b is no longer granted');
      void srv;
    });
  });
});

describe('hello after a refused hello', () => {
  it('a refused hello does not use up the connection: a later hello with a token works', async () => {
    await withServer({ jwt_secret: SECRET, auth: 'required' }, async ({ connect }) => {
      const c = await connect();
      const dev = await c.request({ type: 'hello', user: 'mallory' });
      assert.equal(dev.code, 'forbidden');
      const bare = await c.request({ type: 'hello', name: 'no token' });
      assert.equal(bare.code, 'unauthorized');
      const ok = await c.request({ type: 'hello', token: hs('later') });
      assert.equal(ok.type, 'reply', JSON.stringify(ok));
      assert.equal((ok.data as { user: string }).user, 'later');
    });
  });

  it('the client list can be switched off for clients (allow_client_list)', async () => {
    await withServer({ allow_client_list: false }, async ({ srv, connect }) => {
      const c = await connect();
      assert.equal((await c.request({ type: 'clients' })).code, 'forbidden');
      const viaApi = await (await fetch(`${srv.http}/api/clients`)).json();
      assert.equal(viaApi.count, 1, 'the HTTP API still lists');
    });
  });
});
