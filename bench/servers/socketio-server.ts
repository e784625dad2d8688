/**
 * Socket.IO 4 comparison server for `npm run bench:compare`, written the idiomatic way: a room per
 * channel and `io.to(room).emit()` for a publication (Socket.IO encodes the packet once per broadcast
 * and hands the same frame to every socket in the room).
 *
 *   'subscribe' (channel, ack)  → socket.join(channel); ack()
 *   'publish' ({channel, data}) → io.to(channel).emit('message', {channel, data})
 *
 *   node --import tsx bench/servers/socketio-server.ts --port 9000 [--host 127.0.0.1]
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const host = arg('--host', '127.0.0.1');
const port = Number(arg('--port', '9000'));

// Socket.IO takes the /socket.io/ requests (and upgrades); everything else lands here.
const http = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok","server":"socket.io"}');
  } else {
    res.writeHead(404).end();
  }
});

const io = new Server(http, {
  // WebSocket only: the benchmark's client upgrades directly, no HTTP long-polling first.
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
  // Engine.IO pings every connection every pingInterval with a '2' packet that is a data message on
  // the wire: a counting subscriber would count it as a delivery (and a client that does not answer
  // '3' within pingTimeout is dropped). One hour keeps pings out of any benchmark run; node timers
  // cap at 2^31-1 ms (~24.8 days), so do not raise it past that.
  pingInterval: 60 * 60_000,
  pingTimeout: 60_000,
  maxHttpBufferSize: 1 << 20,
});

io.on('connection', (socket) => {
  socket.on('subscribe', (channel: unknown, ack: unknown) => {
    if (typeof channel !== 'string') return;
    void socket.join(channel);
    if (typeof ack === 'function') ack();
  });
  socket.on('publish', (p: { channel?: unknown; data?: unknown } | null) => {
    if (typeof p?.channel !== 'string') return;
    io.to(p.channel).emit('message', { channel: p.channel, data: p.data ?? null });
  });
});

http.listen(port, host);

const stop = (): void => {
  void io.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
