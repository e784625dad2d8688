/**
 * The CLI and binary data (issue 5): `--encoding protobuf` on sub, pub and client, `pub --file` and
 * `sub --save-dir`. The built bin runs in child processes against a real server; the other side
 * is a raw WebSocket client or the SDK.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Hubbub, type MessageFrame } from '../src/client/index.js';
import { toBase64 } from '../src/protocol/base64.js';
import { crc32 } from '../src/protocol/crc32.js';
import { Cli, bin, childEnv, root, type CliOptions } from './cli-process.js';
import { TestClient, startServer, type Frame, type TestServer } from './helpers.js';


interface Kit {
  cli: (args: string[], options?: CliOptions) => Cli;
  client: (options?: Parameters<typeof TestClient.connect>[1]) => Promise<TestClient>;
  sdk: (options?: ConstructorParameters<typeof Hubbub>[1]) => Promise<Hubbub>;
  /** A fresh temporary directory, removed at the end. */
  dir: () => string;
}

/** Runs a test body; every child is killed, every client closed and every temporary directory removed at the end. */
async function scenario(body: (kit: Kit) => Promise<void>): Promise<void> {
  const children: Cli[] = [];
  const clients: TestClient[] = [];
  const sdks: Hubbub[] = [];
  const dirs: string[] = [];
  try {
    await body({
      cli: (args, options) => {
        const c = new Cli(args, { waitMs: 15000, exitMs: 30000, ...options });
        children.push(c);
        return c;
      },
      client: async (options) => {
        const c = await TestClient.connect(hub.url, options);
        clients.push(c);
        return c;
      },
      sdk: async (options) => {
        const h = new Hubbub(hub.url, options);
        sdks.push(h);
        await h.connect();
        return h;
      },
      dir: () => {
        const d = mkdtempSync(join(tmpdir(), 'hubbub-cli-binary-'));
        dirs.push(d);
        return d;
      },
    });
  } finally {
    for (const c of children) if (!c.status) c.child.kill('SIGKILL');
    for (const h of sdks) h.close();
    await Promise.all(clients.map((c) => c.close()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** A sub started with --verbose, once the server has confirmed its subscriptions; with its client id. */
async function startSub(kit: Kit, args: string[]): Promise<{ sub: Cli; id: string }> {
  const sub = kit.cli(['sub', ...args, '--url', hub.url, '--verbose']);
  const id = (await sub.stderrLine(/as client (\S+)/))[1]!;
  await sub.stderrLine(/subscribed to/);
  return { sub, id };
}

/** Whether the server speaks protobuf with this connection (the negotiated subprotocol). */
function speaksProtobuf(id: string): boolean {
  const c = hub.server.hub.clients.get(id);
  assert.ok(c, `client ${id} is connected`);
  return c.protobuf;
}

/** Bytes that compress to about half: random hex digits with line breaks. */
function compressible(size: number): Buffer {
  const text = Buffer.from(randomBytes(Math.ceil(size / 2)).toString('hex'));
  for (let i = 63; i < text.length; i += 64) text[i] = 0x0a;
  return text.subarray(0, size);
}

/** stderr holds exactly one line (no stack trace), matching `re`. */
function oneLine(err: string, re: RegExp): void {
  const lines = err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${err}`);
  assert.match(lines[0]!, re);
}

/** A transfer sent chunk by chunk from a raw client, for names and failures the SDK and CLI would never produce. */
async function rawTransfer(c: TestClient, fields: { transfer: string; channel: string; data: Uint8Array; name?: string; compression?: 'gzip'; totalCrc?: number; last?: boolean }): Promise<Frame> {
  const carried = fields.compression === 'gzip' ? gzipSync(fields.data) : fields.data;
  const frame: Record<string, unknown> = {
    type: 'chunk',
    transfer: fields.transfer,
    seq: 0,
    channel: fields.channel,
    size: fields.data.length,
    data: toBase64(carried),
    crc: crc32(carried),
  };
  if (fields.name !== undefined) frame.name = fields.name;
  if (fields.compression) frame.compression = fields.compression;
  if (fields.last !== false) Object.assign(frame, { last: true, total_crc: fields.totalCrc ?? crc32(fields.data) });
  return c.request(frame, 5000);
}

let hub: TestServer;

before(async () => {
  assert.ok(existsSync(join(root, 'dist', 'cli', 'sub.js')) && existsSync(join(root, 'dist', 'cli', 'pub.js')), 'dist/ is missing or stale: run `npm run build` (npm test does)');
  hub = await startServer();
});
after(() => hub.close());

describe('--encoding protobuf', () => {
  it('sub receives JSON and byte publications over protobuf, and prints them like over JSON', () =>
    scenario(async (kit) => {
      const { sub, id } = await startSub(kit, ['enc/#', '--encoding', 'protobuf', '-n', '4']);
      const { sub: subJson, id: idJson } = await startSub(kit, ['enc/#', '-e', 'protobuf', '--json', '-n', '2']);
      assert.equal(speaksProtobuf(id), true, 'the server negotiated protobuf with sub');
      assert.equal(speaksProtobuf(idJson), true);
      const pubr = await kit.client();
      const bytes = Uint8Array.from([0, 1, 2, 250, 255]);
      assert.equal((await pubr.request({ type: 'publish', channel: 'enc/json', data: { n: 1, s: 'é x' } })).type, 'reply');
      assert.equal((await pubr.request({ type: 'publish', channel: 'enc/bytes', data: toBase64(bytes), encoding: 'base64' })).type, 'reply');
      assert.equal((await pubr.request({ type: 'publish', channel: 'enc/text', data: 'plain text' })).type, 'reply');
      assert.equal((await pubr.request({ type: 'publish', channel: 'enc/json', data: '{"looks":"like json"}' })).type, 'reply');
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(sub.lines, ['enc/json {"n":1,"s":"é x"}', 'enc/bytes <5 bytes>', 'enc/text plain text', 'enc/json {"looks":"like json"}']);
      assert.deepEqual(await subJson.exit(), { code: 0, signal: null }, subJson.err);
      const [a, b] = subJson.lines.map((l) => JSON.parse(l) as Frame);
      assert.deepEqual(a!.data, { n: 1, s: 'é x' });
      assert.equal(a!.encoding, undefined);
      // --json shows bytes the way the JSON protocol carries them.
      assert.equal(b!.data, toBase64(bytes));
      assert.equal(b!.encoding, 'base64');
      assert.equal(b!.channel, 'enc/bytes');
    }));

  it('pub --encoding protobuf publishes JSON that a JSON SDK subscriber receives as JSON', () =>
    scenario(async (kit) => {
      const watcher = await kit.sdk();
      const got: MessageFrame[] = [];
      await watcher.subscribe('encpub/#', (_d, m) => got.push(m)).ready;
      const pub = kit.cli(['pub', 'encpub/a', '{"a":[1,"x",null],"b":{"c":true}}', '--url', hub.url, '--encoding', 'protobuf']);
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      const text = kit.cli(['pub', 'encpub/b', 'hello there', '-k', 'notification', '--url', hub.url, '-e', 'protobuf']);
      assert.deepEqual(await text.exit(), { code: 0, signal: null }, text.err);
      // Acknowledged after delivery; give the watcher's socket a moment to read it.
      for (let i = 0; i < 200 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(
        got.map((m) => [m.channel, m.data, m.kind]),
        [
          ['encpub/a', { a: [1, 'x', null], b: { c: true } }, 'text'],
          ['encpub/b', 'hello there', 'notification'],
        ],
      );
      assert.equal(pub.out + pub.err + text.out + text.err, '', 'silent on success, as with JSON');
    }));

  it('pub speaks protobuf to the server (checked on the server while it waits for stdin)', () =>
    scenario(async (kit) => {
      const watcher = await kit.client();
      await watcher.request({ type: 'subscribe', channel: 'encstdin/x' });
      const pub = kit.cli(['pub', 'encstdin/x', '-', '--url', hub.url, '-e', 'protobuf', '-v'], { stdin: true });
      const id = (await pub.stderrLine(/as client (\S+)/))[1]!;
      assert.equal(speaksProtobuf(id), true);
      pub.child.stdin!.end('{"k":1}\nsecond\n');
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      assert.deepEqual(
        watcher.pending('message').map((m) => m.data),
        [{ k: 1 }, 'second'],
      );
    }));

  it('HUBBUB_ENCODING sets the default; --encoding json is plain JSON', () =>
    scenario(async (kit) => {
      const env = kit.cli(['sub', 'encenv/x', '--url', hub.url, '-v'], { env: { HUBBUB_ENCODING: 'protobuf' } });
      const envId = (await env.stderrLine(/as client (\S+)/))[1]!;
      await env.stderrLine(/subscribed to/);
      assert.equal(speaksProtobuf(envId), true);
      const { id } = await startSub(kit, ['encenv/x', '--encoding', 'json']);
      assert.equal(speaksProtobuf(id), false);
    }));

  it('client --encoding protobuf shows byte payloads and transfers by size and name, and sends files', () =>
    scenario(async (kit) => {
      const dir = kit.dir();
      const file = join(dir, 'photo.jpg');
      writeFileSync(file, randomBytes(100_000));
      const watcher = await kit.sdk();
      const got: MessageFrame[] = [];
      await watcher.subscribe('cbin/room', (_d, m) => got.push(m)).ready;
      const client = kit.cli(['client', '--url', hub.url, '--room', 'cbin/room', '--encoding', 'protobuf', '--username', 'carol'], { stdin: true });
      await client.until('connected', () => /\* connected to .* as (\S+)/.test(client.out));
      const id = /as (\S+) \(carol\)/.exec(client.out)![1]!;
      assert.equal(speaksProtobuf(id), true);
      const pubr = await kit.client();
      await pubr.request({ type: 'publish', channel: 'cbin/room', data: toBase64(Uint8Array.from([1, 2, 3])), encoding: 'base64' });
      await client.until('the byte message', () => client.out.includes('<3 bytes>'));
      client.child.stdin!.write(`file cbin/room ${file}\nfile cbin/room ${join(dir, 'missing.bin')}\nfile cbin/room\n`);
      await client.until('the transfer summary', () => /sent photo\.jpg/.test(client.out));
      await client.until('its own transfer, back from the room', () => /\[cbin\/room\] carol: <100000 bytes: photo\.jpg>/.test(client.out));
      await client.until('the unreadable file', () => /cannot read .*missing\.bin/.test(client.out));
      await client.until('the usage line', () => client.out.includes('usage: file <channel> <path>'));
      client.child.stdin!.end('quit\n');
      assert.deepEqual(await client.exit(), { code: 0, signal: null }, client.err);
      assert.ok(client.lines.includes(`[cbin/room] ${pubr.welcome.client}: <3 bytes>`), client.out);
      assert.match(client.out, /^sent photo\.jpg \(100000 bytes, 7 chunks\) to cbin\/room: delivered to 2 connections$/m);
      for (let i = 0; i < 200 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      const t = got.find((m) => m.transfer !== undefined);
      assert.ok(t, 'the SDK watcher received the transfer');
      assert.equal(t.transfer!.name, 'photo.jpg');
      assert.equal(sha256(t.data as Uint8Array), sha256(readFileSync(file)));
    }));

  it('chat --encoding protobuf chats with JSON clients', () =>
    scenario(async (kit) => {
      const watcher = await kit.sdk();
      const got: unknown[] = [];
      await watcher.subscribe('chat/binroom', (d) => got.push(d)).ready;
      const chat = kit.cli(['chat', '--url', hub.url, '--room', 'binroom', '--name', 'dora', '-e', 'protobuf'], { stdin: true });
      await chat.until('joined', () => chat.out.includes('you joined #binroom'));
      const me = [...hub.server.hub.clients.values()].find((c) => c.name === 'dora');
      assert.ok(me, 'chat is connected');
      assert.equal(me.protobuf, true);
      await watcher.publish('chat/binroom', { text: 'hi dora' });
      await chat.until('the reply', () => chat.out.includes(': hi dora'));
      chat.child.stdin!.end('hello from protobuf\n');
      assert.deepEqual(await chat.exit(), { code: 0, signal: null }, chat.err);
      for (let i = 0; i < 200 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(got, [{ text: 'hi dora' }, { text: 'hello from protobuf' }]);
    }));
});

describe('pub --file and sub --save-dir', () => {
  it('a ~3 MiB file arrives byte-identical, in both encodings, with and without compression', () =>
    scenario(async (kit) => {
      const src = kit.dir();
      const inJson = join(kit.dir(), 'in', 'nested'); // created by sub
      const inProto = kit.dir();
      const size = 3 * 1024 * 1024 + 123;
      const files = {
        'random.bin': randomBytes(size),
        'gzip.txt': compressible(size),
        'brotli.txt': compressible(size),
        'deflate.bin': randomBytes(size), // incompressible: chunks go raw even with --compression
      };
      for (const [name, data] of Object.entries(files)) writeFileSync(join(src, name), data);
      const { sub: subJson } = await startSub(kit, ['files/#', '--save-dir', inJson, '-n', '4']);
      const { sub: subProto, id: protoId } = await startSub(kit, ['files/#', '--save-dir', inProto, '-e', 'protobuf', '-n', '4']);
      assert.equal(speaksProtobuf(protoId), true);
      const chunks = await kit.client(); // sees the chunks as relayed, with their compression
      await chunks.request({ type: 'subscribe', channel: 'files/#' });

      const runs: [string, string[], RegExp][] = [
        ['random.bin', [], /^sent random\.bin \(3145851 bytes, 193 chunks\) to files\/random: delivered to 3 connections$/],
        ['gzip.txt', ['--compression', 'gzip'], /^sent gzip\.txt \(3145851 bytes, 193 chunks\) to files\/gzip: delivered to 3 connections$/],
        ['brotli.txt', ['-e', 'protobuf', '-c', 'brotli', '--chunk-size', '65536'], /^sent brotli\.txt \(3145851 bytes, 49 chunks\) to files\/brotli: delivered to 3 connections$/],
        ['deflate.bin', ['--encoding', 'protobuf', '--compression', 'deflate'], /^sent deflate\.bin \(3145851 bytes, 193 chunks\) to files\/deflate: delivered to 3 connections$/],
      ];
      for (const [name, args, summary] of runs) {
        const channel = `files/${name.split('.')[0]}`;
        const pub = kit.cli(['pub', channel, '--file', join(src, name), '--url', hub.url, ...args]);
        assert.deepEqual(await pub.exit(), { code: 0, signal: null }, `${name}: ${pub.err}`);
        assert.match(pub.out.trimEnd(), summary);
        assert.equal(pub.err, '');
      }
      assert.deepEqual(await subJson.exit(), { code: 0, signal: null }, subJson.err);
      assert.deepEqual(await subProto.exit(), { code: 0, signal: null }, subProto.err);
      for (const [sub, dir] of [
        [subJson, inJson],
        [subProto, inProto],
      ] as const) {
        assert.deepEqual(sub.lines, [
          `files/random saved ${size} bytes to ${join(dir, 'random.bin')}`,
          `files/gzip saved ${size} bytes to ${join(dir, 'gzip.txt')}`,
          `files/brotli saved ${size} bytes to ${join(dir, 'brotli.txt')}`,
          `files/deflate saved ${size} bytes to ${join(dir, 'deflate.bin')}`,
        ]);
        assert.deepEqual(readdirSync(dir).sort(), Object.keys(files).sort());
        for (const [name, data] of Object.entries(files)) assert.equal(sha256(readFileSync(join(dir, name))), sha256(data), `${dir}/${name}`);
      }
      // The compression options reached the wire: compressible data went compressed, random data raw.
      const relayed = chunks.pending('chunk');
      const methods = (transferName: string): Set<unknown> => {
        const first = relayed.find((f) => f.seq === 0 && f.name === transferName)!;
        return new Set(relayed.filter((f) => f.transfer === first.transfer).map((f) => f.compression));
      };
      assert.deepEqual(methods('gzip.txt'), new Set(['gzip']));
      assert.deepEqual(methods('brotli.txt'), new Set(['brotli']));
      assert.deepEqual(methods('deflate.bin'), new Set([undefined]));
      assert.deepEqual(methods('random.bin'), new Set([undefined]));
    }));

  it('never overwrites: the same name twice, and a file that was there before', () =>
    scenario(async (kit) => {
      const src = kit.dir();
      const inbox = kit.dir();
      writeFileSync(join(inbox, 'keep.txt'), 'precious');
      const first = randomBytes(40_000);
      const second = randomBytes(50_000);
      const third = randomBytes(10);
      const { sub } = await startSub(kit, ['dup/x', '--save-dir', inbox, '-n', '4']);
      for (const [name, data] of [
        ['same.tar.gz', first],
        ['same.tar.gz', second],
        ['keep.txt', third],
        ['same.tar.gz', third],
      ] as const) {
        writeFileSync(join(src, name), data);
        const pub = kit.cli(['pub', 'dup/x', '--file', join(src, name), '--url', hub.url]);
        assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      }
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(sub.lines, [
        `dup/x saved 40000 bytes to ${join(inbox, 'same.tar.gz')}`,
        `dup/x saved 50000 bytes to ${join(inbox, 'same-1.tar.gz')}`,
        `dup/x saved 10 bytes to ${join(inbox, 'keep-1.txt')}`,
        `dup/x saved 10 bytes to ${join(inbox, 'same-2.tar.gz')}`,
      ]);
      assert.equal(readFileSync(join(inbox, 'keep.txt'), 'utf8'), 'precious');
      assert.deepEqual(readFileSync(join(inbox, 'same.tar.gz')), first);
      assert.deepEqual(readFileSync(join(inbox, 'same-1.tar.gz')), second);
      assert.deepEqual(readFileSync(join(inbox, 'keep-1.txt')), third);
      assert.deepEqual(readFileSync(join(inbox, 'same-2.tar.gz')), third);
    }));

  it('hostile transfer names are saved inside the directory under a safe name', () =>
    scenario(async (kit) => {
      const base = kit.dir();
      const inbox = join(base, 'a', 'b', 'inbox');
      const hostile: [name: string | undefined, transfer: string, saved: string][] = [
        ['../../etc/passwd', 'h1', 'passwd'],
        ['a/b\u0007.bin', 'h2', 'b.bin'],
        ['..\\..\\win.ini', 'h3', 'win.ini'],
        ['\u001b[31mred\u001b[0m.txt', 'h4', '[31mred[0m.txt'],
        ['report\u202etxt.exe', 'h5', 'reporttxt.exe'],
        ['..', 'h6', 'h6'], // nothing usable left: the transfer id
        ['dir/', 'h7', 'h7'],
        [undefined, '../../../id-escape', 'id-escape'], // no name: the id, made safe as well
        ['/', '..', 'transfer'], // neither: a fixed name
        ['é'.repeat(150) + '.bin', 'h8', 'é'.repeat(98) + '.bin'], // 304 bytes of UTF-8: cut to fit, extension kept
      ];
      const { sub } = await startSub(kit, ['hostile/x', '--save-dir', inbox, '-n', String(hostile.length)]);
      const sender = await kit.client();
      for (const [name, transfer] of hostile) {
        const answer = await rawTransfer(sender, { transfer, channel: 'hostile/x', data: Buffer.from(`content of ${transfer}`), ...(name !== undefined && { name }) });
        assert.equal(answer.type, 'reply', JSON.stringify(answer));
      }
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(
        sub.lines,
        hostile.map(([, transfer, saved]) => `hostile/x saved ${Buffer.byteLength(`content of ${transfer}`)} bytes to ${join(inbox, saved)}`),
      );
      assert.deepEqual(readdirSync(inbox).sort(), hostile.map(([, , saved]) => saved).sort());
      for (const [, transfer, saved] of hostile) assert.equal(readFileSync(join(inbox, saved), 'utf8'), `content of ${transfer}`);
      // Nothing landed outside the directory.
      assert.deepEqual(readdirSync(base), ['a']);
      assert.deepEqual(readdirSync(join(base, 'a')), ['b']);
      assert.deepEqual(readdirSync(join(base, 'a', 'b')), ['inbox']);
      assert.ok(!sub.out.includes('\u001b') && !sub.out.includes('\u0007'), 'no control characters printed');
    }));

  it('bytes that are not transfers print as <N bytes> (base64 with --json); --json shows saved files', () =>
    scenario(async (kit) => {
      const inbox = kit.dir();
      const src = kit.dir();
      writeFileSync(join(src, 'small.dat'), Buffer.from('tiny file'));
      const { sub } = await startSub(kit, ['mix/#', '--save-dir', inbox, '-n', '3']);
      const { sub: subJson } = await startSub(kit, ['mix/#', '--save-dir', kit.dir(), '--json', '-n', '3']);
      const pubr = await kit.client();
      await pubr.request({ type: 'publish', channel: 'mix/bytes', data: toBase64(Buffer.from('raw bytes')), encoding: 'base64' });
      const pub = kit.cli(['pub', 'mix/file', '--file', join(src, 'small.dat'), '--url', hub.url, '-k', 'upload']);
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      await pubr.request({ type: 'publish', channel: 'mix/json', data: [1, 2] });
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(sub.lines, ['mix/bytes <9 bytes>', `mix/file saved 9 bytes to ${join(inbox, 'small.dat')}`, 'mix/json [1,2]']);
      assert.deepEqual(readdirSync(inbox), ['small.dat'], 'only transfers become files');
      assert.deepEqual(await subJson.exit(), { code: 0, signal: null }, subJson.err);
      const [bytes, file, json] = subJson.lines.map((l) => JSON.parse(l) as Frame);
      assert.equal(bytes!.data, toBase64(Buffer.from('raw bytes')));
      assert.equal(bytes!.encoding, 'base64');
      assert.equal(file!.type, 'message');
      assert.equal(file!.channel, 'mix/file');
      assert.equal(file!.kind, 'upload');
      assert.equal(file!.data, undefined, 'the data went to the file');
      assert.match(file!.saved as string, /small\.dat$/);
      assert.deepEqual(file!.transfer, { id: (file!.transfer as { id: string }).id, size: 9, name: 'small.dat' });
      assert.equal(readFileSync(file!.saved as string, 'utf8'), 'tiny file');
      assert.deepEqual(json!.data, [1, 2]);
    }));

  it('without --save-dir a transfer prints as its size and name', () =>
    scenario(async (kit) => {
      const src = kit.dir();
      writeFileSync(join(src, 'notes.txt'), compressible(70_000));
      const { sub } = await startSub(kit, ['nosave/x', '-n', '1']);
      const pub = kit.cli(['pub', 'nosave/x', '--file', join(src, 'notes.txt'), '--url', hub.url, '-c', 'gzip']);
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(sub.lines, ['nosave/x <70000 bytes: notes.txt>']);
    }));

  it('shows progress on stderr when it is a terminal, erased before the summary', () =>
    scenario(async (kit) => {
      const dir = kit.dir();
      writeFileSync(join(dir, 'p.bin'), randomBytes(1_000_000));
      // script(1) (util-linux) runs pub on a pseudo-terminal: stderr.isTTY, as in an interactive shell.
      const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
      const command = [process.execPath, bin, 'pub', 'progress/x', '--file', join(dir, 'p.bin'), '--url', hub.url].map(quote).join(' ');
      const run = spawn('script', ['-qec', command, '/dev/null'], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      run.stdout.on('data', (d: Buffer) => (out += d.toString()));
      run.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve, reject) => {
        run.on('error', reject);
        run.on('exit', resolve);
      });
      assert.equal(code, 0, out);
      assert.match(out, /\rhubbub pub: p\.bin \d+% \(\d+\/1000000 bytes\)\x1b\[K/);
      assert.match(out, /\rhubbub pub: p\.bin 100% \(1000000\/1000000 bytes\)\x1b\[K\r\x1b\[Ksent p\.bin \(1000000 bytes, 62 chunks\) to progress\/x: delivered to 0 connections\r?\n$/);
    }));

  it('--file - sends stdin; the transfer has no name, so it is saved under its id', () =>
    scenario(async (kit) => {
      const inbox = kit.dir();
      const data = randomBytes(100_000);
      const { sub } = await startSub(kit, ['stdinfile/x', '--save-dir', inbox, '-n', '1']);
      const pub = kit.cli(['pub', 'stdinfile/x', '--file', '-', '--url', hub.url], { stdin: true });
      pub.child.stdin!.write(data.subarray(0, 30_000));
      await new Promise((r) => setTimeout(r, 100));
      pub.child.stdin!.end(data.subarray(30_000));
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      assert.match(pub.out, /^sent stdin \(100000 bytes, 7 chunks\) to stdinfile\/x: delivered to 1 connection\n$/);
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      const [saved] = readdirSync(inbox);
      assert.match(saved!, /^t\d+-[0-9a-z]+$/, 'the SDK-chosen transfer id');
      assert.equal(sha256(readFileSync(join(inbox, saved!))), sha256(data));
    }));

  it('failed and aborted transfers are reported on stderr and sub carries on', () =>
    scenario(async (kit) => {
      const inbox = kit.dir();
      const { sub } = await startSub(kit, ['broken/x', '--save-dir', inbox, '-n', '1']);
      const sender = await kit.client();
      // Aborted by its sender after the first chunk.
      const opened = await rawTransfer(sender, { transfer: 'ab1', channel: 'broken/x', name: 'half.bin', data: randomBytes(1000), last: false });
      assert.equal(opened.type, 'reply', JSON.stringify(opened));
      assert.equal((await sender.request({ type: 'abort', transfer: 'ab1', message: 'changed my mind' })).type, 'reply');
      await sub.stderrLine(/hubbub sub: transfer_aborted: transfer ab1 \(half\.bin\): aborted: .*changed my mind/);
      // Compressed chunks: the server cannot check the whole payload's CRC, the receiver does.
      const bad = await rawTransfer(sender, { transfer: 'bad1', channel: 'broken/x', name: 'bad.bin', data: compressible(5000), compression: 'gzip', totalCrc: 12345 });
      assert.equal(bad.type, 'reply', JSON.stringify(bad));
      await sub.stderrLine(/hubbub sub: transfer_failed: transfer bad1 \(bad\.bin\): the whole payload failed its CRC-32 check/);
      assert.equal(sub.status, undefined, 'still running');
      // And the next one is saved.
      const good = await rawTransfer(sender, { transfer: 'ok1', channel: 'broken/x', name: 'good.bin', data: Buffer.from('fine') });
      assert.equal(good.type, 'reply');
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(sub.lines, [`broken/x saved 4 bytes to ${join(inbox, 'good.bin')}`]);
      assert.deepEqual(readdirSync(inbox), ['good.bin'], 'no partial files');
    }));
});

describe('errors and usage (sub)', () => {
  it('a file that cannot be written is reported, does not count, and sub carries on', () =>
    scenario(async (kit) => {
      const inbox = join(kit.dir(), 'inbox');
      const { sub } = await startSub(kit, ['nowrite/x', '--save-dir', inbox, '-n', '1']);
      rmSync(inbox, { recursive: true }); // gone after sub made it: the save fails
      const sender = await kit.client();
      assert.equal((await rawTransfer(sender, { transfer: 'w1', channel: 'nowrite/x', name: 'lost.bin', data: Buffer.from('lost') })).type, 'reply');
      await sub.stderrLine(/hubbub sub: cannot save transfer w1 from nowrite\/x: .*no such file or directory/);
      assert.equal(sub.status, undefined, 'still running: the failed save did not count');
      mkdirSync(inbox);
      assert.equal((await rawTransfer(sender, { transfer: 'w2', channel: 'nowrite/x', name: 'kept.bin', data: Buffer.from('kept') })).type, 'reply');
      assert.deepEqual(await sub.exit(), { code: 0, signal: null }, sub.err);
      assert.deepEqual(sub.lines, [`nowrite/x saved 4 bytes to ${join(inbox, 'kept.bin')}`]);
      assert.deepEqual(readdirSync(inbox), ['kept.bin']);
    }));
});

describe('errors and usage', () => {
  it('pub --file of a missing or unreadable file: one clear line, exit 1', () =>
    scenario(async (kit) => {
      const dir = kit.dir();
      const cases: [string, RegExp][] = [
        [join(dir, 'nope.bin'), /^hubbub pub: cannot read .*nope\.bin: no such file$/],
        [dir, /^hubbub pub: cannot read .*: it is a directory$/],
      ];
      for (const [path, re] of cases) {
        const pub = kit.cli(['pub', 'err/x', '--file', path, '--url', hub.url]);
        assert.deepEqual(await pub.exit(), { code: 1, signal: null }, pub.err);
        oneLine(pub.err, re);
        assert.equal(pub.out, '');
      }
    }));

  it('a file over the server max_transfer_size is refused before sending', () =>
    scenario(async (kit) => {
      const small = await startServer({ max_transfer_size: 50_000 });
      try {
        const dir = kit.dir();
        writeFileSync(join(dir, 'big.bin'), randomBytes(60_000));
        const pub = kit.cli(['pub', 'err/x', '--file', join(dir, 'big.bin'), '--url', small.url]);
        assert.deepEqual(await pub.exit(), { code: 1, signal: null }, pub.err);
        oneLine(pub.err, /^hubbub pub: big\.bin is 60000 bytes, over the server's max_transfer_size of 50000$/);
      } finally {
        await small.close();
      }
    }));

  it('sub --save-dir that is a file: exit 1 with one line', () =>
    scenario(async (kit) => {
      const file = join(kit.dir(), 'plain');
      writeFileSync(file, 'x');
      const sub = kit.cli(['sub', 'x', '--save-dir', file, '--url', hub.url]);
      assert.deepEqual(await sub.exit(), { code: 1, signal: null });
      oneLine(sub.err, /^hubbub sub: --save-dir .*plain: it is not a directory$/);
    }));

  it('bad usage exits 2: a bad --encoding, --file with <data>, options that need --file, a chunk size the server cannot take', () =>
    scenario(async (kit) => {
      const dir = kit.dir();
      const file = join(dir, 'f.bin');
      writeFileSync(file, 'abc');
      mkdirSync(join(dir, 'sub'));
      const cases: [string[], RegExp, Record<string, string>?][] = [
        [['sub', 'x', '--url', hub.url, '--encoding', 'xml'], /argument 'xml' is invalid\. Allowed choices are json, protobuf/],
        [['pub', 'x', 'y', '--url', hub.url, '-e', 'msgpack'], /argument 'msgpack' is invalid\. Allowed choices are json, protobuf/],
        [['client', '--url', hub.url, '--encoding', 'PROTOBUF'], /argument 'PROTOBUF' is invalid/],
        [['chat', '--url', hub.url, '--encoding', 'cbor'], /argument 'cbor' is invalid/],
        [['sub', 'x', '--url', hub.url], /value 'bogus' from env 'HUBBUB_ENCODING' is invalid/, { HUBBUB_ENCODING: 'bogus' }],
        [['pub', 'x', 'y', '--file', file, '--url', hub.url], /^hubbub pub: give either <data> or --file, not both$/],
        [['pub', 'x', '--url', hub.url], /^hubbub pub: missing required argument 'data' \(or --file <path>\)$/],
        [['pub', 'x', 'y', '--compression', 'gzip', '--url', hub.url], /^hubbub pub: --compression and --chunk-size go with --file$/],
        [['pub', 'x', 'y', '--chunk-size', '1000', '--url', hub.url], /^hubbub pub: --compression and --chunk-size go with --file$/],
        [['pub', 'x', '--file', file, '--repeat', '2', '--url', hub.url], /--repeat and --interval cannot be combined with --file/],
        [['pub', 'x', '--file', file, '--compression', 'zip', '--url', hub.url], /argument 'zip' is invalid\. Allowed choices are gzip, deflate, brotli/],
        [['pub', 'x', '--file', file, '--chunk-size', '0', '--url', hub.url], /--chunk-size.*at least 1/],
        [['pub', 'x', '--file', file, '--chunk-size', '2000000', '--url', hub.url], /^hubbub pub: --chunk-size 2000000 is too large for this server: at most 783360 bytes \(its max_message_size is 1048576\)$/],
      ];
      for (const [args, re, env] of cases) {
        const c = kit.cli(args, env ? { env } : {});
        assert.deepEqual(await c.exit(), { code: 2, signal: null }, `${args.join(' ')}: ${c.err}`);
        oneLine(c.err, re);
      }
    }));

  it('documents the new options in --help', () =>
    scenario(async (kit) => {
      const expected: Record<string, string[]> = {
        sub: ['--encoding', 'protobuf', '--save-dir', 'base64', 'hubbub sub \'files/#\' --save-dir'],
        pub: ['--encoding', '--file', '--compression', 'brotli', '--chunk-size', 'hubbub pub files/reports --file'],
        client: ['--encoding', 'file <channel> <path>'],
        chat: ['--encoding'],
      };
      for (const [command, needles] of Object.entries(expected)) {
        const c = kit.cli([command, '--help']);
        assert.deepEqual(await c.exit(), { code: 0, signal: null });
        for (const needle of needles) assert.ok(c.out.includes(needle), `${command} --help mentions ${needle}:\n${c.out}`);
      }
    }));
});
