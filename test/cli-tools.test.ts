/**
 * `hubbub token` and `hubbub cert` as a user runs them: the built bin in child processes. Tokens are
 * checked with node:crypto, independently of jose; certificates with X509Certificate and a real
 * HTTPS server.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac, createPrivateKey, generateKeyPairSync, verify as verifySignature, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, get, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'hubbub.js');
const SECRET = 'test-secret-for-cli-tools';

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without the caller's HUBBUB_* settings (they would change what the commands do). */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('HUBBUB_')) delete env[k];
  return { ...env, ...extra };
}

function hubbub(args: string[], opts: { env?: Record<string, string>; cwd?: string; input?: string } = {}): Result {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: childEnv(opts.env), cwd: opts.cwd, input: opts.input, timeout: 30_000 });
  assert.equal(r.error, undefined, `hubbub ${args.join(' ')}: ${String(r.error)}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function decode(token: string): { header: Record<string, unknown>; payload: Record<string, unknown>; signed: Buffer; signature: Buffer } {
  const parts = token.split('.');
  assert.equal(parts.length, 3, `three parts: ${token}`);
  const [h, p, s] = parts as [string, string, string];
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>,
    signed: Buffer.from(`${h}.${p}`),
    signature: Buffer.from(s, 'base64url'),
  };
}

/** An HS256 token made by hand with node:crypto. */
function hs256(payload: Record<string, unknown>, secret: string, header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' }): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** The one line a signing run prints: the token and nothing else. */
function signed(r: Result): string {
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'stdout is the token and a newline');
  return r.stdout.trim();
}

const now = () => Math.floor(Date.now() / 1000);

describe('hubbub token', () => {
  let dir: string;
  before(() => {
    assert.ok(existsSync(join(root, 'dist', 'cli', 'main.js')), 'dist/ is missing: run `npm run build` (npm test does)');
    dir = mkdtempSync(join(tmpdir(), 'hubbub-token-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function keyPair(name: string, type: 'rsa' | 'ed25519' | 'ec'): { file: string; publicFile: string; publicKey: KeyObject } {
    const pair =
      type === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : type === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
          : generateKeyPairSync('ed25519');
    const file = join(dir, `${name}.pem`);
    const publicFile = join(dir, `${name}.pub.pem`);
    writeFileSync(file, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(publicFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    return { file, publicFile, publicKey: pair.publicKey };
  }

  it('signs HS256 with --secret: the HMAC checks out with node:crypto and the claims are as asked', () => {
    const before = now();
    const token = signed(hubbub(['token', '--sub', 'alice', '--name', 'Alice', '--channels', 'chat/#, user/alice/#', '--info', '{"role":"admin","n":1}', '--ttl', '2h', '--iss', 'tests', '--aud', 'hubbub', '--secret', SECRET]));
    const { header, payload, signed: input, signature } = decode(token);
    assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
    assert.ok(createHmac('sha256', SECRET).update(input).digest().equals(signature), 'HMAC-SHA256 over header.payload with the secret');
    assert.ok(!createHmac('sha256', `${SECRET}x`).update(input).digest().equals(signature), 'and not with another secret');
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.name, 'Alice');
    assert.deepEqual(payload.channels, ['chat/#', 'user/alice/#']);
    assert.deepEqual(payload.info, { role: 'admin', n: 1 });
    assert.equal(payload.iss, 'tests');
    assert.equal(payload.aud, 'hubbub');
    const iat = payload.iat as number;
    assert.ok(iat >= before - 1 && iat <= now() + 1, `iat ${iat} is now`);
    assert.equal(payload.exp, iat + 7200, 'exp = iat + ttl');
  });

  it('takes the secret from HUBBUB_JWT_SECRET; --ttl 0 leaves exp out; the default ttl is 1h', () => {
    const token = signed(hubbub(['token', '--sub', 'bot', '--ttl', '0'], { env: { HUBBUB_JWT_SECRET: SECRET } }));
    const { payload, signed: input, signature } = decode(token);
    assert.ok(createHmac('sha256', SECRET).update(input).digest().equals(signature));
    assert.equal(payload.sub, 'bot');
    assert.equal(payload.exp, undefined);
    assert.equal(payload.channels, undefined);
    const hourly = decode(signed(hubbub(['token', '--sub', 'bot', '--secret', SECRET]))).payload;
    assert.equal((hourly.exp as number) - (hourly.iat as number), 3600);
    const hs512 = decode(signed(hubbub(['token', '--sub', 'bot', '--secret', SECRET, '--alg', 'HS512'])));
    assert.equal(hs512.header.alg, 'HS512');
    assert.ok(createHmac('sha512', SECRET).update(hs512.signed).digest().equals(hs512.signature));
  });

  it('signs RS256 with an RSA key, EdDSA with an Ed25519 key, ES256 with a P-256 key: node:crypto verifies each', () => {
    const rsa = keyPair('rsa', 'rsa');
    const rs = decode(signed(hubbub(['token', '--sub', 'rsa-user', '--private-key', rsa.file])));
    assert.equal(rs.header.alg, 'RS256');
    assert.equal(rs.payload.sub, 'rsa-user');
    assert.ok(verifySignature('sha256', rs.signed, rsa.publicKey, rs.signature), 'RSASSA-PKCS1-v1_5 SHA-256');
    assert.ok(!verifySignature('sha256', Buffer.concat([rs.signed, Buffer.from('x')]), rsa.publicKey, rs.signature), 'a changed payload fails');

    const ed = keyPair('ed', 'ed25519');
    const eddsa = decode(signed(hubbub(['token', '--sub', 'ed-user', '--private-key', ed.file])));
    assert.equal(eddsa.header.alg, 'EdDSA');
    assert.equal(eddsa.payload.sub, 'ed-user');
    assert.ok(verifySignature(null, eddsa.signed, ed.publicKey, eddsa.signature), 'Ed25519');
    assert.ok(!verifySignature(null, eddsa.signed, keyPair('ed-other', 'ed25519').publicKey, eddsa.signature), 'not with another key');

    const ec = keyPair('ec', 'ec');
    const es = decode(signed(hubbub(['token', '--sub', 'ec-user', '--private-key', ec.file])));
    assert.equal(es.header.alg, 'ES256');
    assert.ok(verifySignature('sha256', es.signed, { key: ec.publicKey, dsaEncoding: 'ieee-p1363' }, es.signature), 'ECDSA P-256, r||s');
  });

  it('refuses bad usage with one line and exit 2', () => {
    const rsa = keyPair('rsa-usage', 'rsa');
    const cases: [string[], RegExp][] = [
      [['token', '--secret', SECRET], /--sub <user> is required/],
      [['token', '--sub', 'a'], /no signing key/],
      [['token', '--sub', 'a', '--secret', SECRET, '--ttl', '3600'], /give a unit/],
      [['token', '--sub', 'a', '--secret', SECRET, '--info', '{oops'], /expected JSON/],
      [['token', '--sub', 'a', '--secret', SECRET, '--alg', 'RS256'], /needs --private-key/],
      [['token', '--sub', 'a', '--secret', SECRET, '--alg', 'none'], /Allowed choices/],
      [['token', '--sub', 'a', '--private-key', rsa.file, '--alg', 'EdDSA'], /does not fit the rsa key/],
      [['token', '--sub', 'a', '--private-key', rsa.file, '--secret', SECRET], /not both/],
    ];
    for (const [args, message] of cases) {
      const r = hubbub(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
    const missing = hubbub(['token', '--sub', 'a', '--private-key', join(dir, 'nope.pem')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^hubbub token: cannot read the private key .*nope\.pem: ENOENT\n$/);
  });

  describe('verify', () => {
    it('accepts a valid token: exit 0, the claims as JSON on stdout, the expiry on stderr', () => {
      const token = signed(hubbub(['token', '--sub', 'alice', '--channels', 'chat/#', '--ttl', '10m', '--secret', SECRET]));
      const r = hubbub(['token', 'verify', token, '--secret', SECRET]);
      assert.equal(r.status, 0, r.stderr);
      const claims = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.equal(claims.sub, 'alice');
      assert.deepEqual(claims.channels, ['chat/#']);
      assert.match(r.stderr, /valid token for user "alice"; expires \d{4}-\d\d-\d\dT[\d:.]+Z \(in (9m 5\d|10m)s?/);
      const piped = hubbub(['token', 'verify', '-', '--secret', SECRET], { input: `${token}\n` });
      assert.equal(piped.status, 0, piped.stderr);
      assert.equal((JSON.parse(piped.stdout) as { sub: string }).sub, 'alice');
    });

    it('says the signature is wrong with another secret: exit 1', () => {
      const token = signed(hubbub(['token', '--sub', 'alice', '--secret', SECRET]));
      const r = hubbub(['token', 'verify', token, '--secret', 'another-secret']);
      assert.equal(r.status, 1);
      assert.equal(r.stderr, 'hubbub token verify: invalid token: signature does not verify\n');
      assert.equal(r.stdout, '');
    });

    it('says an expired token is expired: exit 1', () => {
      const expired = hs256({ sub: 'alice', iat: now() - 120, exp: now() - 60 }, SECRET);
      const r = hubbub(['token', 'verify', expired, '--secret', SECRET]);
      assert.equal(r.status, 1);
      assert.equal(r.stderr, 'hubbub token verify: invalid token: expired\n');
      // The same token, only not expired, passes: the failure above is the expiry and nothing else.
      const fresh = hs256({ sub: 'alice', iat: now(), exp: now() + 60 }, SECRET);
      assert.equal(hubbub(['token', 'verify', fresh, '--secret', SECRET]).status, 0);
    });

    it('refuses alg none, and an HS256 token signed with the public key as the secret', () => {
      const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'mallory', exp: now() + 600 })}.`;
      const r = hubbub(['token', 'verify', none, '--secret', SECRET]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^hubbub token verify: invalid token: /);
      assert.equal(r.stdout, '');

      const rsa = keyPair('rsa-verify', 'rsa');
      const good = signed(hubbub(['token', '--sub', 'rsa-user', '--private-key', rsa.file]));
      const ok = hubbub(['token', 'verify', good, '--public-key', rsa.publicFile]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal((JSON.parse(ok.stdout) as { sub: string }).sub, 'rsa-user');
      const confused = hs256({ sub: 'mallory', exp: now() + 600 }, readFileSync(rsa.publicFile, 'utf8'));
      const refused = hubbub(['token', 'verify', confused, '--public-key', rsa.publicFile]);
      assert.equal(refused.status, 1);
      assert.equal(refused.stderr, 'hubbub token verify: invalid token: algorithm not allowed\n');
    });

    it('checks issuer and audience, and needs a key', () => {
      const token = signed(hubbub(['token', '--sub', 'alice', '--iss', 'a', '--aud', 'b', '--secret', SECRET]));
      assert.equal(hubbub(['token', 'verify', token, '--secret', SECRET, '--iss', 'a', '--aud', 'b']).status, 0);
      const wrongIss = hubbub(['token', 'verify', token, '--secret', SECRET, '--iss', 'z']);
      assert.equal(wrongIss.status, 1);
      assert.equal(wrongIss.stderr, 'hubbub token verify: invalid token: wrong issuer\n');
      const wrongAud = hubbub(['token', 'verify', token, '--secret', SECRET], { env: { HUBBUB_JWT_AUDIENCE: 'z' } });
      assert.equal(wrongAud.status, 1);
      assert.equal(wrongAud.stderr, 'hubbub token verify: invalid token: wrong audience\n');
      const noKey = hubbub(['token', 'verify', token]);
      assert.equal(noKey.status, 2);
      assert.match(noKey.stderr, /no verification key/);
    });
  });

  it('--help lists the options of token and token verify', () => {
    const sign = hubbub(['token', '--help']);
    assert.equal(sign.status, 0);
    for (const flag of ['--sub', '--name', '--channels', '--info', '--ttl', '--iss', '--aud', '--alg', '--secret', '--private-key', 'HUBBUB_JWT_SECRET', 'Examples:']) assert.ok(sign.stdout.includes(flag), flag);
    const verify = hubbub(['token', 'verify', '--help']);
    assert.equal(verify.status, 0);
    for (const flag of ['<token>', '--secret', '--public-key', '--jwks', '--iss', '--aud', '--alg', '--clock-tolerance', 'Examples:']) assert.ok(verify.stdout.includes(flag), flag);
  });
});

describe('hubbub cert', () => {
  let dir: string;
  before(() => {
    assert.ok(existsSync(join(root, 'dist', 'cli', 'main.js')), 'dist/ is missing: run `npm run build` (npm test does)');
    dir = mkdtempSync(join(tmpdir(), 'hubbub-cert-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes cert.pem and key.pem into certs/ by default: SANs, validity, serverAuth, a matching key with mode 0600', () => {
    const r = hubbub(['cert'], { cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes('hubbub serve --tls-cert certs/cert.pem --tls-key certs/key.pem'), r.stdout);
    const certPem = readFileSync(join(dir, 'certs', 'cert.pem'), 'utf8');
    const keyPem = readFileSync(join(dir, 'certs', 'key.pem'), 'utf8');
    const x509 = new X509Certificate(certPem);
    const sans = (x509.subjectAltName ?? '').split(', ');
    assert.ok(sans.includes('DNS:localhost'), x509.subjectAltName);
    assert.ok(sans.includes('IP Address:127.0.0.1'), x509.subjectAltName);
    assert.ok(sans.some((s) => /^IP Address:(::1|0:0:0:0:0:0:0:1)$/i.test(s)), x509.subjectAltName);
    const t = Date.now();
    assert.ok(Date.parse(x509.validFrom) <= t && t < Date.parse(x509.validTo), `valid now: ${x509.validFrom} – ${x509.validTo}`);
    assert.ok(Math.abs(Date.parse(x509.validTo) - (t + 365 * 86_400_000)) < 86_400_000, `365 days: ${x509.validTo}`);
    assert.deepEqual(x509.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: serverAuth');
    assert.equal(x509.ca, false);
    assert.ok(x509.verify(x509.publicKey), 'self-signed');
    assert.ok(x509.checkPrivateKey(createPrivateKey(keyPem)), 'the key matches the certificate');
    if (process.platform !== 'win32') assert.equal(statSync(join(dir, 'certs', 'key.pem')).mode & 0o777, 0o600);
  });

  it('refuses to overwrite without --force (exit 1), replaces with it', () => {
    const out = join(dir, 'again');
    assert.equal(hubbub(['cert', '--out', out]).status, 0);
    const first = readFileSync(join(out, 'cert.pem'), 'utf8');
    const refused = hubbub(['cert', '--out', out]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^hubbub cert: .*cert\.pem and .*key\.pem already exist; not overwriting \(use --force to replace\)\n$/);
    assert.equal(readFileSync(join(out, 'cert.pem'), 'utf8'), first, 'untouched');
    rmSync(join(out, 'cert.pem'));
    const oneLeft = hubbub(['cert', '--out', out]);
    assert.equal(oneLeft.status, 1, 'key.pem alone is kept too');
    assert.match(oneLeft.stderr, /key\.pem already exists/);
    const forced = hubbub(['cert', '--out', out, '--force', '--host', 'hub.test,10.1.2.3', '--days', '2']);
    assert.equal(forced.status, 0, forced.stderr);
    const x509 = new X509Certificate(readFileSync(join(out, 'cert.pem')));
    assert.notEqual(x509.toString(), first);
    assert.equal(x509.subjectAltName, 'DNS:hub.test, IP Address:10.1.2.3');
    assert.ok(Date.parse(x509.validTo) - Date.now() < 2 * 86_400_000 + 60_000, x509.validTo);
    assert.ok(x509.checkPrivateKey(createPrivateKey(readFileSync(join(out, 'key.pem'), 'utf8'))));
    const bad = hubbub(['cert', '--out', join(dir, 'bad'), '--host', 'not a host']);
    assert.equal(bad.status, 2);
    assert.ok(!existsSync(join(dir, 'bad')));
  });

  it('serves HTTPS that a client trusting only the certificate accepts for localhost', async () => {
    const out = join(dir, 'https');
    assert.equal(hubbub(['cert', '--out', out]).status, 0);
    const cert = readFileSync(join(out, 'cert.pem'));
    const key = readFileSync(join(out, 'key.pem'));
    const server: Server = createServer({ cert, key }, (_req, res) => res.end('hello over tls'));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const fetch = (servername: string, ca?: Buffer) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = get({ host: '127.0.0.1', port, path: '/', servername, ca, timeout: 5000, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.on('error', reject);
      });
    try {
      assert.deepEqual(await fetch('localhost', cert), { status: 200, body: 'hello over tls' });
      await assert.rejects(fetch('localhost'), /self[- ]signed/i, 'without the certificate as ca, the client refuses');
      await assert.rejects(fetch('elsewhere.test', cert), (err: NodeJS.ErrnoException) => err.code === 'ERR_TLS_CERT_ALTNAME_INVALID', 'a name not in the SANs is refused');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('--help lists the options', () => {
    const r = hubbub(['cert', '--help']);
    assert.equal(r.status, 0);
    for (const flag of ['--host', '--out', '--days', '--force', 'hubbub serve --tls-cert']) assert.ok(r.stdout.includes(flag), flag);
  });
});
