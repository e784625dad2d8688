import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { crc32 as zlibCrc32 } from 'node:zlib';
import * as wsModule from 'ws';
import { fromBase64, toBase64 } from '../src/protocol/base64.js';
import { channelNameError, patternError, utf8Length } from '../src/protocol/channel.js';
import { crc32 } from '../src/protocol/crc32.js';
import type { ClientFrame, Sender, ServerFrame } from '../src/protocol/frames.js';
import { encodeClientFrame as encodeJsonClientFrame, parseClientFrame, parseServerFrame } from '../src/protocol/json-codec.js';
import { Payload } from '../src/protocol/payload.js';
import { decodeClientFrame, decodeServerFrame, encodeClientFrame, encodeFrame, encodeMessageFrame, encodeServerFrame } from '../src/protocol/proto-codec.js';
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

// ---- byte payloads: base64, CRC-32, Payload ------------------------------------------------------

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const arr = (b: Uint8Array | undefined): number[] | undefined => (b === undefined ? undefined : [...b]);

/**
 * The same modules as loaded by a browser: without Node's Buffer, base64.ts and payload.ts take
 * their atob/btoa and TextEncoder paths. A query string makes a separate module instance.
 */
async function withoutBuffer<T>(load: () => Promise<T>): Promise<T> {
  const g = globalThis as { Buffer?: unknown };
  const saved = g.Buffer;
  delete g.Buffer;
  try {
    return await load();
  } finally {
    g.Buffer = saved;
  }
}
type Base64 = typeof import('../src/protocol/base64.js');

describe('base64', () => {
  // Loaded in a hook rather than at the top: tests of this file run one at a time, so Buffer is
  // missing for nothing but this import.
  let browserBase64: Base64 | undefined;
  before(async () => {
    browserBase64 = await withoutBuffer(async () => {
      const m = (await import('../src/protocol/base64.js?browser' as string)) as Base64;
      // works with no Buffer at all, so this instance took the browser paths
      assert.equal(m.toBase64(utf8('foo')), 'Zm9v');
      assert.deepEqual(arr(m.fromBase64('Zm9v')), arr(utf8('foo')));
      return m;
    });
  });
  const implementations: [string, () => Base64][] = [
    ['Node (Buffer)', () => ({ toBase64, fromBase64 })],
    ['browser (atob/btoa)', () => browserBase64!],
  ];

  for (const [name, load] of implementations) {
    it(`${name}: RFC 4648 test vectors`, () => {
      const b64 = load();
      const vectors: [string, string][] = [['', ''], ['f', 'Zg=='], ['fo', 'Zm8='], ['foo', 'Zm9v'], ['foob', 'Zm9vYg=='], ['fooba', 'Zm9vYmE='], ['foobar', 'Zm9vYmFy']];
      for (const [plain, encoded] of vectors) {
        assert.equal(b64.toBase64(utf8(plain)), encoded, plain);
        assert.deepEqual(arr(b64.fromBase64(encoded)), arr(utf8(plain)), encoded);
      }
      assert.equal(b64.toBase64(new Uint8Array([0xfb, 0xff])), '+/8=', 'the standard alphabet, not the URL-safe one');
    });

    it(`${name}: round trips any bytes, like Buffer`, () => {
      const b64 = load();
      for (const len of [0, 1, 2, 3, 4, 5, 63, 64, 65, 1000, 0x8000 + 7, 100_000]) {
        const bytes = new Uint8Array(randomBytes(len));
        const text = b64.toBase64(bytes);
        assert.equal(text, Buffer.from(bytes).toString('base64'), `length ${len}`);
        assert.deepEqual(arr(b64.fromBase64(text)), arr(bytes), `length ${len}`);
      }
      // a view into a larger buffer encodes only its own bytes
      const big = new Uint8Array([9, 9, 1, 2, 3, 9]);
      assert.equal(b64.toBase64(big.subarray(2, 5)), 'AQID');
    });

    it(`${name}: refuses wrong lengths, characters outside the alphabet and bad padding`, () => {
      const b64 = load();
      const bad = [
        'Zg', 'Zg=', 'Zm9vY', 'A', 'AQIDB', // wrong length
        'Zm9-', 'Zm9_', 'Zm 9', 'Zm9\n', 'Zm9\t', 'Zm9\\', ' Zm9', 'Zm9é', 'Zm9v!!!!', 'Zm9.', // not in the alphabet
        'Z===', '====', '=Zg=', 'Zg=a', 'Zm=v', 'Zg==Zm9v', 'Zm9vYg=\n', 'Zm9vY===', // padding
      ];
      for (const text of bad) assert.equal(b64.fromBase64(text), undefined, JSON.stringify(text));
      assert.deepEqual(arr(b64.fromBase64('Zm8=')), arr(utf8('fo')));
    });
  }
});

describe('CRC-32', () => {
  it('gives the known check values', () => {
    assert.equal(crc32(utf8('123456789')), 0xcbf43926);
    assert.equal(crc32(new Uint8Array(0)), 0);
    assert.equal(crc32(utf8('The quick brown fox jumps over the lazy dog')), 0x414fa339);
    assert.equal(crc32(new Uint8Array(32)), 0x190a55ad, '32 zero bytes');
    assert.equal(crc32(new Uint8Array(32).fill(0xff)), 0xff6cab0b, '32 0xff bytes');
  });
  it('is unsigned 32-bit', () => {
    for (let i = 0; i < 50; i++) {
      const c = crc32(new Uint8Array(randomBytes(i * 7)));
      assert.ok(Number.isInteger(c) && c >= 0 && c <= 0xffffffff, String(c));
    }
  });
  it('incremental equals whole, at every split point', () => {
    const data = new Uint8Array(randomBytes(300));
    const whole = crc32(data);
    for (let cut = 0; cut <= data.length; cut++) assert.equal(crc32(data.subarray(cut), crc32(data.subarray(0, cut))), whole, `split at ${cut}`);
    let running = 0;
    for (let i = 0; i < data.length; i += 17) running = crc32(data.subarray(i, i + 17), running);
    assert.equal(running, whole, 'in 17-byte pieces');
  });
  it('equals node:zlib crc32 (the server side) on random data', () => {
    for (const len of [0, 1, 3, 4, 255, 4096, 100_000, 1 << 20]) {
      const data = new Uint8Array(randomBytes(len));
      assert.equal(crc32(data), zlibCrc32(data), `length ${len}`);
      const half = len >> 1;
      assert.equal(crc32(data.subarray(half), crc32(data.subarray(0, half))), zlibCrc32(data.subarray(half), zlibCrc32(data.subarray(0, half))), `incremental, length ${len}`);
    }
  });
});

describe('Payload', () => {
  it('a JSON value: JSON text for JSON frames, its UTF-8 for protobuf frames', () => {
    const value = { a: [1, 'é', null], b: true };
    const p = Payload.json(value);
    assert.equal(p.binary, false);
    assert.equal(p.jsonData(), '{"a":[1,"é",null],"b":true}');
    assert.equal(p.jsonData(), p.jsonData(), 'computed once');
    assert.deepEqual(arr(p.protoData()), arr(utf8('{"a":[1,"é",null],"b":true}')));
    assert.equal(p.protoData(), p.protoData(), 'the same bytes for every recipient');
    assert.equal(p.toJson(), value);
    assert.equal(JSON.stringify({ data: p }), '{"data":{"a":[1,"é",null],"b":true}}');
    assert.equal(p.raw(), undefined);
    assert.equal(p.size, Buffer.byteLength('{"a":[1,"é",null],"b":true}'));
    for (const v of [null, 0, -1.5, '', 'x', false, [], {}]) {
      const q = Payload.json(v);
      assert.equal(q.jsonData(), JSON.stringify(v));
      assert.deepEqual(q.toJson(), v);
      assert.equal(new TextDecoder().decode(q.protoData()), JSON.stringify(v));
    }
  });
  it('JSON text is passed on as written, and parsed only when a value is asked for', () => {
    const p = Payload.jsonText('{ "a" : 1 }');
    assert.equal(p.binary, false);
    assert.equal(p.jsonData(), '{ "a" : 1 }');
    assert.deepEqual(arr(p.protoData()), arr(utf8('{ "a" : 1 }')));
    assert.deepEqual(p.toJson(), { a: 1 });
    assert.equal(p.size, 11);
    const q = Payload.jsonText('[1]', [1]);
    assert.deepEqual(q.toJson(), [1]);
  });
  it('UTF-8 JSON bytes from a protobuf client reach protobuf clients unchanged', () => {
    const bytes = utf8('["é", 2]');
    const p = Payload.jsonBytes(bytes, ['é', 2]);
    assert.equal(p.binary, false);
    assert.equal(p.protoData(), bytes, 'the very same bytes');
    assert.equal(p.jsonData(), '["é",2]', 'JSON clients get the value (the server parsed it to check it)');
    assert.deepEqual(p.toJson(), ['é', 2]);
    assert.equal(p.size, bytes.length);
    const unparsed = Payload.jsonBytes(utf8('{"k": null}'));
    assert.equal(unparsed.jsonData(), '{"k": null}', 'without a value, the text as sent');
    assert.deepEqual(unparsed.toJson(), { k: null });
  });
  it('bytes: base64 in JSON frames, raw in protobuf frames', () => {
    const bytes = new Uint8Array([0, 1, 2, 0xfb, 0xff]);
    const p = Payload.bytes(bytes);
    assert.equal(p.binary, true);
    assert.equal(p.jsonData(), '"AAEC+/8="', 'a JSON string literal');
    assert.equal(p.protoData(), bytes);
    assert.equal(p.raw(), bytes);
    assert.equal(p.toJson(), 'AAEC+/8=');
    assert.equal(JSON.stringify({ data: p }), '{"data":"AAEC+/8="}');
    assert.equal(p.size, 5);
    const empty = Payload.bytes(new Uint8Array(0));
    assert.equal(empty.jsonData(), '""');
    assert.equal(empty.size, 0);
  });
  it('works the same without Node Buffer (browsers)', async () => {
    const { Payload: BrowserPayload } = await withoutBuffer(() => import('../src/protocol/payload.js?browser' as string) as Promise<typeof import('../src/protocol/payload.js')>);
    const p = BrowserPayload.json({ s: 'ü☃' });
    assert.deepEqual(arr(p.protoData()), arr(utf8('{"s":"ü☃"}')));
    assert.equal(p.size, utf8('{"s":"ü☃"}').length);
    assert.equal(BrowserPayload.bytes(new Uint8Array([1, 2, 3])).jsonData(), '"AQID"');
  });
});

// ---- JSON encoding of byte payloads -----------------------------------------------------------------

describe('JSON codec: byte payloads', () => {
  it('parses "encoding":"base64" into a byte payload, and values into JSON payloads', () => {
    const r = parseClientFrame('{"type":"publish","channel":"a","data":"AQID","encoding":"base64"}');
    assert.ok(r.ok);
    assert.equal(r.payload?.binary, true);
    assert.deepEqual(arr(r.payload?.raw()), [1, 2, 3]);
    const v = parseClientFrame('{"type":"publish","channel":"a","data":"AQID"}');
    assert.ok(v.ok);
    assert.equal(v.payload?.binary, false);
    assert.equal(v.payload?.toJson(), 'AQID');
    const c = parseClientFrame(`{"type":"chunk","transfer":"t","seq":0,"data":"AQID","crc":${crc32(new Uint8Array([1, 2, 3]))}}`);
    assert.ok(c.ok);
    assert.equal(c.payload?.binary, true, 'chunk data is always base64 bytes');
  });
  it('refuses bad base64 and bad encodings', () => {
    const cases: [object, RegExp][] = [
      [{ type: 'publish', channel: 'a', data: 'AQI', encoding: 'base64' }, /not valid base64/],
      [{ type: 'echo', data: 'AQ=D', encoding: 'base64' }, /not valid base64/],
      [{ type: 'echo', data: 'AQID', encoding: 'hex' }, /encoding must be "base64"/],
      [{ type: 'send', to: { user: 'u' }, data: 5, encoding: 'base64' }, /data must be a base64 string/],
      [{ type: 'chunk', transfer: 't', seq: 0, data: 'AQI', crc: 0 }, /not valid base64/],
      [{ type: 'chunk', transfer: 't', seq: 0, data: 1, crc: 0 }, /data must be a base64 string/],
      [{ type: 'chunk', transfer: 't', seq: -1, data: '', crc: 0 }, /seq must be an integer/],
      [{ type: 'chunk', transfer: 't', seq: 0, data: '', crc: 2 ** 32 }, /crc must be an integer/],
    ];
    for (const [f, re] of cases) {
      const r = parseClientFrame(JSON.stringify({ ...f, id: 9 }));
      assert.ok(!r.ok, JSON.stringify(f));
      assert.equal(r.code, 'bad_request');
      assert.equal(r.id, 9);
      assert.match(r.message, re, JSON.stringify(f));
    }
  });
  it('the SDK side: Uint8Array data goes out as base64 and comes back as bytes', () => {
    assert.deepEqual(JSON.parse(encodeJsonClientFrame({ type: 'publish', channel: 'a', data: new Uint8Array([1, 2, 3]) })), { type: 'publish', channel: 'a', data: 'AQID', encoding: 'base64' });
    assert.deepEqual(JSON.parse(encodeJsonClientFrame({ type: 'chunk', transfer: 't', seq: 0, data: new Uint8Array([1]), crc: 1 })), { type: 'chunk', transfer: 't', seq: 0, data: 'AQ==', crc: 1 });
    assert.deepEqual(JSON.parse(encodeJsonClientFrame({ type: 'publish', channel: 'a', data: 'AQID' })), { type: 'publish', channel: 'a', data: 'AQID' });
    const m = parseServerFrame('{"type":"message","channel":"a","pattern":"a","data":"AQID","encoding":"base64","kind":"text","from":{"server":true},"ts":1}') as { data: unknown; encoding?: string };
    assert.ok(m.data instanceof Uint8Array);
    assert.deepEqual(arr(m.data), [1, 2, 3]);
    assert.equal(m.encoding, undefined);
    const e = parseServerFrame('{"type":"reply","id":1,"data":{"data":"AA==","encoding":"base64"}}') as { data: { data: unknown } };
    assert.deepEqual(arr(e.data.data as Uint8Array), [0]);
    const v = parseServerFrame('{"type":"message","channel":"a","pattern":"a","data":"AQID","kind":"text","from":{"server":true},"ts":1}') as { data: unknown };
    assert.equal(v.data, 'AQID', 'a string without encoding stays a string');
    assert.throws(() => parseServerFrame('{"type":"direct","data":"A","encoding":"base64","kind":"text","from":{"server":true},"ts":1}'), /base64/);
  });
});

// ---- the protobuf codec, without a server -------------------------------------------------------------

/** Like deepEqual, with bytes compared as plain arrays (Buffer and Uint8Array alike). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

describe('protobuf codec', () => {
  it('client frames round trip through encodeClientFrame and decodeClientFrame', () => {
    const frames: ClientFrame[] = [
      { type: 'hello', id: 1, name: 'Ann', version: '2.0', token: 'a.b.c', user: 'ann' },
      { type: 'hello' },
      { type: 'ping', id: 0 },
      { type: 'ping' },
      { type: 'subscribe', id: 3, channel: 'a/#', presence: true },
      { type: 'subscribe', id: 4, channel: 'a' },
      { type: 'unsubscribe', id: 5, channel: 'a/+' },
      { type: 'presence', id: 6, channel: 'a' },
      { type: 'clients', id: 7 },
      { type: 'refresh', id: 8, token: 't' },
      { type: 'abort', id: 9, transfer: 'tr', code: 'user', message: 'why' },
      { type: 'abort', transfer: 'tr' },
      { type: 'chunk', id: 10, transfer: 'tr', seq: 0, data: new Uint8Array([1, 2]), crc: 4242, compression: 'brotli', channel: 'c', kind: 'file', name: 'f.txt', size: 2 ** 40 + 3 },
      { type: 'chunk', transfer: 'tr', seq: 7, last: true, data: new Uint8Array(0), crc: 0, total_crc: 0xffffffff },
      { type: 'chunk', transfer: 'tr', seq: 0, data: new Uint8Array([5]), crc: 1, to: { user: 'u' }, size: 0 },
    ];
    for (const f of frames) {
      const r = decodeClientFrame(encodeClientFrame(f));
      assert.ok(r.ok, `${JSON.stringify(plain(f))}: ${JSON.stringify(r)}`);
      assert.deepEqual(plain(r.frame), plain(f), f.type);
    }
  });

  it('payload frames keep JSON values and bytes apart', () => {
    const values = [{ a: [1, 'é'] }, 'str', 0, null, false, []];
    const bytes = [new Uint8Array(0), new Uint8Array([0, 0xff]), utf8('{"looks":"like json"}')];
    const make = (data: ClientFrame extends infer F ? (F extends { data: infer D } ? D : never) : never): ClientFrame[] => [
      { type: 'echo', id: 1, data },
      { type: 'publish', id: 2, channel: 'c', data, kind: 'k' },
      { type: 'send', id: 3, to: { client: 'x' }, data },
      { type: 'broadcast', id: 4, data },
    ];
    for (const v of values) {
      for (const f of make(v)) {
        const r = decodeClientFrame(encodeClientFrame(f));
        assert.ok(r.ok && r.payload, f.type);
        assert.equal(r.payload.binary, false);
        assert.deepEqual(r.payload.toJson(), v);
        assert.equal(r.payload.jsonData(), JSON.stringify(v), 'the text as the client wrote it');
        const { data: _d, ...rest } = f as { data: unknown };
        const { data: _e, ...got } = r.frame as { data: unknown };
        assert.deepEqual(got, rest);
      }
    }
    for (const b of bytes) {
      for (const f of make(b)) {
        const r = decodeClientFrame(encodeClientFrame(f));
        assert.ok(r.ok && r.payload, f.type);
        assert.equal(r.payload.binary, true);
        assert.deepEqual(arr(r.payload.raw()), arr(b));
      }
    }
  });

  it('optional fields: absent stays absent, present zero values stay present', () => {
    const absent = decodeClientFrame(encodeClientFrame({ type: 'hello' }));
    assert.ok(absent.ok);
    assert.deepEqual(Object.keys(absent.frame), ['type']);
    const empty = decodeClientFrame(encodeClientFrame({ type: 'hello', id: 0, name: '', version: '', user: '' }));
    assert.ok(empty.ok);
    assert.deepEqual(empty.frame, { type: 'hello', id: 0, name: '', version: '', user: '' });
    const kind = decodeClientFrame(encodeClientFrame({ type: 'publish', channel: 'c', data: 1, kind: '' }));
    assert.ok(kind.ok);
    assert.equal((kind.frame as { kind?: string }).kind, '');
    const noKind = decodeClientFrame(encodeClientFrame({ type: 'publish', channel: 'c', data: 1 }));
    assert.ok(noKind.ok);
    assert.equal('kind' in noKind.frame, false);
    // server side: a hello reply without expiry, and with one
    const r1 = decodeServerFrame(encodeServerFrame({ type: 'reply', id: 1, data: { client: 'c' } }, { request: 'hello' }));
    assert.deepEqual(r1, { type: 'reply', id: 1, data: { client: 'c' } });
    const r2 = decodeServerFrame(encodeServerFrame({ type: 'reply', id: 1, data: { client: 'c', user: '', expires_at: 0 } }, { request: 'hello' }));
    assert.deepEqual(r2, { type: 'reply', id: 1, data: { client: 'c', user: '', expires_at: 0 } });
    const pong = decodeServerFrame(encodeServerFrame({ type: 'pong', ts: 5 }));
    assert.deepEqual(pong, { type: 'pong', ts: 5 });
    assert.deepEqual(decodeServerFrame(encodeServerFrame({ type: 'pong', id: 0, ts: 5 })), { type: 'pong', id: 0, ts: 5 });
  });

  it('server frames round trip, with uint64 timestamps and sizes', () => {
    const from: Sender = { client: 'c1', user: 'u', name: 'N' };
    const ts = 1795305618352;
    const frames: [ServerFrame, Parameters<typeof encodeServerFrame>[1]?][] = [
      [{ type: 'welcome', client: 'c', server: 'hubbub', version: '1.2.3', protocol: 1, heartbeat: 25000, max_message_size: 1 << 20, max_transfer_size: 2 ** 40, message_rate: 1000, message_burst: 2000 }],
      [{ type: 'pong', id: 3, ts: Number.MAX_SAFE_INTEGER }],
      [{ type: 'error', id: 4, code: 'bad_request', message: 'm' }],
      [{ type: 'error', code: 'unknown_type', message: 'no id' }],
      [{ type: 'message', channel: 'a/b', pattern: 'a/#', data: { x: 1 }, kind: 'text', from, ts }],
      [{ type: 'message', channel: 'a/b', pattern: 'a/b', data: new Uint8Array([1, 2]), kind: 'k', from: { server: true }, ts: 2 ** 53 - 1 }],
      [{ type: 'direct', data: 'hi', kind: 'dm', from: { client: 'c2' }, ts }],
      [{ type: 'broadcast', data: new Uint8Array(0), kind: 'text', from, ts }],
      [{ type: 'join', channel: 'a', client: { client: 'c', user: 'u' } }],
      [{ type: 'leave', channel: 'a', client: { client: 'c', name: 'n' } }],
      [{ type: 'chunk', transfer: 't', seq: 1, last: true, data: new Uint8Array([9]), crc: 77, total_crc: 88, channel: 'a', pattern: 'a/#', from, ts }],
      [{ type: 'chunk', transfer: 't', seq: 0, data: new Uint8Array([9]), crc: 77, kind: 'file', name: 'n', size: 2 ** 45, compression: 'gzip', from: { server: true }, ts }],
      [{ type: 'abort', transfer: 't', code: 'transfer_aborted', message: 'm', from, channel: 'a' }],
      [{ type: 'abort', transfer: 't', code: 'transfer_aborted', message: 'm', from }],
      [{ type: 'reply', id: 5, data: { client: 'c', user: 'u', name: 'n', expires_at: ts } }, { request: 'hello' }],
      [{ type: 'reply', id: 6, data: { data: { v: [1] } } }, { request: 'echo' }],
      [{ type: 'reply', id: 7, data: { data: new Uint8Array([3]) } }, { request: 'echo' }],
      [{ type: 'reply', id: 8, data: {} }, { request: 'subscribe' }],
      [{ type: 'reply', id: 9, data: { delivered: 12 } }, { request: 'send' }],
      [{ type: 'reply', id: 10, data: { delivered: 0 } }, { request: 'broadcast' }],
      [{ type: 'reply', id: 11, data: { delivered: 3 } }, { request: 'chunk' }],
      [{ type: 'reply', id: 12, data: { channel: 'a', clients: [{ client: 'c', connected_at: ts, info: { plan: 'x' } }, { client: 'd', user: 'u', name: 'n', connected_at: 1 }] } }, { request: 'presence' }],
      [{ type: 'reply', id: 13, data: { count: 0, clients: [] } }, { request: 'clients' }],
      [{ type: 'reply', id: 14, data: { user: 'u', expires_at: ts } }, { request: 'refresh' }],
      [{ type: 'reply', id: 15, data: { user: 'u' } }, { request: 'refresh' }],
    ];
    for (const [f, options] of frames) assert.deepEqual(plain(decodeServerFrame(encodeServerFrame(f, options))), plain(f), JSON.stringify(plain(f)));
  });

  it('the hand-written message encoder gives exactly the bytes of the generic one', () => {
    const senders: Sender[] = [{ server: true }, { client: 'c' }, { client: 'c-' + 'x'.repeat(200), user: 'ü', name: '' }];
    const payloads = [Payload.json({ a: 1 }), Payload.json(''), Payload.bytes(new Uint8Array(0)), Payload.bytes(new Uint8Array(randomBytes(300))), Payload.jsonBytes(utf8('[1, 2]')), Payload.bytes(new Uint8Array(20000))];
    const names: [string, string][] = [['a', 'a'], ['room/a', 'room/#'], ['ü/日本', '+/日本'], ['x'.repeat(255), '#'], ['', '']];
    const times = [0, 1, 127, 128, 2 ** 28 - 1, 2 ** 28, 2 ** 35 - 1, 2 ** 35, 1795305618352, 2 ** 42, 2 ** 49, Number.MAX_SAFE_INTEGER];
    let n = 0;
    for (const from of senders) {
      for (const payload of payloads) {
        for (const [channel, pattern] of names) {
          for (const kind of ['text', '', 'k'.repeat(64)]) {
            for (const ts of times) {
              const fast = encodeMessageFrame(channel, pattern, payload, kind, from, ts);
              const generic = encodeServerFrame({ type: 'message', channel, pattern, data: null, kind, from, ts }, { payload });
              assert.deepEqual(arr(fast), arr(generic), JSON.stringify({ channel, pattern, kind, ts, from, size: payload.size }));
              n++;
            }
          }
        }
      }
    }
    assert.ok(n > 1000);
  });

  it('skips unknown fields, as JSON skips unknown keys', () => {
    const ping = encodeClientFrame({ type: 'ping', id: 5 });
    // field 99 (varint) after the frame, and field 15 (varint) inside Ping
    const withTail = new Uint8Array([...ping, 0x98, 0x06, 0x01]);
    const r = decodeClientFrame(withTail);
    assert.ok(r.ok);
    assert.deepEqual(r.frame, { type: 'ping', id: 5 });
    const inner = new Uint8Array([0x12, 0x04, 0x08, 0x05, 0x78, 0x01]);
    const r2 = decodeClientFrame(inner);
    assert.ok(r2.ok);
    assert.deepEqual(r2.frame, { type: 'ping', id: 5 });
  });

  it('decodeClientFrame never throws: garbage, truncations and bit flips get bad_request or unknown_type', () => {
    const samples = [
      encodeClientFrame({ type: 'publish', id: 1, channel: 'room/a', data: { n: [1, 2, 3] }, kind: 'k' }),
      encodeClientFrame({ type: 'chunk', id: 2, transfer: 't', seq: 3, data: new Uint8Array(40), crc: 1, channel: 'c', size: 40, total_crc: 9 }),
      encodeClientFrame({ type: 'send', id: 3, to: { user: 'u' }, data: new Uint8Array([1]) }),
      encodeClientFrame({ type: 'hello', id: 4, name: 'n', user: 'u' }),
    ];
    const inputs: Uint8Array[] = [new Uint8Array(0)];
    for (let i = 0; i < 2000; i++) inputs.push(new Uint8Array(randomBytes(1 + (i % 80))));
    for (const s of samples) {
      for (let cut = 0; cut < s.length; cut++) inputs.push(s.subarray(0, cut));
      for (let i = 0; i < 300; i++) {
        const m = new Uint8Array(s);
        m[i % m.length]! ^= 1 << (i % 8);
        inputs.push(m);
      }
    }
    let refused = 0;
    for (const bytes of inputs) {
      let r: ReturnType<typeof decodeClientFrame>;
      try {
        r = decodeClientFrame(bytes);
      } catch (err) {
        assert.fail(`threw on ${Buffer.from(bytes).toString('hex')}: ${(err as Error).message}`);
      }
      if (!r.ok) {
        refused++;
        assert.ok(['bad_request', 'unknown_type'].includes(r.code), `${r.code}: ${r.message}`);
        assert.equal(typeof r.message, 'string');
      }
    }
    assert.ok(refused > inputs.length / 2, `${refused} of ${inputs.length} refused`);
  });

  it('names the problem: malformed bytes, server-only frames, empty frames, JSON that is not', () => {
    const bad = (bytes: Uint8Array) => {
      const r = decodeClientFrame(bytes);
      assert.ok(!r.ok);
      return r;
    };
    assert.deepEqual(bad(new Uint8Array([0xff, 0xff, 0xff])), { ok: false, code: 'bad_request', message: 'malformed protobuf frame: premature EOF' });
    assert.deepEqual(bad(new Uint8Array(0)), { ok: false, code: 'unknown_type', message: 'the frame holds no frame type this server knows' });
    const msg = bad(encodeFrame({ frame: { case: 'message', value: { channel: 'a' } } }));
    assert.equal(msg.code, 'unknown_type');
    assert.equal(msg.message, 'message is not a frame a client sends');
    const pong = bad(encodeFrame({ frame: { case: 'pong', value: { id: 12 } } }));
    assert.equal(pong.id, 12);
    const notJson = bad(encodeFrame({ frame: { case: 'publish', value: { id: 3, channel: 'a', data: utf8('{'), json: true } } }));
    assert.deepEqual(notJson, { ok: false, id: 3, code: 'bad_request', message: 'publish: data is flagged as JSON but is not valid UTF-8 JSON text' });
    const kind = bad(encodeClientFrame({ type: 'publish', id: 4, channel: 'a', data: 1, kind: 'k'.repeat(65) }));
    assert.deepEqual(kind, { ok: false, id: 4, code: 'bad_request', message: 'publish: kind must be at most 64 characters' });
  });

  it('decodeServerFrame throws on what a server never sends', () => {
    assert.throws(() => decodeServerFrame(new Uint8Array([0xff, 0xff, 0xff])));
    assert.throws(() => decodeServerFrame(new Uint8Array(0)), /empty frame/);
    assert.throws(() => decodeServerFrame(encodeClientFrame({ type: 'publish', channel: 'a', data: 1 })), /publish frame, which only clients send/);
    assert.throws(() => decodeServerFrame(encodeFrame({ frame: { case: 'message', value: { channel: 'a', data: utf8('{'), json: true } } })), /JSON/);
  });
});
