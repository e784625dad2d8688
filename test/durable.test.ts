/**
 * Durable delivery end to end: a real server on loopback, raw JSON clients (TestClient) and raw
 * protobuf clients (`ws` on hubbub.v1.protobuf with the codec of src/protocol/proto-codec.ts).
 * Covers recovery (channels and patterns, races with live publications), history, epochs across
 * restarts (memory and SQLite), retained messages, stored direct messages with ack and limits,
 * and the publish acknowledgement on channels with history.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { WebSocket } from 'ws';
import type { Config } from '../src/config.js';
import type { ClientFrame, ServerFrame } from '../src/protocol/frames.js';
import * as pb from '../src/protocol/gen/hubbub_pb.js';
import { PROTOBUF_SUBPROTOCOL, decodeServerFrame, encodeClientFrame } from '../src/protocol/proto-codec.js';
import { TestClient, api, startServer, type Frame, type TestServer } from './helpers.js';

const T = 10_000;
/** chat keeps 100 publications per channel; other namespaces keep none. */
const HIST = { chat: { history_size: 100 } };

// ---- helpers -------------------------------------------------------------------------------------

interface Scene {
  srv: TestServer;
  connect(hello?: Record<string, unknown>): Promise<TestClient>;
}

/** A server for one test, closed (with every client opened through it) when the test ends. */
async function scene(t: TestContext, config: Partial<Config> = {}): Promise<Scene> {
  const srv = await startServer(config);
  const clients: TestClient[] = [];
  t.after(async () => {
    for (const c of clients) c.ws.terminate();
    await srv.close();
  });
  return {
    srv,
    async connect(hello) {
      const c = await TestClient.connect(srv.url);
      clients.push(c);
      if (hello) await ok(c, { type: 'hello', ...hello });
      return c;
    },
  };
}

/** A temporary data_dir, removed when the test ends (after the servers registered before it close). */
function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'hubbub-durable-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const STORAGES = ['memory', 'sqlite'] as const;
type Storage = (typeof STORAGES)[number];

/** Config for a storage engine: SQLite gets a fresh temporary data_dir. */
function withStorage(t: TestContext, storage: Storage, config: Partial<Config>): Partial<Config> {
  return storage === 'sqlite' ? { ...config, storage, data_dir: tempDir(t) } : { ...config, storage };
}

/** Every text frame a client receives from now on, in arrival order (nothing is consumed). */
function logOf(c: TestClient): Frame[] {
  const log: Frame[] = [];
  c.ws.on('message', (data: Buffer, binary: boolean) => {
    if (!binary) log.push(JSON.parse(data.toString()) as Frame);
  });
  return log;
}

/** A request that must be answered by a reply; gives its data. */
async function ok(c: TestClient, frame: Record<string, unknown>): Promise<any> {
  const r = await c.request(frame, T);
  assert.equal(r.type, 'reply', `${JSON.stringify(frame).slice(0, 200)} -> ${JSON.stringify(r)}`);
  return r.data;
}

/** A request that must be refused with `code`. */
async function refused(c: TestClient, frame: Record<string, unknown>, code: string): Promise<Frame> {
  const r = await c.request(frame, T);
  assert.equal(r.type, 'error', `${JSON.stringify(frame).slice(0, 200)} -> ${JSON.stringify(r)}`);
  assert.equal(r.code, code, `${JSON.stringify(frame).slice(0, 200)} -> ${JSON.stringify(r)}`);
  return r;
}

const isMsg = (channel?: string) => (f: Frame) => f.type === 'message' && (channel === undefined || f.channel === channel);
const isDirect = (f: Frame) => f.type === 'direct';

/** The next `n` frames that match (consumed). */
async function take(c: TestClient, n: number, match: (f: Frame) => boolean): Promise<Frame[]> {
  const out: Frame[] = [];
  for (let i = 0; i < n; i++) out.push(await c.next(match, T));
  return out;
}

/** Drop a connection without a close handshake (as a network failure would) and wait until it is gone. */
async function drop(c: TestClient): Promise<void> {
  c.ws.terminate();
  await c.closed;
}

const range = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** Publish n publications from a client, one after the other; gives their replies. */
async function publishN(c: TestClient, channel: string, from: number, to: number, extra: Record<string, unknown> = {}): Promise<any[]> {
  const out = [];
  for (const i of range(from, to)) out.push(await ok(c, { type: 'publish', channel, data: { n: i }, ...extra }));
  return out;
}

// ---- a raw protobuf client ------------------------------------------------------------------------

interface Got {
  pb: pb.Frame;
  frame: ServerFrame;
}

class ProtoClient {
  readonly got: Got[] = [];
  readonly problems: string[] = [];
  private waiters: (() => void)[] = [];
  private nextId = 1;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (!binary) this.problems.push(`text frame: ${data.toString()}`);
      else {
        try {
          this.got.push({ pb: fromBinary(pb.FrameSchema, data), frame: decodeServerFrame(data) });
        } catch (err) {
          this.problems.push(`undecodable: ${(err as Error).message}`);
        }
      }
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('error', () => {});
  }

  static async connect(url: string): Promise<ProtoClient> {
    const ws = new WebSocket(url, PROTOBUF_SUBPROTOCOL);
    const c = new ProtoClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    assert.equal(ws.protocol, PROTOBUF_SUBPROTOCOL);
    await c.next((g) => g.frame.type === 'welcome');
    return c;
  }

  async request(frame: ClientFrame): Promise<Got> {
    const id = this.nextId++;
    this.ws.send(encodeClientFrame({ ...frame, id } as ClientFrame));
    return this.next((g) => (g.frame.type === 'reply' || g.frame.type === 'error') && g.frame.id === id);
  }

  async next(match: (g: Got) => boolean): Promise<Got> {
    const deadline = Date.now() + T;
    for (;;) {
      if (this.problems.length > 0) throw new Error(this.problems[0]);
      const i = this.got.findIndex(match);
      if (i >= 0) return this.got.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; unconsumed: ${this.got.map((g) => g.frame.type).join(' ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.terminate();
  }
}

async function protoClient(t: TestContext, s: Scene): Promise<ProtoClient> {
  const c = await ProtoClient.connect(s.srv.url);
  t.after(() => c.close());
  return c;
}

// ---- 1. recovery after a dropped connection ------------------------------------------------------

describe('recovery after a dropped connection', () => {
  for (const storage of STORAGES) {
    it(`delivers the missed publications exactly once, in order, after the reply and before newer ones (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: HIST }));
      const pub = await s.connect();
      const a = await s.connect();
      const first = await ok(a, { type: 'subscribe', channel: 'chat/room' });
      assert.equal(first.offset, 0, 'a new stream starts at offset 0');
      assert.equal(typeof first.epoch, 'string');
      assert.ok(first.epoch.length > 0);
      assert.equal(first.recovered, undefined, 'no since: no recovered field');
      const epoch: string = first.epoch;

      const acks = await publishN(pub, 'chat/room', 1, 3);
      assert.deepEqual(acks, [1, 2, 3].map((offset) => ({ offset, epoch })));
      const seen = await take(a, 3, isMsg('chat/room'));
      assert.deepEqual(seen.map((f) => [f.offset, f.epoch, f.data]), [1, 2, 3].map((n) => [n, epoch, { n }]));

      await drop(a);
      await publishN(pub, 'chat/room', 4, 8);

      const b = await s.connect();
      const log = logOf(b);
      const r = await ok(b, { type: 'subscribe', channel: 'chat/room', since: { offset: 3, epoch } });
      assert.deepEqual(r, { recovered: true, offset: 8, epoch });
      const missed = await take(b, 5, isMsg('chat/room'));
      assert.deepEqual(missed.map((f) => [f.offset, f.epoch, f.data, f.pattern]), [4, 5, 6, 7, 8].map((n) => [n, epoch, { n }, 'chat/room']));
      assert.ok(missed.every((f) => f.retained === undefined));

      await ok(pub, { type: 'publish', channel: 'chat/room', data: { n: 9 } });
      const live = await b.next(isMsg('chat/room'), T);
      assert.equal(live.offset, 9);
      assert.deepEqual(await b.nothing(isMsg(), 200), [], 'no duplicate');
      // On the wire: the reply, then the missed publications, then the newer one.
      assert.deepEqual(
        log.map((f) => (f.type === 'message' ? f.offset : f.type)),
        ['reply', 4, 5, 6, 7, 8, 9],
      );
    });
  }

  it('recovers with nothing missed: recovered true and no message', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const c = await s.connect();
    const [{ epoch }] = await publishN(c, 'chat/x', 1, 2);
    const b = await s.connect();
    assert.deepEqual(await ok(b, { type: 'subscribe', channel: 'chat/x', since: { offset: 2, epoch } }), { recovered: true, offset: 2, epoch });
    assert.deepEqual(await b.nothing(isMsg(), 200), []);
  });

  for (const storage of STORAGES) {
    it(`race (${storage}): a client recovers while another keeps publishing; every offset exactly once, in order`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: { chat: { history_size: 2000 } } }));
      const channel = 'chat/race';
      const pub = await s.connect();
      const a = await s.connect();
      const alog = logOf(a);
      const { epoch } = await ok(a, { type: 'subscribe', channel });
      // The recovering connection is opened beforehand, so that its subscribe lands in the middle of the stream.
      const b = await s.connect();
      const blog = logOf(b);

      let recovering: Promise<Frame> | undefined;
      let recoveredReply: Frame | undefined;
      let since = -1;
      let batchesAfterReply = 0;
      let n = 0;
      // Batches of 10 pipelined publications; a drops after about 200 and b subscribes with a's
      // position while the batches keep coming; the loop goes on past 500 until b's reply is in and
      // a few more batches followed it.
      while (n < 500 || batchesAfterReply < 3) {
        const batch: Promise<Frame>[] = [];
        for (let j = 0; j < 10; j++) batch.push(pub.request({ type: 'publish', channel, data: ++n }, 30_000));
        if (n > 200 && recovering === undefined) {
          a.ws.terminate();
          const got = alog.filter(isMsg(channel));
          since = got.length === 0 ? 0 : (got[got.length - 1]!.offset as number);
          recovering = b.request({ type: 'subscribe', channel, since: { offset: since, epoch } }, 30_000);
          void recovering.then((f) => (recoveredReply = f));
        }
        for (const r of await Promise.all(batch)) {
          assert.equal(r.type, 'reply', JSON.stringify(r));
          assert.equal((r.data as { epoch: string }).epoch, epoch);
        }
        if (recoveredReply) batchesAfterReply++;
      }
      const reply = await recovering!;
      assert.equal(reply.type, 'reply', JSON.stringify(reply));
      const rd = reply.data as { recovered: boolean; offset: number; epoch: string };
      assert.equal(rd.recovered, true);
      assert.equal(rd.epoch, epoch);
      assert.ok(rd.offset >= since && rd.offset < n, `reply offset ${rd.offset} lies between ${since} and ${n}`);

      await b.next((f) => isMsg(channel)(f) && f.offset === n, 30_000);
      await new Promise((r) => setTimeout(r, 300)); // time for a duplicate or a straggler to show up in the log
      // a saw 1..since, each once, in order (frames read before the drop).
      const aOffsets = alog.filter(isMsg(channel)).map((f) => f.offset);
      assert.deepEqual(aOffsets.slice(0, aOffsets.indexOf(since) + 1), range(1, since));
      // b: the reply first, then every offset after since exactly once, in order, with its own data.
      const replyAt = blog.findIndex((f) => f.type === 'reply');
      const bMsgs = blog.filter(isMsg(channel));
      assert.ok(blog.slice(0, replyAt).every((f) => f.type !== 'message'), 'no message before the subscribe reply');
      const bOffsets = bMsgs.map((f) => f.offset as number);
      const expected = range(since + 1, n);
      if (JSON.stringify(bOffsets) !== JSON.stringify(expected)) {
        const dupes = bOffsets.filter((o, i) => bOffsets.indexOf(o) !== i);
        const missing = expected.filter((o) => !bOffsets.includes(o));
        assert.fail(`b got ${bOffsets.length} messages for ${expected.length} offsets; duplicates ${JSON.stringify(dupes.slice(0, 20))}, missing ${JSON.stringify(missing.slice(0, 20))}, reply offset ${rd.offset}, since ${since}`);
      }
      assert.ok(bMsgs.every((f) => f.data === f.offset && f.epoch === epoch), 'each offset carries its own publication');
    });
  }
});

// ---- 2. recovery refused -------------------------------------------------------------------------

describe('recovery refused', () => {
  for (const storage of STORAGES) {
    it(`when the gap is older than the history: recovered false, the current position, nothing replayed (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: { chat: { history_size: 5 } } }));
      const pub = await s.connect();
      const [{ epoch }] = await publishN(pub, 'chat/small', 1, 2);
      // Away while 20 more are published: 18..22 are kept.
      await publishN(pub, 'chat/small', 3, 22);
      const b = await s.connect();
      assert.deepEqual(await ok(b, { type: 'subscribe', channel: 'chat/small', since: { offset: 2, epoch } }), { recovered: false, offset: 22, epoch });
      assert.deepEqual(await b.nothing(isMsg(), 200), [], 'nothing from history after a refused recovery');
      // Live publications still flow.
      await ok(pub, { type: 'publish', channel: 'chat/small', data: { n: 23 } });
      assert.equal((await b.next(isMsg('chat/small'), T)).offset, 23);

      // 19..23 are kept now: 18 is the oldest position that recovers, 17 is one too old.
      const c = await s.connect();
      assert.deepEqual(await ok(c, { type: 'subscribe', channel: 'chat/small', since: { offset: 18, epoch } }), { recovered: true, offset: 23, epoch });
      assert.deepEqual((await take(c, 5, isMsg('chat/small'))).map((f) => f.offset), [19, 20, 21, 22, 23]);
      const d = await s.connect();
      assert.deepEqual(await ok(d, { type: 'subscribe', channel: 'chat/small', since: { offset: 17, epoch } }), { recovered: false, offset: 23, epoch });
      assert.deepEqual(await d.nothing(isMsg(), 150), []);
    });
  }

  for (const storage of STORAGES) {
    it(`with a future offset or a wrong epoch (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: HIST }));
      const pub = await s.connect();
      const [{ epoch }] = await publishN(pub, 'chat/f', 1, 3);
      const b = await s.connect();
      assert.deepEqual(await ok(b, { type: 'subscribe', channel: 'chat/f', since: { offset: 4, epoch } }), { recovered: false, offset: 3, epoch });
      const c = await s.connect();
      assert.deepEqual(await ok(c, { type: 'subscribe', channel: 'chat/f', since: { offset: 1, epoch: `${epoch}x` } }), { recovered: false, offset: 3, epoch });
      const d = await s.connect();
      assert.deepEqual(await ok(d, { type: 'subscribe', channel: 'chat/f', since: { offset: 0, epoch: 'nope' } }), { recovered: false, offset: 3, epoch });
      for (const x of [b, c, d]) assert.deepEqual(await x.nothing(isMsg(), 100), []);
      // since offset 0 in the right epoch recovers everything.
      const e = await s.connect();
      assert.deepEqual(await ok(e, { type: 'subscribe', channel: 'chat/f', since: { offset: 0, epoch } }), { recovered: true, offset: 3, epoch });
      assert.deepEqual((await take(e, 3, isMsg('chat/f'))).map((f) => f.offset), [1, 2, 3]);
    });
  }

  it('on a channel without history: recovered false, no position', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const c = await s.connect();
    assert.deepEqual(await ok(c, { type: 'subscribe', channel: 'news/x', since: { offset: 1, epoch: 'e' } }), { recovered: false });
    assert.deepEqual(await ok(c, { type: 'subscribe', channel: 'news/y' }), {});
    const d = await s.connect();
    assert.deepEqual(await ok(d, { type: 'subscribe', channel: 'news/#', since: { 'news/x': { offset: 1, epoch: 'e' } } }), { recovered: false, positions: {} });
  });
});

// ---- 3. epochs across restarts -------------------------------------------------------------------

describe('epochs across restarts', () => {
  it('memory storage: a restarted server is in a new epoch; the old position does not recover', async (t) => {
    const s1 = await startServer({ namespaces: HIST });
    let s2: TestServer | undefined;
    t.after(async () => {
      await s1.close();
      await s2?.close();
    });
    const c1 = await TestClient.connect(s1.url);
    const acks = await publishN(c1, 'chat/e', 1, 3);
    const old = acks[2].epoch as string;
    await s1.close();
    await c1.closed;

    s2 = await startServer({ namespaces: HIST, port: s1.port });
    assert.equal(s2.port, s1.port);
    const c2 = await TestClient.connect(s2.url);
    t.after(() => c2.ws.terminate());
    const r = await ok(c2, { type: 'subscribe', channel: 'chat/e', since: { offset: 3, epoch: old } });
    assert.equal(r.recovered, false);
    assert.equal(r.offset, 0);
    assert.equal(typeof r.epoch, 'string');
    assert.notEqual(r.epoch, old, 'a new epoch');
    assert.deepEqual(await c2.nothing(isMsg(), 150), []);
    const p = await ok(c2, { type: 'publish', channel: 'chat/e', data: 'after' });
    assert.deepEqual(p, { offset: 1, epoch: r.epoch });
  });

  it('sqlite storage: a restarted server keeps the epoch, and positions from before the restart recover', async (t) => {
    const dir = tempDir(t);
    const config: Partial<Config> = { namespaces: HIST, storage: 'sqlite', data_dir: dir };
    const s1 = await startServer(config);
    let s2: TestServer | undefined;
    t.after(async () => {
      await s1.close();
      await s2?.close();
    });
    const c1 = await TestClient.connect(s1.url);
    const acks = await publishN(c1, 'chat/p', 1, 5);
    const epoch = acks[0].epoch as string;
    await ok(c1, { type: 'publish', channel: 'state/kept', data: { on: 1 }, retain: true });
    assert.deepEqual(acks, range(1, 5).map((offset) => ({ offset, epoch })));
    await s1.close();
    await c1.closed;

    s2 = await startServer({ ...config, port: s1.port });
    const c2 = await TestClient.connect(s2.url);
    t.after(() => c2.ws.terminate());
    assert.deepEqual(await ok(c2, { type: 'subscribe', channel: 'chat/p', since: { offset: 2, epoch } }), { recovered: true, offset: 5, epoch });
    const missed = await take(c2, 3, isMsg('chat/p'));
    assert.deepEqual(missed.map((f) => [f.offset, f.epoch, f.data]), [3, 4, 5].map((n) => [n, epoch, { n }]));
    // The stream goes on in the same epoch.
    assert.deepEqual(await ok(c2, { type: 'publish', channel: 'chat/p', data: { n: 6 } }), { offset: 6, epoch });
    assert.equal((await c2.next(isMsg('chat/p'), T)).offset, 6);
    // History and the retained message are there too.
    assert.deepEqual((await ok(c2, { type: 'history', channel: 'chat/p' })).publications.map((p: any) => p.offset), range(1, 6));
    await ok(c2, { type: 'subscribe', channel: 'state/#' });
    const kept = await c2.next(isMsg('state/kept'), T);
    assert.deepEqual([kept.retained, kept.data], [true, { on: 1 }]);
    assert.equal((await api(s2.http, 'GET', '/api/channels/state%2Fkept/retained')).status, 200);
  });
});

// ---- 4. wildcard recovery ------------------------------------------------------------------------

describe('wildcard recovery', () => {
  it('recovers each channel of a pattern from its own position, in order, with positions in the reply', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    const a = await s.connect();
    assert.deepEqual(await ok(a, { type: 'subscribe', channel: 'chat/#' }), {});
    const [pa] = await publishN(pub, 'chat/a', 1, 1);
    const [pb1] = await publishN(pub, 'chat/b', 1, 1);
    const first = await take(a, 2, isMsg());
    assert.deepEqual(first.map((f) => [f.channel, f.offset, f.pattern]), [['chat/a', 1, 'chat/#'], ['chat/b', 1, 'chat/#']]);
    const ea = first[0]!.epoch as string;
    const eb = first[1]!.epoch as string;
    assert.equal(ea, pa.epoch);
    assert.equal(eb, pb1.epoch);
    await drop(a);

    await publishN(pub, 'chat/a', 2, 4);
    await publishN(pub, 'chat/b', 2, 3);
    await publishN(pub, 'news/z', 1, 1); // matches nothing of chat/#

    const b = await s.connect();
    const log = logOf(b);
    const r = await ok(b, { type: 'subscribe', channel: 'chat/#', since: { 'chat/a': { offset: 1, epoch: ea }, 'chat/b': { offset: 1, epoch: eb } } });
    assert.deepEqual(r, { recovered: true, positions: { 'chat/a': { offset: 4, epoch: ea }, 'chat/b': { offset: 3, epoch: eb } } });
    const missed = await take(b, 5, isMsg());
    const of = (ch: string) => missed.filter((f) => f.channel === ch).map((f) => [f.offset, f.data, f.pattern, f.epoch]);
    assert.deepEqual(of('chat/a'), [2, 3, 4].map((n) => [n, { n }, 'chat/#', ea]));
    assert.deepEqual(of('chat/b'), [2, 3].map((n) => [n, { n }, 'chat/#', eb]));
    await ok(pub, { type: 'publish', channel: 'chat/b', data: { n: 4 } });
    assert.equal((await b.next(isMsg('chat/b'), T)).offset, 4);
    assert.deepEqual(await b.nothing(isMsg(), 150), [], 'no duplicate');
    assert.equal(log[0]!.type, 'reply', 'the reply comes first');
    assert.deepEqual(log.slice(1).map((f) => `${f.channel as string}:${f.offset as number}`).pop(), 'chat/b:4', 'the newer publication comes last');
  });

  for (const storage of STORAGES) {
    it(`one channel's gap is too old: recovered false, the other channel's missed publications still come (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: { chat: { history_size: 5 } } }));
      const pub = await s.connect();
      const [{ epoch: ea }] = await publishN(pub, 'chat/a', 1, 1);
      const [{ epoch: eb }] = await publishN(pub, 'chat/b', 1, 1);
      await publishN(pub, 'chat/a', 2, 12); // chat/a keeps 8..12: a gap after 1 is gone
      await publishN(pub, 'chat/b', 2, 3);
      const b = await s.connect();
      const r = await ok(b, { type: 'subscribe', channel: 'chat/#', since: { 'chat/a': { offset: 1, epoch: ea }, 'chat/b': { offset: 1, epoch: eb } } });
      assert.deepEqual(r, { recovered: false, positions: { 'chat/a': { offset: 12, epoch: ea }, 'chat/b': { offset: 3, epoch: eb } } });
      const got = await take(b, 2, isMsg());
      assert.deepEqual(got.map((f) => [f.channel, f.offset]), [['chat/b', 2], ['chat/b', 3]]);
      assert.deepEqual(await b.nothing(isMsg(), 150), [], 'nothing of chat/a is replayed');
    });
  }

  it('a channel in the map that the pattern does not match: recovered false, the others still recover', async (t) => {
    const s = await scene(t, { namespaces: { chat: { history_size: 10 }, news: { history_size: 10 } } });
    const pub = await s.connect();
    const [{ epoch: ea }] = await publishN(pub, 'chat/a', 1, 2);
    const [{ epoch: en }] = await publishN(pub, 'news/x', 1, 2);
    const b = await s.connect();
    const r = await ok(b, { type: 'subscribe', channel: 'chat/#', since: { 'chat/a': { offset: 1, epoch: ea }, 'news/x': { offset: 1, epoch: en } } });
    assert.equal(r.recovered, false);
    assert.deepEqual(r.positions, { 'chat/a': { offset: 2, epoch: ea } }, 'no position for a channel outside the pattern');
    assert.deepEqual((await take(b, 1, isMsg())).map((f) => [f.channel, f.offset]), [['chat/a', 2]]);
    assert.deepEqual(await b.nothing(isMsg(), 150), [], 'nothing of news/x');
  });

  it('protobuf: since and since_channels recover, with recovered and positions in the reply', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    const [{ epoch: ea }] = await publishN(pub, 'chat/a', 1, 3);
    const [{ epoch: eb }] = await publishN(pub, 'chat/b', 1, 2);
    const p = await protoClient(t, s);
    const one = await p.request({ type: 'subscribe', channel: 'chat/a', since: { offset: 1, epoch: ea } });
    const sr = (one.pb.frame.value as pb.Reply).data;
    assert.equal(sr.case, 'subscribe');
    assert.deepEqual([(sr.value as pb.SubscribeReply).recovered, (sr.value as pb.SubscribeReply).offset, (sr.value as pb.SubscribeReply).epoch], [true, 3n, ea]);
    for (const n of [2, 3]) {
      const m = (await p.next((g) => g.frame.type === 'message')).pb.frame.value as pb.Message;
      assert.deepEqual([m.channel, m.offset, m.epoch, m.retained], ['chat/a', BigInt(n), ea, false]);
    }
    const q = await protoClient(t, s);
    const many = await q.request({ type: 'subscribe', channel: 'chat/+', since: { 'chat/a': { offset: 2, epoch: ea }, 'chat/b': { offset: 0, epoch: eb } } });
    assert.deepEqual((many.frame as { data: unknown }).data, { recovered: true, positions: { 'chat/a': { offset: 3, epoch: ea }, 'chat/b': { offset: 2, epoch: eb } } });
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await q.next((g) => g.frame.type === 'message')).frame as { channel: string; offset: number; pattern: string });
    assert.deepEqual(got.map((m) => `${m.channel}:${m.offset}:${m.pattern}`).sort(), ['chat/a:3:chat/+', 'chat/b:1:chat/+', 'chat/b:2:chat/+']);
    const refusedRecovery = await q.request({ type: 'subscribe', channel: 'chat/c', since: { offset: 5, epoch: 'zz' } });
    assert.deepEqual((refusedRecovery.frame as { data: unknown }).data, { recovered: false, offset: 0, epoch: (refusedRecovery.frame as { data: { epoch: string } }).data.epoch });
  });

  it('since of the wrong shape is a bad_request, and subscribes nothing', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const c = await s.connect();
    await refused(c, { type: 'subscribe', channel: 'chat/#', since: { offset: 1, epoch: 'e' } }, 'bad_request');
    await refused(c, { type: 'subscribe', channel: 'chat/a', since: { 'chat/a': { offset: 1, epoch: 'e' } } }, 'bad_request');
    await refused(c, { type: 'subscribe', channel: 'chat/a', since: { offset: -1, epoch: 'e' } }, 'bad_request');
    await refused(c, { type: 'subscribe', channel: 'chat/a', since: [1, 'e'] }, 'bad_request');
    const pub = await s.connect();
    await ok(pub, { type: 'publish', channel: 'chat/a', data: 1 });
    assert.deepEqual(await c.nothing(isMsg(), 150), [], 'refused subscriptions deliver nothing');
    await refused(c, { type: 'unsubscribe', channel: 'chat/a' }, 'not_found');
    await refused(c, { type: 'unsubscribe', channel: 'chat/#' }, 'not_found');
  });
});

// ---- 5. history ----------------------------------------------------------------------------------

describe('history', () => {
  for (const storage of STORAGES) {
    it(`limit, reverse and since; the current top (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: HIST }));
      const c = await s.connect();
      const [{ epoch }] = await publishN(c, 'chat/h', 1, 10);
      const h = (extra: Record<string, unknown>) => ok(c, { type: 'history', channel: 'chat/h', ...extra });
      const all = await h({});
      assert.equal(all.offset, 10);
      assert.equal(all.epoch, epoch);
      assert.deepEqual(all.publications.map((p: any) => [p.offset, p.data, p.kind]), range(1, 10).map((n) => [n, { n }, 'text']));
      assert.equal(all.publications[0].from.client, c.welcome.client);
      assert.equal(typeof all.publications[0].ts, 'number');
      assert.deepEqual((await h({ limit: 3 })).publications.map((p: any) => p.offset), [1, 2, 3]);
      assert.deepEqual((await h({ limit: 3, reverse: true })).publications.map((p: any) => p.offset), [10, 9, 8]);
      assert.deepEqual((await h({ since: { offset: 7, epoch } })).publications.map((p: any) => p.offset), [8, 9, 10]);
      assert.deepEqual((await h({ since: { offset: 4, epoch }, limit: 2 })).publications.map((p: any) => p.offset), [5, 6]);
      assert.deepEqual((await h({ since: { offset: 10, epoch } })).publications, []);
      const empty = await ok(c, { type: 'history', channel: 'chat/none' });
      assert.deepEqual(empty.publications, []);
      assert.equal(empty.offset, 0);
    });
  }

  for (const storage of STORAGES) {
    it(`keeps only history_size publications (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: { chat: { history_size: 4 } } }));
      const c = await s.connect();
      await publishN(c, 'chat/h', 1, 9);
      const r = await ok(c, { type: 'history', channel: 'chat/h' });
      assert.deepEqual(r.publications.map((p: any) => p.offset), [6, 7, 8, 9]);
      assert.equal(r.offset, 9);
      assert.deepEqual((await ok(c, { type: 'history', channel: 'chat/h', reverse: true, limit: 10 })).publications.map((p: any) => p.offset), [9, 8, 7, 6]);
    });
  }

  for (const storage of STORAGES) {
    it(`history_ttl: publications older than it are gone from history and from recovery (${storage})`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { namespaces: { chat: { history_size: 10, history_ttl: '2s' } } }));
      const c = await s.connect();
      const b = await s.connect();
      const d = await s.connect();
      const [{ epoch }] = await publishN(c, 'chat/t', 1, 2);
      assert.equal((await ok(c, { type: 'history', channel: 'chat/t' })).publications.length, 2);
      await new Promise((r) => setTimeout(r, 2300));
      await publishN(c, 'chat/t', 3, 3);
      // Checked right away: publication 3 is well within its 2 s.
      assert.deepEqual(await ok(d, { type: 'subscribe', channel: 'chat/t', since: { offset: 2, epoch } }), { recovered: true, offset: 3, epoch });
      assert.deepEqual(await ok(b, { type: 'subscribe', channel: 'chat/t', since: { offset: 1, epoch } }), { recovered: false, offset: 3, epoch });
      const h = await ok(c, { type: 'history', channel: 'chat/t' });
      assert.deepEqual([h.publications.map((p: any) => p.offset), h.offset, h.epoch], [[3], 3, epoch]);
      assert.deepEqual((await take(d, 1, isMsg())).map((f) => f.offset), [3]);
      assert.deepEqual(await b.nothing(isMsg(), 100), []);
    });
  }

  it('bytes payloads come back as base64 with encoding', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const c = await s.connect();
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    await ok(c, { type: 'publish', channel: 'chat/bin', data: bytes.toString('base64'), encoding: 'base64' });
    await ok(c, { type: 'publish', channel: 'chat/bin', data: 'plain' });
    const r = await ok(c, { type: 'history', channel: 'chat/bin' });
    assert.deepEqual(r.publications.map((p: any) => [p.data, p.encoding]), [[bytes.toString('base64'), 'base64'], ['plain', undefined]]);
  });

  it('not_found on a channel without history; forbidden where the history rule is none', async (t) => {
    const s = await scene(t, { namespaces: { ...HIST, secret: { history_size: 10, history: 'none' } } });
    const c = await s.connect();
    await refused(c, { type: 'history', channel: 'news/x' }, 'not_found');
    await ok(c, { type: 'publish', channel: 'secret/x', data: 1 });
    await refused(c, { type: 'history', channel: 'secret/x' }, 'forbidden');
    await refused(c, { type: 'history', channel: 'chat/#' }, 'invalid_channel');
    await refused(c, { type: 'history', channel: 'chat/x', limit: -1 }, 'bad_request');
  });

  it('over HTTP: GET /api/channels/<ch>/history with limit, reverse and since', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const c = await s.connect();
    const [{ epoch }] = await publishN(c, 'chat/h', 1, 6);
    const base = '/api/channels/chat%2Fh/history';
    const all = await api(s.srv.http, 'GET', base);
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.equal(all.body.offset, 6);
    assert.equal(all.body.epoch, epoch);
    assert.deepEqual(all.body.publications.map((p: any) => [p.offset, p.data]), range(1, 6).map((n) => [n, { n }]));
    assert.deepEqual((await api(s.srv.http, 'GET', `${base}?limit=2&reverse=true`)).body.publications.map((p: any) => p.offset), [6, 5]);
    assert.deepEqual((await api(s.srv.http, 'GET', `${base}?since_offset=4&since_epoch=${epoch}`)).body.publications.map((p: any) => p.offset), [5, 6]);
    assert.equal((await api(s.srv.http, 'GET', `${base}?since_offset=4`)).status, 400);
    assert.equal((await api(s.srv.http, 'GET', '/api/channels/news%2Fx/history')).status, 404);
  });

  it('protobuf: the history reply', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const c = await s.connect();
    const [{ epoch }] = await publishN(c, 'chat/pb', 1, 3);
    await ok(c, { type: 'publish', channel: 'chat/pb', data: Buffer.from([9, 8, 7]).toString('base64'), encoding: 'base64' });
    const p = await protoClient(t, s);
    const g = await p.request({ type: 'history', channel: 'chat/pb', since: { offset: 1, epoch } });
    assert.equal(g.pb.frame.case, 'reply');
    const reply = g.pb.frame.value as pb.Reply;
    assert.equal(reply.data.case, 'history');
    const hr = reply.data.value as pb.HistoryReply;
    assert.equal(hr.offset, 4n);
    assert.equal(hr.epoch, epoch);
    assert.deepEqual(hr.publications.map((x) => Number(x.offset)), [2, 3, 4]);
    assert.deepEqual(hr.publications.map((x) => x.json), [true, true, false]);
    assert.deepEqual([...hr.publications[2]!.data], [9, 8, 7]);
    assert.equal(hr.publications[0]!.kind, 'text');
    // Through the codec: the same frame as JSON would give.
    const f = g.frame as { type: 'reply'; data: any };
    assert.deepEqual(f.data.publications.map((x: any) => (x.data instanceof Uint8Array ? [...x.data] : x.data)), [{ n: 2 }, { n: 3 }, [9, 8, 7]]);
    // Refusals in protobuf too.
    const e = await p.request({ type: 'history', channel: 'news/none' });
    assert.equal(e.frame.type, 'error');
    assert.equal((e.frame as { code: string }).code, 'not_found');
  });
});

// ---- 6. retained messages ------------------------------------------------------------------------

describe('retained messages', () => {
  it('a new subscriber (exact, + and #) first gets the last retained message; data null clears it', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    assert.deepEqual(await ok(pub, { type: 'publish', channel: 'state/x', data: { v: 1 }, retain: true }), {});
    await ok(pub, { type: 'publish', channel: 'state/x', data: { v: 2 }, retain: true });
    await ok(pub, { type: 'publish', channel: 'state/x', data: { v: 3 } }); // not retained

    for (const pattern of ['state/x', 'state/+', 'state/#', '#']) {
      const c = await s.connect();
      const log = logOf(c);
      assert.deepEqual(await ok(c, { type: 'subscribe', channel: pattern }), {});
      const m = await c.next(isMsg('state/x'), T);
      assert.equal(m.retained, true, pattern);
      assert.deepEqual(m.data, { v: 2 }, `${pattern}: the last retained one wins`);
      assert.equal(m.pattern, pattern);
      assert.equal(m.offset, undefined, 'no history: no offset');
      assert.equal(m.epoch, undefined);
      assert.deepEqual(m.from, { client: pub.welcome.client });
      await ok(pub, { type: 'publish', channel: 'state/x', data: { v: 'live' } });
      const live = await c.next(isMsg('state/x'), T);
      assert.deepEqual(live.data, { v: 'live' });
      assert.equal(live.retained, undefined);
      assert.deepEqual(log.map((f) => (f.type === 'message' ? (f.retained ? 'retained' : 'live') : f.type)), ['reply', 'retained', 'live']);
    }

    // Clear it: later subscribers get nothing.
    await ok(pub, { type: 'publish', channel: 'state/x', data: null, retain: true });
    for (const pattern of ['state/x', 'state/#']) {
      const c = await s.connect();
      await ok(c, { type: 'subscribe', channel: pattern });
      assert.deepEqual(await c.nothing(isMsg(), 200), [], `${pattern}: cleared`);
    }
  });

  it('a wildcard subscriber gets the retained message of every matching channel, and only those', async (t) => {
    const s = await scene(t, {});
    const pub = await s.connect();
    for (const ch of ['dev/a/temp', 'dev/b/temp', 'dev/a/hum', 'other/a/temp']) await ok(pub, { type: 'publish', channel: ch, data: ch, retain: true });
    const c = await s.connect();
    await ok(c, { type: 'subscribe', channel: 'dev/+/temp' });
    const got = await take(c, 2, isMsg());
    assert.deepEqual(got.map((f) => f.channel).sort(), ['dev/a/temp', 'dev/b/temp']);
    assert.ok(got.every((f) => f.retained === true && f.pattern === 'dev/+/temp' && f.data === f.channel));
    assert.deepEqual(await c.nothing(isMsg(), 150), []);
  });

  it('retained messages are sent before a live publication racing with the subscribe', async (t) => {
    const s = await scene(t, {});
    const pub = await s.connect();
    await ok(pub, { type: 'publish', channel: 'race/r', data: 'retained', retain: true });
    for (let i = 0; i < 10; i++) {
      const c = await s.connect();
      const log = logOf(c);
      const sub = c.request({ type: 'subscribe', channel: 'race/#' }, T);
      for (let j = 0; j < 5; j++) pub.send({ type: 'publish', channel: 'race/r', data: `live${j}` });
      assert.equal((await sub).type, 'reply');
      await c.next((f) => isMsg('race/r')(f) && f.retained === true, T);
      await pub.request({ type: 'publish', channel: 'race/r', data: 'end' }, T);
      await c.next((f) => isMsg('race/r')(f) && f.data === 'end', T);
      const kinds = log.filter((f) => f.type === 'reply' || f.type === 'message').map((f) => (f.type === 'reply' ? 'reply' : f.retained ? 'retained' : 'live'));
      assert.deepEqual(kinds.slice(0, 2), ['reply', 'retained'], `round ${i}: ${JSON.stringify(kinds)}`);
      assert.ok(kinds.slice(2).every((k) => k === 'live'), `round ${i}: ${JSON.stringify(kinds)}`);
      c.ws.terminate();
    }
  });

  it('over HTTP: GET (200, 404), DELETE (cleared true/false), and publish with retain', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const get = (ch: string) => api(s.srv.http, 'GET', `/api/channels/${encodeURIComponent(ch)}/retained`);
    const del = (ch: string) => api(s.srv.http, 'DELETE', `/api/channels/${encodeURIComponent(ch)}/retained`);
    let r = await get('state/h');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');

    const p = await api(s.srv.http, 'POST', '/api/publish', { channel: 'state/h', data: { on: true }, kind: 'system', retain: true });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    r = await get('state/h');
    assert.equal(r.status, 200);
    assert.equal(r.body.channel, 'state/h');
    assert.deepEqual(r.body.retained.data, { on: true });
    assert.equal(r.body.retained.kind, 'system');
    assert.deepEqual(r.body.retained.from, { server: true });
    assert.equal(typeof r.body.retained.ts, 'number');
    assert.equal(r.body.retained.offset, undefined);
    // Bytes over HTTP.
    await api(s.srv.http, 'POST', '/api/publish', { channel: 'state/bin', data: Buffer.from([1, 2, 3]).toString('base64'), encoding: 'base64', retain: true });
    r = await get('state/bin');
    assert.deepEqual([r.body.retained.data, r.body.retained.encoding], [Buffer.from([1, 2, 3]).toString('base64'), 'base64']);
    // The raw slash form of the path works too.
    assert.equal((await api(s.srv.http, 'GET', '/api/channels/state/h/retained')).status, 200);
    // A channel with history: the retained message carries its offset and epoch.
    const hp = await api(s.srv.http, 'POST', '/api/publish', { channel: 'chat/h', data: 'x', retain: true });
    assert.equal(hp.body.offset, 1);
    r = await get('chat/h');
    assert.deepEqual([r.body.retained.offset, r.body.retained.epoch], [1, hp.body.epoch]);

    const d = await del('state/h');
    assert.equal(d.status, 200);
    assert.deepEqual(d.body, { channel: 'state/h', cleared: true });
    assert.deepEqual((await del('state/h')).body, { channel: 'state/h', cleared: false });
    assert.equal((await get('state/h')).status, 404);
    const c = await s.connect();
    await ok(c, { type: 'subscribe', channel: 'state/h' });
    assert.deepEqual(await c.nothing(isMsg(), 150), [], 'cleared through the API');
    assert.equal((await api(s.srv.http, 'POST', '/api/channels/state%2Fh/retained')).status, 405);
    assert.equal((await api(s.srv.http, 'POST', '/api/publish', { channel: 'state/h', data: 1, retain: 'yes' })).status, 400);
  });

  it('on a channel with history it carries offset and epoch; a recovered subscription does not get it again', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    const r1 = await ok(pub, { type: 'publish', channel: 'chat/r', data: 'state', retain: true });
    assert.deepEqual(r1, { offset: 1, epoch: r1.epoch });
    const epoch = r1.epoch as string;
    await ok(pub, { type: 'publish', channel: 'chat/r', data: 'after' });

    const fresh = await s.connect();
    assert.deepEqual(await ok(fresh, { type: 'subscribe', channel: 'chat/r' }), { offset: 2, epoch });
    const m = await fresh.next(isMsg('chat/r'), T);
    assert.deepEqual([m.retained, m.offset, m.epoch, m.data], [true, 1, epoch, 'state']);
    assert.deepEqual(await fresh.nothing(isMsg(), 100), []);

    // Recovered (from before or after the retained one): missed publications only, no retained copy.
    const r0 = await s.connect();
    assert.deepEqual(await ok(r0, { type: 'subscribe', channel: 'chat/r', since: { offset: 0, epoch } }), { recovered: true, offset: 2, epoch });
    const got = await take(r0, 2, isMsg('chat/r'));
    assert.deepEqual(got.map((f) => [f.offset, f.retained]), [[1, undefined], [2, undefined]]);
    assert.deepEqual(await r0.nothing(isMsg(), 150), [], 'no retained repeat');
    const r2 = await s.connect();
    await ok(r2, { type: 'subscribe', channel: 'chat/r', since: { offset: 2, epoch } });
    assert.deepEqual(await r2.nothing(isMsg(), 150), []);
    const rw = await s.connect();
    await ok(rw, { type: 'subscribe', channel: 'chat/#', since: { 'chat/r': { offset: 1, epoch } } });
    assert.deepEqual((await take(rw, 1, isMsg())).map((f) => [f.offset, f.retained]), [[2, undefined]]);
    assert.deepEqual(await rw.nothing(isMsg(), 150), []);

    // Not recovered: the retained message is the state to start from.
    const nr = await s.connect();
    assert.equal((await ok(nr, { type: 'subscribe', channel: 'chat/r', since: { offset: 1, epoch: 'other' } })).recovered, false);
    const again = await nr.next(isMsg('chat/r'), T);
    assert.deepEqual([again.retained, again.offset, again.data], [true, 1, 'state']);
  });

  it('protobuf: the retained flag', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    await ok(pub, { type: 'publish', channel: 'state/pb', data: { x: 1 }, retain: true });
    await ok(pub, { type: 'publish', channel: 'chat/pb', data: 'h', retain: true });
    const p = await protoClient(t, s);
    for (const [channel, offset] of [['state/pb', undefined], ['chat/pb', 1n]] as const) {
      const r = await p.request({ type: 'subscribe', channel });
      assert.equal(r.frame.type, 'reply');
      const g = await p.next((x) => x.frame.type === 'message');
      assert.equal(g.pb.frame.case, 'message');
      const m = g.pb.frame.value as pb.Message;
      assert.equal(m.retained, true);
      assert.equal(m.channel, channel);
      assert.equal(m.offset, offset);
      assert.equal((g.frame as { retained?: boolean }).retained, true);
    }
    // A live publication is not marked.
    await ok(pub, { type: 'publish', channel: 'state/pb', data: 2 });
    const live = await p.next((x) => x.frame.type === 'message');
    assert.equal((live.pb.frame.value as pb.Message).retained, false);
  });
});

// ---- 7. stored direct messages -------------------------------------------------------------------

describe('stored direct messages', () => {
  it('an offline user gets them on connect, oldest first, as stored; again until acknowledged', async (t) => {
    const s = await scene(t, {});
    const sender = await s.connect({ user: 'alice' });
    const ids: string[] = [];
    for (const n of [1, 2, 3]) {
      const r = await ok(sender, { type: 'send', to: { user: 'bob' }, data: { n }, kind: 'notification', persist: true });
      assert.equal(r.delivered, 0);
      assert.match(r.id, /^\S{8,}$/);
      ids.push(r.id);
    }
    assert.equal(new Set(ids).size, 3);

    const bob = await TestClient.connect(s.srv.url);
    const log = logOf(bob);
    await ok(bob, { type: 'hello', user: 'bob' });
    const got = await take(bob, 3, isDirect);
    assert.deepEqual(got.map((f) => [f.id, f.stored, f.data, f.kind]), ids.map((id, i) => [id, true, { n: i + 1 }, 'notification']));
    assert.equal((got[0]!.from as { user: string }).user, 'alice');
    assert.equal(log[0]!.type, 'reply', 'the hello reply comes first');
    await drop(bob);

    // Not acknowledged: delivered again.
    const bob2 = await s.connect({ user: 'bob' });
    assert.deepEqual((await take(bob2, 3, isDirect)).map((f) => f.id), ids);
    assert.deepEqual(await ok(bob2, { type: 'ack', ids: [ids[0], ids[2], 'unknown-id'] }), { acked: 2 });
    assert.deepEqual(await ok(bob2, { type: 'ack', ids: [ids[0]] }), { acked: 0 }, 'acknowledging twice removes nothing');
    await drop(bob2);

    const bob3 = await s.connect({ user: 'bob' });
    assert.deepEqual((await take(bob3, 1, isDirect)).map((f) => f.id), [ids[1]]);
    assert.deepEqual(await bob3.nothing(isDirect, 150), []);
    await ok(bob3, { type: 'ack', ids: [ids[1]] });
    await drop(bob3);
    const bob4 = await s.connect({ user: 'bob' });
    assert.deepEqual(await bob4.nothing(isDirect, 200), [], 'all acknowledged');
  });

  it('another user cannot acknowledge them; a connection without a user cannot ack at all', async (t) => {
    const s = await scene(t, {});
    const sender = await s.connect();
    const { id } = await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'x', persist: true });
    const mallory = await s.connect({ user: 'mallory' });
    assert.deepEqual(await ok(mallory, { type: 'ack', ids: [id] }), { acked: 0 });
    await refused(sender, { type: 'ack', ids: [id] }, 'forbidden');
    await refused(mallory, { type: 'ack', ids: [] }, 'bad_request');
    const bob = await s.connect({ user: 'bob' });
    assert.deepEqual((await take(bob, 1, isDirect)).map((f) => [f.id, f.stored]), [[id, true]]);
  });

  it('an online user gets them live with an id (not marked stored), and again on reconnect until acked', async (t) => {
    const s = await scene(t, {});
    const sender = await s.connect();
    const bob = await s.connect({ user: 'bob' });
    const bob2 = await s.connect({ user: 'bob' });
    const r = await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'live', persist: true });
    assert.equal(r.delivered, 2);
    for (const c of [bob, bob2]) {
      const d = await c.next(isDirect, T);
      assert.deepEqual([d.id, d.stored, d.data], [r.id, undefined, 'live']);
    }
    // Without persist: no id, nothing stored.
    const plain = await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'plain' });
    assert.deepEqual(plain, { delivered: 2 });
    assert.equal((await bob.next(isDirect, T)).id, undefined);
    await drop(bob);
    await drop(bob2);
    const again = await s.connect({ user: 'bob' });
    const d = await take(again, 1, isDirect);
    assert.deepEqual(d.map((f) => [f.id, f.stored, f.data]), [[r.id, true, 'live']]);
    assert.deepEqual(await again.nothing(isDirect, 150), [], 'the plain one was not stored');
  });

  it('persist to a connection is a bad_request; POST /api/send with persist gives an id', async (t) => {
    const s = await scene(t, {});
    const c = await s.connect({ user: 'bob' });
    await refused(c, { type: 'send', to: { client: c.welcome.client }, data: 1, persist: true }, 'bad_request');
    const bad = await api(s.srv.http, 'POST', '/api/send', { to: { client: c.welcome.client }, data: 1, persist: true });
    assert.equal(bad.status, 400);
    const r = await api(s.srv.http, 'POST', '/api/send', { to: { user: 'bob' }, data: { via: 'api' }, persist: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.delivered, 1);
    assert.equal(typeof r.body.id, 'string');
    const live = await c.next(isDirect, T);
    assert.deepEqual([live.id, live.data, live.from], [r.body.id, { via: 'api' }, { server: true }]);
    const off = await api(s.srv.http, 'POST', '/api/send', { to: { user: 'carol' }, data: 'later', persist: true });
    assert.equal(off.body.delivered, 0);
    const carol = await s.connect({ user: 'carol' });
    assert.deepEqual((await take(carol, 1, isDirect)).map((f) => [f.id, f.stored, f.data]), [[off.body.id, true, 'later']]);
  });

  it('max_stored_messages: quota_exceeded (HTTP 507) beyond it, room again after an ack', async (t) => {
    const s = await scene(t, { max_stored_messages: 3 });
    const sender = await s.connect();
    const ids = [];
    for (const n of [1, 2, 3]) ids.push((await ok(sender, { type: 'send', to: { user: 'bob' }, data: n, persist: true })).id);
    await refused(sender, { type: 'send', to: { user: 'bob' }, data: 4, persist: true }, 'quota_exceeded');
    const h = await api(s.srv.http, 'POST', '/api/send', { to: { user: 'bob' }, data: 4, persist: true });
    assert.equal(h.status, 507);
    assert.equal(h.body.error.code, 'quota_exceeded');
    // Other users have their own quota; messages without persist are not counted.
    await ok(sender, { type: 'send', to: { user: 'carol' }, data: 1, persist: true });
    await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'plain' });
    const bob = await s.connect({ user: 'bob' });
    assert.deepEqual((await take(bob, 3, isDirect)).map((f) => f.data), [1, 2, 3]);
    assert.deepEqual(await ok(bob, { type: 'ack', ids: [ids[0]] }), { acked: 1 });
    const r = await ok(sender, { type: 'send', to: { user: 'bob' }, data: 5, persist: true });
    assert.equal(r.delivered, 1);
  });

  it('max_stored_bytes: quota_exceeded beyond the bytes', async (t) => {
    const s = await scene(t, { max_stored_bytes: 100 });
    const sender = await s.connect();
    const big = 'x'.repeat(60); // 62 bytes as JSON
    await ok(sender, { type: 'send', to: { user: 'bob' }, data: big, persist: true });
    await refused(sender, { type: 'send', to: { user: 'bob' }, data: big, persist: true }, 'quota_exceeded');
    const h = await api(s.srv.http, 'POST', '/api/send', { to: { user: 'bob' }, data: big, persist: true });
    assert.equal(h.status, 507);
    await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'small', persist: true });
    const bob = await s.connect({ user: 'bob' });
    assert.deepEqual((await take(bob, 2, isDirect)).map((f) => f.data), [big, 'small']);
  });

  for (const storage of STORAGES) {
    it(`stored_message_ttl (${storage}): an expired message is not delivered`, async (t) => {
      const s = await scene(t, withStorage(t, storage, { stored_message_ttl: 2000 }));
      const sender = await s.connect();
      await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'old', persist: true });
      await new Promise((r) => setTimeout(r, 2300));
      await ok(sender, { type: 'send', to: { user: 'bob' }, data: 'new', persist: true });
      const bob = await s.connect({ user: 'bob' });
      assert.deepEqual((await take(bob, 1, isDirect)).map((f) => f.data), ['new']);
      assert.deepEqual(await bob.nothing(isDirect, 200), [], 'the expired one is gone');
    });
  }

  it('sqlite: stored messages survive a restart (and acknowledged ones stay gone)', async (t) => {
    const dir = tempDir(t);
    const config: Partial<Config> = { storage: 'sqlite', data_dir: dir };
    const s1 = await startServer(config);
    let s2: TestServer | undefined;
    t.after(async () => {
      await s1.close();
      await s2?.close();
    });
    const sender = await TestClient.connect(s1.url);
    const ids: string[] = [];
    for (const n of [1, 2, 3]) ids.push((await ok(sender, { type: 'send', to: { user: 'bob' }, data: { n }, persist: true })).id);
    const bob = await TestClient.connect(s1.url);
    await ok(bob, { type: 'hello', user: 'bob' });
    await take(bob, 3, isDirect);
    assert.deepEqual(await ok(bob, { type: 'ack', ids: [ids[1]] }), { acked: 1 });
    await s1.close();

    s2 = await startServer({ ...config, port: s1.port });
    const bob2 = await TestClient.connect(s2.url);
    t.after(() => bob2.ws.terminate());
    await ok(bob2, { type: 'hello', user: 'bob' });
    const got = await take(bob2, 2, isDirect);
    assert.deepEqual(got.map((f) => [f.id, f.stored, f.data]), [[ids[0], true, { n: 1 }], [ids[2], true, { n: 3 }]]);
    assert.deepEqual(await bob2.nothing(isDirect, 150), []);
  });
});

// ---- 8. publish acknowledgement --------------------------------------------------------------------

describe('publish acknowledgement', () => {
  it('on a channel with history: the reply and the message frames carry offset and epoch; without history neither', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    const sub = await s.connect();
    await ok(sub, { type: 'subscribe', channel: 'chat/ack' });
    await ok(sub, { type: 'subscribe', channel: 'news/ack' });
    const r1 = await ok(pub, { type: 'publish', channel: 'chat/ack', data: 'a' });
    const r2 = await ok(pub, { type: 'publish', channel: 'chat/ack', data: 'b' });
    assert.equal(r1.offset, 1);
    assert.equal(r2.offset, 2);
    assert.equal(typeof r1.epoch, 'string');
    assert.equal(r2.epoch, r1.epoch);
    assert.deepEqual(Object.keys(r1).sort(), ['epoch', 'offset']);
    const msgs = await take(sub, 2, isMsg('chat/ack'));
    assert.deepEqual(msgs.map((f) => [f.offset, f.epoch, f.data]), [[1, r1.epoch, 'a'], [2, r1.epoch, 'b']]);

    const plain = await ok(pub, { type: 'publish', channel: 'news/ack', data: 'c' });
    assert.deepEqual(plain, {});
    const m = await sub.next(isMsg('news/ack'), T);
    assert.equal('offset' in m, false);
    assert.equal('epoch' in m, false);

    // Over HTTP.
    const h = await api(s.srv.http, 'POST', '/api/publish', { channel: 'chat/ack', data: 'd' });
    assert.deepEqual(h.body, { delivered: 1, offset: 3, epoch: r1.epoch });
    const hn = await api(s.srv.http, 'POST', '/api/publish', { channel: 'news/ack', data: 'e' });
    assert.deepEqual(hn.body, { delivered: 1 });
    assert.equal((await sub.next(isMsg('chat/ack'), T)).offset, 3);

    // In protobuf.
    const p = await protoClient(t, s);
    await p.request({ type: 'subscribe', channel: 'chat/ack' });
    const pr = await p.request({ type: 'publish', channel: 'chat/ack', data: 'f' });
    const prv = (pr.pb.frame.value as pb.Reply).data;
    assert.equal(prv.case, 'publish');
    assert.equal((prv.value as pb.PublishReply).offset, 4n);
    assert.equal((prv.value as pb.PublishReply).epoch, r1.epoch);
    const pm = await p.next((g) => g.frame.type === 'message');
    assert.equal((pm.pb.frame.value as pb.Message).offset, 4n);
    assert.equal((pm.pb.frame.value as pb.Message).epoch, r1.epoch);
  });

  it('publications on several history channels keep their order per publisher', async (t) => {
    const s = await scene(t, { namespaces: HIST });
    const pub = await s.connect();
    const sub = await s.connect();
    await ok(sub, { type: 'subscribe', channel: '#' });
    // Pipelined, mixing channels with and without history: delivered in publish order.
    const sent = [];
    for (let i = 0; i < 60; i++) sent.push(pub.request({ type: 'publish', channel: ['chat/a', 'news/b', 'chat/c'][i % 3]!, data: i }, T));
    await Promise.all(sent);
    const got = await take(sub, 60, isMsg());
    assert.deepEqual(got.map((f) => f.data), range(0, 59));
  });
});

describe('recovery and the history right', () => {
  it('a subscriber without the history right gets recovered:false and no replay (since is no way around the rule)', async () => {
    const srv = await startServer({ namespaces: { locked: { history_size: 100, history: 'none' } } });
    try {
      const pub = await TestClient.connect(srv.url);
      const first = await pub.request({ type: 'publish', channel: 'locked/a', data: 1 });
      const epoch = (first.data as { epoch: string }).epoch;
      for (let i = 2; i <= 5; i++) await pub.request({ type: 'publish', channel: 'locked/a', data: i });
      const sub = await TestClient.connect(srv.url);
      const reply = await sub.request({ type: 'subscribe', channel: 'locked/a', since: { offset: 0, epoch } });
      assert.deepEqual(reply.data, { offset: 5, epoch, recovered: false });
      assert.deepEqual(await sub.nothing((f) => f.type === 'message'), [], 'nothing replayed');
      const history = await sub.request({ type: 'history', channel: 'locked/a' });
      assert.equal(history.code, 'forbidden');
      await pub.close();
      await sub.close();
    } finally {
      await srv.close();
    }
  });
});

describe('history pages', () => {
  it('a page holds at most 1000 publications, also over HTTP without limit; reverse=1 works and reverse=maybe is refused', async () => {
    const srv = await startServer({ namespaces: { big: { history_size: 2000 } }, message_rate: 0 });
    try {
      const pub = await TestClient.connect(srv.url);
      const replies = [];
      for (let i = 1; i <= 1200; i++) replies.push(pub.request({ type: 'publish', channel: 'big/a', data: i }));
      await Promise.all(replies);
      const page = await api(srv.http, 'GET', '/api/channels/big%2Fa/history');
      assert.equal(page.status, 200);
      assert.equal(page.body.publications.length, 1000);
      assert.equal(page.body.publications[0].data, 1);
      assert.equal(page.body.offset, 1200);
      const ws = await pub.request({ type: 'history', channel: 'big/a' });
      assert.equal((ws.data as { publications: unknown[] }).publications.length, 1000);
      const rev = await api(srv.http, 'GET', '/api/channels/big%2Fa/history?reverse=1&limit=2');
      assert.deepEqual(rev.body.publications.map((p: { data: number }) => p.data), [1200, 1199]);
      const bad = await api(srv.http, 'GET', '/api/channels/big%2Fa/history?reverse=maybe');
      assert.equal(bad.status, 400);
      await pub.close();
    } finally {
      await srv.close();
    }
  });
});
