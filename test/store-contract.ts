/**
 * The storage engine contract: every Store implementation (memory, SQLite, later Redis) must pass
 * this suite. It talks to the engine only through the Store interface, so it runs unchanged
 * against any of them:
 *
 *   storeContract('sqlite', { create: () => new SqliteStore(freshFile()), reopen: (old) => new SqliteStore(old.file) });
 *
 * `create` gives a new, unopened store on empty storage; the suite opens and closes it. `reopen`
 * (persistent engines only) gives a new, unopened store on the same storage as a store the suite
 * has just closed: the persistence tests then check that everything is still there.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { Sender } from '../src/protocol/frames.js';
import { Payload } from '../src/protocol/payload.js';
import { InboxFullError, type HistoryPolicy, type InboxLimits, type NewPublication, type RetainedMessage, type Store, type StoredDirect, type StoredPublication } from '../src/engine/store.js';

export interface StoreEngine<S extends Store = Store> {
  /** A new store on empty storage (not opened yet). */
  create(): S | Promise<S>;
  /** Persistent engines: a new store (not opened yet) on the same storage as `closed`, which the suite has closed. */
  reopen?(closed: S): S | Promise<S>;
}

const BIG: HistoryPolicy = { size: 100_000, ttl: 0 };
const NO_LIMITS: InboxLimits = { count: 100_000, bytes: 1 << 30, ttl: 0 };
const ALICE: Sender = { client: 'c-alice-1', user: 'alice', name: 'Alice Ünïcode 🦉' };
const SERVER: Sender = { server: true };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let seq = 0;
function pub(data: unknown = { n: ++seq }, over: Partial<NewPublication> = {}): NewPublication {
  return { payload: Payload.json(data as never), kind: 'text', from: SERVER, ts: Date.now(), ...over };
}

function direct(user: string, id: string, over: Partial<StoredDirect> = {}): StoredDirect {
  return { id, user, payload: Payload.json({ id }), kind: 'text', from: ALICE, ts: Date.now(), ...over };
}

/** Everything observable about a payload, comparable with deepEqual. */
function payloadView(p: Payload): { binary: boolean; json?: unknown; bytes?: number[] } {
  return p.binary ? { binary: true, bytes: [...p.raw()!] } : { binary: false, json: p.toJson() };
}

const offsets = (ps: StoredPublication[]) => ps.map((p) => p.offset);
const channels = (ms: RetainedMessage[]) => ms.map((m) => m.channel).sort();

export function storeContract<S extends Store>(name: string, engine: StoreEngine<S>): void {
  describe(`Store contract: ${name}`, () => {
    const open: S[] = [];
    const closed = new Set<S>();

    async function fresh(): Promise<S> {
      const s = await engine.create();
      await s.open();
      open.push(s);
      return s;
    }

    async function close(s: S): Promise<void> {
      if (closed.has(s)) return;
      closed.add(s);
      await s.close();
    }

    /** Close the store and open the same storage again (persistent engines). */
    async function reopen(s: S): Promise<S> {
      await close(s);
      const again = await engine.reopen!(s);
      await again.open();
      open.push(again);
      return again;
    }

    afterEach(async () => {
      for (const s of open.splice(0)) await close(s);
    });

    describe('append', () => {
      it('gives offsets 1, 2, 3… per channel, independently across channels, with one epoch per stream', async () => {
        const s = await fresh();
        const a1 = await s.append('chat/a', pub(), BIG);
        const a2 = await s.append('chat/a', pub(), BIG);
        const b1 = await s.append('chat/b', pub(), BIG);
        const a3 = await s.append('chat/a', pub(), BIG);
        const b2 = await s.append('chat/b', pub(), BIG);
        assert.deepEqual([a1.offset, a2.offset, a3.offset], [1, 2, 3]);
        assert.deepEqual([b1.offset, b2.offset], [1, 2]);
        assert.equal(typeof a1.epoch, 'string');
        assert.ok(a1.epoch.length > 0);
        assert.equal(a2.epoch, a1.epoch);
        assert.equal(a3.epoch, a1.epoch);
        assert.equal(b2.epoch, b1.epoch);
        const page = await s.history('chat/a', { limit: 10 }, BIG);
        assert.deepEqual(page.position, { offset: 3, epoch: a1.epoch });
      });

      it('resolves append promises in the order of the calls', async () => {
        const s = await fresh();
        const order: number[] = [];
        const all: Promise<unknown>[] = [];
        for (let i = 0; i < 20; i++) {
          all.push(s.append('chat/order', pub(), BIG).then((p) => order.push(p.offset)));
          // Spread over several turns of the event loop: a batch boundary falls somewhere in between.
          if (i % 5 === 4) await new Promise((r) => setImmediate(r));
        }
        await Promise.all(all);
        assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i + 1));
      });

      it('keeps order and resolves every append when many are made in one turn (batching)', async () => {
        const s = await fresh();
        const n = 3000;
        const resolved: string[] = [];
        const promises = [];
        for (let i = 0; i < n; i++) {
          const channel = i % 3 === 0 ? 'chat/x' : 'chat/y';
          promises.push(s.append(channel, pub({ i }), BIG).then((p) => (resolved.push(`${channel}:${p.offset}`), p)));
        }
        const positions = await Promise.all(promises);
        let x = 0;
        let y = 0;
        const expected = positions.map((_, i) => (i % 3 === 0 ? `chat/x:${++x}` : `chat/y:${++y}`));
        assert.deepEqual(resolved, expected);
        assert.deepEqual(positions.map((p) => p.offset), expected.map((e) => Number(e.split(':')[1])));
        const xs = await s.history('chat/x', { limit: n }, BIG);
        const ys = await s.history('chat/y', { limit: n }, BIG);
        assert.equal(xs.publications.length, x);
        assert.equal(ys.publications.length, y);
        // Data stays with its offset.
        xs.publications.forEach((p, k) => assert.deepEqual(p.payload.toJson(), { i: 3 * k }));
        assert.deepEqual(offsets(xs.publications), Array.from({ length: x }, (_, k) => k + 1));
        assert.deepEqual(ys.publications.map((p) => (p.payload.toJson() as { i: number }).i), Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 !== 0));
      });

      it('a read right after appends (not awaited) sees them', async () => {
        const s = await fresh();
        const pending = [s.append('chat/r', pub(), BIG), s.append('chat/r', pub(), BIG)];
        const page = await s.history('chat/r', { limit: 10 }, BIG);
        assert.deepEqual(offsets(page.publications), [1, 2]);
        await Promise.all(pending);
      });
    });

    describe('history', () => {
      async function filled(s: Store, channel: string, n: number, policy = BIG): Promise<string> {
        let epoch = '';
        for (let i = 1; i <= n; i++) epoch = (await s.append(channel, pub({ i }), policy)).epoch;
        return epoch;
      }

      it('of a channel never appended to: empty, offset 0, oldest 1, and the epoch later appends get', async () => {
        const s = await fresh();
        const page = await s.history('chat/empty', { limit: 10 }, BIG);
        assert.deepEqual(page.publications, []);
        assert.equal(page.position.offset, 0);
        assert.equal(page.oldest, 1);
        assert.equal(typeof page.position.epoch, 'string');
        const p = await s.append('chat/empty', pub(), BIG);
        assert.equal(p.offset, 1);
        const again = await s.history('chat/empty', { limit: 10 }, BIG);
        assert.equal(again.position.epoch, p.epoch);
      });

      it('returns everything oldest first, with position and oldest', async () => {
        const s = await fresh();
        const epoch = await filled(s, 'chat/h', 5);
        const page = await s.history('chat/h', { limit: 100 }, BIG);
        assert.deepEqual(offsets(page.publications), [1, 2, 3, 4, 5]);
        assert.deepEqual(page.publications.map((p) => p.payload.toJson()), [1, 2, 3, 4, 5].map((i) => ({ i })));
        assert.ok(page.publications.every((p) => p.channel === 'chat/h'));
        assert.deepEqual(page.position, { offset: 5, epoch });
        assert.equal(page.oldest, 1);
      });

      it('since in the same epoch: strictly after that offset', async () => {
        const s = await fresh();
        const epoch = await filled(s, 'chat/h', 6);
        assert.deepEqual(offsets((await s.history('chat/h', { since: { offset: 3, epoch }, limit: 100 }, BIG)).publications), [4, 5, 6]);
        assert.deepEqual(offsets((await s.history('chat/h', { since: { offset: 0, epoch }, limit: 100 }, BIG)).publications), [1, 2, 3, 4, 5, 6]);
        const top = await s.history('chat/h', { since: { offset: 6, epoch }, limit: 100 }, BIG);
        assert.deepEqual(top.publications, []);
        assert.deepEqual(top.position, { offset: 6, epoch });
      });

      it('since in another epoch: from the oldest kept', async () => {
        const s = await fresh();
        const epoch = await filled(s, 'chat/h', 4);
        const other = epoch === 'other-epoch' ? 'another-epoch' : 'other-epoch';
        const page = await s.history('chat/h', { since: { offset: 2, epoch: other }, limit: 100 }, BIG);
        assert.deepEqual(offsets(page.publications), [1, 2, 3, 4]);
        assert.deepEqual(page.position, { offset: 4, epoch });
        const small: HistoryPolicy = { size: 2, ttl: 0 };
        const trimmed = await s.history('chat/h', { since: { offset: 3, epoch: other }, limit: 100 }, small);
        assert.deepEqual(offsets(trimmed.publications), [3, 4]);
      });

      it('limit gives the oldest ones first; reverse gives the newest first', async () => {
        const s = await fresh();
        const epoch = await filled(s, 'chat/h', 8);
        assert.deepEqual(offsets((await s.history('chat/h', { limit: 3 }, BIG)).publications), [1, 2, 3]);
        assert.deepEqual(offsets((await s.history('chat/h', { limit: 3, reverse: true }, BIG)).publications), [8, 7, 6]);
        assert.deepEqual(offsets((await s.history('chat/h', { limit: 100, reverse: true }, BIG)).publications), [8, 7, 6, 5, 4, 3, 2, 1]);
        assert.deepEqual(offsets((await s.history('chat/h', { since: { offset: 2, epoch }, limit: 2 }, BIG)).publications), [3, 4]);
        assert.deepEqual(offsets((await s.history('chat/h', { since: { offset: 5, epoch }, limit: 100, reverse: true }, BIG)).publications), [8, 7, 6]);
        assert.deepEqual(offsets((await s.history('chat/h', { since: { offset: 2, epoch }, limit: 2, reverse: true }, BIG)).publications), [8, 7]);
        const page = await s.history('chat/h', { limit: 3, reverse: true }, BIG);
        assert.deepEqual(page.position, { offset: 8, epoch });
        assert.equal(page.oldest, 1);
      });

      it('keeps only the newest history_size publications', async () => {
        const s = await fresh();
        const policy: HistoryPolicy = { size: 5, ttl: 0 };
        const epoch = await filled(s, 'chat/trim', 12, policy);
        const page = await s.history('chat/trim', { limit: 100 }, policy);
        assert.deepEqual(offsets(page.publications), [8, 9, 10, 11, 12]);
        assert.deepEqual(page.publications.map((p) => p.payload.toJson()), [8, 9, 10, 11, 12].map((i) => ({ i })));
        assert.equal(page.oldest, 8);
        assert.deepEqual(page.position, { offset: 12, epoch });
        // A position inside the trimmed part gives what is kept, not what is gone.
        assert.deepEqual(offsets((await s.history('chat/trim', { since: { offset: 2, epoch }, limit: 100 }, policy)).publications), [8, 9, 10, 11, 12]);
        assert.deepEqual(offsets((await s.history('chat/trim', { since: { offset: 9, epoch }, limit: 100 }, policy)).publications), [10, 11, 12]);
        assert.deepEqual(offsets((await s.history('chat/trim', { limit: 100, reverse: true }, policy)).publications), [12, 11, 10, 9, 8]);
        // Offsets go on after trimming.
        assert.equal((await s.append('chat/trim', pub(), policy)).offset, 13);
        const after = await s.history('chat/trim', { limit: 100 }, policy);
        assert.deepEqual(offsets(after.publications), [9, 10, 11, 12, 13]);
        assert.equal(after.oldest, 9);
      });

      it('applies a smaller history_size at read time', async () => {
        const s = await fresh();
        await filled(s, 'chat/shrink', 10);
        const page = await s.history('chat/shrink', { limit: 100 }, { size: 3, ttl: 0 });
        assert.deepEqual(offsets(page.publications), [8, 9, 10]);
        assert.equal(page.oldest, 8);
      });

      it('leaves out publications older than history_ttl (old timestamps)', async () => {
        const s = await fresh();
        const policy: HistoryPolicy = { size: 100, ttl: 60_000 };
        const old = Date.now() - 3_600_000;
        for (let i = 1; i <= 3; i++) await s.append('chat/ttl', pub({ i }, { ts: old + i }), policy);
        let epoch = '';
        for (let i = 4; i <= 6; i++) epoch = (await s.append('chat/ttl', pub({ i }), policy)).epoch;
        const page = await s.history('chat/ttl', { limit: 100 }, policy);
        assert.deepEqual(offsets(page.publications), [4, 5, 6]);
        assert.equal(page.oldest, 4);
        assert.deepEqual(page.position, { offset: 6, epoch });
        assert.deepEqual(offsets((await s.history('chat/ttl', { since: { offset: 1, epoch }, limit: 100 }, policy)).publications), [4, 5, 6]);
      });

      it('leaves out publications once history_ttl has passed (waiting)', async () => {
        const s = await fresh();
        const policy: HistoryPolicy = { size: 100, ttl: 50 };
        await s.append('chat/ttl2', pub(), policy);
        const { epoch } = await s.append('chat/ttl2', pub(), policy);
        assert.deepEqual(offsets((await s.history('chat/ttl2', { limit: 100 }, policy)).publications), [1, 2]);
        await sleep(150);
        const page = await s.history('chat/ttl2', { limit: 100 }, policy);
        assert.deepEqual(page.publications, []);
        assert.deepEqual(page.position, { offset: 2, epoch });
        assert.equal(page.oldest, 3);
        assert.equal((await s.append('chat/ttl2', pub(), policy)).offset, 3);
        const after = await s.history('chat/ttl2', { limit: 100 }, policy);
        assert.deepEqual(offsets(after.publications), [3]);
        assert.equal(after.oldest, 3);
      });

      it('round-trips payloads exactly, with kind, from and ts', async () => {
        const s = await fresh();
        const values: unknown[] = [
          null,
          0,
          -1.5e300,
          true,
          '',
          'héllo wörld — 日本語 🦉 \u2028 "quoted" \\ \n\t',
          [],
          {},
          { deep: { er: [1, { est: [null, false, 'x', { '': '🦉' }] }] }, 'ключ': 'значение' },
          Array.from({ length: 200 }, (_, i) => ({ i, s: 'x'.repeat(i) })),
        ];
        const bytes = [new Uint8Array(0), Uint8Array.from([0, 255, 1, 254, 0x80, 0xc3, 0x28, 0]), Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7919) & 0xff)];
        const text = '{ "spaced" :  [1,2 , 3] }';
        const payloads = [...values.map((v) => Payload.json(v as never)), ...bytes.map((b) => Payload.bytes(b)), Payload.jsonText(text)];
        const senders: Sender[] = [ALICE, SERVER, { client: 'c-anon' }, { client: 'c-u', user: 'u-only' }];
        const ts0 = 1_700_000_000_123;
        const sent: NewPublication[] = payloads.map((payload, i) => ({ payload, kind: i % 2 ? 'text' : 'custom-kind.ü', from: senders[i % senders.length]!, ts: ts0 + i }));
        for (const p of sent) await s.append('chat/payloads', p, BIG);
        const page = await s.history('chat/payloads', { limit: 100 }, BIG);
        assert.equal(page.publications.length, sent.length);
        page.publications.forEach((got, i) => {
          const want = sent[i]!;
          assert.equal(got.offset, i + 1);
          assert.equal(got.channel, 'chat/payloads');
          assert.deepEqual(payloadView(got.payload), payloadView(want.payload), `payload ${i}`);
          assert.equal(got.kind, want.kind);
          assert.deepEqual(got.from, want.from);
          assert.equal(got.ts, want.ts);
        });
        // JSON text is kept as given (not re-serialised).
        assert.equal(page.publications.at(-1)!.payload.jsonData(), text);
        assert.equal(page.publications.at(-1)!.payload.binary, false);
        assert.equal(page.publications[values.length]!.payload.size, 0);
      });
    });

    describe('retained', () => {
      function retained(channel: string, over: Partial<RetainedMessage> = {}): RetainedMessage {
        return { channel, offset: 0, payload: Payload.json({ at: channel }), kind: 'text', from: ALICE, ts: Date.now(), ...over };
      }

      it('sets, replaces (last wins) and clears with null', async () => {
        const s = await fresh();
        assert.deepEqual(await s.retained('status/a'), []);
        await s.retain('status/a', retained('status/a', { payload: Payload.json('first') }));
        assert.deepEqual((await s.retained('status/a')).map((m) => m.payload.toJson()), ['first']);
        await s.retain('status/a', retained('status/a', { payload: Payload.json('second') }));
        assert.deepEqual((await s.retained('status/a')).map((m) => m.payload.toJson()), ['second']);
        await s.retain('status/a', null);
        assert.deepEqual(await s.retained('status/a'), []);
        await s.retain('status/never', null); // clearing nothing is fine
        assert.deepEqual(await s.retained('status/never'), []);
      });

      it('looks up exactly one channel by name, nothing else', async () => {
        const s = await fresh();
        for (const ch of ['a', 'a/b', 'a/b/c', 'a/bb', 'b/a']) await s.retain(ch, retained(ch));
        assert.deepEqual(channels(await s.retained('a/b')), ['a/b']);
        assert.deepEqual(channels(await s.retained('a')), ['a']);
        assert.deepEqual(channels(await s.retained('a/b/c')), ['a/b/c']);
        assert.deepEqual(await s.retained('a/c'), []);
        assert.deepEqual(await s.retained('b'), []);
      });

      it('looks up by wildcard: + is one level, # any number (none included), no cross-match', async () => {
        const s = await fresh();
        for (const ch of ['a', 'a/b', 'a/c', 'a/b/c', 'a/b/c/d', 'x/b', 'x/y/b', 'ab/b']) await s.retain(ch, retained(ch));
        assert.deepEqual(channels(await s.retained('a/+')), ['a/b', 'a/c']);
        assert.deepEqual(channels(await s.retained('+/b')), ['a/b', 'ab/b', 'x/b']);
        assert.deepEqual(channels(await s.retained('a/+/c')), ['a/b/c']);
        assert.deepEqual(channels(await s.retained('a/#')), ['a', 'a/b', 'a/b/c', 'a/b/c/d', 'a/c']);
        assert.deepEqual(channels(await s.retained('a/b/#')), ['a/b', 'a/b/c', 'a/b/c/d']);
        assert.deepEqual(channels(await s.retained('+/+/b')), ['x/y/b']);
        assert.deepEqual(channels(await s.retained('#')), ['a', 'a/b', 'a/b/c', 'a/b/c/d', 'a/c', 'ab/b', 'x/b', 'x/y/b']);
        assert.deepEqual(await s.retained('z/#'), []);
        assert.deepEqual(await s.retained('+/+/+/+/+'), []);
        await s.retain('a/b', null);
        assert.deepEqual(channels(await s.retained('a/+')), ['a/c']);
      });

      it('keeps the message whole, with and without offset/epoch', async () => {
        const s = await fresh();
        const bytes = Uint8Array.from([0, 1, 2, 250, 255]);
        const withPos = retained('chat/r', { offset: 42, epoch: 'ep-1', payload: Payload.json({ t: 'ü🦉', n: null }), kind: 'state', from: ALICE, ts: 1_700_000_000_001 });
        const noPos = retained('status/r', { offset: 0, payload: Payload.bytes(bytes), kind: 'text', from: SERVER, ts: 1_700_000_000_002 });
        await s.retain('chat/r', withPos);
        await s.retain('status/r', noPos);
        const [a] = await s.retained('chat/r');
        assert.ok(a);
        assert.equal(a.channel, 'chat/r');
        assert.equal(a.offset, 42);
        assert.equal(a.epoch, 'ep-1');
        assert.deepEqual(payloadView(a.payload), { binary: false, json: { t: 'ü🦉', n: null } });
        assert.equal(a.kind, 'state');
        assert.deepEqual(a.from, ALICE);
        assert.equal(a.ts, 1_700_000_000_001);
        const [b] = await s.retained('status/r');
        assert.ok(b);
        assert.equal(b.offset, 0);
        assert.equal(b.epoch, undefined);
        assert.deepEqual(payloadView(b.payload), { binary: true, bytes: [...bytes] });
        assert.deepEqual(b.from, SERVER);
        assert.equal(b.ts, 1_700_000_000_002);
      });
    });

    describe('stored direct messages', () => {
      it('stores and gives them back oldest first, whole', async () => {
        const s = await fresh();
        const ts = 1_700_000_000_000;
        const msgs = [
          direct('bob', 'm1', { ts, payload: Payload.json({ hi: 'ü🦉' }), kind: 'note', from: ALICE }),
          direct('bob', 'm2', { ts, payload: Payload.bytes(Uint8Array.from([0, 255, 7])), from: SERVER }),
          direct('bob', 'm3', { ts: ts + 1, payload: Payload.json(null) }),
          direct('bob', 'm4', { ts: ts + 2, payload: Payload.bytes(new Uint8Array(0)) }),
        ];
        for (const m of msgs) await s.storeDirect(m, NO_LIMITS);
        await s.storeDirect(direct('carol', 'c1'), NO_LIMITS);
        const got = await s.pendingDirect('bob', NO_LIMITS);
        assert.deepEqual(got.map((m) => m.id), ['m1', 'm2', 'm3', 'm4']);
        got.forEach((m, i) => {
          const want = msgs[i]!;
          assert.equal(m.user, 'bob');
          assert.deepEqual(payloadView(m.payload), payloadView(want.payload));
          assert.equal(m.kind, want.kind);
          assert.deepEqual(m.from, want.from);
          assert.equal(m.ts, want.ts);
        });
        assert.deepEqual((await s.pendingDirect('carol', NO_LIMITS)).map((m) => m.id), ['c1']);
        assert.deepEqual(await s.pendingDirect('nobody', NO_LIMITS), []);
        // Reading does not remove.
        assert.equal((await s.pendingDirect('bob', NO_LIMITS)).length, 4);
      });

      it('ack removes only the listed ids, only for that user, and counts what it removed', async () => {
        const s = await fresh();
        for (const id of ['b1', 'b2', 'b3', 'b4']) await s.storeDirect(direct('bob', id), NO_LIMITS);
        await s.storeDirect(direct('carol', 'c1'), NO_LIMITS);
        assert.equal(await s.ackDirect('carol', ['b1', 'b2']), 0, "another user's ids");
        assert.deepEqual((await s.pendingDirect('bob', NO_LIMITS)).map((m) => m.id), ['b1', 'b2', 'b3', 'b4']);
        assert.equal(await s.ackDirect('bob', ['b3', 'unknown', 'c1']), 1);
        assert.deepEqual((await s.pendingDirect('bob', NO_LIMITS)).map((m) => m.id), ['b1', 'b2', 'b4']);
        assert.deepEqual((await s.pendingDirect('carol', NO_LIMITS)).map((m) => m.id), ['c1']);
        assert.equal(await s.ackDirect('bob', ['b3']), 0, 'already acknowledged');
        assert.equal(await s.ackDirect('bob', []), 0);
        assert.equal(await s.ackDirect('nobody', ['b1']), 0);
        assert.equal(await s.ackDirect('bob', ['b1', 'b4']), 2);
        assert.deepEqual((await s.pendingDirect('bob', NO_LIMITS)).map((m) => m.id), ['b2']);
        assert.equal(await s.ackDirect('bob', ['b2']), 1);
        assert.deepEqual(await s.pendingDirect('bob', NO_LIMITS), []);
        // An emptied inbox takes messages again.
        await s.storeDirect(direct('bob', 'b5'), NO_LIMITS);
        assert.deepEqual((await s.pendingDirect('bob', NO_LIMITS)).map((m) => m.id), ['b5']);
      });

      it('refuses the (count+1)th message with InboxFullError, per user', async () => {
        const s = await fresh();
        const limits: InboxLimits = { count: 3, bytes: 1 << 20, ttl: 0 };
        for (const id of ['1', '2', '3']) await s.storeDirect(direct('bob', id), limits);
        await assert.rejects(s.storeDirect(direct('bob', '4'), limits), InboxFullError);
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['1', '2', '3'], 'the refused one is not stored');
        await s.storeDirect(direct('carol', 'c'), limits); // another user has room
        assert.equal(await s.ackDirect('bob', ['2']), 1);
        await s.storeDirect(direct('bob', '5'), limits);
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['1', '3', '5']);
        await assert.rejects(s.storeDirect(direct('bob', '6'), limits), InboxFullError);
      });

      it('refuses a message that would go over the byte limit', async () => {
        const s = await fresh();
        const limits: InboxLimits = { count: 100, bytes: 10, ttl: 0 };
        await s.storeDirect(direct('bob', 'a', { payload: Payload.bytes(new Uint8Array(6)) }), limits);
        await s.storeDirect(direct('bob', 'b', { payload: Payload.bytes(new Uint8Array(4)) }), limits); // exactly 10
        await assert.rejects(s.storeDirect(direct('bob', 'c', { payload: Payload.bytes(new Uint8Array(1)) }), limits), InboxFullError);
        await assert.rejects(s.storeDirect(direct('carol', 'big', { payload: Payload.bytes(new Uint8Array(11)) }), limits), InboxFullError);
        await s.storeDirect(direct('carol', 'fits', { payload: Payload.json('12345678') }), limits); // "12345678" with quotes: 10 bytes
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['a', 'b']);
        assert.deepEqual((await s.pendingDirect('carol', limits)).map((m) => m.id), ['fits']);
        await s.ackDirect('bob', ['a']);
        await s.storeDirect(direct('bob', 'c', { payload: Payload.bytes(new Uint8Array(6)) }), limits);
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['b', 'c']);
      });

      it('leaves out messages older than the ttl, and does not count them against the limits', async () => {
        const s = await fresh();
        const limits: InboxLimits = { count: 2, bytes: 8, ttl: 60_000 };
        const old = Date.now() - 3_600_000;
        await s.storeDirect(direct('bob', 'old1', { ts: old, payload: Payload.bytes(new Uint8Array(4)) }), NO_LIMITS);
        await s.storeDirect(direct('bob', 'old2', { ts: old + 1, payload: Payload.bytes(new Uint8Array(4)) }), NO_LIMITS);
        await s.storeDirect(direct('bob', 'new1', { payload: Payload.bytes(new Uint8Array(4)) }), limits);
        await s.storeDirect(direct('bob', 'new2', { payload: Payload.bytes(new Uint8Array(4)) }), limits);
        await assert.rejects(s.storeDirect(direct('bob', 'new3', { payload: Payload.bytes(new Uint8Array(1)) }), limits), InboxFullError);
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['new1', 'new2']);
      });

      it('leaves out messages once the ttl has passed (waiting)', async () => {
        const s = await fresh();
        const limits: InboxLimits = { count: 1, bytes: 1 << 20, ttl: 50 };
        await s.storeDirect(direct('bob', 'soon-gone'), limits);
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['soon-gone']);
        await sleep(150);
        assert.deepEqual(await s.pendingDirect('bob', limits), []);
        await s.storeDirect(direct('bob', 'next'), limits); // the expired one no longer takes the only place
        assert.deepEqual((await s.pendingDirect('bob', limits)).map((m) => m.id), ['next']);
      });
    });

    if (engine.reopen) {
      describe('persistence (close and reopen)', () => {
        it('keeps streams with the same epochs, and new appends continue the offsets', async () => {
          let s = await fresh();
          const a = await s.append('chat/p', pub({ i: 1 }, { from: ALICE, kind: 'k', ts: 1_700_000_000_000 }), BIG);
          await s.append('chat/p', pub({ i: 2 }), BIG);
          await s.append('chat/p', { payload: Payload.bytes(Uint8Array.from([9, 0, 255])), kind: 'bin', from: SERVER, ts: 1_700_000_000_005 }, BIG);
          const b = await s.append('chat/q', pub({ q: 1 }), BIG);
          const before = await s.history('chat/p', { limit: 100 }, BIG);
          s = await reopen(s);
          const after = await s.history('chat/p', { limit: 100 }, BIG);
          assert.deepEqual(after.position, { offset: 3, epoch: a.epoch });
          assert.equal(after.oldest, 1);
          assert.deepEqual(
            after.publications.map((p) => ({ ...p, payload: payloadView(p.payload) })),
            before.publications.map((p) => ({ ...p, payload: payloadView(p.payload) })),
          );
          assert.deepEqual(await s.append('chat/p', pub(), BIG), { offset: 4, epoch: a.epoch });
          assert.deepEqual(await s.append('chat/q', pub(), BIG), { offset: 2, epoch: b.epoch });
          assert.deepEqual(offsets((await s.history('chat/p', { since: { offset: 2, epoch: a.epoch }, limit: 100 }, BIG)).publications), [3, 4]);
          // And once more.
          s = await reopen(s);
          assert.deepEqual((await s.history('chat/q', { limit: 100 }, BIG)).position, { offset: 2, epoch: b.epoch });
          assert.deepEqual(await s.append('chat/p', pub(), BIG), { offset: 5, epoch: a.epoch });
        });

        it('close finishes appends still pending', async () => {
          const s = await fresh();
          const pending = [1, 2, 3].map((i) => s.append('chat/pending', pub({ i }), BIG));
          await close(s);
          const positions = await Promise.all(pending);
          assert.deepEqual(positions.map((p) => p.offset), [1, 2, 3]);
          const again = await engine.reopen!(s);
          await again.open();
          open.push(again);
          const page = await again.history('chat/pending', { limit: 100 }, BIG);
          assert.deepEqual(page.publications.map((p) => p.payload.toJson()), [{ i: 1 }, { i: 2 }, { i: 3 }]);
          assert.deepEqual(page.position, positions[2]);
        });

        it('keeps trimming across a reopen', async () => {
          let s = await fresh();
          const policy: HistoryPolicy = { size: 5, ttl: 0 };
          let epoch = '';
          for (let i = 1; i <= 12; i++) epoch = (await s.append('chat/t', pub({ i }), policy)).epoch;
          s = await reopen(s);
          const page = await s.history('chat/t', { limit: 100 }, policy);
          assert.deepEqual(offsets(page.publications), [8, 9, 10, 11, 12]);
          assert.equal(page.oldest, 8);
          assert.deepEqual(page.position, { offset: 12, epoch });
        });

        it('keeps retained messages (and their clearing)', async () => {
          let s = await fresh();
          const m: RetainedMessage = { channel: 'chat/r', offset: 3, epoch: 'ep', payload: Payload.json({ v: 'ü' }), kind: 'state', from: ALICE, ts: 1_700_000_000_000 };
          await s.retain('chat/r', m);
          await s.retain('status/s', { channel: 'status/s', offset: 0, payload: Payload.bytes(Uint8Array.from([1, 2])), kind: 'text', from: SERVER, ts: 1_700_000_000_001 });
          await s.retain('status/gone', { channel: 'status/gone', offset: 0, payload: Payload.json(1), kind: 'text', from: SERVER, ts: 1 });
          await s.retain('status/gone', null);
          s = await reopen(s);
          const [r] = await s.retained('chat/r');
          assert.ok(r);
          assert.deepEqual({ ...r, payload: payloadView(r.payload) }, { ...m, payload: payloadView(m.payload) });
          assert.deepEqual(channels(await s.retained('status/+')), ['status/s']);
          const [st] = await s.retained('status/s');
          assert.equal(st!.epoch, undefined);
          assert.deepEqual(payloadView(st!.payload), { binary: true, bytes: [1, 2] });
        });

        it('keeps stored direct messages (and their acknowledgements), in order', async () => {
          let s = await fresh();
          for (const id of ['d1', 'd2', 'd3']) await s.storeDirect(direct('bob', id, { from: ALICE, kind: 'note' }), NO_LIMITS);
          await s.ackDirect('bob', ['d2']);
          s = await reopen(s);
          const got = await s.pendingDirect('bob', NO_LIMITS);
          assert.deepEqual(got.map((m) => m.id), ['d1', 'd3']);
          assert.deepEqual(got[0]!.from, ALICE);
          assert.equal(got[0]!.kind, 'note');
          assert.deepEqual(got[0]!.payload.toJson(), { id: 'd1' });
          await s.storeDirect(direct('bob', 'd4'), NO_LIMITS);
          assert.deepEqual((await s.pendingDirect('bob', NO_LIMITS)).map((m) => m.id), ['d1', 'd3', 'd4']);
          // Limits count what survived the reopen.
          await assert.rejects(s.storeDirect(direct('bob', 'd5'), { count: 3, bytes: 1 << 20, ttl: 0 }), InboxFullError);
          assert.equal(await s.ackDirect('bob', ['d1', 'd3', 'd4']), 3);
        });
      });
    }
  });
}
