import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as wsModule from 'ws';
import { channelNameError, patternError, utf8Length } from '../src/protocol/channel.js';
import { parseClientFrame } from '../src/protocol/json-codec.js';
import { wsBinaryFrame, wsTextFrame } from '../src/transport/ws-frame.js';

describe('channel names and patterns', () => {
  it('accepts valid names', () => {
    for (const name of ['a', 'chat/room1', 'a/b/c/d', 'ü/日本', 'x'.repeat(255), 'with space/and-dash_.~']) {
      assert.equal(channelNameError(name), undefined, name);
    }
  });
  it('refuses invalid names', () => {
    const cases: [unknown, RegExp][] = [
      ['', /empty/],
      [42, /string/],
      [null, /string/],
      ['/a', /empty/],
      ['a/', /empty/],
      ['a//b', /empty/],
      ['a/+', /wildcards/],
      ['a/#', /wildcards/],
      ['x'.repeat(256), /255 bytes/],
      ['é'.repeat(128), /255 bytes/], // 256 bytes of UTF-8 in 128 characters
      ['a\nb', /control/],
      ['a\ud800b', /well-formed/],
    ];
    for (const [name, re] of cases) assert.match(channelNameError(name) ?? 'accepted', re, JSON.stringify(name));
  });
  it('accepts valid patterns and refuses misplaced wildcards', () => {
    for (const p of ['#', '+', 'a/+', 'a/#', '+/+/c', '+/#', 'a/b']) assert.equal(patternError(p), undefined, p);
    assert.match(patternError('a/#/b')!, /last level/);
    assert.match(patternError('a+/b')!, /whole level/);
    assert.match(patternError('a/b#')!, /whole level/);
    assert.match(patternError('a//+')!, /empty/);
  });
  it('counts UTF-8 bytes like Buffer does', () => {
    for (const s of ['', 'abc', 'é', '日本語', '😀', 'a😀b', 'x'.repeat(300)]) assert.equal(utf8Length(s), Buffer.byteLength(s), s);
  });
});

describe('JSON frame parsing', () => {
  const bad = (text: string) => {
    const r = parseClientFrame(text);
    assert.equal(r.ok, false, text);
    return r as Extract<typeof r, { ok: false }>;
  };
  it('parses every client frame type', () => {
    const frames = [
      { type: 'hello', name: 'a', version: '1', token: 't', user: 'u' },
      { type: 'ping', id: 1 },
      { type: 'echo', data: null },
      { type: 'subscribe', channel: 'a/#', presence: true },
      { type: 'unsubscribe', channel: 'a/#' },
      { type: 'publish', channel: 'a', data: { x: [1] }, kind: 'notification' },
      { type: 'send', to: { client: 'c' }, data: 1 },
      { type: 'send', to: { user: 'u' }, data: 'x' },
      { type: 'broadcast', data: false },
      { type: 'presence', channel: 'a' },
      { type: 'clients', id: 'abc' },
    ];
    for (const f of frames) {
      const r = parseClientFrame(JSON.stringify(f));
      assert.ok(r.ok, JSON.stringify(f));
      assert.deepEqual(r.frame, f);
    }
  });
  it('reports malformed JSON, non-objects and bad ids as bad_request', () => {
    assert.equal(bad('{nope').code, 'bad_request');
    assert.match(bad('{nope').message, /malformed JSON/);
    for (const t of ['[]', '"x"', '42', 'null']) assert.match(bad(t).message, /JSON object/);
    assert.match(bad('{"type":"ping","id":{}}').message, /id must be/);
    assert.match(bad('{"type":"ping","id":true}').message, /id must be/);
    assert.match(bad(`{"type":"ping","id":"${'x'.repeat(129)}"}`).message, /id must be/);
  });
  it('reports a missing or unknown type, keeping the id', () => {
    assert.deepEqual(bad('{"id":7}'), { ok: false, id: 7, code: 'bad_request', message: 'type must be a string' });
    const r = bad('{"type":"fly","id":"x"}');
    assert.equal(r.code, 'unknown_type');
    assert.equal(r.id, 'x');
    assert.equal(bad('{"type":"toString"}').code, 'unknown_type'); // not fooled by Object.prototype
  });
  it('reports missing and mistyped fields', () => {
    const cases: [object, RegExp][] = [
      [{ type: 'echo' }, /data is required/],
      [{ type: 'subscribe' }, /channel must be a string/],
      [{ type: 'subscribe', channel: 'a', presence: 'yes' }, /presence must be a boolean/],
      [{ type: 'publish', channel: 'a' }, /data is required/],
      [{ type: 'publish', data: 1 }, /channel/],
      [{ type: 'publish', channel: 'a', data: 1, kind: 5 }, /kind must be a string/],
      [{ type: 'publish', channel: 'a', data: 1, kind: 'k'.repeat(65) }, /at most 64/],
      [{ type: 'send', data: 1 }, /to must be/],
      [{ type: 'send', to: {}, data: 1 }, /exactly one/],
      [{ type: 'send', to: { client: 'a', user: 'b' }, data: 1 }, /exactly one/],
      [{ type: 'send', to: { client: 1 }, data: 1 }, /exactly one/],
      [{ type: 'send', to: { user: 'u' } }, /data is required/],
      [{ type: 'broadcast' }, /data is required/],
      [{ type: 'hello', name: 1 }, /name must be a string/],
      [{ type: 'presence' }, /channel/],
    ];
    for (const [f, re] of cases) {
      const r = bad(JSON.stringify({ ...f, id: 1 }));
      assert.equal(r.code, 'bad_request', JSON.stringify(f));
      assert.equal(r.id, 1);
      assert.match(r.message, re, JSON.stringify(f));
    }
  });
});

describe('WebSocket framing', () => {
  // The independent reference: the frames `ws` itself would write for the same payload.
  const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } };
  const reference = (data: Buffer, opcode: number) => Buffer.concat(Sender.frame(data, { fin: true, opcode, mask: false, readOnly: false, rsv1: false }));

  it('frames text of 7-bit, 16-bit and 64-bit lengths exactly like ws', () => {
    for (const len of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
      const text = 'é'.repeat(Math.floor(len / 2)) + 'x'.repeat(len % 2); // multi-byte UTF-8 on purpose
      const ours = wsTextFrame(text);
      assert.deepEqual(ours, reference(Buffer.from(text), 1), `length ${len}`);
    }
  });
  it('writes the header bytes by hand-checked values', () => {
    assert.deepEqual([...wsTextFrame('hi')], [0x81, 2, 0x68, 0x69]);
    const f = wsTextFrame('x'.repeat(300));
    assert.deepEqual([...f.subarray(0, 4)], [0x81, 126, 0x01, 0x2c]);
    const big = wsBinaryFrame(new Uint8Array(65536));
    assert.deepEqual([...big.subarray(0, 10)], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert.equal(big.length, 65546);
  });
  it('frames binary payloads exactly like ws', () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    assert.deepEqual(wsBinaryFrame(bytes), reference(bytes, 2));
  });
});
