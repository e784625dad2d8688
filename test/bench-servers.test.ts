/**
 * The comparison servers of `npm run bench:compare`, each a real child process on a free port, driven
 * by the lean benchmark client through its dialect: two subscribers get exactly the publications of
 * their channel, in order, with the benchmark data intact; a connection that did not subscribe gets
 * nothing; and the server process is gone once stopped. Plus the Socket.IO dialect answering Engine.IO
 * pings (which the benchmark server keeps out of the way with a long interval) against a fast-pinging
 * in-process Socket.IO server.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { Server } from 'socket.io';
import { hubbubJson, type Dialect } from '../src/bench/dialect.js';
import { LeanClient } from '../src/bench/lean-client.js';
import { BUN, freePort, killServers, sleep, startServer, stopServer, type ServerProcess } from '../bench/lib/harness.js';
import { socketIo } from '../bench/lib/socketio-dialect.js';

interface Case {
  label: string;
  script: string;
  dialect: Dialect;
  command?: string[];
}

const CASES: Case[] = [
  { label: 'raw ws', script: 'bench/baseline-ws-server.ts', dialect: hubbubJson },
  { label: 'Socket.IO', script: 'bench/servers/socketio-server.ts', dialect: socketIo },
  { label: 'Bun', script: 'bench/servers/bun-server.ts', dialect: hubbubJson, command: [BUN] },
];

after(killServers);

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

for (const { label, script, dialect, command } of CASES) {
  describe(`${label} comparison server`, () => {
    let server: ServerProcess | undefined;
    const clients: LeanClient[] = [];

    after(async () => {
      for (const c of clients) c.destroy();
      if (server) await stopServer(server);
    });

    it('delivers every publication of a channel, in order, to its subscribers only', async () => {
      const port = await freePort();
      server = await startServer(label, port, [script, '--port', String(port), '--host', '127.0.0.1'], { pinned: false, command });
      for (let i = 0; i < 3; i++) {
        const c = await LeanClient.connect({ host: '127.0.0.1', port, path: dialect.path, protocols: dialect.protocols });
        clients.push(c);
        await dialect.handshake(c, 5000);
      }
      const [a, b, publisher] = clients as [LeanClient, LeanClient, LeanClient];
      await dialect.subscribe(a, 'bench', 5000);
      await dialect.subscribe(b, 'bench', 5000);
      // Handshake and subscribe messages count too: only what arrives from here on matters.
      const before = clients.map((c) => c.messages);

      // A publication on another channel first: it must reach nobody.
      publisher.sendRaw(dialect.publishFrame('other', '{"s":99,"t":99}'));
      const sent: { s: number; t: number }[] = [];
      for (let s = 1; s <= 5; s++) {
        const t = 1000.5 + s;
        sent.push({ s, t });
        publisher.sendRaw(dialect.publishFrame('bench', JSON.stringify({ s, t, pad: 'x'.repeat(s) })));
      }

      for (const sub of [a, b]) {
        const got = [];
        for (let i = 0; i < 5; i++) got.push(dialect.read(await sub.next(5000), false));
        assert.deepEqual(got, sent);
      }
      await sleep(300);
      assert.deepEqual(
        clients.map((c, i) => c.messages - before[i]!),
        [5, 5, 0],
        'messages after subscribing: exactly the 5 for each subscriber, none for the publisher',
      );
    });

    it('stops: the server process is gone', async () => {
      assert.ok(server, 'the server was started');
      const { pid } = server;
      assert.equal(gone(pid), false, 'running before the stop');
      await stopServer(server);
      assert.equal(server.child.exitCode, 0, `${label} exited cleanly on SIGTERM`);
      assert.equal(gone(pid), true, `process ${pid} still exists`);
    });
  });
}

describe('Socket.IO dialect', () => {
  it('answers Engine.IO pings that arrive during the handshake and the subscribe', async () => {
    const http = createServer();
    // A ping 100 ms after the open (and 100 ms after each pong); no disconnect within the test.
    const io = new Server(http, { transports: ['websocket'], serveClient: false, pingInterval: 100, pingTimeout: 10_000 });
    let pongs = 0;
    io.engine.on('connection', (conn: { on(e: 'packet', f: (p: { type: string }) => void): void }) => conn.on('packet', (p) => void (p.type === 'pong' && pongs++)));
    io.on('connection', (socket) =>
      socket.on('subscribe', (channel: string, ack: () => void) => {
        void socket.join(channel);
        ack();
      }),
    );
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const c = await LeanClient.connect({ host: '127.0.0.1', port: (http.address() as AddressInfo).port, path: socketIo.path });
    try {
      await sleep(300); // the first ping is now queued right behind the open packet
      await socketIo.handshake(c, 5000);
      await sleep(300); // and the next one before the subscribe's ack
      await socketIo.subscribe(c, 'bench', 5000);
      for (let i = 0; i < 40 && pongs < 2; i++) await sleep(50);
      assert.equal(pongs, 2);
      assert.equal(io.of('/').adapter.rooms.get('bench')?.size, 1, 'subscribed');
    } finally {
      c.destroy();
      await io.close();
    }
  });
});
