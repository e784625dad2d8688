/**
 * The benchmark client's frame parser (src/bench/frame-parser.ts), fed crafted bytes: every length
 * encoding, frames split at every byte boundary, many frames per chunk, fragmentation, the
 * count-only mode, protocol errors, and the masking of client frames.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deflateRawSync, constants } from 'node:zlib';
import { deflateMessage, encodeClientFrame, FrameError, FrameParser, inflateMessage } from '../src/bench/frame-parser.js';

interface Parsed {
  opcode: number;
  fin: boolean;
  length: number;
  payload: string | undefined;
}

/** A server frame built independently of the parser. `lengthForm` forces a (possibly non-minimal) length encoding. */
function frame(opcode: number, payload: Buffer | string, opts: { fin?: boolean; lengthForm?: 7 | 16 | 64; mask?: boolean; rsv?: number } = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const form = opts.lengthForm ?? (len < 126 ? 7 : len < 65536 ? 16 : 64);
  const head: number[] = [((opts.fin ?? true) ? 0x80 : 0) | (opts.rsv ?? 0) | opcode];
  const m = opts.mask ? 0x80 : 0;
  if (form === 7) {
    head.push(m | len);
  } else if (form === 16) {
    head.push(m | 126, len >> 8, len & 0xff);
  } else {
    const hi = Math.floor(len / 2 ** 32);
    head.push(m | 127, (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff);
    head.push((len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
  }
  if (opts.mask) head.push(1, 2, 3, 4);
  return Buffer.concat([Buffer.from(head), data]);
}

function parser(collect = true): { p: FrameParser; out: Parsed[] } {
  const out: Parsed[] = [];
  const p = new FrameParser((opcode, fin, payload, length) => {
    // Copy out at once: a payload may be a view into the pushed chunk.
    out.push({ opcode, fin, length, payload: payload === undefined ? undefined : payload.toString('latin1') });
  });
  p.collect = collect;
  return { p, out };
}

/** Parse `bytes` delivered as the given chunks (cut at the given offsets). */
function parseSplit(bytes: Buffer, cuts: number[], collect = true): Parsed[] {
  const { p, out } = parser(collect);
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    p.push(bytes.subarray(from, cut));
    from = cut;
  }
  return out;
}

const text = (s: string): Parsed => ({ opcode: 1, fin: true, length: Buffer.byteLength(s), payload: Buffer.from(s).toString('latin1') });
const pattern = (n: number): string => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');

describe('bench frame parser', () => {
  it('parses 7-bit lengths (0, 1, 125)', () => {
    for (const n of [0, 1, 125]) {
      const s = pattern(n);
      assert.deepEqual(parseSplit(frame(1, s), []), [text(s)], `length ${n}`);
    }
  });

  it('parses 16-bit lengths (126, 300, 65535)', () => {
    for (const n of [126, 300, 65535]) {
      const s = pattern(n);
      const bytes = frame(1, s);
      assert.equal(bytes[1], 126);
      assert.deepEqual(parseSplit(bytes, []), [text(s)], `length ${n}`);
    }
  });

  it('parses 64-bit lengths (65536, 70000) and a non-minimal 64-bit encoding of a short payload', () => {
    for (const n of [65536, 70000]) {
      const s = pattern(n);
      const bytes = frame(2, s);
      assert.equal(bytes[1], 127);
      assert.deepEqual(parseSplit(bytes, []), [{ opcode: 2, fin: true, length: n, payload: s }], `length ${n}`);
    }
    assert.deepEqual(parseSplit(frame(1, 'hi', { lengthForm: 64 }), []), [text('hi')]);
    assert.deepEqual(parseSplit(frame(1, 'hi', { lengthForm: 16 }), []), [text('hi')]);
  });

  it('parses many frames from one chunk', () => {
    const msgs = Array.from({ length: 50 }, (_, i) => `{"seq":${i}}`);
    const bytes = Buffer.concat(msgs.map((m) => frame(1, m)));
    assert.deepEqual(parseSplit(bytes, []), msgs.map(text));
  });

  // A mix of every length form, control frames and an empty frame.
  const mixed: { bytes: Buffer; expect: Parsed[] } = (() => {
    const parts: [Buffer, Parsed][] = [
      [frame(1, 'hello'), text('hello')],
      [frame(1, ''), text('')],
      [frame(9, 'p!'), { opcode: 9, fin: true, length: 2, payload: 'p!' }],
      [frame(1, pattern(126)), text(pattern(126))],
      [frame(1, 'x', { lengthForm: 64 }), text('x')],
      [frame(2, Buffer.from([0, 255, 128, 7])), { opcode: 2, fin: true, length: 4, payload: Buffer.from([0, 255, 128, 7]).toString('latin1') }],
      [frame(1, pattern(300)), text(pattern(300))],
      [frame(10, ''), { opcode: 10, fin: true, length: 0, payload: '' }],
      [frame(8, Buffer.from([0x03, 0xe8])), { opcode: 8, fin: true, length: 2, payload: Buffer.from([0x03, 0xe8]).toString('latin1') }],
    ];
    return { bytes: Buffer.concat(parts.map((p) => p[0])), expect: parts.map((p) => p[1]) };
  })();

  it('gives the same frames when the stream is cut at any single byte boundary', () => {
    for (let i = 0; i <= mixed.bytes.length; i++) {
      assert.deepEqual(parseSplit(mixed.bytes, [i]), mixed.expect, `cut at ${i}`);
    }
  });

  it('gives the same frames when the stream is cut at any two byte boundaries', () => {
    const head = Buffer.concat([frame(1, 'ab'), frame(1, pattern(130)), frame(1, 'cd', { lengthForm: 64 }), frame(1, 'e')]);
    const expect = [text('ab'), text(pattern(130)), text('cd'), text('e')];
    for (let i = 0; i <= head.length; i++) {
      for (let j = i; j <= head.length; j++) {
        assert.deepEqual(parseSplit(head, [i, j]), expect, `cuts at ${i}, ${j}`);
      }
    }
  });

  it('gives the same frames when fed one byte at a time', () => {
    const cuts = Array.from({ length: mixed.bytes.length }, (_, i) => i);
    assert.deepEqual(parseSplit(mixed.bytes, cuts), mixed.expect);
  });

  it('handles a 64-bit-length frame cut anywhere in its header and across its payload', () => {
    const s = pattern(70000);
    const bytes = Buffer.concat([frame(1, 'a'), frame(1, s), frame(1, 'z')]);
    const expect = [text('a'), text(s), text('z')];
    const cuts = new Set<number>();
    for (let i = 0; i <= 20; i++) cuts.add(i); // the first frame, all of the 64-bit header, payload start
    for (let i = bytes.length - 20; i <= bytes.length; i++) cuts.add(i); // payload end, the last frame
    for (let i = 0; i < bytes.length; i += 997) cuts.add(i);
    for (const c of cuts) assert.deepEqual(parseSplit(bytes, [c]), expect, `cut at ${c}`);
    // And in 1000-byte chunks: the payload spans 71 pushes.
    const chunked = Array.from({ length: Math.floor(bytes.length / 1000) }, (_, i) => (i + 1) * 1000);
    assert.deepEqual(parseSplit(bytes, chunked), expect);
  });

  it('skips data payloads without collecting them when collect is off, but still reads control payloads', () => {
    for (let i = 0; i <= mixed.bytes.length; i++) {
      const got = parseSplit(mixed.bytes, [i], false);
      const want = mixed.expect.map((f) => (f.opcode < 8 ? { ...f, payload: undefined } : f));
      assert.deepEqual(got, want, `cut at ${i}`);
    }
  });

  it('switches collect on and off between frames', () => {
    const out: (string | undefined)[] = [];
    const p = new FrameParser((_op, _fin, payload) => {
      out.push(payload?.toString());
      p.collect = !p.collect;
    });
    p.push(Buffer.concat([frame(1, 'a'), frame(1, 'b'), frame(1, 'c')]));
    assert.deepEqual(out, ['a', undefined, 'c']);
  });

  it('reports fragmented messages frame by frame, with control frames in between', () => {
    const bytes = Buffer.concat([frame(1, 'he', { fin: false }), frame(9, ''), frame(0, 'll', { fin: false }), frame(0, 'o')]);
    for (let i = 0; i <= bytes.length; i++) {
      assert.deepEqual(parseSplit(bytes, [i]), [
        { opcode: 1, fin: false, length: 2, payload: 'he' },
        { opcode: 9, fin: true, length: 0, payload: '' },
        { opcode: 0, fin: false, length: 2, payload: 'll' },
        { opcode: 0, fin: true, length: 1, payload: 'o' },
      ]);
    }
  });

  it('rejects protocol violations', () => {
    const bad: [string, Buffer][] = [
      ['masked server frame', frame(1, 'x', { mask: true })],
      ['RSV bit', frame(1, 'x', { rsv: 0x40 })],
      ['reserved opcode', frame(3, 'x')],
      ['reserved control opcode', frame(0xb, 'x')],
      ['fragmented control frame', frame(9, 'x', { fin: false })],
      ['control frame over 125 bytes', frame(9, pattern(126))],
      ['stray continuation', frame(0, 'x')],
      ['data frame inside a fragmented message', Buffer.concat([frame(1, 'a', { fin: false }), frame(1, 'b')])],
      ['64-bit length above 2^53 - 1', Buffer.from([0x81, 127, 0x00, 0x20, 0, 0, 0, 0, 0, 0])],
    ];
    for (const [what, bytes] of bad) {
      const { p } = parser();
      assert.throws(() => p.push(bytes), FrameError, what);
      assert.throws(() => p.push(Buffer.from([0x81, 0])), FrameError, `${what}: stays failed`);
    }
    const small = new FrameParser(() => {}, { maxPayload: 10 });
    assert.throws(() => small.push(frame(1, pattern(11))), /exceeds the limit/);
  });
});

describe('bench frame parser with permessage-deflate', () => {
  /** Compressed the way Hubbub's server compresses (raw deflate, sync flush, empty block dropped), independently of deflateMessage. */
  const compress = (s: string): Buffer => {
    const z = deflateRawSync(Buffer.from(s), { finishFlush: constants.Z_SYNC_FLUSH });
    assert.deepEqual([...z.subarray(z.length - 4)], [0, 0, 0xff, 0xff]);
    return z.subarray(0, z.length - 4);
  };
  const parse = (bytes: Buffer, collect = true): { opcode: number; fin: boolean; compressed: boolean; payload: Buffer | undefined }[] => {
    const out: { opcode: number; fin: boolean; compressed: boolean; payload: Buffer | undefined }[] = [];
    const p = new FrameParser((opcode, fin, payload, _length, compressed) => out.push({ opcode, fin, compressed, payload: payload && Buffer.from(payload) }), { perMessageDeflate: true });
    p.collect = collect;
    p.push(bytes);
    return out;
  };

  it('reports RSV1 messages as compressed, and their payload inflates', () => {
    const text = JSON.stringify({ type: 'message', data: pattern(2000) });
    const z = compress(text);
    const got = parse(Buffer.concat([frame(1, z, { rsv: 0x40 }), frame(1, 'plain'), frame(2, z, { rsv: 0x40 })]));
    assert.deepEqual(
      got.map((f) => [f.opcode, f.compressed]),
      [
        [1, true],
        [1, false],
        [2, true],
      ],
    );
    assert.equal(inflateMessage(got[0]!.payload!).toString(), text);
    assert.equal(got[1]!.payload!.toString(), 'plain');
    // Counting subscribers still learn that a message was compressed.
    assert.deepEqual(
      parse(frame(1, z, { rsv: 0x40 }), false).map((f) => [f.compressed, f.payload]),
      [[true, undefined]],
    );
  });

  it('a fragmented compressed message: RSV1 on the first frame only, the continuations report it too', () => {
    const z = compress(pattern(500));
    const half = z.length >> 1;
    const got = parse(Buffer.concat([frame(1, z.subarray(0, half), { rsv: 0x40, fin: false }), frame(9, 'p'), frame(0, z.subarray(half))]));
    assert.deepEqual(
      got.map((f) => [f.opcode, f.fin, f.compressed]),
      [
        [1, false, true],
        [9, true, false],
        [0, true, true],
      ],
    );
    assert.equal(inflateMessage(Buffer.concat([got[0]!.payload!, got[2]!.payload!])).toString(), pattern(500));
  });

  it('rejects RSV1 on control and continuation frames, and RSV2/RSV3 always', () => {
    const bad: [string, Buffer][] = [
      ['RSV1 on a ping', frame(9, 'x', { rsv: 0x40 })],
      ['RSV1 on a continuation', Buffer.concat([frame(1, 'a', { fin: false }), frame(0, 'b', { rsv: 0x40 })])],
      ['RSV2', frame(1, 'x', { rsv: 0x20 })],
      ['RSV3', frame(1, 'x', { rsv: 0x10 })],
    ];
    for (const [what, bytes] of bad) assert.throws(() => parse(bytes), FrameError, what);
  });

  it('deflateMessage output inflates back, and encodeClientFrame sets RSV1 when asked', () => {
    const text = pattern(3000);
    const z = deflateMessage(text);
    assert.ok(z.length < 200, `compressed to ${z.length} bytes`);
    assert.equal(inflateMessage(z).toString(), text);
    const wire = encodeClientFrame(1, z, Buffer.from([0, 0, 0, 0]), true);
    assert.equal(wire[0], 0xc1);
    assert.equal(encodeClientFrame(1, 'x', Buffer.from([0, 0, 0, 0]))[0], 0x81);
  });
});

describe('bench client frames', () => {
  function unmask(bytes: Buffer): { opcode: number; fin: boolean; payload: Buffer } {
    assert.ok(bytes[1]! & 0x80, 'client frames are masked');
    let len = bytes[1]! & 0x7f;
    let at = 2;
    if (len === 126) {
      len = bytes.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      len = bytes.readUInt32BE(2) * 2 ** 32 + bytes.readUInt32BE(6);
      at = 10;
    }
    const key = bytes.subarray(at, at + 4);
    const payload = Buffer.from(bytes.subarray(at + 4));
    assert.equal(payload.length, len);
    for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i % 4]!;
    return { opcode: bytes[0]! & 0x0f, fin: (bytes[0]! & 0x80) !== 0, payload };
  }

  it('masks payloads of every length form', () => {
    for (const n of [0, 1, 3, 4, 5, 125, 126, 65535, 65536, 70001]) {
      const data = Buffer.from(pattern(n));
      const wire = encodeClientFrame(1, data);
      const got = unmask(wire);
      assert.equal(got.opcode, 1);
      assert.ok(got.fin);
      assert.ok(got.payload.equals(data), `length ${n}`);
      assert.equal(data.toString(), pattern(n), 'the argument is left alone');
    }
  });

  it('uses the given mask key', () => {
    const wire = encodeClientFrame(10, 'abcde', Buffer.from([0, 0, 0, 0]));
    assert.deepEqual([...wire], [0x8a, 0x85, 0, 0, 0, 0, ...Buffer.from('abcde')]);
    const masked = encodeClientFrame(1, 'ab', Buffer.from([1, 2, 3, 4]));
    assert.deepEqual([...masked], [0x81, 0x82, 1, 2, 3, 4, 0x61 ^ 1, 0x62 ^ 2]);
  });
});
