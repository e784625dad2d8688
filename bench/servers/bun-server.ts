/**
 * Bun comparison server for `npm run bench:compare`: Bun.serve's built-in WebSocket pub/sub
 * (ws.subscribe / server.publish, uWebSockets inside), speaking the same subset of Hubbub's JSON
 * frames as bench/baseline-ws-server.ts (welcome, subscribe → reply, publish → message). A
 * publication is encoded once and published to the topic; uWS fans the one frame out natively.
 *
 *   bun bench/servers/bun-server.ts --port 9000 [--host 127.0.0.1]
 *
 * Bun runs this file, not Node, and the project has no Bun type package, so the few Bun APIs used
 * are declared below (that keeps `tsc --noEmit` clean and still checks this file).
 */
export {}; // a module, so these declarations stay local to it

interface ServerWebSocket<T> {
  readonly data: T;
  send(data: string): number;
  subscribe(topic: string): void;
}
interface BunServer {
  upgrade(req: Request, options: { data: unknown }): boolean;
  /** Bytes sent, 0 when dropped (backpressure), -1 when enqueued. */
  publish(topic: string, data: string): number;
  stop(closeActiveConnections?: boolean): void;
}
declare const Bun: {
  serve<T>(options: {
    hostname: string;
    port: number;
    fetch(req: Request, server: BunServer): Response | undefined;
    websocket: {
      open(ws: ServerWebSocket<T>): void;
      message(ws: ServerWebSocket<T>, message: string | Uint8Array): void;
      perMessageDeflate: boolean;
      publishToSelf: boolean;
      maxPayloadLength: number;
      backpressureLimit: number;
      closeOnBackpressureLimit: boolean;
      idleTimeout: number;
      sendPings: boolean;
    };
  }): BunServer;
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const hostname = arg('--host', '127.0.0.1');
const port = Number(arg('--port', '9000'));

interface Client {
  from: string;
}

const server = Bun.serve<Client>({
  hostname,
  port,
  fetch(req, srv) {
    const { pathname } = new URL(req.url);
    if (pathname === '/health') return new Response('{"status":"ok","server":"bun"}', { headers: { 'Content-Type': 'application/json' } });
    if (pathname === '/ws' && srv.upgrade(req, { data: { from: '' } })) return undefined;
    return new Response(null, { status: pathname === '/ws' ? 400 : 404 });
  },
  websocket: {
    open(ws) {
      const id = crypto.randomUUID();
      ws.data.from = JSON.stringify({ client: id });
      ws.send(JSON.stringify({ type: 'welcome', client: id, server: 'bun' }));
    },
    message(ws, raw) {
      if (typeof raw !== 'string') return;
      let f: { type?: string; id?: unknown; channel?: unknown; data?: unknown; kind?: unknown };
      try {
        f = JSON.parse(raw) as typeof f;
      } catch {
        return;
      }
      if (typeof f.channel !== 'string') return;
      if (f.type === 'subscribe') {
        ws.subscribe(f.channel);
      } else if (f.type === 'publish') {
        const kind = typeof f.kind === 'string' ? f.kind : 'text';
        server.publish(
          f.channel,
          `{"type":"message","channel":${JSON.stringify(f.channel)},"pattern":${JSON.stringify(f.channel)},"data":${JSON.stringify(f.data ?? null)},"kind":${JSON.stringify(kind)},"from":${ws.data.from},"ts":${Date.now()}}`,
        );
      } else {
        return;
      }
      if (f.id !== undefined) ws.send(JSON.stringify({ type: 'reply', id: f.id, data: {} }));
    },
    perMessageDeflate: false,
    // server.publish never sends to the publishing socket itself (Bun's default, stated here because
    // the raw ws baseline does deliver to a publisher that is also subscribed; the benchmark never
    // subscribes its publishers).
    publishToSelf: false,
    maxPayloadLength: 1 << 20, // the same cap as the ws baseline's maxPayload
    // Past backpressureLimit bytes queued on one connection Bun silently drops further messages to it
    // (default limit 16 MiB). The benchmark bounds publications in flight, so this is never reached
    // by a healthy run; if it is, closing makes the loss visible instead of a silent gap.
    backpressureLimit: 64 * 1024 * 1024,
    closeOnBackpressureLimit: true,
    // No keep-alive traffic, like the ws baseline (Bun otherwise pings idle connections and closes
    // them after 120 s without data).
    idleTimeout: 0,
    sendPings: false,
  },
});

const stop = (): void => {
  server.stop(true);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
