import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, defaults, loadConfig, parseBytes, parseDuration, readConfigFile } from '../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'hubbub-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('configuration', () => {
  it('has the documented defaults', () => {
    assert.equal(defaults.host, '0.0.0.0');
    assert.equal(defaults.port, 8080);
    assert.equal(defaults.ws_path, '/ws');
    assert.equal(defaults.heartbeat, 25000);
    assert.equal(defaults.max_message_size, 1048576);
    assert.equal(defaults.max_queue_bytes, 8 * 1048576);
    assert.deepEqual(defaults.api_keys, []);
    assert.deepEqual(loadConfig({}), defaults);
  });

  it('parses durations and sizes with units', () => {
    assert.equal(parseDuration(1500), 1500);
    assert.equal(parseDuration('1500'), 1500);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('25s'), 25000);
    assert.equal(parseDuration('10m'), 600000);
    assert.equal(parseDuration('1.5h'), 5400000);
    assert.equal(parseBytes('64KiB'), 65536);
    assert.equal(parseBytes('1 MiB'), 1048576);
    assert.equal(parseBytes('8mb'), 8000000);
    for (const bad of ['fast', '-1', '10 parsecs', '', {}, -5, 1.5]) {
      assert.throws(() => parseDuration(bad), ConfigError, JSON.stringify(bad));
    }
  });

  it('takes flags over environment over file over defaults', () => {
    const f = file('layers.json', JSON.stringify({ port: 1111, heartbeat: '3s', host: '127.0.0.1', log_level: 'warn' }));
    const env = { HUBBUB_PORT: '2222', HUBBUB_HEARTBEAT: '4000' };
    const c = loadConfig({ file: f, env, flags: { port: '3333' } });
    assert.equal(c.port, 3333, 'flag wins');
    assert.equal(c.heartbeat, 4000, 'environment beats file');
    assert.equal(c.host, '127.0.0.1', 'file beats default');
    assert.equal(c.log_level, 'warn');
    assert.equal(c.max_message_size, defaults.max_message_size, 'default fills the rest');
  });

  it('reads YAML files and comma-separated or repeated API keys', () => {
    const f = file('hubbub.yaml', 'port: 9000\napi_keys:\n  - one\n  - two,three\nmax_message_size: 64KiB\n');
    const c = loadConfig({ file: f });
    assert.equal(c.port, 9000);
    assert.deepEqual(c.api_keys, ['one', 'two', 'three']);
    assert.equal(c.max_message_size, 65536);
    assert.deepEqual(loadConfig({ env: { HUBBUB_API_KEY: 'a, b' } }).api_keys, ['a', 'b']);
    assert.deepEqual(loadConfig({ flags: { api_keys: ['x', 'y,z'] } }).api_keys, ['x', 'y', 'z']);
  });

  it('refuses unknown keys, bad values and unreadable files with a clear message', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => readConfigFile(file('typo.json', '{"prot": 1}')), /unknown key "prot"/],
      [() => readConfigFile(file('broken.json', '{')), /not valid JSON/],
      [() => readConfigFile(file('broken.yaml', 'a: [')), /not valid YAML/],
      [() => readConfigFile(file('list.json', '[1]')), /must hold an object/],
      [() => readConfigFile(join(dir, 'missing.json')), /cannot read config file/],
      [() => loadConfig({ env: { HUBBUB_PORT: '70000' } }), /port.*HUBBUB_PORT/],
      [() => loadConfig({ flags: { log_level: 'loud' } }), /log_level.*one of/],
      [() => loadConfig({ flags: { max_connections: '-3' } }), /non-negative integer/],
      [() => loadConfig({ flags: { ws_path: 'ws' } }), /must start with \//],
      [() => loadConfig({ flags: { heartbeat: '10ms' } }), /heartbeat must be between/],
      [() => loadConfig({ flags: { max_message_size: '1MiB', max_queue_bytes: '1MiB' } }), /twice max_message_size/],
    ];
    for (const [fn, re] of cases) assert.throws(fn, (err: Error) => err instanceof ConfigError && re.test(err.message), re.source);
  });
});
