/**
 * The client SDK's durable delivery against real servers, in both encodings: positions and
 * automatic recovery after dropped connections and server restarts (memory and SQLite stores),
 * duplicate drop, history(), retained messages, and stored direct messages with acknowledgement.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { Hubbub, HubbubError, type DirectFrame, type Encoding, type HubbubClientOptions, type MessageFrame, type SocketLike, type SubscribedInfo } from '../src/client/index.js';
import type { Config } from '../src/config.js';
import { encodeServerFrame } from '../src/protocol/proto-codec.js';
import { api, startServer, type TestServer, until, nextEvent } from './helpers.js';

const FAST = { minReconnectDelay: 20, maxReconnectDelay: 100 };
/** chat keeps history; news does not (retained messages without offsets); live keeps a long one for the stress case. */
const NAMESPACES = { chat: { history_size: 100 }, live: { history_size: 10_000 } } as unknown as Config['namespaces'];
const T = { timeout: 30_000 };



const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * The SDK's `socket` option: real `ws` connections, opened only while the gate is open, so that a
 * test decides when a reconnect happens (and can publish while the client is away). The SDK's
 * message handler is reached through a valve: closed, incoming frames wait, and `flush` hands them
 * over either all in one task (as `ws` does for frames that arrive in one TCP read) or one task
 * each (as browsers do). `inject` hands the SDK a crafted frame as if the server had sent it.
 */
class Line {
  /** With oneTaskEach, every incoming frame is handled in its own task, as browsers do (ws otherwise handles the frames of one read together). */
  constructor(private readonly options: { oneTaskEach?: boolean } = {}) {}

  private gate: Promise<void> = Promise.resolve();
  private openGate: (() => void) | undefined;
  private valveOpen = true;
  private readonly buffered: (() => void)[] = [];
  /** Delivers to the SDK's handler of the newest socket. */
  private deliver: ((data: unknown) => void) | undefined;

  hold(): void {
    if (!this.openGate) this.gate = new Promise((resolve) => (this.openGate = resolve));
  }

  release(): void {
    this.openGate?.();
    this.openGate = undefined;
    this.gate = Promise.resolve();
  }

  readonly factory = async (url: string, protocols: string[]): Promise<SocketLike> => {
    await this.gate;
    const ws = new WebSocket(url, protocols, { allowSynchronousEvents: !this.options.oneTaskEach });
    let handler: ((ev: { data: unknown }) => void) | null = null;
    // The SDK assigns onmessage; keep its handler instead of letting ws register it.
    Object.defineProperty(ws, 'onmessage', { configurable: true, get: () => handler, set: (fn: typeof handler) => (handler = fn) });
    const deliver = (data: unknown) => handler?.({ data });
    this.deliver = deliver;
    ws.on('message', (data, isBinary) => {
      const payload = isBinary ? data : data.toString();
      if (this.valveOpen) deliver(payload);
      else this.buffered.push(() => deliver(payload));
    });
    return ws as unknown as SocketLike;
  };

  /** Frames wait from now on, until flush(). */
  closeValve(): void {
    this.valveOpen = false;
  }

  get waiting(): number {
    return this.buffered.length;
  }

  /** Hand over the waiting frames (in one task, or one task each) and let frames through again. */
  async flush(oneTaskEach: boolean): Promise<void> {
    while (this.buffered.length > 0) {
      const next = this.buffered.shift()!;
      next();
      if (oneTaskEach) await new Promise((r) => setImmediate(r));
    }
    this.valveOpen = true;
  }

  /** Deliver a wire frame to the SDK as if the server had sent it on the current connection. */
  inject(data: string | Uint8Array): void {
    assert.ok(this.deliver, 'a socket is open');
    this.deliver(data);
  }
}

/** Messages a subscription handler received, with their frames. */
class Inbox {
  readonly frames: MessageFrame[] = [];
  readonly handler = (_data: unknown, m: MessageFrame): void => {
    this.frames.push(m);
  };
  data(channel?: string): unknown[] {
    return this.frames.filter((m) => channel === undefined || m.channel === channel).map((m) => m.data);
  }
}

function wireMessage(encoding: Encoding, frame: MessageFrame): string | Uint8Array {
  return encoding === 'json' ? JSON.stringify(frame) : encodeServerFrame(frame);
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'hubbub-sdk-durable-'));
}

/** Close one server and start another on the same port (same data_dir when SQLite). */
async function restart(srv: TestServer, config: Partial<Config>): Promise<TestServer> {
  await srv.close();
  return startServer({ ...config, port: srv.port });
}

async function publishApi(srv: TestServer, channel: string, data: unknown, extra: Record<string, unknown> = {}): Promise<{ offset?: number; epoch?: string; delivered?: number }> {
  const r = await api(srv.http, 'POST', '/api/publish', { channel, data, ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as { offset?: number; epoch?: string };
}

/** Cut one SDK client off through the HTTP API; it stays away until `line.release()`. */
async function dropConnection(srv: TestServer, hub: Hubbub, line: Line): Promise<void> {
  line.hold();
  const down = nextEvent<{ code: number; willReconnect: boolean }>(hub, 'disconnected');
  const r = await api(srv.http, 'POST', '/api/disconnect', { client: hub.clientId, reconnect: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((r.body as { disconnected: number }).disconnected, 1);
  const info = await down;
  assert.equal(info.code, 4002);
  assert.equal(info.willReconnect, true);
}

/** Let the client reconnect; resolves with the `subscribed` events of its resubscriptions. */
async function reconnect(hub: Hubbub, line: Line): Promise<SubscribedInfo[]> {
  const events: SubscribedInfo[] = [];
  const off = hub.on('subscribed', (info) => events.push(info));
  const connected = nextEvent<{ reconnected: boolean }>(hub, 'connected');
  line.release();
  try {
    assert.equal((await connected).reconnected, true);
  } finally {
    off();
  }
  return events;
}

function storedOf(srv: TestServer, user: string) {
  const c = srv.server.config;
  return srv.server.store.pendingDirect(user, { count: c.max_stored_messages, bytes: c.max_stored_bytes, ttl: c.stored_message_ttl });
}

/** Wait until the server stores this many direct messages for a user. */
async function untilStored(srv: TestServer, user: string, count: number, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = (await storedOf(srv, user)).length;
    if (n === count) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${n} stored for ${user}, not ${count}`);
    await sleep(10);
  }
}

for (const encoding of ['json', 'protobuf'] as const) {
  const sdk = (srv: TestServer, options: HubbubClientOptions = {}) => new Hubbub(srv.url, { ...FAST, encoding, ...options });

  describe(`SDK durable delivery (${encoding})`, () => {
    it('recovers the publications missed while disconnected: each once, in order, and tracks the position', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      const pub = sdk(srv);
      try {
        await Promise.all([hub.connect(), pub.connect()]);
        const got = new Inbox();
        const first = nextEvent<SubscribedInfo>(hub, 'subscribed');
        const sub = hub.subscribe('chat/a', got.handler);
        await sub.ready;
        const initial = await first;
        assert.equal(initial.pattern, 'chat/a');
        assert.equal(initial.resubscribed, false);
        assert.equal(initial.recovered, undefined, 'nothing to recover on a first subscribe');
        assert.equal(initial.offset, 0);
        assert.equal(typeof initial.epoch, 'string');
        const epoch = initial.epoch!;

        const results = [];
        for (const n of [1, 2, 3]) results.push(await pub.publish('chat/a', n));
        assert.deepEqual(results, [1, 2, 3].map((offset) => ({ offset, epoch })));
        await until(() => got.frames.length === 3, 'the first three');
        assert.deepEqual(hub.position('chat/a'), { offset: 3, epoch });

        await dropConnection(srv, hub, line);
        for (const n of [4, 5, 6]) await pub.publish('chat/a', n);
        assert.deepEqual(got.data(), [1, 2, 3], 'nothing arrives while away');
        const events = await reconnect(hub, line);
        assert.deepEqual(events, [{ pattern: 'chat/a', resubscribed: true, recovered: true, offset: 6, epoch }]);
        await sub.ready;
        await until(() => got.frames.length === 6, 'the missed publications');
        for (const n of [7, 8, 9]) await pub.publish('chat/a', n);
        await until(() => got.data().includes(9), 'the last publication');
        await sleep(50);
        assert.deepEqual(got.data(), range(1, 9), 'every publication exactly once, in order');
        assert.deepEqual(got.frames.map((m) => m.offset), range(1, 9));
        assert.ok(got.frames.every((m) => m.epoch === epoch && m.retained !== true));
        assert.deepEqual(hub.position('chat/a'), { offset: 9, epoch });
      } finally {
        line.release();
        hub.close();
        pub.close();
        await srv.close();
      }
    });

    it('recovers a wildcard subscription over several channels, with positions per channel', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      const pub = sdk(srv);
      try {
        await Promise.all([hub.connect(), pub.connect()]);
        const got = new Inbox();
        const sub = hub.subscribe('chat/#', got.handler);
        await sub.ready;
        const a1 = await pub.publish('chat/a', 'a1');
        const b1 = await pub.publish('chat/b', 'b1');
        await until(() => got.frames.length === 2, 'a1 and b1');
        assert.deepEqual(hub.position('chat/a'), a1);
        assert.deepEqual(hub.position('chat/b'), b1);

        await dropConnection(srv, hub, line);
        await pub.publish('chat/a', 'a2');
        await pub.publish('chat/b', 'b2');
        await pub.publish('chat/a', 'a3');
        const events = await reconnect(hub, line);
        assert.deepEqual(events, [
          {
            pattern: 'chat/#',
            resubscribed: true,
            recovered: true,
            positions: { 'chat/a': { offset: 3, epoch: a1.epoch }, 'chat/b': { offset: 2, epoch: b1.epoch } },
          },
        ]);
        await until(() => got.frames.length === 5, 'the missed publications');
        await pub.publish('chat/b', 'b3');
        await pub.publish('chat/a', 'a4');
        await until(() => got.data().includes('a4'), 'the last publication');
        await sleep(50);
        assert.deepEqual(got.data('chat/a'), ['a1', 'a2', 'a3', 'a4']);
        assert.deepEqual(got.data('chat/b'), ['b1', 'b2', 'b3']);
        assert.equal(got.frames.length, 7, 'no duplicate');
        assert.ok(got.frames.every((m) => m.pattern === 'chat/#'));
        assert.deepEqual(hub.position('chat/a'), { offset: 4, epoch: a1.epoch });
        assert.deepEqual(hub.position('chat/b'), { offset: 3, epoch: b1.epoch });
      } finally {
        line.release();
        hub.close();
        pub.close();
        await srv.close();
      }
    });

    it('says recovered:false when the gap is older than the history, and carries on from the current position', T, async () => {
      const srv = await startServer({ namespaces: { chat: { history_size: 3 } } as unknown as Config['namespaces'] });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      const pub = sdk(srv);
      try {
        await Promise.all([hub.connect(), pub.connect()]);
        const got = new Inbox();
        const sub = hub.subscribe('chat/a', got.handler);
        await sub.ready;
        const { epoch } = await pub.publish('chat/a', 1);
        await pub.publish('chat/a', 2);
        await until(() => got.frames.length === 2, 'the first two');

        await dropConnection(srv, hub, line);
        for (let n = 3; n <= 10; n++) await pub.publish('chat/a', n);
        const events = await reconnect(hub, line);
        assert.deepEqual(events, [{ pattern: 'chat/a', resubscribed: true, recovered: false, offset: 10, epoch }]);
        assert.deepEqual(hub.position('chat/a'), { offset: 10, epoch }, 'the position jumps to the current top');
        await pub.publish('chat/a', 11);
        await until(() => got.data().includes(11), 'a new publication');
        await sleep(50);
        assert.deepEqual(got.data(), [1, 2, 11], 'the lost ones are not replayed; the new one arrives');
        assert.deepEqual(hub.position('chat/a'), { offset: 11, epoch });
      } finally {
        line.release();
        hub.close();
        pub.close();
        await srv.close();
      }
    });

    it('takes the new epoch after a restart with memory storage (recovered:false; lower offsets are not dropped)', T, async () => {
      const config = { namespaces: NAMESPACES };
      let srv = await startServer(config);
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      try {
        await hub.connect();
        const got = new Inbox();
        const sub = hub.subscribe('chat/a', got.handler);
        await sub.ready;
        let old = '';
        for (let n = 1; n <= 5; n++) old = (await publishApi(srv, 'chat/a', `old${n}`)).epoch!;
        await until(() => got.frames.length === 5, 'the first five');
        assert.deepEqual(hub.position('chat/a'), { offset: 5, epoch: old });

        line.hold();
        const down = nextEvent<{ code: number }>(hub, 'disconnected');
        srv = await restart(srv, config);
        assert.equal((await down).code, 1001);
        const events = await reconnect(hub, line);
        assert.equal(events.length, 1);
        const [ev] = events;
        assert.equal(ev!.resubscribed, true);
        assert.equal(ev!.recovered, false, 'the memory store lost the stream');
        assert.equal(ev!.offset, 0);
        assert.notEqual(ev!.epoch, old, 'a new epoch');
        assert.deepEqual(hub.position('chat/a'), { offset: 0, epoch: ev!.epoch });
        for (let n = 1; n <= 3; n++) {
          const r = await publishApi(srv, 'chat/a', `new${n}`);
          assert.deepEqual([r.offset, r.epoch], [n, ev!.epoch]);
        }
        await until(() => got.frames.length === 8, 'the publications of the new epoch');
        assert.deepEqual(got.data(), ['old1', 'old2', 'old3', 'old4', 'old5', 'new1', 'new2', 'new3']);
        assert.deepEqual(hub.position('chat/a'), { offset: 3, epoch: ev!.epoch });
      } finally {
        line.release();
        hub.close();
        await srv.close();
      }
    });

    it('recovers across a restart with SQLite storage: same epoch, the publications it missed are delivered', T, async () => {
      const dir = tempDir();
      const config: Partial<Config> = { namespaces: NAMESPACES, storage: 'sqlite', data_dir: dir };
      let srv = await startServer(config);
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      try {
        await hub.connect();
        const got = new Inbox();
        const sub = hub.subscribe('chat/a', got.handler);
        await sub.ready;
        const { epoch } = await publishApi(srv, 'chat/a', 1);
        await publishApi(srv, 'chat/a', 2);
        await until(() => got.frames.length === 2, 'the first two');

        await dropConnection(srv, hub, line);
        await publishApi(srv, 'chat/a', 3);
        await publishApi(srv, 'chat/a', { four: 4 });
        srv = await restart(srv, config);
        const events = await reconnect(hub, line);
        assert.deepEqual(events, [{ pattern: 'chat/a', resubscribed: true, recovered: true, offset: 4, epoch }]);
        await until(() => got.frames.length === 4, 'the missed publications');
        const r = await publishApi(srv, 'chat/a', 5);
        assert.deepEqual(r.offset, 5);
        assert.equal(r.epoch, epoch);
        await until(() => got.frames.length === 5, 'a new publication');
        await sleep(50);
        assert.deepEqual(got.data(), [1, 2, 3, { four: 4 }, 5]);
        assert.deepEqual(got.frames.map((m) => m.offset), [1, 2, 3, 4, 5]);
        assert.deepEqual(hub.position('chat/a'), { offset: 5, epoch });
      } finally {
        line.release();
        hub.close();
        await srv.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('with recover:false sends no since: the reply has no recovered and missed publications stay missed', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory, recover: false });
      const pub = sdk(srv);
      const subscribeReplies: unknown[] = [];
      try {
        await Promise.all([hub.connect(), pub.connect()]);
        const got = new Inbox();
        const sub = hub.subscribe('chat/a', got.handler);
        await sub.ready;
        const { epoch } = await pub.publish('chat/a', 1);
        await pub.publish('chat/a', 2);
        await until(() => got.frames.length === 2, 'the first two');
        assert.deepEqual(hub.position('chat/a'), { offset: 2, epoch }, 'positions are kept all the same');

        await dropConnection(srv, hub, line);
        await pub.publish('chat/a', 3);
        await pub.publish('chat/a', 4);
        hub.on('frame', (f) => {
          if (f.type === 'reply') subscribeReplies.push(f.data);
        });
        const events = await reconnect(hub, line);
        assert.deepEqual(events, [{ pattern: 'chat/a', resubscribed: true, offset: 4, epoch }]);
        assert.ok(
          subscribeReplies.some((d) => typeof d === 'object' && d !== null && (d as { offset?: number }).offset === 4 && !('recovered' in d)),
          `the server saw no since: ${JSON.stringify(subscribeReplies)}`,
        );
        await pub.publish('chat/a', 5);
        await until(() => got.data().includes(5), 'a new publication');
        await sleep(50);
        assert.deepEqual(got.data(), [1, 2, 5]);
        assert.deepEqual(hub.position('chat/a'), { offset: 5, epoch });
      } finally {
        line.release();
        hub.close();
        pub.close();
        await srv.close();
      }
    });

    it('drops a message frame whose offset it has seen in the same epoch', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      try {
        await hub.connect();
        const got = new Inbox();
        const events: MessageFrame[] = [];
        hub.on('message', (m) => events.push(m));
        const sub = hub.subscribe('chat/d', got.handler);
        await sub.ready;
        const { epoch } = await publishApi(srv, 'chat/d', 'one');
        await publishApi(srv, 'chat/d', 'two');
        await publishApi(srv, 'chat/d', 'three');
        await until(() => got.frames.length === 3, 'three publications');

        const crafted = (offset: number, data: string, e = epoch!): MessageFrame => ({
          type: 'message',
          channel: 'chat/d',
          pattern: 'chat/d',
          data,
          kind: 'text',
          from: { server: true },
          ts: Date.now(),
          offset,
          epoch: e,
        });
        line.inject(wireMessage(encoding, crafted(2, 'two again')));
        line.inject(wireMessage(encoding, crafted(3, 'three again')));
        line.inject(wireMessage(encoding, crafted(1, 'one again')));
        // The injection path works: an offset not seen yet is delivered, and so is a lower offset of another epoch.
        line.inject(wireMessage(encoding, crafted(4, 'four')));
        line.inject(wireMessage(encoding, crafted(1, 'other epoch', 'zzzzzzzz')));
        assert.deepEqual(got.data(), ['one', 'two', 'three', 'four', 'other epoch']);
        assert.equal(events.length, 5, 'the message event skips duplicates too');
        assert.deepEqual(hub.position('chat/d'), { offset: 1, epoch: 'zzzzzzzz' });
      } finally {
        line.release();
        hub.close();
        await srv.close();
      }
    });

    it('keeps a retained message of a channel with history when frames arrive one task each (as in browsers)', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      try {
        await hub.connect();
        const r = await publishApi(srv, 'chat/r', 'state', { retain: true });
        await publishApi(srv, 'chat/r', 'newer, not retained');
        const got = new Inbox();
        line.closeValve();
        const sub = hub.subscribe('chat/r', got.handler);
        await until(() => line.waiting === 2, 'the reply and the retained message');
        await line.flush(true);
        await sub.ready;
        await publishApi(srv, 'chat/r', 'live');
        await until(() => got.data().includes('live'), 'a live publication');
        assert.deepEqual(got.data(), ['state', 'live'], 'the retained message is not taken for a duplicate');
        assert.equal(got.frames[0]!.retained, true);
        assert.deepEqual([got.frames[0]!.offset, got.frames[0]!.epoch], [r.offset, r.epoch]);
        assert.deepEqual(hub.position('chat/r'), { offset: 3, epoch: r.epoch });
      } finally {
        line.release();
        hub.close();
        await srv.close();
      }
    });

    it('does not move a position back when a live message is handled before the subscribe reply settles', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const line = new Line();
      const hub = sdk(srv, { socket: line.factory });
      try {
        await hub.connect();
        const { epoch } = await publishApi(srv, 'chat/a', 1);
        const got = new Inbox();
        line.closeValve();
        const sub = hub.subscribe('chat/a', got.handler);
        await until(() => line.waiting === 1, 'the reply');
        await publishApi(srv, 'chat/a', 2);
        await until(() => line.waiting === 2, 'the live message');
        await line.flush(false); // the reply and the message in one task: the reply's promise settles after the message
        await sub.ready;
        assert.deepEqual(got.data(), [2]);
        assert.deepEqual(hub.position('chat/a'), { offset: 2, epoch });

        await dropConnection(srv, hub, line);
        await publishApi(srv, 'chat/a', 3);
        const events = await reconnect(hub, line);
        assert.deepEqual(events, [{ pattern: 'chat/a', resubscribed: true, recovered: true, offset: 3, epoch }]);
        await until(() => got.data().includes(3), 'the missed one');
        await sleep(50);
        assert.deepEqual(got.data(), [2, 3], 'no replay of what was seen live');
      } finally {
        line.release();
        hub.close();
        await srv.close();
      }
    });

    it('delivers the recovered channels of a partly recovered wildcard subscription (frames one task each)', T, async () => {
      const srv = await startServer({ namespaces: { chat: { history_size: 3 } } as unknown as Config['namespaces'] });
      const line = new Line({ oneTaskEach: true });
      const hub = sdk(srv, { socket: line.factory });
      try {
        await hub.connect();
        const got = new Inbox();
        await hub.subscribe('chat/#', got.handler).ready;
        const a = await publishApi(srv, 'chat/a', 'a1');
        const b = await publishApi(srv, 'chat/b', 'b1');
        await until(() => got.frames.length === 2, 'a1 and b1');

        await dropConnection(srv, hub, line);
        await publishApi(srv, 'chat/a', 'a2'); // still in chat/a's history
        for (let n = 2; n <= 8; n++) await publishApi(srv, 'chat/b', `b${n}`); // chat/b's gap is gone
        const events = await reconnect(hub, line);
        assert.equal(events.length, 1);
        const ev = events[0]!;
        assert.equal(ev.recovered, false, 'chat/b could not be recovered');
        assert.deepEqual(ev.positions, { 'chat/a': { offset: 2, epoch: a.epoch }, 'chat/b': { offset: 8, epoch: b.epoch } });
        await publishApi(srv, 'chat/a', 'a3');
        await publishApi(srv, 'chat/b', 'b9');
        await until(() => got.data().includes('a3') && got.data().includes('b9'), 'the live ones');
        await sleep(50);
        assert.deepEqual(got.data('chat/a'), ['a1', 'a2', 'a3'], 'chat/a was recovered: a2 is not dropped');
        assert.deepEqual(got.data('chat/b'), ['b1', 'b9']);
        assert.deepEqual(hub.position('chat/a'), { offset: 3, epoch: a.epoch });
        assert.deepEqual(hub.position('chat/b'), { offset: 9, epoch: b.epoch });
      } finally {
        line.release();
        hub.close();
        await srv.close();
      }
    });

    it('delivers a continuous stream exactly once and in order across repeated reconnects', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const hub = sdk(srv);
      const pub = sdk(srv);
      let stop = false;
      try {
        await Promise.all([hub.connect(), pub.connect()]);
        const got = new Inbox();
        const subscribed: SubscribedInfo[] = [];
        hub.on('subscribed', (i) => subscribed.push(i));
        const sub = hub.subscribe('live/s', got.handler);
        await sub.ready;
        let n = 0;
        const publisher = (async () => {
          while (!stop) {
            await pub.publish('live/s', ++n);
            await sleep(1);
          }
        })();
        publisher.catch(() => {}); // awaited below; a failure elsewhere must not leave it unobserved
        for (let round = 0; round < 3; round++) {
          const at = n;
          await until(() => n >= at + 15 && got.frames.length > 0, 'more publications');
          const connected = nextEvent(hub, 'connected');
          const r = await api(srv.http, 'POST', '/api/disconnect', { client: hub.clientId, reconnect: true });
          assert.equal((r.body as { disconnected: number }).disconnected, 1);
          await connected;
        }
        const at = n;
        await until(() => n >= at + 15, 'publications after the last reconnect');
        stop = true;
        await publisher;
        await until(() => got.data().includes(n), 'the last publication');
        await sleep(50);
        assert.deepEqual(got.data(), range(1, n), 'exactly once, in order');
        assert.deepEqual(
          subscribed.map((i) => [i.resubscribed, i.recovered]),
          [
            [false, undefined],
            [true, true],
            [true, true],
            [true, true],
          ],
        );
        assert.equal(hub.position('live/s')?.offset, n);
      } finally {
        stop = true;
        hub.close();
        pub.close();
        await srv.close();
      }
    });

    it('history(): limit, reverse and since; bytes come back as Uint8Array', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const hub = sdk(srv, { user: 'historian' });
      try {
        await hub.connect();
        const bytes = new Uint8Array([0, 1, 2, 250, 255]);
        const values = ['p1', { n: 2 }, bytes, null, 'p5'];
        let epoch = '';
        for (const v of values) epoch = (await hub.publish('chat/h', v)).epoch!;
        const all = await hub.history('chat/h');
        assert.equal(all.offset, 5);
        assert.equal(all.epoch, epoch);
        assert.deepEqual(all.publications.map((p) => p.offset), [1, 2, 3, 4, 5]);
        const plain = (d: unknown) => (d instanceof Uint8Array ? { bytes: [...d] } : d);
        assert.deepEqual(all.publications.map((p) => plain(p.data)), values.map(plain));
        const third = all.publications[2]!.data;
        assert.ok(third instanceof Uint8Array, `bytes are a Uint8Array, not ${typeof third}`);
        assert.deepEqual([...third], [...bytes]);
        assert.deepEqual(all.publications[0]!.from, { client: hub.clientId, user: 'historian' });
        assert.ok(all.publications.every((p) => p.kind === 'text' && typeof p.ts === 'number'));

        assert.deepEqual((await hub.history('chat/h', { limit: 2 })).publications.map((p) => p.offset), [1, 2]);
        const newest = await hub.history('chat/h', { limit: 2, reverse: true });
        assert.deepEqual(newest.publications.map((p) => p.data), ['p5', null]);
        assert.equal(newest.offset, 5);
        const since = await hub.history('chat/h', { since: { offset: 2, epoch } });
        assert.deepEqual(since.publications.map((p) => p.offset), [3, 4, 5]);
        assert.ok(since.publications[0]!.data instanceof Uint8Array);
        assert.deepEqual((await hub.history('chat/h', { since: { offset: 2, epoch }, limit: 1 })).publications.map((p) => p.offset), [3]);
        assert.deepEqual((await hub.history('chat/h', { since: { offset: 5, epoch } })).publications, []);
        // A position of another epoch means "from the oldest kept".
        assert.deepEqual((await hub.history('chat/h', { since: { offset: 4, epoch: 'not-this-one' } })).publications.map((p) => p.offset), [1, 2, 3, 4, 5]);
        const empty = await hub.history('chat/nothing-yet');
        assert.deepEqual([empty.publications, empty.offset, typeof empty.epoch], [[], 0, 'string']);
        await assert.rejects(hub.history('news/x'), (err: HubbubError) => err instanceof HubbubError && err.code === 'not_found' && err.request === 'history');
      } finally {
        hub.close();
        await srv.close();
      }
    });

    it('retained messages come first to later subscribers (exact and wildcard), and null clears them', T, async () => {
      const srv = await startServer({ namespaces: NAMESPACES });
      const pub = sdk(srv);
      const clients: Hubbub[] = [pub];
      const subscriber = async (pattern: string): Promise<Inbox> => {
        const hub = sdk(srv);
        clients.push(hub);
        await hub.connect();
        const got = new Inbox();
        await hub.subscribe(pattern, got.handler).ready;
        return got;
      };
      try {
        await pub.connect();
        assert.deepEqual(await pub.publish('news/r', 'v1', { retain: true }), {}, 'no offset without history');
        await pub.publish('news/r', 'v2', { retain: true });
        await pub.publish('news/r', 'not retained');
        const exact = await subscriber('news/r');
        const wild = await subscriber('news/#');
        await pub.publish('news/r', 'live');
        await until(() => exact.frames.length === 2 && wild.frames.length === 2, 'retained and live');
        for (const got of [exact, wild]) {
          assert.deepEqual(got.data(), ['v2', 'live'], 'the last retained one first, then live ones');
          assert.equal(got.frames[0]!.retained, true);
          assert.equal(got.frames[0]!.channel, 'news/r');
          assert.notEqual(got.frames[1]!.retained, true);
        }
        assert.equal(wild.frames[0]!.pattern, 'news/#');

        // On a channel with history the retained message keeps its offset, and a new subscriber still gets it.
        const r = await pub.publish('chat/r', 'state', { retain: true });
        assert.deepEqual(r.offset, 1);
        await pub.publish('chat/r', 'after state');
        const hist = await subscriber('chat/r');
        await pub.publish('chat/r', 'live');
        await until(() => hist.data().includes('live'), 'live on chat/r');
        await sleep(50);
        assert.deepEqual(hist.data(), ['state', 'live']);
        assert.equal(hist.frames[0]!.retained, true);
        assert.deepEqual([hist.frames[0]!.offset, hist.frames[0]!.epoch], [1, r.epoch]);

        assert.equal((await api(srv.http, 'GET', `/api/channels/${encodeURIComponent('news/r')}/retained`)).status, 200);
        await pub.publish('news/r', null, { retain: true });
        assert.equal((await api(srv.http, 'GET', `/api/channels/${encodeURIComponent('news/r')}/retained`)).status, 404);
        const after = await subscriber('news/r');
        await pub.publish('news/r', 'first after clear');
        await until(() => after.frames.length === 1, 'the live one');
        await sleep(50);
        assert.deepEqual(after.data(), ['first after clear'], 'nothing retained any more');
      } finally {
        for (const c of clients) c.close();
        await srv.close();
      }
    });

    it('stored direct messages reach an offline user on connect, oldest first, and are acknowledged automatically', T, async () => {
      const srv = await startServer();
      const alice = sdk(srv, { user: 'alice' });
      const clients: Hubbub[] = [alice];
      try {
        await alice.connect();
        for (const text of ['m1', 'm2', 'm3']) assert.equal(await alice.send({ user: 'bob' }, text, { persist: true }), 0, 'bob is offline');
        assert.equal((await storedOf(srv, 'bob')).length, 3);

        const bob = sdk(srv, { user: 'bob' });
        clients.push(bob);
        const directs: DirectFrame[] = [];
        bob.on('direct', (d) => directs.push(d));
        await bob.connect();
        await until(() => directs.length === 3, 'the stored messages');
        assert.deepEqual(directs.map((d) => d.data), ['m1', 'm2', 'm3']);
        for (const d of directs) {
          assert.equal(typeof d.id, 'string');
          assert.equal(d.stored, true);
          assert.equal((d.from as { user?: string }).user, 'alice');
        }
        assert.equal(new Set(directs.map((d) => d.id)).size, 3);
        await untilStored(srv, 'bob', 0, 'the automatic ack');

        // While online a persisted message comes live (with an id, not marked stored) and is acknowledged too.
        assert.equal(await alice.send({ user: 'bob' }, 'live', { persist: true }), 1);
        await until(() => directs.length === 4, 'the live one');
        assert.equal(typeof directs[3]!.id, 'string');
        assert.notEqual(directs[3]!.stored, true);
        await untilStored(srv, 'bob', 0, 'the ack of the live one');
        bob.close();

        // A fresh connection of bob gets nothing stored: only what is sent from now on.
        const again = sdk(srv, { user: 'bob' });
        clients.push(again);
        const later: DirectFrame[] = [];
        again.on('direct', (d) => later.push(d));
        await again.connect();
        await sleep(150);
        await alice.send({ user: 'bob' }, 'sentinel');
        await until(() => later.length > 0, 'the sentinel');
        await sleep(50);
        assert.deepEqual(later.map((d) => d.data), ['sentinel']);
      } finally {
        for (const c of clients) c.close();
        await srv.close();
      }
    });

    it('with autoAck:false a stored message comes again after a reconnect, is emitted once, and ack() removes it', T, async () => {
      const srv = await startServer();
      const line = new Line();
      const bob = sdk(srv, { user: 'bob', autoAck: false, socket: line.factory });
      const clients: Hubbub[] = [bob];
      try {
        const r = await api(srv.http, 'POST', '/api/send', { to: { user: 'bob' }, data: 'keep me', persist: true });
        assert.equal(r.status, 200);
        const id = (r.body as { id: string }).id;
        assert.equal(typeof id, 'string');
        const directs: DirectFrame[] = [];
        const raw: DirectFrame[] = [];
        bob.on('direct', (d) => directs.push(d));
        bob.on('frame', (f) => {
          if (f.type === 'direct') raw.push(f);
        });
        await bob.connect();
        await until(() => directs.length === 1, 'the stored message');
        assert.deepEqual([directs[0]!.id, directs[0]!.stored, directs[0]!.data], [id, true, 'keep me']);
        await sleep(100);
        assert.deepEqual((await storedOf(srv, 'bob')).map((m) => m.id), [id], 'not acknowledged');

        await dropConnection(srv, bob, line);
        await reconnect(bob, line);
        await until(() => raw.length === 2, 'the redelivery');
        assert.deepEqual(raw.map((f) => [f.id, f.stored]), [
          [id, true],
          [id, true],
        ]);
        assert.equal(directs.length, 1, 'the direct event fires once per SDK instance');
        assert.deepEqual((await storedOf(srv, 'bob')).map((m) => m.id), [id]);

        assert.equal(await bob.ack([id]), 1);
        assert.deepEqual(await storedOf(srv, 'bob'), []);
        assert.equal(await bob.ack([id]), 0, 'already gone');

        const fresh = sdk(srv, { user: 'bob', autoAck: false });
        clients.push(fresh);
        const none: DirectFrame[] = [];
        fresh.on('direct', (d) => none.push(d));
        await fresh.connect();
        await api(srv.http, 'POST', '/api/send', { to: { user: 'bob' }, data: 'sentinel' });
        await until(() => none.length > 0, 'the sentinel');
        await sleep(50);
        assert.deepEqual(none.map((d) => d.data), ['sentinel']);
      } finally {
        line.release();
        for (const c of clients) c.close();
        await srv.close();
      }
    });

    it('refuses a persisted send over the user limit with quota_exceeded', T, async () => {
      const srv = await startServer({ max_stored_messages: 2 });
      const alice = sdk(srv, { user: 'alice' });
      try {
        await alice.connect();
        await alice.send({ user: 'dave' }, 1, { persist: true });
        await alice.send({ user: 'dave' }, 2, { persist: true });
        await assert.rejects(alice.send({ user: 'dave' }, 3, { persist: true }), (err: HubbubError) => {
          assert.ok(err instanceof HubbubError);
          assert.equal(err.code, 'quota_exceeded');
          assert.equal(err.request, 'send');
          return true;
        });
        assert.deepEqual((await storedOf(srv, 'dave')).map((m) => m.payload.toJson()), [1, 2]);
        assert.equal(await alice.send({ user: 'erin' }, 1, { persist: true }), 0, 'the limit is per user');
        await assert.rejects(alice.send({ client: 'nobody' }, 1, { persist: true }), (err: HubbubError) => err.code === 'bad_request');
      } finally {
        alice.close();
        await srv.close();
      }
    });

    it('delivers stored direct messages after a server restart with SQLite storage', T, async () => {
      const dir = tempDir();
      const config: Partial<Config> = { storage: 'sqlite', data_dir: dir };
      let srv = await startServer(config);
      const clients: Hubbub[] = [];
      try {
        const alice = sdk(srv, { user: 'alice' });
        clients.push(alice);
        await alice.connect();
        await alice.send({ user: 'carol' }, 'before restart', { persist: true });
        await alice.send({ user: 'carol' }, new Uint8Array([9, 8, 7]), { persist: true });
        alice.close();
        srv = await restart(srv, config);
        const carol = sdk(srv, { user: 'carol' });
        clients.push(carol);
        const directs: DirectFrame[] = [];
        carol.on('direct', (d) => directs.push(d));
        await carol.connect();
        await until(() => directs.length === 2, 'the stored messages');
        assert.equal(directs[0]!.data, 'before restart');
        assert.ok(directs[1]!.data instanceof Uint8Array);
        assert.deepEqual([...(directs[1]!.data as Uint8Array)], [9, 8, 7]);
        assert.ok(directs.every((d) => d.stored === true));
        await untilStored(srv, 'carol', 0, 'the automatic ack');
      } finally {
        for (const c of clients) c.close();
        await srv.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe('stored messages arriving during the handshake', () => {
  it('are acknowledged even when the client restores subscriptions first (ack waits for the handshake)', async () => {
    const srv = await startServer({ namespaces: NAMESPACES });
    const carol = new Hubbub(srv.url, { user: 'carol', ...FAST });
    try {
      assert.equal((await api(srv.http, 'POST', '/api/send', { to: { user: 'carol' }, data: 'while away', persist: true })).status, 200);
      const got: DirectFrame[] = [];
      carol.on('direct', (d) => got.push(d));
      // Several subscriptions: the stored message arrives while they are being restored.
      for (const ch of ['chat/a', 'chat/b', 'live/c', 'chat/#']) carol.subscribe(ch, () => {});
      await carol.connect();
      await until(() => got.length === 1, 'the stored message');
      assert.equal(got[0]!.stored, true);
      await untilStored(srv, 'carol', 0, 'the ack to reach the server');
    } finally {
      carol.close();
      await srv.close();
    }
  });
});
