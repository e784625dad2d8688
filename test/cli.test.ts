/** `hubbub serve` as a user runs it: the built bin in a child process, real signals, real logs. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { bin, childEnv as cleanEnv, serveBin, type RunningServer } from './cli-process.js';
import { TestClient, api } from './helpers.js';

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = cleanEnv(extra);
  // These servers need no durable state: keep them from creating ./data/hubbub.db in the working tree.
  env.HUBBUB_STORAGE ??= 'memory';
  return env;
}

/** Start `hubbub serve` on a free port and wait for its "listening" log line. */
function serve(args: string[], env: Record<string, string> = {}): Promise<RunningServer> {
  return serveBin(args, childEnv(env), 15000);
}

describe('hubbub serve', () => {
  it('lists every setting in --help', () => {
    const r = spawnSync(process.execPath, [bin, 'serve', '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    for (const flag of ['--host', '--port', '--api-key', '--heartbeat', '--max-message-size', '--max-connections', '--log-level', '--config', '--ws-path', '--max-queue-bytes', '--shutdown-timeout']) {
      assert.ok(r.stdout.includes(flag), flag);
    }
    assert.match(r.stdout, /HUBBUB_API_KEY/);
  });

  it('starts, serves, logs JSON without bodies or keys, and on SIGTERM closes clients with 1001 and exits 0', async () => {
    const s = await serve(['--log-level', 'debug', '--api-key', 'super-secret-key']);
    const c = await TestClient.connect(`ws://127.0.0.1:${s.port}/ws`);
    await c.request({ type: 'subscribe', channel: 'cli' });
    await c.request({ type: 'publish', channel: 'cli', data: 'confidential-body-text' });
    await c.next((f) => f.type === 'message');
    const health = await api(`http://127.0.0.1:${s.port}`, 'GET', '/health');
    assert.equal(health.body.status, 'ok');
    const wrongKey = await api(`http://127.0.0.1:${s.port}`, 'GET', '/api/stats', undefined, 'guess');
    assert.equal(wrongKey.status, 401);
    s.child.kill('SIGTERM');
    assert.deepEqual(await c.closed, { code: 1001, reason: 'server shutting down' });
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const out = s.lines.join('\n');
    for (const line of s.lines.filter((l) => l.startsWith('{'))) assert.doesNotThrow(() => JSON.parse(line), line);
    assert.match(out, /"msg":"connected"/, 'debug logs were written');
    assert.match(out, /"msg":"hubbub stopped"/);
    assert.ok(!out.includes('confidential-body-text'), 'message bodies are never logged');
    assert.ok(!out.includes('super-secret-key'), 'API keys are never logged');
  });

  it('takes settings from the environment and a config file, flags first', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hubbub-cli-'));
    const cfg = join(dir, 'hubbub.yaml');
    writeFileSync(cfg, 'heartbeat: 7s\nws_path: /from-file\n');
    const s = await serve(['--config', cfg, '--heartbeat', '9000'], { HUBBUB_HEARTBEAT: '8000', HUBBUB_LOG_LEVEL: 'info' });
    try {
      const c = await TestClient.connect(`ws://127.0.0.1:${s.port}/from-file`);
      assert.equal(c.welcome.heartbeat, 9000, 'the flag beats the environment and the file');
      await c.close();
    } finally {
      s.child.kill('SIGINT');
      assert.equal((await s.exited).code, 0);
    }
    const envOnly = await serve(['--config', cfg], { HUBBUB_HEARTBEAT: '8000' });
    try {
      const c = await TestClient.connect(`ws://127.0.0.1:${envOnly.port}/from-file`);
      assert.equal(c.welcome.heartbeat, 8000, 'the environment beats the file');
      await c.close();
    } finally {
      envOnly.child.kill('SIGTERM');
      assert.equal((await envOnly.exited).code, 0);
    }
  });

  it('explains bad settings in one line and exits 2', () => {
    const r = spawnSync(process.execPath, [bin, 'serve', '--port', 'eighty'], { encoding: 'utf8', env: childEnv() });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^hubbub: port \(--port\): expected a port number/);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'no stack trace');
  });

  it('says when the port is taken and exits 1', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = spawnSync(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', String(port)], { encoding: 'utf8', env: childEnv() });
      assert.equal(r.status, 1);
      assert.match(r.stdout + r.stderr, /cannot listen on 127\.0\.0\.1:\d+.*EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});
