/**
 * The comparison point for bench/fanout.ts: the least a pub/sub server on raw `ws` has to do. It
 * speaks the same JSON frames as Hubbub for what the benchmark uses (welcome, subscribe → reply,
 * publish → message), keeps a Set of sockets per channel and calls `ws.send(text)` for each
 * subscriber, encoding the message once per publication. No validation beyond JSON.parse, no
 * wildcards, presence, heartbeats, statistics, write coalescing or backpressure handling.
 *
 *   node --import tsx bench/baseline-ws-server.ts --port 9000 [--host 127.0.0.1]
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const host = arg('--host', '127.0.0.1');
const port = Number(arg('--port', '9000'));

const channels = new Map<string, Set<WebSocket>>();

const http = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok","server":"baseline-ws"}');
  } else {
    res.writeHead(404).end();
  }
});

const wss = new WebSocketServer({ server: http, path: '/ws', perMessageDeflate: false, clientTracking: false, maxPayload: 1 << 20 });

wss.on('connection', (ws) => {
  const id = randomUUID();
  const from = JSON.stringify({ client: id });
  const mine = new Set<string>();
  ws.send(JSON.stringify({ type: 'welcome', client: id, server: 'baseline-ws' }));
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return;
    let f: { type?: string; id?: unknown; channel?: unknown; data?: unknown; kind?: unknown };
    try {
      f = JSON.parse(raw.toString()) as typeof f;
    } catch {
      return;
    }
    if (typeof f.channel !== 'string') return;
    if (f.type === 'subscribe') {
      let set = channels.get(f.channel);
      if (!set) channels.set(f.channel, (set = new Set()));
      set.add(ws);
      mine.add(f.channel);
    } else if (f.type === 'publish') {
      const set = channels.get(f.channel);
      if (set) {
        const kind = typeof f.kind === 'string' ? f.kind : 'text';
        const text = `{"type":"message","channel":${JSON.stringify(f.channel)},"pattern":${JSON.stringify(f.channel)},"data":${JSON.stringify(f.data ?? null)},"kind":${JSON.stringify(kind)},"from":${from},"ts":${Date.now()}}`;
        for (const sub of set) sub.send(text);
      }
    } else {
      return;
    }
    if (f.id !== undefined) ws.send(JSON.stringify({ type: 'reply', id: f.id, data: {} }));
  });
  ws.on('close', () => {
    for (const c of mine) {
      const set = channels.get(c);
      set?.delete(ws);
      if (set?.size === 0) channels.delete(c);
    }
  });
  ws.on('error', () => {});
});

http.listen(port, host);

const stop = (): void => {
  http.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
