/** `hubbub sub` and `hubbub pub` as a user runs them: the built bin in child processes, against a real server. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cli, root, type CliOptions } from './cli-process.js';
import { TestClient, api, deadPort, startServer, type Frame, type TestServer } from './helpers.js';


/** Runs a test body with spawn/connect helpers; every child is killed and every client closed at the end, pass or fail. */
async function scenario(body: (t: { cli: (args: string[], options?: CliOptions) => Cli; client: () => Promise<TestClient> }) => Promise<void>): Promise<void> {
  const children: Cli[] = [];
  const clients: TestClient[] = [];
  try {
    await body({
      cli: (args, options) => {
        const c = new Cli(args, options);
        children.push(c);
        return c;
      },
      client: async () => {
        const c = await TestClient.connect(hub.url);
        clients.push(c);
        return c;
      },
    });
  } finally {
    for (const c of children) if (!c.status) c.child.kill('SIGKILL');
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Publish from a TestClient and check the server accepted it. */
async function publish(c: TestClient, channel: string, data: unknown, extra: Record<string, unknown> = {}): Promise<void> {
  const answer = await c.request({ type: 'publish', channel, data, ...extra });
  assert.equal(answer.type, 'reply', JSON.stringify(answer));
}

/** A TestClient that watches `channel` with presence, and a way to wait until a CLI subscriber has joined it. */
async function presenceWatcher(client: () => Promise<TestClient>, channel: string): Promise<{ c: TestClient; joined: () => Promise<Frame>; left: () => Promise<Frame> }> {
  const c = await client();
  await c.request({ type: 'subscribe', channel, presence: true });
  return {
    c,
    joined: () => c.next((f) => f.type === 'join' && f.channel === channel, 8000),
    left: () => c.next((f) => f.type === 'leave' && f.channel === channel, 8000),
  };
}

const messages = (c: TestClient, channel: string) => c.pending('message').filter((f) => f.channel === channel);


/** stderr holds exactly one line (no stack trace), matching `re`. */
function oneLine(err: string, re: RegExp): void {
  const lines = err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${err}`);
  assert.match(lines[0]!, re);
}

let hub: TestServer;

before(async () => {
  assert.ok(existsSync(join(root, 'dist', 'cli', 'sub.js')) && existsSync(join(root, 'dist', 'cli', 'pub.js')), 'dist/ is missing or stale: run `npm run build` (npm test does)');
  hub = await startServer();
});
after(() => hub.close());

describe('hubbub sub', () => {
  it('prints "<channel> <data>" lines for matching messages only, and exits 0 after --count', () =>
    scenario(async ({ cli, client }) => {
      const sub = cli(['sub', 'fmt/+', '--url', hub.url, '--count', '4', '--verbose']);
      await sub.stderrLine(/subscribed to fmt\/\+/);
      const pubr = await client();
      await publish(pubr, 'other/a', 'not for sub');
      await publish(pubr, 'fmt/a/deep', 'not for sub either');
      await publish(pubr, 'fmt/a', 'hello world');
      await publish(pubr, 'fmt/b', { n: 1, s: 'x y' });
      await publish(pubr, 'fmt/c', 42);
      await publish(pubr, 'fmt/d', 'two\nlines');
      await publish(pubr, 'fmt/e', 'after the count');
      assert.deepEqual(await sub.exit(), { code: 0, signal: null });
      assert.deepEqual(sub.lines, ['fmt/a hello world', 'fmt/b {"n":1,"s":"x y"}', 'fmt/c 42', 'fmt/d "two\\nlines"']);
    }));

  it('--json prints each whole frame as one JSON line; no status on a non-terminal stderr without --verbose', () =>
    scenario(async ({ cli, client }) => {
      const watch = await presenceWatcher(client, 'json/room');
      const sub = cli(['sub', 'json/room', '--url', hub.url, '--json', '-n', '2']);
      await watch.joined();
      const pubr = await client();
      await publish(pubr, 'json/room', { text: 'hi' }, { kind: 'notification' });
      await publish(pubr, 'json/room', 'plain');
      assert.deepEqual(await sub.exit(), { code: 0, signal: null });
      assert.equal(sub.err, '', 'stderr stays quiet');
      assert.equal(sub.lines.length, 2, sub.out);
      const [a, b] = sub.lines.map((l) => JSON.parse(l) as Frame);
      assert.equal(a!.type, 'message');
      assert.equal(a!.channel, 'json/room');
      assert.equal(a!.pattern, 'json/room');
      assert.deepEqual(a!.data, { text: 'hi' });
      assert.equal(a!.kind, 'notification');
      assert.deepEqual(a!.from, { client: pubr.welcome.client });
      assert.equal(typeof a!.ts, 'number');
      assert.equal(b!.data, 'plain');
      assert.equal(b!.kind, 'text');
    }));

  it('takes several patterns and prints a message matching two of them once', () =>
    scenario(async ({ cli, client }) => {
      const sub = cli(['sub', 'multi/#', '+/b', '--url', hub.url, '--count', '3', '--verbose']);
      await sub.stderrLine(/subscribed to multi\/#, \+\/b/);
      const pubr = await client();
      await publish(pubr, 'multi/b', 1); // matches both patterns
      await publish(pubr, 'x/b', 2);
      await publish(pubr, 'multi/z', 3);
      assert.deepEqual(await sub.exit(), { code: 0, signal: null });
      assert.deepEqual(sub.lines, ['multi/b 1', 'x/b 2', 'multi/z 3']);
    }));

  it('--presence prints join and leave events', () =>
    scenario(async ({ cli }) => {
      const sub = cli(['sub', 'pres/room', '--url', hub.url, '--presence', '--verbose']);
      await sub.stderrLine(/subscribed to pres\/room/);
      const other = await TestClient.connect(hub.url);
      try {
        await other.request({ type: 'hello', name: 'Bob' });
        await other.request({ type: 'subscribe', channel: 'pres/room' });
        await sub.until('a join line', () => sub.lines.length >= 1);
      } finally {
        await other.close();
      }
      await sub.until('a leave line', () => sub.lines.length >= 2);
      assert.deepEqual(sub.lines, [`pres/room join {"client":"${other.welcome.client}","name":"Bob"}`, `pres/room leave {"client":"${other.welcome.client}","name":"Bob"}`]);
    }));

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`closes its connection and exits 0 on ${signal}`, () =>
      scenario(async ({ cli, client }) => {
        const watch = await presenceWatcher(client, `sig/${signal}`);
        const sub = cli(['sub', `sig/${signal}`, '--url', hub.url]);
        await watch.joined();
        sub.child.kill(signal);
        assert.deepEqual(await sub.exit(), { code: 0, signal: null });
        await watch.left();
        assert.equal(sub.err, '');
      }));
  }

  it('reconnects and resubscribes when the server drops it with a reconnect code', () =>
    scenario(async ({ cli, client }) => {
      const sub = cli(['sub', 'recon/#', '--url', hub.url, '--verbose']);
      const id = (await sub.stderrLine(/as client (\S+)/))[1]!;
      await sub.stderrLine(/subscribed to recon\/#/);
      const kicked = await api(hub.http, 'POST', '/api/disconnect', { client: id, reconnect: true });
      assert.equal(kicked.status, 200, JSON.stringify(kicked.body));
      await sub.stderrLine(/disconnected \(4002/);
      await sub.stderrLine(/reconnected as client/);
      await publish(await client(), 'recon/x', 'after the reconnect');
      await sub.until('the message after the reconnect', () => sub.lines.length >= 1, 5000);
      assert.deepEqual(sub.lines, ['recon/x after the reconnect']);
      assert.equal(sub.status, undefined, 'still running');
    }));

  it('exits 1 with one line when the server disconnects it for good', () =>
    scenario(async ({ cli }) => {
      const sub = cli(['sub', 'kick/#', '--url', hub.url, '--verbose']);
      const id = (await sub.stderrLine(/as client (\S+)/))[1]!;
      await sub.stderrLine(/subscribed to/);
      await api(hub.http, 'POST', '/api/disconnect', { client: id });
      assert.deepEqual(await sub.exit(), { code: 1, signal: null });
      assert.match(sub.err, /hubbub sub: disconnected by the server \(4500/);
    }));

  it('exits 0 when the reader of its output goes away (| head)', () =>
    scenario(async ({ cli, client }) => {
      const sub = cli(['sub', 'pipe/#', '--url', hub.url, '--verbose']);
      await sub.stderrLine(/subscribed to/);
      const pubr = await client();
      await publish(pubr, 'pipe/a', 'first');
      await sub.until('the first line', () => sub.lines.length >= 1);
      sub.child.stdout!.destroy();
      for (let i = 0; i < 5 && !sub.status; i++) {
        await publish(pubr, 'pipe/a', `more ${i}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(await sub.exit(), { code: 0, signal: null });
    }));
});

describe('hubbub pub', () => {
  it('publishes a JSON value and a plain string, with --kind, and exits 0 once acknowledged', () =>
    scenario(async ({ cli, client }) => {
      const watcher = await client();
      await watcher.request({ type: 'subscribe', channel: 'pub/#' });
      const json = cli(['pub', 'pub/json', '{"a":[1,2],"b":null}', '--url', hub.url]);
      assert.deepEqual(await json.exit(), { code: 0, signal: null }, json.err);
      // The server answers a publication after delivering it: it is here already.
      const [m1] = messages(watcher, 'pub/json');
      assert.ok(m1, 'delivered before pub exited');
      assert.deepEqual(m1.data, { a: [1, 2], b: null });
      assert.equal(m1.kind, 'text');
      const text = cli(['pub', 'pub/text', 'hello there', '--kind', 'notification'], { env: { HUBBUB_URL: hub.url } });
      assert.deepEqual(await text.exit(), { code: 0, signal: null }, text.err);
      const [m2] = messages(watcher, 'pub/text');
      assert.ok(m2, 'delivered before pub exited');
      assert.equal(m2.data, 'hello there');
      assert.equal(m2.kind, 'notification');
      assert.equal(json.out + json.err + text.out + text.err, '', 'silent on success');
    }));

  it('with --retain keeps the publication as the retained message that later subscribers get first', () =>
    scenario(async ({ cli, client }) => {
      const pub = cli(['pub', 'retained/cli', '{"state":"on"}', '--retain', '--url', hub.url]);
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      const late = await client();
      await late.request({ type: 'subscribe', channel: 'retained/+' });
      const m = await late.next((f) => f.type === 'message' && f.channel === 'retained/cli');
      assert.deepEqual(m.data, { state: 'on' });
      assert.equal(m.retained, true);
      const clear = cli(['pub', 'retained/cli', 'null', '--retain', '--url', hub.url]);
      assert.deepEqual(await clear.exit(), { code: 0, signal: null }, clear.err);
      const later = await client();
      await later.request({ type: 'subscribe', channel: 'retained/+' });
      assert.deepEqual(await later.nothing((f) => f.type === 'message'), [], 'cleared: nothing retained');
    }));

  it('with - publishes one message per stdin line, skipping blank lines, and exits 0 at EOF', () =>
    scenario(async ({ cli, client }) => {
      const watcher = await client();
      await watcher.request({ type: 'subscribe', channel: 'stdin/x' });
      const pub = cli(['pub', 'stdin/x', '-', '--url', hub.url], { stdin: true });
      pub.child.stdin!.write('one\n{"n":2}\n');
      await new Promise((r) => setTimeout(r, 100));
      pub.child.stdin!.end('\n   \n"3"\r\nlast line without newline');
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      assert.deepEqual(
        messages(watcher, 'stdin/x').map((m) => m.data),
        ['one', { n: 2 }, '3', 'last line without newline'],
      );
    }));

  it('--repeat N --interval ms publishes N times, spaced', () =>
    scenario(async ({ cli, client }) => {
      const watcher = await client();
      await watcher.request({ type: 'subscribe', channel: 'rep/x' });
      const pub = cli(['pub', 'rep/x', 'tick', '--url', hub.url, '--repeat', '3', '--interval', '200']);
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      const got = messages(watcher, 'rep/x');
      assert.deepEqual(got.map((m) => m.data), ['tick', 'tick', 'tick']);
      const ts = got.map((m) => m.ts as number);
      assert.ok(ts[1]! - ts[0]! >= 180 && ts[2]! - ts[1]! >= 180, `spaced by the interval: ${ts.join(', ')}`);
    }));

  it('feeds a running sub (pub child → sub child)', () =>
    scenario(async ({ cli }) => {
      const sub = cli(['sub', 'chain/#', '--url', hub.url, '--count', '4', '--verbose']);
      await sub.stderrLine(/subscribed to/);
      const pub = cli(['pub', 'chain/x', '{"k":1}', '--url', hub.url, '--repeat', '3']);
      assert.deepEqual(await pub.exit(), { code: 0, signal: null }, pub.err);
      const lines = cli(['pub', 'chain/y', '-', '--url', hub.url], { stdin: true });
      lines.child.stdin!.end('from stdin\n');
      assert.deepEqual(await lines.exit(), { code: 0, signal: null }, lines.err);
      assert.deepEqual(await sub.exit(), { code: 0, signal: null });
      assert.deepEqual(sub.lines, ['chain/x {"k":1}', 'chain/x {"k":1}', 'chain/x {"k":1}', 'chain/y from stdin']);
    }));

  it('refuses an invalid channel: exit 1, one line with invalid_channel, nothing published', () =>
    scenario(async ({ cli, client }) => {
      const watcher = await client();
      await watcher.request({ type: 'subscribe', channel: '#' });
      for (const channel of ['bad/+', 'bad//x']) {
        const pub = cli(['pub', channel, 'x', '--url', hub.url]);
        assert.deepEqual(await pub.exit(), { code: 1, signal: null }, pub.err);
        oneLine(pub.err, /^hubbub pub: invalid_channel: /);
      }
      assert.deepEqual(await watcher.nothing((f) => f.type === 'message'), []);
    }));
});

describe('hubbub sub and pub: errors and help', () => {
  it('an unreachable server gives one line and exit 1', () =>
    scenario(async ({ cli }) => {
      const url = `ws://127.0.0.1:${await deadPort()}/ws`;
      const pub = cli(['pub', 'x', 'y', '--url', url]);
      const sub = cli(['sub', 'x', '--url', url]);
      assert.deepEqual(await pub.exit(), { code: 1, signal: null });
      assert.deepEqual(await sub.exit(), { code: 1, signal: null });
      oneLine(pub.err, /^hubbub pub: cannot reach the server at ws:\/\/127\.0\.0\.1:\d+\/ws: connection refused/);
      oneLine(sub.err, /^hubbub sub: cannot reach the server at .*connection refused/);
    }));

  it('bad usage exits 2: a bad URL, a bad number, a missing argument, --repeat with stdin', () =>
    scenario(async ({ cli }) => {
      const cases: [string[], RegExp][] = [
        [['pub', 'x', 'y', '--url', 'not a url'], /^hubbub pub: not a valid URL: not a url/],
        [['sub', 'x', '--url', 'ftp://127.0.0.1/ws'], /^hubbub sub: unsupported URL scheme ftp:/],
        [['sub', 'x', '--url', hub.url, '--count', '0'], /--count.*at least 1/],
        [['pub', 'x', 'y', '--url', hub.url, '--interval', 'soon'], /--interval.*whole number/],
        [['pub', 'x', '--url', hub.url], /missing required argument 'data'/],
        [['sub', '--url', hub.url], /missing required argument 'pattern'/],
        [['pub', 'x', '-', '--url', hub.url, '--repeat', '2'], /--repeat cannot be combined with -/],
      ];
      for (const [args, re] of cases) {
        const c = cli(args);
        assert.deepEqual(await c.exit(), { code: 2, signal: null }, `${args.join(' ')}: ${c.err}`);
        oneLine(c.err, re);
      }
    }));

  it('an invalid sub pattern gives one line with invalid_channel and exit 1', () =>
    scenario(async ({ cli }) => {
      const sub = cli(['sub', 'ok/+', 'a/#/b', '--url', hub.url]);
      assert.deepEqual(await sub.exit(), { code: 1, signal: null });
      oneLine(sub.err, /^hubbub sub: invalid_channel: subscribe "a\/#\/b": /);
    }));

  it('documents options and examples in --help', () =>
    scenario(async ({ cli }) => {
      const expected: Record<string, string[]> = {
        sub: ['<pattern...>', '--url', 'HUBBUB_URL', 'ws://localhost:8080/ws', '--count', '--json', '--presence', '--verbose', 'Examples:', 'hubbub sub '],
        pub: ['<channel>', '<data>', '--url', 'HUBBUB_URL', '--kind', '--repeat', '--interval', 'stdin', 'Examples:', 'hubbub pub '],
      };
      for (const [command, needles] of Object.entries(expected)) {
        const c = cli([command, '--help']);
        assert.deepEqual(await c.exit(), { code: 0, signal: null });
        for (const needle of needles) assert.ok(c.out.includes(needle), `${command} --help mentions ${needle}`);
      }
    }));
});
