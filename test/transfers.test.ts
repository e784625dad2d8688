/**
 * Chunked transfers against a real server: SDK senders and receivers of both encodings (with and
 * without per-chunk compression), and raw clients that craft bad chunks to check the server's rules
 * (order, CRC-32, sizes, limits, permissions) and the aborts that follow.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { brotliDecompressSync, crc32, gunzipSync, inflateSync } from 'node:zlib';
import { Hubbub, HubbubError, type ChunkFrame, type Compression, type DirectFrame, type HubbubClientOptions, type MessageFrame, type ServerFrame } from '../src/client/index.js';
import { TestClient, startServer, type Frame, type TestServer, until } from './helpers.js';

const MiB = 1024 * 1024;

/** An SDK client and everything it emitted. */
interface Sdk {
  hub: Hubbub;
  messages: MessageFrame[];
  directs: DirectFrame[];
  errors: HubbubError[];
  frames: ServerFrame[];
}

const open: Hubbub[] = [];

async function sdk(url: string, options: HubbubClientOptions = {}): Promise<Sdk> {
  const hub = new Hubbub(url, { reconnect: false, ...options });
  open.push(hub);
  const s: Sdk = { hub, messages: [], directs: [], errors: [], frames: [] };
  hub.on('message', (m) => s.messages.push(m));
  hub.on('direct', (m) => s.directs.push(m));
  hub.on('error', (e) => s.errors.push(e));
  hub.on('frame', (f) => s.frames.push(f));
  await hub.connect({ retry: false });
  return s;
}

async function subscribed(s: Sdk, ...patterns: string[]): Promise<void> {
  await Promise.all(patterns.map((p) => s.hub.subscribe(p, () => {}).ready));
}

function closeAll(): void {
  for (const hub of open.splice(0)) hub.close();
}


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A chunk frame as a raw JSON client sends it: base64 data and its CRC-32 (unless `crc` overrides it). */
function chunk(transfer: string, seq: number, data: Buffer, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'chunk', transfer, seq, data: data.toString('base64'), crc: crc32(data), ...extra };
}

/** Text that compresses well, `n` bytes long. */
function compressible(n: number): Buffer {
  const line = Buffer.from('{"sensor":"boiler-7","temperature":71.5,"pressure":2.25,"status":"nominal"}\n');
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += line.length) line.copy(out, off, 0, Math.min(line.length, n - off));
  return out;
}

function inflate(method: Compression, data: Uint8Array): Buffer {
  if (method === 'gzip') return gunzipSync(data);
  if (method === 'deflate') return inflateSync(data);
  return brotliDecompressSync(data);
}

function sameBytes(actual: unknown, expected: Uint8Array, what: string): void {
  assert.ok(actual instanceof Uint8Array, `${what}: data is a Uint8Array`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected), `${what}: bytes are identical`);
}

/** The chunk frames of one transfer a receiver saw, in arrival order. */
function chunksOf(s: Sdk, transfer: string): ChunkFrame[] {
  return s.frames.filter((f): f is ChunkFrame => f.type === 'chunk' && f.transfer === transfer);
}

describe('transfers between SDK clients', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    closeAll();
    await srv.close();
  });

  it('a 10 MiB random payload arrives byte-identical across encodings (json→protobuf, protobuf→json, json→json, protobuf→protobuf)', async () => {
    const jsonRx = await sdk(srv.url, { encoding: 'json' });
    const protoRx = await sdk(srv.url, { encoding: 'protobuf' });
    const wildRx = await sdk(srv.url, { encoding: 'protobuf' });
    await subscribed(jsonRx, 'big/a');
    await subscribed(protoRx, 'big/a');
    // Two patterns that both match: the server sends one copy, the SDK emits one message.
    await subscribed(wildRx, 'big/#', 'big/+');

    for (const encoding of ['json', 'protobuf'] as const) {
      const sender = await sdk(srv.url, { encoding });
      const payload = randomBytes(10 * MiB);
      const before = { json: jsonRx.messages.length, proto: protoRx.messages.length, wild: wildRx.messages.length };
      let progress = 0;
      const result = await sender.hub.transfer({ channel: 'big/a' }, payload, { name: `random-${encoding}.bin`, onProgress: (sent) => (progress = sent) });
      assert.equal(result.bytes, payload.length);
      assert.equal(result.chunks, (10 * MiB) / (16 * 1024), 'default chunk size is 16 KiB');
      assert.equal(result.delivered, 3);
      assert.equal(progress, payload.length);

      await until(() => jsonRx.messages.length > before.json && protoRx.messages.length > before.proto && wildRx.messages.length > before.wild, `the ${encoding} transfer at every receiver`);
      for (const [name, rx] of [['json receiver', jsonRx], ['protobuf receiver', protoRx], ['wildcard receiver', wildRx]] as const) {
        const m = rx.messages.at(-1)!;
        const what = `${encoding} sender → ${name}`;
        sameBytes(m.data, payload, what);
        assert.equal(m.channel, 'big/a', what);
        assert.deepEqual(m.transfer, { id: result.transfer, size: payload.length, name: `random-${encoding}.bin` }, what);
        assert.equal(m.kind, 'text', what);
        assert.deepEqual(m.from, { client: sender.hub.clientId }, what);
        assert.equal(rx.errors.length, 0, `${what}: no error (${rx.errors.map((e) => e.message).join('; ')})`);
      }
      assert.equal(wildRx.messages.at(-1)!.pattern === 'big/#' || wildRx.messages.at(-1)!.pattern === 'big/+', true);
      assert.equal(chunksOf(protoRx, result.transfer).length, 640);
      assert.ok(chunksOf(protoRx, result.transfer).every((c) => c.compression === undefined), 'random bytes go uncompressed');
      // Drop what the frames kept: 10 MiB a receiver is plenty.
      for (const rx of [jsonRx, protoRx, wildRx]) rx.frames.length = 0;
    }
    assert.equal(wildRx.messages.length, 2, 'the wildcard subscriber got each transfer once');
    assert.equal(jsonRx.messages.length, 2);
    assert.equal(protoRx.messages.length, 2);
  });

  for (const compression of ['gzip', 'deflate', 'brotli'] as const) {
    it(`per-chunk ${compression} compression, from both encodings to both encodings`, async () => {
      const jsonRx = await sdk(srv.url, { encoding: 'json' });
      const protoRx = await sdk(srv.url, { encoding: 'protobuf' });
      const channel = `zip/${compression}`;
      await subscribed(jsonRx, channel);
      await subscribed(protoRx, channel);
      for (const encoding of ['json', 'protobuf'] as const) {
        const sender = await sdk(srv.url, { encoding });
        const payload = compressible(MiB + 12_345);
        const n = jsonRx.messages.length;
        const result = await sender.hub.transfer({ channel }, payload, { name: 'log.jsonl', compression });
        await until(() => jsonRx.messages.length > n && protoRx.messages.length > n, 'the compressed transfer at both receivers');
        for (const rx of [jsonRx, protoRx]) {
          const what = `${compression}: ${encoding} sender → ${rx.hub.options.encoding} receiver`;
          const m = rx.messages.at(-1)!;
          sameBytes(m.data, payload, what);
          assert.deepEqual(m.transfer, { id: result.transfer, size: payload.length, name: 'log.jsonl' }, what);
          // The chunks on the wire were compressed, and each one inflates by itself (an independent zlib).
          const chunks = chunksOf(rx, result.transfer);
          assert.equal(chunks.length, result.chunks, what);
          assert.ok(chunks.every((c) => c.compression === compression), `${what}: every chunk carried ${compression}`);
          const carried = chunks.reduce((sum, c) => sum + (c.data as Uint8Array).length, 0);
          assert.ok(carried < payload.length / 5, `${what}: ${carried} bytes carried for ${payload.length}`);
          const rebuilt = Buffer.concat(chunks.map((c) => inflate(compression, c.data as Uint8Array)));
          assert.ok(rebuilt.equals(payload), `${what}: the chunks inflate to the payload`);
          assert.equal(chunks.at(-1)!.total_crc, crc32(payload), `${what}: total_crc is the CRC-32 of the uncompressed payload`);
          assert.equal(chunks[0]!.size, payload.length);
          assert.equal(rx.errors.length, 0, what);
        }
      }
    });
  }

  it('two transfers at once from one sender arrive intact and distinct', async () => {
    const rx = await sdk(srv.url, { encoding: 'protobuf' });
    await subscribed(rx, 'pair/x');
    const sender = await sdk(srv.url);
    const a = randomBytes(300_000);
    const b = randomBytes(200_000);
    const [ra, rb] = await Promise.all([
      sender.hub.transfer({ channel: 'pair/x' }, a, { name: 'a.bin', chunkSize: 4096, window: 2 }),
      sender.hub.transfer({ channel: 'pair/x' }, b, { name: 'b.bin', chunkSize: 4096, window: 2 }),
    ]);
    assert.notEqual(ra.transfer, rb.transfer);
    await until(() => rx.messages.length === 2, 'both transfers');
    const byName = new Map(rx.messages.map((m) => [m.transfer?.name, m]));
    sameBytes(byName.get('a.bin')?.data, a, 'a.bin');
    sameBytes(byName.get('b.bin')?.data, b, 'b.bin');
    assert.equal(byName.get('a.bin')!.transfer!.id, ra.transfer);
    assert.equal(byName.get('b.bin')!.transfer!.id, rb.transfer);
    // They really were interleaved on the wire.
    const order = rx.frames.filter((f): f is ChunkFrame => f.type === 'chunk').map((f) => f.transfer);
    const firstB = order.indexOf(rb.transfer);
    assert.ok(firstB >= 0 && firstB < order.lastIndexOf(ra.transfer), 'chunks of b arrived before the last chunk of a');
    assert.equal(rx.errors.length, 0);
  });

  it('a sender whose connection drops mid-transfer sees transfer() reject; receivers get an abort', async () => {
    const rx = await sdk(srv.url);
    await subscribed(rx, 'drop/x');
    const sender = await sdk(srv.url, { encoding: 'protobuf' });
    const id = sender.hub.clientId!;
    let cut = false;
    const started = sender.hub.transfer({ channel: 'drop/x' }, randomBytes(4 * MiB), {
      onProgress: () => {
        if (cut) return;
        cut = true;
        srv.server.hub.clients.get(id)!.transport.terminate();
      },
    });
    await assert.rejects(started, (err: unknown) => err instanceof HubbubError && ['disconnected', 'closed'].includes(err.code));
    await until(() => rx.errors.length > 0, 'the receiver error');
    assert.equal(rx.errors[0]!.code, 'transfer_aborted');
    assert.match(rx.errors[0]!.message, /sender disconnected/);
    await sleep(100);
    assert.equal(rx.messages.length, 0, 'no message from a cut transfer');
  });

  it('publish() of bytes over max_message_size becomes a transfer and arrives whole', async () => {
    const small = await startServer({ max_message_size: 64 * 1024 });
    try {
      const rx = await sdk(small.url, { encoding: 'protobuf' });
      await subscribed(rx, 'auto/x');
      const sender = await sdk(small.url);
      const payload = randomBytes(300_000);
      await sender.hub.publish('auto/x', payload);
      await until(() => rx.messages.length === 1, 'the auto-transfer');
      const m = rx.messages[0]!;
      sameBytes(m.data, payload, 'auto-transfer');
      assert.equal(m.transfer?.size, payload.length);
      assert.ok(rx.frames.filter((f) => f.type === 'chunk').length > 1, 'it travelled as several chunks');
      // Small bytes still go as one publication.
      await sender.hub.publish('auto/x', new Uint8Array([1, 2, 3]));
      await until(() => rx.messages.length === 2, 'the small publication');
      sameBytes(rx.messages[1]!.data, new Uint8Array([1, 2, 3]), 'small bytes');
      assert.equal(rx.messages[1]!.transfer, undefined);
    } finally {
      closeAll();
      await small.close();
    }
  });
});

describe('direct transfers', () => {
  it('reach every connection of the user as a direct event with the bytes', async () => {
    const srv = await startServer();
    try {
      const bob1 = await sdk(srv.url, { user: 'bob' });
      const bob2 = await sdk(srv.url, { user: 'bob', encoding: 'protobuf' });
      const other = await sdk(srv.url, { user: 'carol' });
      const alice = await sdk(srv.url, { user: 'alice' });
      const payload = randomBytes(100_000);
      const r = await alice.hub.transfer({ to: { user: 'bob' } }, payload, { name: 'photo.jpg', kind: 'file' });
      assert.equal(r.delivered, 2);
      await until(() => bob1.directs.length === 1 && bob2.directs.length === 1, 'both of bob\'s connections');
      for (const bob of [bob1, bob2]) {
        const d = bob.directs[0]!;
        sameBytes(d.data, payload, `direct to ${bob.hub.options.encoding}`);
        assert.deepEqual(d.transfer, { id: r.transfer, size: payload.length, name: 'photo.jpg' });
        assert.equal(d.kind, 'file');
        assert.equal((d.from as { user?: string }).user, 'alice');
      }
      await sleep(100);
      assert.equal(other.directs.length, 0);
      assert.equal(other.frames.filter((f) => f.type === 'chunk').length, 0, 'no chunk reaches anyone else');
    } finally {
      closeAll();
      await srv.close();
    }
  });

  it('are forbidden when allow_client_send is false', async () => {
    const srv = await startServer({ allow_client_send: false });
    try {
      const bob = await sdk(srv.url, { user: 'bob' });
      const alice = await sdk(srv.url, { user: 'alice' });
      await assert.rejects(alice.hub.transfer({ to: { user: 'bob' } }, randomBytes(50_000)), (err: unknown) => err instanceof HubbubError && err.code === 'forbidden');
      await sleep(100);
      assert.equal(bob.frames.filter((f) => f.type === 'chunk' || f.type === 'direct').length, 0);
    } finally {
      closeAll();
      await srv.close();
    }
  });
});

describe('bad chunks from raw clients', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    closeAll();
    await srv.close();
  });

  /** A raw sender, a raw receiver and an SDK receiver on `channel`. */
  async function trio(channel: string): Promise<{ tx: TestClient; raw: TestClient; rx: Sdk }> {
    const tx = await TestClient.connect(srv.url);
    const raw = await TestClient.connect(srv.url);
    assert.equal((await raw.request({ type: 'subscribe', channel })).type, 'reply');
    const rx = await sdk(srv.url);
    await subscribed(rx, channel);
    return { tx, raw, rx };
  }

  /** The server still works: an SDK transfer and a publish on `channel` reach `rx`. */
  async function stillServing(channel: string, rx: Sdk): Promise<void> {
    const sender = await sdk(srv.url);
    const payload = randomBytes(40_000);
    const n = rx.messages.length;
    await sender.hub.transfer({ channel }, payload, { name: 'after.bin' });
    await sender.hub.publish(channel, { after: true });
    await until(() => rx.messages.length === n + 2, 'the later transfer and publication');
    sameBytes(rx.messages[n]!.data, payload, 'later transfer');
    assert.deepEqual(rx.messages[n + 1]!.data, { after: true });
  }

  function expectAborted(rx: Sdk): void {
    assert.equal(rx.errors.length, 1, `one error event: ${rx.errors.map((e) => e.message).join('; ')}`);
    assert.equal(rx.errors[0]!.code, 'transfer_aborted');
    assert.equal(rx.messages.length, 0, 'no message from an aborted transfer');
  }

  it('a corrupted chunk aborts the transfer for the sender and the receivers', async () => {
    const { tx, raw, rx } = await trio('bad/crc');
    const a = randomBytes(1000);
    const b = randomBytes(1000);
    const r0 = await tx.request(chunk('t-crc', 0, a, { channel: 'bad/crc', size: 2000, name: 'x.bin' }));
    assert.deepEqual(r0, { type: 'reply', id: r0.id, data: { delivered: 2 } });
    const r1 = await tx.request(chunk('t-crc', 1, b, { last: true, total_crc: crc32(Buffer.concat([a, b])), crc: (crc32(b) ^ 1) >>> 0 }));
    assert.equal(r1.type, 'error');
    assert.equal(r1.code, 'transfer_aborted');
    assert.match(String(r1.message), /CRC/);

    const first = await raw.next((f) => f.type === 'chunk');
    assert.equal(first.seq, 0);
    assert.equal(first.transfer, 't-crc');
    assert.equal(first.size, 2000);
    assert.equal(first.name, 'x.bin');
    assert.equal(first.channel, 'bad/crc');
    assert.ok(Buffer.from(first.data as string, 'base64').equals(a));
    const abort = await raw.next((f) => f.type === 'abort');
    assert.equal(abort.transfer, 't-crc');
    assert.equal(abort.code, 'transfer_aborted');
    assert.equal(abort.channel, 'bad/crc');
    assert.deepEqual(abort.from, { client: tx.welcome.client });
    assert.deepEqual(await raw.nothing((f) => f.type === 'chunk'), [], 'the bad chunk is not relayed');
    await until(() => rx.errors.length > 0, 'the SDK receiver error');
    expectAborted(rx);

    // The transfer is gone: a retry of seq 1 is for a transfer that is not open.
    const again = await tx.request(chunk('t-crc', 1, b));
    assert.equal(again.code, 'bad_request');
    await stillServing('bad/crc', rx);
    await tx.close();
    await raw.close();
  });

  it('a missing chunk aborts the transfer; a chunk of a transfer never opened is a bad request', async () => {
    const { tx, raw, rx } = await trio('bad/gap');
    const parts = [randomBytes(500), randomBytes(500), randomBytes(500)];
    assert.equal((await tx.request(chunk('t-gap', 0, parts[0]!, { channel: 'bad/gap', size: 1500 }))).type, 'reply');
    const r2 = await tx.request(chunk('t-gap', 2, parts[2]!, { last: true, total_crc: crc32(Buffer.concat(parts)) }));
    assert.equal(r2.type, 'error');
    assert.equal(r2.code, 'transfer_aborted');
    assert.match(String(r2.message), /chunk 2 arrived where 1 was expected/);
    const abort = await raw.next((f) => f.type === 'abort');
    assert.equal(abort.transfer, 't-gap');
    assert.equal(abort.code, 'transfer_aborted');
    await until(() => rx.errors.length > 0, 'the SDK receiver error');
    expectAborted(rx);

    const unknown = await tx.request(chunk('never-opened', 3, randomBytes(10)));
    assert.equal(unknown.type, 'error');
    assert.equal(unknown.code, 'bad_request');
    assert.deepEqual(await raw.nothing((f) => f.type === 'chunk' && f.transfer === 'never-opened' || f.type === 'abort' && f.transfer === 'never-opened'), []);
    await stillServing('bad/gap', rx);
    await tx.close();
    await raw.close();
  });

  it('interleaved chunks of two transfers from a raw client are kept apart', async () => {
    const { tx, raw, rx } = await trio('mix/x');
    const one = [randomBytes(700), randomBytes(700), randomBytes(300)];
    const two = [randomBytes(400), randomBytes(400), randomBytes(400), randomBytes(50)];
    const send = (t: string, parts: Buffer[], seq: number, first: Record<string, unknown>): Promise<Frame> => {
      const last = seq === parts.length - 1;
      const whole = Buffer.concat(parts);
      return tx.request(chunk(t, seq, parts[seq]!, { ...(seq === 0 ? { ...first, size: whole.length } : {}), ...(last ? { last: true, total_crc: crc32(whole) } : {}) }));
    };
    const plan: [string, Buffer[], number][] = [['t1', one, 0], ['t2', two, 0], ['t2', two, 1], ['t1', one, 1], ['t2', two, 2], ['t1', one, 2], ['t2', two, 3]];
    for (const [t, parts, seq] of plan) {
      const r = await send(t, parts, seq, { channel: 'mix/x', name: `${t}.bin` });
      assert.equal(r.type, 'reply', `${t} seq ${seq}: ${JSON.stringify(r)}`);
    }
    await until(() => rx.messages.length === 2, 'both interleaved transfers');
    const byId = new Map(rx.messages.map((m) => [m.transfer?.id, m]));
    sameBytes(byId.get('t1')?.data, Buffer.concat(one), 't1');
    sameBytes(byId.get('t2')?.data, Buffer.concat(two), 't2');
    assert.equal(byId.get('t1')!.transfer!.name, 't1.bin');
    assert.equal(rx.errors.length, 0);
    const relayed: Frame[] = [];
    for (let i = 0; i < plan.length; i++) relayed.push(await raw.next((f) => f.type === 'chunk'));
    assert.deepEqual(relayed.map((f) => [f.transfer, f.seq]), plan.map(([t, , seq]) => [t, seq]), 'relayed in arrival order');
    await tx.close();
    await raw.close();
  });

  it('a transfer cut by the sender disconnecting is aborted for its receivers', async () => {
    const { tx, raw, rx } = await trio('cut/x');
    const parts = [randomBytes(800), randomBytes(800), randomBytes(800)];
    assert.equal((await tx.request(chunk('t-cut', 0, parts[0]!, { channel: 'cut/x', size: 10_000 }))).type, 'reply');
    assert.equal((await tx.request(chunk('t-cut', 1, parts[1]!))).type, 'reply');
    assert.equal((await tx.request(chunk('t-cut', 2, parts[2]!))).type, 'reply');
    await tx.close();
    const abort = await raw.next((f) => f.type === 'abort');
    assert.equal(abort.transfer, 't-cut');
    assert.equal(abort.code, 'transfer_aborted');
    assert.match(String(abort.message), /the sender disconnected/);
    assert.deepEqual(abort.from, { client: tx.welcome.client });
    await until(() => rx.errors.length > 0, 'the SDK receiver error');
    expectAborted(rx);
    assert.match(rx.errors[0]!.message, /the sender disconnected/);
    await stillServing('cut/x', rx);
    await raw.close();
  });

  it('the sender can abort its transfer; aborting an unknown transfer is not_found', async () => {
    const { tx, raw, rx } = await trio('stop/x');
    assert.equal((await tx.request(chunk('t-stop', 0, randomBytes(100), { channel: 'stop/x', size: 5000 }))).type, 'reply');
    const r = await tx.request({ type: 'abort', transfer: 't-stop', message: 'changed my mind' });
    assert.deepEqual(r, { type: 'reply', id: r.id, data: {} });
    const abort = await raw.next((f) => f.type === 'abort');
    assert.equal(abort.transfer, 't-stop');
    assert.equal(abort.code, 'transfer_aborted');
    assert.equal(abort.message, 'changed my mind');
    await until(() => rx.errors.length > 0, 'the SDK receiver error');
    expectAborted(rx);
    assert.match(rx.errors[0]!.message, /changed my mind/);

    const unknown = await tx.request({ type: 'abort', transfer: 't-stop' });
    assert.equal(unknown.type, 'error');
    assert.equal(unknown.code, 'not_found');
    const never = await tx.request({ type: 'abort', transfer: 'no-such' });
    assert.equal(never.code, 'not_found');
    assert.deepEqual(await raw.nothing((f) => f.type === 'abort'), [], 'no abort is relayed for them');
    await tx.close();
    await raw.close();
  });
});

describe('transfer limits', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ max_transfer_size: 100_000, max_transfers: 2, namespaces: { locked: { publish: 'none' } } });
  });
  after(async () => {
    closeAll();
    await srv.close();
  });

  async function pair(channel: string): Promise<{ tx: TestClient; raw: TestClient }> {
    const tx = await TestClient.connect(srv.url);
    const raw = await TestClient.connect(srv.url);
    assert.equal((await raw.request({ type: 'subscribe', channel })).type, 'reply');
    return { tx, raw };
  }

  it('a declared size over max_transfer_size is too_large at seq 0 and nothing is relayed', async () => {
    const { tx, raw } = await pair('lim/size');
    const r = await tx.request(chunk('big', 0, randomBytes(100), { channel: 'lim/size', size: 100_001 }));
    assert.equal(r.type, 'error');
    assert.equal(r.code, 'too_large');
    // Exactly the maximum is fine.
    assert.equal((await tx.request(chunk('max', 0, randomBytes(100), { channel: 'lim/size', size: 100_000 }))).type, 'reply');
    const relayed = await raw.next((f) => f.type === 'chunk');
    assert.equal(relayed.transfer, 'max');
    assert.deepEqual(await raw.nothing((f) => f.transfer === 'big'), [], 'nothing of the refused transfer reaches receivers');
    // The SDK refuses too, through the same rule.
    const sender = await sdk(srv.url);
    await assert.rejects(sender.hub.transfer({ channel: 'lim/size' }, randomBytes(150_000)), (err: unknown) => err instanceof HubbubError && err.code === 'too_large');
    await tx.close();
    await raw.close();
  });

  it('more than max_transfers open at once is rate_limited; finishing one frees its slot', async () => {
    const { tx, raw } = await pair('lim/open');
    const d = randomBytes(100);
    for (const t of ['o1', 'o2']) assert.equal((await tx.request(chunk(t, 0, d, { channel: 'lim/open', size: 1000 }))).type, 'reply');
    const third = await tx.request(chunk('o3', 0, d, { channel: 'lim/open', size: 1000 }));
    assert.equal(third.type, 'error');
    assert.equal(third.code, 'rate_limited');
    assert.equal((await tx.request({ type: 'abort', transfer: 'o1' })).type, 'reply');
    assert.equal((await tx.request(chunk('o3', 0, d, { channel: 'lim/open', size: 1000 }))).type, 'reply');
    // Another connection has its own allowance.
    const other = await TestClient.connect(srv.url);
    assert.equal((await other.request(chunk('o1', 0, d, { channel: 'lim/open', size: 1000 }))).type, 'reply');
    await other.close();
    await tx.close();
    await raw.close();
  });

  it('bytes beyond the declared size abort the transfer', async () => {
    const { tx, raw } = await pair('lim/over');
    assert.equal((await tx.request(chunk('over', 0, randomBytes(600), { channel: 'lim/over', size: 1000 }))).type, 'reply');
    const r = await tx.request(chunk('over', 1, randomBytes(600)));
    assert.equal(r.code, 'transfer_aborted');
    assert.match(String(r.message), /declared size/);
    assert.equal((await raw.next((f) => f.type === 'abort')).transfer, 'over');
    await tx.close();
    await raw.close();
  });

  it('a last chunk without total_crc aborts the transfer', async () => {
    const { tx, raw } = await pair('lim/crc');
    const a = randomBytes(300);
    const b = randomBytes(300);
    assert.equal((await tx.request(chunk('nocrc', 0, a, { channel: 'lim/crc', size: 600 }))).type, 'reply');
    const r = await tx.request(chunk('nocrc', 1, b, { last: true }));
    assert.equal(r.code, 'transfer_aborted');
    assert.match(String(r.message), /total_crc/);
    assert.equal((await raw.next((f) => f.type === 'abort')).transfer, 'nocrc');
    await tx.close();
    await raw.close();
  });

  it('an uncompressed transfer whose total_crc or size is wrong is aborted', async () => {
    const { tx, raw } = await pair('lim/total');
    const a = randomBytes(300);
    const b = randomBytes(300);
    assert.equal((await tx.request(chunk('badtotal', 0, a, { channel: 'lim/total', size: 600 }))).type, 'reply');
    const r = await tx.request(chunk('badtotal', 1, b, { last: true, total_crc: (crc32(Buffer.concat([a, b])) ^ 0x80) >>> 0 }));
    assert.equal(r.code, 'transfer_aborted');
    assert.match(String(r.message), /CRC-32 of the whole payload/);
    const abort = await raw.next((f) => f.type === 'abort');
    assert.equal(abort.transfer, 'badtotal');
    assert.deepEqual(await raw.nothing((f) => f.type === 'chunk' && f.seq === 1), [], 'the bad last chunk is not relayed');

    // Fewer bytes than declared, with a right CRC of what was sent.
    assert.equal((await tx.request(chunk('short', 0, a, { channel: 'lim/total', size: 900 }))).type, 'reply');
    const s = await tx.request(chunk('short', 1, b, { last: true, total_crc: crc32(Buffer.concat([a, b])) }));
    assert.equal(s.code, 'transfer_aborted');
    assert.match(String(s.message), /600 bytes, not the declared 900/);
    // And a correct one passes.
    assert.equal((await tx.request(chunk('good', 0, a, { channel: 'lim/total', size: 600 }))).type, 'reply');
    const g = await tx.request(chunk('good', 1, b, { last: true, total_crc: crc32(Buffer.concat([a, b])) }));
    assert.equal(g.type, 'reply');
    await tx.close();
    await raw.close();
  });

  it('a one-chunk transfer refused at its last chunk tells receivers nothing (they never saw it)', async () => {
    const { tx, raw } = await pair('lim/one');
    const d = randomBytes(17);
    const r = await tx.request(chunk('one', 0, d, { channel: 'lim/one', size: 17, last: true }));
    assert.equal(r.code, 'transfer_aborted');
    assert.deepEqual(await raw.nothing((f) => f.transfer === 'one'), [], 'no chunk and no abort reach receivers');
    await tx.close();
    await raw.close();
  });

  it('the first chunk names exactly one destination and declares its size', async () => {
    const { tx, raw } = await pair('lim/dest');
    const d = randomBytes(10);
    const both = await tx.request(chunk('d1', 0, d, { channel: 'lim/dest', to: { user: 'bob' }, size: 10, last: true, total_crc: crc32(d) }));
    assert.equal(both.code, 'bad_request');
    const neither = await tx.request(chunk('d2', 0, d, { size: 10, last: true, total_crc: crc32(d) }));
    assert.equal(neither.code, 'bad_request');
    const noSize = await tx.request(chunk('d3', 0, d, { channel: 'lim/dest', last: true, total_crc: crc32(d) }));
    assert.equal(noSize.code, 'bad_request');
    assert.deepEqual(await raw.nothing((f) => f.type === 'chunk' || f.type === 'abort'), []);
    await tx.close();
    await raw.close();
  });

  it('a channel transfer needs publish permission on the channel', async () => {
    const { tx, raw } = await pair('locked/room');
    const d = randomBytes(10);
    const r = await tx.request(chunk('lk', 0, d, { channel: 'locked/room', size: 10, last: true, total_crc: crc32(d) }));
    assert.equal(r.type, 'error');
    assert.equal(r.code, 'forbidden');
    assert.deepEqual(await raw.nothing((f) => f.type === 'chunk'), []);
    const sender = await sdk(srv.url);
    await assert.rejects(sender.hub.transfer({ channel: 'locked/room' }, randomBytes(1000)), (err: unknown) => err instanceof HubbubError && err.code === 'forbidden');
    // The same client may still transfer where publishing is allowed.
    const ok = await tx.request(chunk('ok', 0, d, { channel: 'open/room', size: 10, last: true, total_crc: crc32(d) }));
    assert.equal(ok.type, 'reply');
    await tx.close();
    await raw.close();
  });
});

describe('limits without a transfer', () => {
  it('max_transfers 0 means no limit on open transfers', async () => {
    const srv = await startServer({ max_transfers: 0 });
    try {
      const tx = await TestClient.connect(srv.url);
      const d = randomBytes(10);
      for (let i = 0; i < 12; i++) assert.equal((await tx.request(chunk(`n${i}`, 0, d, { channel: 'free/x', size: 100 }))).type, 'reply');
      await tx.close();
    } finally {
      await srv.close();
    }
  });

  it('the SDK refuses a frame over max_message_size itself (too_large) instead of being closed with 1009', async () => {
    const srv = await startServer({ max_message_size: 64 * 1024 });
    try {
      const s = await sdk(srv.url);
      await assert.rejects(s.hub.broadcast(randomBytes(100 * 1024)), (err: unknown) => err instanceof HubbubError && err.code === 'too_large');
      await assert.rejects(s.hub.echo('x'.repeat(70 * 1024)), (err: unknown) => err instanceof HubbubError && err.code === 'too_large');
      // The connection is still up and usable.
      assert.equal(s.hub.state, 'connected');
      assert.deepEqual(await s.hub.echo({ ok: true }), { ok: true });
      closeAll();
    } finally {
      await srv.close();
    }
  });
});
