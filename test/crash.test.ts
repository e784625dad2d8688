/**
 * Crash safety of the embedded store: the built server in a child process, on a SQLite data
 * directory, killed with SIGKILL (no graceful close, no flush) right after it has acknowledged
 * publications, retained messages and stored direct messages, then restarted on the same
 * directory. Everything acknowledged must be there, in the same epoch, and streams must go on
 * from where they were. A round that kills while publishes are still in flight checks that what
 * survives beyond the acknowledged part is exactly the next publications, with no gap.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { childEnv, serveBin, type RunningServer } from './cli-process.js';
import { TestClient, api, type Frame } from './helpers.js';

const children = new Set<ChildProcess>();
const dirs: string[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `hubbub serve` on a free port; resolves once it logs that it listens. */
function serve(dataDir: string, configFile: string): Promise<RunningServer> {
  return serveBin(['--data-dir', dataDir, '--config', configFile, '--message-rate', '0'], childEnv(), 20_000, (child) => children.add(child));
}

// ---- the model: what the server has acknowledged --------------------------------------------------

/** A payload as a JSON frame carries it. */
interface Data {
  data: unknown;
  encoding?: 'base64';
}

interface StreamModel {
  epoch?: string;
  /** Acknowledged (or found after a restart), by offset 1…top. */
  pubs: Data[];
}

interface Model {
  streams: Map<string, StreamModel>;
  /** Channel → retained data (null: cleared). */
  retained: Map<string, Data | null>;
  /** Retained messages of channels with history: the offset they were published at. */
  retainedOffsets: Map<string, number>;
  /** bob's stored direct messages not acknowledged yet, oldest first. */
  inbox: { id: string; data: Data }[];
  /** Publications sent but not acknowledged before the last kill, per channel, in the order sent. */
  unacked: Map<string, Data[]>;
}

const CHANNELS = ['chat/c0', 'chat/c1', 'chat/c2', 'chat/c3'];
const RETAINED_WITH_HISTORY = 'chat/retained';

function stream(model: Model, channel: string): StreamModel {
  let s = model.streams.get(channel);
  if (!s) model.streams.set(channel, (s = { pubs: [] }));
  return s;
}

/** One operation of the load, with what its reply means for the model. */
interface Op {
  frame: Record<string, unknown>;
  /** Apply an acknowledged reply to the model. */
  acknowledged(reply: Frame): void;
  /** Publications: record that it was sent but not answered before the kill. */
  unanswered?(): void;
}

function bytesFor(round: number, k: number): string {
  return Buffer.from(Array.from({ length: 16 + (k % 40) }, (_, i) => (i * 31 + k + round) & 0xff)).toString('base64');
}

/** Publications spread over CHANNELS (some binary), retained messages and persisted direct messages, interleaved. */
function buildLoad(model: Model, round: number, publications: number, extras: boolean): Op[] {
  const ops: Op[] = [];
  const publishOp = (channel: string, d: Data, retain = false): Op => ({
    frame: { type: 'publish', channel, ...d, ...(retain && { retain: true }) },
    acknowledged(reply) {
      const s = stream(model, channel);
      const r = reply.data as { offset?: number; epoch?: string };
      assert.equal(r.offset, s.pubs.length + 1, `${channel}: offsets go on from ${s.pubs.length}`);
      if (s.epoch === undefined) s.epoch = r.epoch;
      assert.equal(r.epoch, s.epoch, `${channel}: same epoch`);
      s.pubs.push(d);
      if (retain) {
        model.retained.set(channel, d);
        model.retainedOffsets.set(channel, r.offset!);
      }
    },
    unanswered() {
      const list = model.unacked.get(channel) ?? [];
      model.unacked.set(channel, list);
      list.push(d);
    },
  });
  const retainOp = (channel: string, d: Data | null): Op => ({
    frame: { type: 'publish', channel, retain: true, data: d === null ? null : d.data, ...(d?.encoding && { encoding: d.encoding }) },
    acknowledged(reply) {
      assert.deepEqual(reply.data, {}, `${channel} has no history: no offset`);
      model.retained.set(channel, d);
    },
  });
  const persistOp = (d: Data): Op => ({
    frame: { type: 'send', to: { user: 'bob' }, persist: true, ...d },
    acknowledged(reply) {
      const r = reply.data as { delivered: number; id?: string };
      assert.equal(r.delivered, 0, 'bob is offline');
      assert.equal(typeof r.id, 'string');
      model.inbox.push({ id: r.id!, data: d });
    },
  });

  for (let k = 0; k < publications; k++) {
    const channel = CHANNELS[k % CHANNELS.length]!;
    const d: Data = k % 10 === 7 ? { data: bytesFor(round, k), encoding: 'base64' } : { data: { round, k, text: `publication ${k} — ü🦉`, nested: { list: [k, null, true] } } };
    ops.push(publishOp(channel, d));
    if (!extras) continue;
    if (k % 40 === 13) ops.push(persistOp(k % 80 === 13 ? { data: { dm: k, round } } : { data: bytesFor(round, k + 1), encoding: 'base64' }));
    if (k % 500 === 250) ops.push(retainOp('status/shared', { data: { round, k } }));
  }
  if (extras) {
    // The last acknowledgements before the kill are of every kind.
    ops.push(retainOp(`status/r${round}`, { data: { round, text: 'retained ✓' } }));
    ops.push(retainOp(`status/bin${round}`, { data: bytesFor(round, 999), encoding: 'base64' }));
    if (round > 1) ops.push(retainOp(`status/r${round - 1}`, null));
    ops.push(publishOp(RETAINED_WITH_HISTORY, { data: { round, retained: true } }, true));
    ops.push(persistOp({ data: { dm: 'last', round } }));
    ops.push(publishOp(CHANNELS[0]!, { data: { round, last: true } }));
  }
  return ops;
}

/**
 * Send every op at once (pipelined) on a raw connection; SIGKILL the server synchronously when
 * `killAfter` replies have arrived. Returns every reply received (a few more than `killAfter` may
 * have been on their way: the server sent them before it died, so they are acknowledgements too).
 */
async function loadAndKill(server: RunningServer, ops: Op[], killAfter: number): Promise<Map<number, Frame>> {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
  const replies = new Map<number, Frame>();
  let welcomed!: () => void;
  const welcome = new Promise<void>((r) => (welcomed = r));
  const done = new Promise<void>((resolve, reject) => {
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as Frame;
      if (f.type === 'welcome') return welcomed();
      if (typeof f.id !== 'number') return;
      if (f.type !== 'reply') return reject(new Error(`op ${f.id} (${JSON.stringify(ops[f.id]!.frame).slice(0, 200)}) failed: ${JSON.stringify(f)}`));
      replies.set(f.id, f);
      if (replies.size === killAfter) {
        server.child.kill('SIGKILL'); // right now, before anything else runs
        resolve();
      }
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (replies.size < killAfter) reject(new Error(`connection closed after ${replies.size} of ${killAfter} replies; server output: ${server.lines.join('\n')}`));
    });
  });
  await Promise.race([welcome, done]);
  ops.forEach((op, id) => ws.send(JSON.stringify({ ...op.frame, id })));
  await done;
  const exit = await server.exited;
  assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
  ws.terminate();
  return replies;
}

/** Apply the replies (in the order sent) and the missing replies to the model. */
function settle(ops: Op[], replies: Map<number, Frame>): void {
  ops.forEach((op, id) => {
    const reply = replies.get(id);
    if (reply) op.acknowledged(reply);
    else if (op.unanswered) op.unanswered();
    else assert.fail(`op ${id} was not answered: ${JSON.stringify(op.frame).slice(0, 200)}`);
  });
}

const sameData = (got: Frame | Record<string, unknown>, want: Data, what: string) =>
  assert.deepEqual({ data: got.data, encoding: got.encoding }, { data: want.data, encoding: want.encoding }, what);

/** Every publication of a channel through `history` requests (paged with since), oldest first. */
async function readHistory(c: TestClient, channel: string): Promise<{ pubs: Frame[]; offset: number; epoch: string }> {
  const pubs: Frame[] = [];
  let position: { offset: number; epoch: string } | undefined;
  for (;;) {
    const r = await c.request({ type: 'history', channel, limit: 1000, ...(position && { since: position }) }, 10_000);
    assert.equal(r.type, 'reply', JSON.stringify(r));
    const page = r.data as { publications: Frame[]; offset: number; epoch: string };
    if (position) assert.equal(page.epoch, position.epoch);
    if (page.publications.length === 0) return { pubs, offset: page.offset, epoch: page.epoch };
    pubs.push(...page.publications);
    position = { offset: page.publications.at(-1)!.offset as number, epoch: page.epoch };
  }
}

/**
 * Check the restarted server against the model: history, retained messages. Publications sent but
 * not acknowledged before the kill (model.unacked) may be there too, but only as the very next
 * offsets and in the order sent; those found are adopted into the model.
 */
async function verify(server: RunningServer, model: Model): Promise<void> {
  const c = await TestClient.connect(`ws://127.0.0.1:${server.port}/ws`);
  try {
    // History: every acknowledged publication, at its offset, with its data, in the same epoch.
    for (const channel of model.unacked.keys()) stream(model, channel);
    for (const [channel, s] of model.streams) {
      const h = await readHistory(c, channel);
      if (s.epoch === undefined) s.epoch = h.epoch; // nothing acknowledged yet on this channel
      assert.equal(h.epoch, s.epoch, `${channel}: the epoch survived the crash`);
      assert.ok(h.offset >= s.pubs.length, `${channel}: top ${h.offset} is at least the ${s.pubs.length} acknowledged`);
      assert.deepEqual(h.pubs.map((p) => p.offset), Array.from({ length: h.offset }, (_, i) => i + 1), `${channel}: offsets 1…${h.offset} with no gap`);
      s.pubs.forEach((want, i) => sameData(h.pubs[i]!, want, `${channel} offset ${i + 1}`));
      const extra = h.pubs.slice(s.pubs.length);
      const unacked = model.unacked.get(channel) ?? [];
      // Stored but not acknowledged before the kill: allowed, but only as the very next publications sent, in order.
      assert.ok(extra.length <= unacked.length, `${channel}: ${extra.length} publications after the acknowledged ones, but only ${unacked.length} were in flight`);
      extra.forEach((p, j) => {
        sameData(p, unacked[j]!, `${channel} offset ${s.pubs.length + j + 1} (in flight at the kill)`);
        s.pubs.push(unacked[j]!);
      });
    }
    model.unacked.clear();
    // Retained: a subscription to status/# gets exactly the retained messages that are set.
    const sub = await c.request({ type: 'subscribe', channel: 'status/#' });
    assert.equal(sub.type, 'reply');
    const live = [...model.retained].filter(([ch, d]) => ch.startsWith('status/') && d !== null) as [string, Data][];
    const got = new Map<string, Frame>();
    for (let i = 0; i < live.length; i++) {
      const m = await c.next((f) => f.type === 'message', 5000);
      assert.equal(m.retained, true);
      got.set(m.channel as string, m);
    }
    assert.deepEqual([...got.keys()].sort(), live.map(([ch]) => ch).sort());
    for (const [ch, d] of live) sameData(got.get(ch)!, d, `retained ${ch}`);
    assert.deepEqual(await c.nothing((f) => f.type === 'message', 200), [], 'no other retained message');
    // The HTTP API sees the same, and a cleared one is gone.
    const base = `http://127.0.0.1:${server.port}`;
    for (const [ch, d] of model.retained) {
      const r = await api(base, 'GET', `/api/channels/${ch}/retained`);
      if (d === null) assert.equal(r.status, 404, `${ch} was cleared`);
      else {
        assert.equal(r.status, 200, `${ch}: ${JSON.stringify(r.body)}`);
        sameData(r.body.retained, d, `GET retained ${ch}`);
      }
    }
    // A retained message on a channel with history keeps its offset and epoch.
    const rh = model.retained.get(RETAINED_WITH_HISTORY);
    if (rh) {
      const r = await c.request({ type: 'subscribe', channel: RETAINED_WITH_HISTORY });
      const s = model.streams.get(RETAINED_WITH_HISTORY)!;
      assert.deepEqual(r.data, { offset: s.pubs.length, epoch: s.epoch });
      const m = await c.next((f) => f.type === 'message' && f.channel === RETAINED_WITH_HISTORY, 5000);
      assert.equal(m.retained, true);
      assert.equal(m.offset, model.retainedOffsets.get(RETAINED_WITH_HISTORY));
      assert.equal(m.epoch, s.epoch);
      sameData(m, rh, 'retained with history');
    }
  } finally {
    await c.close();
  }
}

describe('crash safety (SIGKILL right after acknowledgements)', { timeout: 240_000 }, () => {
  it('keeps every acknowledged publication, retained message and stored direct message over several crashes', async () => {
    const work = mkdtempSync(join(tmpdir(), 'hubbub-crash-'));
    dirs.push(work);
    const dataDir = join(work, 'data');
    const configFile = join(work, 'hubbub.json');
    writeFileSync(configFile, JSON.stringify({ namespaces: { chat: { history_size: 10000 } } }));
    const model: Model = { streams: new Map(), retained: new Map(), retainedOffsets: new Map(), inbox: [], unacked: new Map() };
    const rounds = 3;
    for (let round = 1; round <= rounds + 1; round++) {
      const server = await serve(dataDir, configFile);
      if (round > 1) {
        await verify(server, model);
        await checkInbox(server, model);
      }
      if (round > rounds) {
        server.child.kill('SIGKILL');
        await server.exited;
        break;
      }
      const ops = buildLoad(model, round, 2000, true);
      settle(ops, await loadAndKill(server, ops, ops.length));
    }
    assert.equal(model.streams.get('chat/c0')!.pubs.length, rounds * 501);
    assert.equal(model.streams.get('chat/c1')!.pubs.length, rounds * 500);
  });

  it('a kill with publishes still in flight leaves every acknowledged one and, after them, only the next ones sent, with no gap', async () => {
    const work = mkdtempSync(join(tmpdir(), 'hubbub-crash-'));
    dirs.push(work);
    const dataDir = join(work, 'data');
    const configFile = join(work, 'hubbub.json');
    writeFileSync(configFile, JSON.stringify({ namespaces: { chat: { history_size: 10000 } } }));
    const model: Model = { streams: new Map(), retained: new Map(), retainedOffsets: new Map(), inbox: [], unacked: new Map() };
    const rounds = 3;
    let acknowledged = 0;
    for (let round = 1; round <= rounds + 1; round++) {
      const server = await serve(dataDir, configFile);
      if (round > 1) await verify(server, model);
      if (round > rounds) {
        server.child.kill('SIGKILL');
        await server.exited;
        break;
      }
      const ops = buildLoad(model, round, 2000, false);
      // Kill at a different point each round, with most of the publishes still on their way.
      const replies = await loadAndKill(server, ops, [700, 1, 1500][round - 1]!);
      acknowledged += replies.size;
      settle(ops, replies);
    }
    const kept = CHANNELS.reduce((n, ch) => n + (model.streams.get(ch)?.pubs.length ?? 0), 0);
    assert.ok(kept >= acknowledged, `${kept} kept, ${acknowledged} acknowledged`);
  });
});

/**
 * bob connects: his stored messages arrive right after hello, stored:true, oldest first, exactly
 * the unacknowledged ones. He acknowledges the older half; the rest must come again next time.
 */
async function checkInbox(server: RunningServer, model: Model): Promise<void> {
  const bob = await TestClient.connect(`ws://127.0.0.1:${server.port}/ws`);
  try {
    const hello = await bob.request({ type: 'hello', user: 'bob' });
    assert.equal(hello.type, 'reply');
    const got: Frame[] = [];
    for (let i = 0; i < model.inbox.length; i++) got.push(await bob.next((f) => f.type === 'direct', 5000));
    assert.deepEqual(await bob.nothing((f) => f.type === 'direct', 200), [], 'nothing more than the unacknowledged ones');
    assert.deepEqual(got.map((f) => f.id), model.inbox.map((m) => m.id), 'every stored message, oldest first');
    got.forEach((f, i) => {
      assert.equal(f.stored, true);
      sameData(f, model.inbox[i]!.data, `stored message ${i}`);
    });
    const half = model.inbox.slice(0, Math.ceil(model.inbox.length / 2)).map((m) => m.id);
    const ack = await bob.request({ type: 'ack', ids: half });
    assert.deepEqual(ack.data, { acked: half.length });
    model.inbox = model.inbox.slice(half.length);
  } finally {
    await bob.close();
  }
}

