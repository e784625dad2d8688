/**
 * Storage engines: the shared contract (test/store-contract.ts) against MemoryStore and SqliteStore,
 * then what is particular to SQLite: a fresh data_dir is created, and a file that is not a
 * database, or a damaged one, is refused with an error naming it and is never reset.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MemoryStore } from '../src/engine/memory-store.js';
import { SqliteStore, StoreOpenError } from '../src/engine/sqlite-store.js';
import type { HistoryPolicy } from '../src/engine/store.js';
import { Payload } from '../src/protocol/payload.js';
import { storeContract } from './store-contract.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hubbub-store-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

storeContract('memory', { create: () => new MemoryStore() });

storeContract('sqlite', {
  create: () => new SqliteStore(join(tempDir(), 'hubbub.db')),
  reopen: (closed) => new SqliteStore(closed.file),
});

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'hubbub.js');
const BIG: HistoryPolicy = { size: 10_000, ttl: 0 };

/** A real database file with some of everything in it, closed. */
async function databaseWithData(): Promise<string> {
  const file = join(tempDir(), 'hubbub.db');
  const s = new SqliteStore(file);
  await s.open();
  const appends = [];
  for (let i = 0; i < 2000; i++) appends.push(s.append(`chat/${i % 5}`, { payload: Payload.json({ i, pad: 'x'.repeat(200) }), kind: 'text', from: { server: true }, ts: Date.now() }, BIG));
  await Promise.all(appends);
  await s.retain('status/a', { channel: 'status/a', offset: 0, payload: Payload.json('on'), kind: 'text', from: { server: true }, ts: Date.now() });
  await s.storeDirect({ id: 'm1', user: 'bob', payload: Payload.json('hi'), kind: 'text', from: { server: true }, ts: Date.now() }, { count: 10, bytes: 1000, ttl: 0 });
  await s.close();
  return file;
}

/** Opening must fail with a StoreOpenError naming the file, and leave the file exactly as it was. */
async function assertRefused(file: string): Promise<void> {
  const before = readFileSync(file);
  const store = new SqliteStore(file);
  await assert.rejects(store.open(), (err: unknown) => {
    assert.ok(err instanceof StoreOpenError, `expected a StoreOpenError, got ${String(err)}`);
    assert.ok(err.message.includes(file), `the message names the file: ${err.message}`);
    return true;
  });
  assert.ok(existsSync(file), 'the file is still there');
  assert.ok(readFileSync(file).equals(before), 'the file is unchanged: nothing was reset');
}

describe('SqliteStore', () => {
  it('creates a data directory that does not exist yet', async () => {
    const dir = join(tempDir(), 'not', 'there', 'yet');
    assert.equal(existsSync(dir), false);
    const s = new SqliteStore(join(dir, 'hubbub.db'));
    await s.open();
    const p = await s.append('chat/a', { payload: Payload.json(1), kind: 'text', from: { server: true }, ts: Date.now() }, BIG);
    assert.equal(p.offset, 1);
    await s.close();
    assert.ok(statSync(join(dir, 'hubbub.db')).isFile());
  });

  it('refuses a file that is not a database, naming it, and leaves it alone', async () => {
    const file = join(tempDir(), 'hubbub.db');
    writeFileSync(file, 'this is not a database, just some text that happens to be here\n'.repeat(200));
    await assertRefused(file);
    // A second attempt says the same: the first one did not "repair" anything.
    await assertRefused(file);
  });

  it('refuses a database whose header is damaged', async () => {
    const file = await databaseWithData();
    const bytes = readFileSync(file);
    bytes.fill(0x5a, 0, 100);
    writeFileSync(file, bytes);
    await assertRefused(file);
  });

  it('refuses a truncated database', async () => {
    const file = await databaseWithData();
    const bytes = readFileSync(file);
    assert.ok(bytes.length > 64 * 1024, `a database big enough to truncate (${bytes.length} bytes)`);
    writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 3)));
    await assertRefused(file);
  });

  it('refuses a database with a damaged page', async () => {
    const file = await databaseWithData();
    const bytes = readFileSync(file);
    const pageSize = bytes.readUInt16BE(16) === 1 ? 65536 : bytes.readUInt16BE(16);
    // Scribble over the start of a few b-tree pages (page 1 holds the header and schema and stays intact).
    for (const page of [2, 3, 4]) bytes.fill(0xa5, page * pageSize, page * pageSize + 64);
    writeFileSync(file, bytes);
    await assertRefused(file);
  });

  it('opens an intact database with data in it (the damage tests start from a good file)', async () => {
    const file = await databaseWithData();
    const s = new SqliteStore(file);
    await s.open();
    const page = await s.history('chat/0', { limit: 1000 }, BIG);
    assert.equal(page.position.offset, 400);
    assert.equal(page.publications.length, 400);
    assert.equal((await s.retained('status/a')).length, 1);
    assert.equal((await s.pendingDirect('bob', { count: 10, bytes: 1000, ttl: 0 })).length, 1);
    await s.close();
  });

  it('refuses a data_dir that is a file, naming the path', async () => {
    const notADir = join(tempDir(), 'plain-file');
    writeFileSync(notADir, 'x');
    const s = new SqliteStore(join(notADir, 'hubbub.db'));
    await assert.rejects(s.open(), (err: unknown) => err instanceof StoreOpenError && err.message.includes(notADir));
  });

  it('a batch that cannot be written (disk full) rejects every append in it and leaves no gap in the offsets', async () => {
    const s = new SqliteStore(join(tempDir(), 'hubbub.db'));
    await s.open();
    try {
      const pub = (bytes: number) => ({ payload: Payload.bytes(new Uint8Array(bytes).fill(7)), kind: 'text', from: { server: true as const }, ts: Date.now() });
      const a1 = await s.append('chat/a', pub(10), BIG);
      const b1 = await s.append('chat/b', pub(10), BIG);
      // A full disk, the SQLite way: the file may not grow any more (the connection is internal to the store).
      const db = (s as unknown as { db: { pragma(source: string, options?: { simple: boolean }): unknown } }).db;
      db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true }))}`);
      // One batch: channel b is written before the statement that fails, channel c after it.
      const batch = await Promise.allSettled([s.append('chat/b', pub(10), BIG), s.append('chat/a', pub(200_000), BIG), s.append('chat/c', pub(10), BIG)]);
      for (const r of batch) {
        assert.equal(r.status, 'rejected');
        assert.match(String((r as PromiseRejectedResult).reason), /full/);
      }
      db.pragma('max_page_count = 1073741823');
      assert.deepEqual(await s.append('chat/a', pub(10), BIG), { offset: 2, epoch: a1.epoch });
      assert.deepEqual(await s.append('chat/b', pub(10), BIG), { offset: 2, epoch: b1.epoch });
      assert.equal((await s.append('chat/c', pub(10), BIG)).offset, 1);
      for (const ch of ['chat/a', 'chat/b']) {
        const page = await s.history(ch, { limit: 100 }, BIG);
        assert.deepEqual(page.publications.map((p) => [p.offset, p.payload.size]), [[1, 10], [2, 10]], ch);
      }
    } finally {
      await s.close();
    }
  });

  it('hubbub serve with a damaged database exits non-zero, naming the file, and leaves it alone', async () => {
    assert.ok(existsSync(join(root, 'dist', 'cli', 'main.js')), 'dist/ is missing: run `npm run build` (npm test does)');
    const dir = tempDir();
    const file = join(dir, 'hubbub.db');
    const garbage = Buffer.from('garbage, not SQLite\n'.repeat(500));
    writeFileSync(file, garbage);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('HUBBUB_')) delete env[k];
    const child = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', dir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (c, s) => resolve({ code: c, signal: s })));
    clearTimeout(timer);
    assert.equal(signal, null, `exited by itself (output: ${output})`);
    assert.notEqual(code, 0);
    assert.ok(output.includes(file), `the output names ${file}: ${output}`);
    assert.doesNotMatch(output, /hubbub listening/);
    assert.ok(readFileSync(file).equals(garbage), 'the file is unchanged');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('hubbub.db')), ['hubbub.db']);
  });
});
