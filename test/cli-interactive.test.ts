/**
 * `hubbub client` and `hubbub chat` as users run them: the built bin in a child process against a real
 * server, scripted through pipes, and interactively in a real terminal (tmux).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestClient, api, startServer, type Frame } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'hubbub.js');

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('HUBBUB_') && !(k in extra)) delete env[k];
  if (!('NO_COLOR' in extra)) delete env.NO_COLOR;
  return env;
}

function assertBuilt(): void {
  assert.ok(existsSync(join(root, 'dist', 'cli', 'client.js')) && existsSync(join(root, 'dist', 'cli', 'chat.js')), 'dist/ is missing or stale: run `npm run build` (npm test does)');
}

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

/** A CLI child process with piped stdio; its output is collected as it comes. */
class Cli {
  out = '';
  err = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private wakers: (() => void)[] = [];

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      this.wake();
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.err += d.toString();
      this.wake();
    });
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    child.stdin!.on('error', () => {}); // the child may exit before reading everything
  }

  static spawn(args: string[], env: Record<string, string> = {}): Cli {
    assertBuilt();
    return new Cli(spawn(process.execPath, [bin, ...args], { env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w();
  }

  write(text: string): void {
    this.child.stdin!.write(text.endsWith('\n') ? text : text + '\n');
  }

  end(): void {
    this.child.stdin!.end();
  }

  get lines(): string[] {
    return this.out.split('\n').filter((l) => l !== '');
  }

  /** Wait until stdout has a line matching `re` (after `from` lines), and return it. */
  async line(re: RegExp, timeoutMs = 5000, from = 0): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find((l) => re.test(l));
      if (hit !== undefined) return hit;
      const left = end - Date.now();
      if (left <= 0 || this.child.exitCode !== null) {
        throw new Error(`no output line matching ${re} within ${timeoutMs} ms; stdout:\n${this.out}\nstderr:\n${this.err}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.wakers.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async exit(timeoutMs = 10000): Promise<number | null> {
    const r = await deadline(this.exited, timeoutMs, `the CLI to exit; stdout:\n${this.out}\nstderr:\n${this.err}`);
    return r.code;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Index of the first line matching, asserting there is one. */
function indexOf(lines: string[], re: RegExp): number {
  const i = lines.findIndex((l) => re.test(l));
  assert.ok(i >= 0, `no line matches ${re}; lines:\n${lines.join('\n')}`);
  return i;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const isMessage = (channel: string) => (f: Frame) => f.type === 'message' && f.channel === channel;

describe('hubbub client, scripted through pipes', () => {
  it('runs every command in order, prints each answer, and exits 0 at end of input', async () => {
    const srv = await startServer();
    const bob = await TestClient.connect(srv.url);
    let cli: Cli | undefined;
    try {
      await bob.request({ type: 'hello', user: 'bob', name: 'Bob' });
      await bob.request({ type: 'subscribe', channel: 'lobby', presence: true });
      await bob.request({ type: 'subscribe', channel: 'a/#' });
      const bobId = bob.welcome.client as string;
      const script = [
        '# a comment line is skipped',
        'help',
        'ping',
        'text hello from alice',
        'notification heads up',
        'json {"type":"echo","data":{"n":42}}',
        'json {"type":"publish","channel":"bad/#","data":1}',
        'subscribe x/+',
        'publish x/y {"n":1}',
        'unsubscribe x/+',
        'publish x/y 2',
        'publish a/b plain words',
        'send user:bob psst',
        `send client:${bobId} {"k":1}`,
        `send ${bobId} uuid-form`,
        'broadcast {"alert":true}',
        'presence lobby',
        'list',
        'frobnicate',
        'quit',
        'ping',
      ];
      cli = Cli.spawn(['client', '--url', srv.url, '--username', 'alice']);
      cli.write(script.join('\n'));
      cli.end();
      assert.equal(await cli.exit(), 0, `exit 0; stderr: ${cli.err}`);
      assert.equal(cli.err, '', 'nothing on stderr');
      const out = cli.lines;

      // Each command's answer, in the order of the commands: each waited for the one before.
      const order = [
        /^\* connected to ws:\/\/127\.0\.0\.1:\d+\/ws as [0-9a-f-]{36} \(alice\); room lobby$/,
        /^ {2}subscribe \[--presence\] <pattern> /,
        /^pong in \d+ ms$/,
        /^\[lobby\] alice: hello from alice$/,
        /^\[lobby\] \(notification\) alice: heads up$/,
        /^\{"type":"reply","id":\d+,"data":\{"data":\{"n":42\}\}\}$/,
        /^\{"type":"error","id":\d+,"code":"invalid_channel","message":"publish: a channel name cannot contain the wildcards \+ or #"\}$/,
        /^subscribed to x\/\+$/,
        /^\[x\/y\] alice: \{"n":1\}$/,
        /^published to x\/y$/,
        /^unsubscribed from x\/\+$/,
        /^published to a\/b$/,
        /^sent to user bob: delivered to 1 connection$/,
        new RegExp(`^sent to client ${bobId}: delivered to 1 connection$`),
        /^\[broadcast\] alice: \{"alert":true\}$/,
        /^broadcast delivered to 2 connections$/,
        /^lobby: 2 members$/,
        /^2 clients online$/,
        /^unknown command: frobnicate \(type help\)$/,
      ];
      let last = -1;
      for (const re of order) {
        const i = indexOf(out, re);
        assert.ok(i > last, `${re} comes after the previous answer; output:\n${out.join('\n')}`);
        last = i;
      }
      // help lists every command.
      for (const cmd of ['text', 'ping', 'notification', 'json', 'subscribe', 'unsubscribe', 'publish', 'send', 'broadcast', 'presence', 'list', 'help', 'quit']) {
        indexOf(out, new RegExp(`^ {2}${cmd}\\b`));
      }
      // presence and list show both clients, marking this one.
      const presence = out.slice(indexOf(out, /^lobby: 2 members$/) + 1, indexOf(out, /^2 clients online$/));
      assert.ok(presence.some((l) => new RegExp(`^ {2}${bobId} name=Bob user=bob$`).test(l)), presence.join('\n'));
      assert.ok(presence.some((l) => / name=alice user=alice \(you\)$/.test(l)), presence.join('\n'));
      assert.equal(out.filter((l) => / name=alice user=alice \(you\)$/.test(l)).length, 2, 'alice in presence and in the list');
      // after unsubscribe the second publication to x/y is not received; after quit nothing more runs.
      assert.ok(!out.some((l) => l.startsWith('[x/y] alice: 2')), 'unsubscribed from x/+');
      assert.equal(out.filter((l) => /^pong in/.test(l)).length, 1, 'the ping after quit did not run');
      assert.equal(out.filter((l) => /^sent to client /.test(l)).length, 2, 'client:<id> and a bare UUID both address the client');

      // What the other side saw.
      const join = await bob.next((f) => f.type === 'join');
      assert.deepEqual((join.client as Record<string, unknown>).user, 'alice');
      assert.equal((join.client as Record<string, unknown>).name, 'alice', '--username is sent as name and user');
      const text = await bob.next(isMessage('lobby'));
      assert.deepEqual([text.data, text.kind], [{ text: 'hello from alice' }, 'text']);
      const note = await bob.next(isMessage('lobby'));
      assert.deepEqual([note.data, note.kind], [{ text: 'heads up' }, 'notification']);
      const ab = await bob.next(isMessage('a/b'));
      assert.equal(ab.data, 'plain words', 'non-JSON data is sent as a string');
      const d1 = await bob.next((f) => f.type === 'direct');
      assert.equal(d1.data, 'psst');
      assert.equal((d1.from as Record<string, unknown>).user, 'alice');
      assert.deepEqual((await bob.next((f) => f.type === 'direct')).data, { k: 1 });
      assert.equal((await bob.next((f) => f.type === 'direct')).data, 'uuid-form');
      assert.deepEqual((await bob.next((f) => f.type === 'broadcast')).data, { alert: true });
      const leave = await bob.next((f) => f.type === 'leave' && f.channel === 'lobby');
      assert.equal((leave.client as Record<string, unknown>).user, 'alice', 'the client left when it exited');
    } finally {
      cli?.kill();
      await bob.close();
      await srv.close();
    }
  });

  it('says when the connection drops and comes back, keeps its room, and exits 1 when the server ends it for good', async () => {
    const srv = await startServer();
    const bob = await TestClient.connect(srv.url);
    const cli = Cli.spawn(['client', '--url', srv.url, '--username', 'eve']);
    try {
      await cli.line(/^\* connected to .* \(eve\); room lobby$/);
      const dropped = await api(srv.http, 'POST', '/api/disconnect', { user: 'eve', reconnect: true, reason: 'test drop' });
      assert.equal(dropped.status, 200, JSON.stringify(dropped.body));
      await cli.line(/^\* connection lost \(4002 test drop\); reconnecting$/);
      await cli.line(/^\* reconnecting in \d+ ms \(attempt 1\)$/);
      const back = cli.lines.length;
      await cli.line(/^\* reconnected as [0-9a-f-]{36}$/, 5000);
      // The room subscription came back with the connection.
      await bob.request({ type: 'publish', channel: 'lobby', data: { text: 'after the drop' } });
      await cli.line(/^\[lobby\] [0-9a-f-]{36}: after the drop$/, 5000, back);
      cli.write('ping');
      await cli.line(/^pong in \d+ ms$/);
      await api(srv.http, 'POST', '/api/disconnect', { user: 'eve', reason: 'go away' });
      assert.equal(await cli.exit(), 1);
      assert.equal(cli.err, 'hubbub client: the server ended the connection: go away (4500)\n');
    } finally {
      cli.kill();
      await bob.close();
      await srv.close();
    }
  });
});

describe('hubbub chat, scripted through pipes', () => {
  it('sends lines to chat/<room>, shows joins and leaves, moves rooms with /join, and exits 0 at end of input', async () => {
    const srv = await startServer();
    const watcher = await TestClient.connect(srv.url);
    let dave: TestClient | undefined;
    const cli = Cli.spawn(['chat', '--url', srv.url, '--name', 'carol']);
    try {
      await watcher.request({ type: 'hello', name: 'Watcher' });
      await watcher.request({ type: 'subscribe', channel: 'chat/general', presence: true });
      await watcher.request({ type: 'subscribe', channel: 'chat/random', presence: true });
      await cli.line(/^\* you joined #general; here: Watcher$/);
      const carolJoin = await watcher.next((f) => f.type === 'join' && f.channel === 'chat/general');
      assert.equal((carolJoin.client as Record<string, unknown>).name, 'carol');

      cli.write('hello room');
      const m = await watcher.next(isMessage('chat/general'));
      assert.deepEqual(m.data, { text: 'hello room' });
      assert.equal((m.from as Record<string, unknown>).name, 'carol');
      await cli.line(/^carol: hello room$/);

      dave = await TestClient.connect(srv.url);
      await dave.request({ type: 'hello', name: 'Dave', user: 'dave' });
      await dave.request({ type: 'subscribe', channel: 'chat/general' });
      await cli.line(/^\* Dave joined$/);
      await dave.request({ type: 'publish', channel: 'chat/general', data: { text: 'hi carol' } });
      await cli.line(/^Dave: hi carol$/);
      assert.deepEqual((await watcher.next(isMessage('chat/general'))).data, { text: 'hi carol' });
      cli.write('/list');
      await cli.line(/^\* 3 people in #general: Watcher, carol \(you\), Dave$/);
      await dave.close();
      dave = undefined;
      await cli.line(/^\* Dave left$/);

      cli.write('/ping');
      await cli.line(/^\* pong in \d+ ms$/);
      cli.write('//not a command');
      assert.deepEqual((await watcher.next(isMessage('chat/general'))).data, { text: '/not a command' });

      cli.write('/join random');
      await cli.line(/^\* you left #general$/);
      await cli.line(/^\* you joined #random; here: Watcher$/);
      assert.equal((await watcher.next((f) => f.type === 'leave' && f.channel === 'chat/general')).type, 'leave');
      await watcher.next((f) => f.type === 'join' && f.channel === 'chat/random');
      cli.write('over here');
      assert.deepEqual((await watcher.next(isMessage('chat/random'))).data, { text: 'over here' });
      assert.deepEqual(await watcher.nothing(isMessage('chat/general')), [], 'nothing more in the old room');

      cli.write('/broadcast hey all');
      const b = await watcher.next((f) => f.type === 'broadcast');
      assert.deepEqual(b.data, { text: 'hey all' });
      await cli.line(/^\[broadcast\] carol: hey all$/);
      cli.write('/bogus');
      await cli.line(/^unknown command \/bogus \(try \/help\)$/);

      cli.end();
      assert.equal(await cli.exit(), 0, cli.err);
      assert.equal(cli.err, '');
      await watcher.next((f) => f.type === 'leave' && f.channel === 'chat/random');
    } finally {
      cli.kill();
      await dave?.close();
      await watcher.close();
      await srv.close();
    }
  });
});

describe('client and chat errors', () => {
  it('an unreachable server: exit 1 with one line on stderr', async () => {
    const port = await freePort();
    for (const cmd of ['client', 'chat']) {
      const cli = Cli.spawn([cmd, '--url', `ws://127.0.0.1:${port}/ws`]);
      try {
        cli.end();
        assert.equal(await cli.exit(), 1);
        assert.equal(cli.err, `hubbub ${cmd}: cannot reach the server at ws://127.0.0.1:${port}/ws: connection refused (is hubbub serve running?)\n`);
        assert.equal(cli.out, '');
      } finally {
        cli.kill();
      }
    }
  });

  it('a bad URL, room or channel: exit 2 with one line on stderr', async () => {
    const cases: [string[], RegExp][] = [
      [['client', '--url', 'not a url'], /^hubbub client: not a valid URL: not a url /],
      [['chat', '--url', 'ftp://example.com/'], /^hubbub chat: unsupported URL scheme ftp: /],
      [['client', '--url', 'ws://127.0.0.1:1/ws', '--room', 'a/+'], /^hubbub client: --room a\/\+: a channel name cannot contain the wildcards/],
      [['chat', '--url', 'ws://127.0.0.1:1/ws', '--room', 'x#'], /^hubbub chat: room x#: a channel name cannot contain the wildcards/],
    ];
    for (const [args, re] of cases) {
      const cli = Cli.spawn(args);
      try {
        cli.end();
        assert.equal(await cli.exit(), 2, args.join(' '));
        assert.match(cli.err, re);
        assert.equal(cli.err.trim().split('\n').length, 1, 'one line, no stack trace');
      } finally {
        cli.kill();
      }
    }
  });

  it('a refused upgrade or hello: exit 1 with one line on stderr', async () => {
    const srv = await startServer();
    try {
      const wrongPath = Cli.spawn(['client', '--url', srv.url.replace('/ws', '/nope')]);
      wrongPath.end();
      assert.equal(await wrongPath.exit(), 1);
      assert.match(wrongPath.err, /^hubbub client: the server at ws:\/\/127\.0\.0\.1:\d+\/nope refused the WebSocket upgrade with HTTP 404 \(wrong path\?\)\n$/);
      // The server refuses an oversized token in hello (it does not verify tokens yet).
      const token = Cli.spawn(['client', '--url', srv.url, '--token', 'x'.repeat(16385)]);
      token.end();
      assert.equal(await token.exit(), 1);
      assert.match(token.err, /^hubbub client: .*token must be at most 16384 characters\n$/);
    } finally {
      await srv.close();
    }
  });

  it('--help explains the commands, with examples', () => {
    assertBuilt();
    const client = spawnSync(process.execPath, [bin, 'client', '--help'], { encoding: 'utf8', env: childEnv(), timeout: 10000 });
    assert.equal(client.status, 0);
    for (const s of ['--url', '--username', '--token', '--room', '--no-auto-ping', 'HUBBUB_URL', 'Examples:', 'send <target> <data>', 'user:<id>', 'client:<id>']) assert.ok(client.stdout.includes(s), s);
    const chat = spawnSync(process.execPath, [bin, 'chat', '--help'], { encoding: 'utf8', env: childEnv(), timeout: 10000 });
    assert.equal(chat.status, 0);
    for (const s of ['--url', '--name', '--room', 'Examples:', '/broadcast', '/list', '/ping', '/join', '/quit']) assert.ok(chat.stdout.includes(s), s);
  });
});

// ---- a real terminal ------------------------------------------------------------------------------

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** One tmux server on its own socket, one session running a command in a 120×30 window. */
class Tmux {
  readonly socket = `hubbub-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly env: NodeJS.ProcessEnv;

  constructor(env: Record<string, string> = {}) {
    this.env = childEnv({ TERM: process.env.TERM && process.env.TERM !== 'dumb' ? process.env.TERM : 'xterm-256color', ...env });
  }

  static check(): void {
    const r = spawnSync('tmux', ['-V'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      assert.fail('tmux is not installed: the interactive tests drive the CLI in a real terminal through tmux. Install it (apt-get install tmux) and run again.');
    }
  }

  tmux(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { encoding: 'utf8', env: this.env, timeout: 5000 });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  start(command: string): void {
    const r = this.tmux('new-session', '-d', '-s', 'hb', '-x', '120', '-y', '30', command);
    assert.equal(r.status, 0, `tmux new-session failed: ${r.stderr}`);
  }

  /** Type text as is (no key names). */
  type(text: string): void {
    assert.equal(this.tmux('send-keys', '-t', 'hb', '-l', text).status, 0);
  }

  keys(...keys: string[]): void {
    assert.equal(this.tmux('send-keys', '-t', 'hb', ...keys).status, 0);
  }

  capture(escapes = false): string {
    return this.tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', 'hb').stdout;
  }

  /** The screen's non-empty lines, trailing spaces removed. */
  lines(): string[] {
    return this.capture()
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l !== '');
  }

  alive(): boolean {
    return this.tmux('has-session', '-t', 'hb').status === 0;
  }

  async until(check: (lines: string[]) => boolean, what: string, timeoutMs = 10000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.alive() ? this.lines() : [];
      if (check(lines)) return lines;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; screen:\n${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async gone(timeoutMs = 10000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.alive()) {
      if (Date.now() > end) throw new Error(`the program did not exit; screen:\n${this.lines().join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  kill(): void {
    this.tmux('kill-server');
  }
}

const last = (lines: string[]): string => lines[lines.length - 1] ?? '';

describe('interactive, in a terminal (tmux)', () => {
  it('hubbub client: prompt, incoming lines above a half-typed line, colours, history, Ctrl-D', async () => {
    Tmux.check();
    assertBuilt();
    const srv = await startServer();
    const bob = await TestClient.connect(srv.url);
    const term = new Tmux();
    const dir = mkdtempSync(join(tmpdir(), 'hubbub-tty-'));
    try {
      await bob.request({ type: 'hello', user: 'bob', name: 'Bob' });
      await bob.request({ type: 'subscribe', channel: 'lobby', presence: true });
      const status = join(dir, 'status');
      term.start(`cd ${quote(root)} && ${quote(process.execPath)} bin/hubbub.js client --url ${quote(srv.url)} --username alice; echo $? > ${quote(status)}`);
      await term.until((l) => last(l) === 'hubbub>', 'the hubbub> prompt');
      assert.deepEqual(term.lines().slice(-2), ['* type help for the commands, quit or Ctrl-D to leave', 'hubbub>']);
      await bob.next((f) => f.type === 'join' && f.channel === 'lobby');

      // A message arrives while a line is half typed: it is printed above, the input stays.
      term.type('text hel');
      await term.until((l) => last(l) === 'hubbub> text hel', 'the typed text');
      await bob.request({ type: 'publish', channel: 'lobby', data: { text: 'incoming while typing' } });
      await bob.next(isMessage('lobby')); // bob's own copy
      const screen = await term.until((l) => l.includes('[lobby] Bob: incoming while typing'), 'the incoming message');
      assert.equal(last(screen), 'hubbub> text hel', `the prompt and the half-typed line are redrawn under it:\n${screen.join('\n')}`);
      assert.equal(screen.filter((l) => l.startsWith('hubbub>')).length, 1, `one prompt on screen:\n${screen.join('\n')}`);
      assert.equal(screen[screen.length - 2], '[lobby] Bob: incoming while typing');
      // Colours on a terminal: the message line carries an SGR colour.
      assert.match(term.capture(true), /\x1b\[[0-9;]*m\[lobby\] Bob: incoming while typing/);

      // What was typed is intact, not just redrawn: finishing the line publishes "hello".
      term.type('lo');
      term.keys('Enter');
      const hello = await bob.next(isMessage('lobby'));
      assert.deepEqual([hello.data, (hello.from as Record<string, unknown>).user], [{ text: 'hello' }, 'alice']);

      term.type('ping');
      term.keys('Enter');
      await term.until((l) => l.some((x) => /^pong in \d+ ms$/.test(x)) && last(l) === 'hubbub>', 'the ping answer');

      // History: up recalls the previous lines, newest first.
      term.keys('Up');
      await term.until((l) => last(l) === 'hubbub> ping', 'up-arrow recalling ping');
      term.keys('Up');
      await term.until((l) => last(l) === 'hubbub> text hello', 'up-arrow recalling text hello');
      term.keys('Enter');
      assert.deepEqual((await bob.next(isMessage('lobby'))).data, { text: 'hello' });

      // Ctrl-D on an empty line quits with 0.
      await term.until((l) => last(l) === 'hubbub>', 'the prompt again');
      term.keys('C-d');
      await term.gone();
      assert.equal(readFileSync(status, 'utf8').trim(), '0');
      await bob.next((f) => f.type === 'leave' && f.channel === 'lobby');
    } finally {
      term.kill();
      rmSync(dir, { recursive: true, force: true });
      await bob.close();
      await srv.close();
    }
  });

  it('hubbub chat: room prompt, joins above a half-typed line, no colours with NO_COLOR, Ctrl-C', async () => {
    Tmux.check();
    assertBuilt();
    const srv = await startServer();
    const dave = await TestClient.connect(srv.url);
    const term = new Tmux({ NO_COLOR: '1' });
    const dir = mkdtempSync(join(tmpdir(), 'hubbub-tty-'));
    try {
      await dave.request({ type: 'hello', name: 'Dave' });
      const status = join(dir, 'status');
      term.start(`cd ${quote(root)} && ${quote(process.execPath)} bin/hubbub.js chat --url ${quote(srv.url)} --name carol --room ops; echo $? > ${quote(status)}`);
      await term.until((l) => last(l) === '#ops>', 'the #ops> prompt');
      term.type('half a tho');
      await term.until((l) => last(l) === '#ops> half a tho', 'the typed text');
      await dave.request({ type: 'subscribe', channel: 'chat/ops' });
      let screen = await term.until((l) => l.includes('* Dave joined'), 'the join');
      assert.equal(last(screen), '#ops> half a tho', screen.join('\n'));
      await dave.request({ type: 'publish', channel: 'chat/ops', data: { text: 'morning' } });
      await dave.next(isMessage('chat/ops')); // dave's own copy
      screen = await term.until((l) => l.includes('Dave: morning'), 'the message');
      assert.deepEqual(screen.slice(-3), ['* Dave joined', 'Dave: morning', '#ops> half a tho']);
      assert.doesNotMatch(term.capture(true), /\x1b\[[0-9;]*m/, 'NO_COLOR: no colours');
      term.type('ught');
      term.keys('Enter');
      const said = await dave.next(isMessage('chat/ops'));
      assert.deepEqual(said.data, { text: 'half a thought' });
      term.keys('C-c');
      await term.gone();
      assert.equal(readFileSync(status, 'utf8').trim(), '0');
    } finally {
      term.kill();
      rmSync(dir, { recursive: true, force: true });
      await dave.close();
      await srv.close();
    }
  });
});
