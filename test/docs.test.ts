/** The docs stay true to the code: every code, setting and endpoint the code has is documented. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SCENARIOS } from '../src/bench/scenarios.js';
import { benchCommand } from '../src/cli/bench.js';
import { settings } from '../src/config.js';
import { CloseCode, ErrorCode } from '../src/protocol/errors.js';
import { isClientFrameType } from '../src/protocol/json-codec.js';

const doc = (name: string) => readFileSync(new URL(`../docs/${name}`, import.meta.url), 'utf8');

describe('docs', () => {
  it('protocol.md documents every error code, close code and client frame type', () => {
    const text = doc('protocol.md');
    for (const code of Object.values(ErrorCode)) assert.ok(text.includes(`\`${code}\``), `error code ${code}`);
    for (const code of Object.values(CloseCode)) assert.ok(text.includes(String(code)), `close code ${code}`);
    for (const type of ['hello', 'ping', 'echo', 'subscribe', 'unsubscribe', 'publish', 'send', 'broadcast', 'presence', 'clients']) {
      assert.ok(isClientFrameType(type));
      assert.ok(text.includes(`"type":"${type}"`) || text.includes(`\`${type}\``), `frame ${type}`);
    }
    for (const push of ['welcome', 'reply', 'error', 'pong', 'message', 'direct', 'broadcast', 'join', 'leave']) {
      assert.ok(text.includes(`"type":"${push}"`), `server frame ${push} has an example`);
    }
  });

  it('configuration.md documents every setting with its flag, variable and default', () => {
    const text = doc('configuration.md');
    for (const s of settings) {
      for (const needle of [s.key, s.flag, s.env]) assert.ok(text.includes(needle), `${s.key}: ${needle}`);
      const def = Array.isArray(s.default) ? '[]' : String(s.default);
      assert.ok(text.includes(def), `${s.key}: default ${def}`);
    }
  });

  it('http-api.md documents every endpoint with a curl example', () => {
    const text = doc('http-api.md');
    for (const route of ['GET /health', 'POST /api/publish', 'POST /api/broadcast', 'POST /api/send', 'POST /api/disconnect', 'GET /api/clients', 'GET /api/stats', 'GET /api/channels', '/presence']) {
      assert.ok(text.includes(route), route);
    }
    assert.ok((text.match(/curl /g) ?? []).length >= 9, 'a curl example per endpoint');
  });

  it('cli.md documents every scenario and option of hubbub bench', () => {
    const text = doc('cli.md');
    for (const scenario of SCENARIOS) assert.ok(text.includes(`| \`${scenario}\` |`), `scenario ${scenario}`);
    const options = benchCommand().options;
    assert.ok(options.length >= 20, 'the command has its options');
    for (const o of options) assert.ok(text.includes(`\`${o.flags.split(' <')[0]!.split(' [')[0]}`), `option ${o.flags}`);
  });
});
