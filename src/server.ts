import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WebSocketServer } from 'ws';
import { defaults, type Config } from './config.js';
import type { Broker } from './engine/broker.js';
import { MemoryBroker } from './engine/memory-broker.js';
import { Api } from './http/api.js';
import { sendError, sendJson } from './http/util.js';
import { Hub } from './hub/hub.js';
import { Session } from './hub/session.js';
import { createLogger, type Logger } from './log.js';
import { CloseCode, ErrorCode } from './protocol/errors.js';
import { attachWebSocket } from './transport/ws-server.js';
import { VERSION } from './version.js';

export interface HubbubOptions {
  /** Settings; anything left out takes its default. */
  config?: Partial<Config>;
  logger?: Logger;
  /** The broker engine; the in-memory one by default. */
  broker?: Broker;
}

/**
 * A Hubbub server: one HTTP server carrying the WebSocket endpoint, the HTTP API, the health check
 * and the test page, around one hub. Embeddable: `const s = new HubbubServer({config}); await s.listen()`.
 */
export class HubbubServer {
  readonly config: Config;
  readonly logger: Logger;
  readonly hub: Hub;
  readonly http: Server;
  private readonly api: Api;
  private readonly wss: WebSocketServer;
  private readonly testPage: Buffer;
  private shuttingDown = false;
  private closed: Promise<void> | undefined;

  constructor(options: HubbubOptions = {}) {
    this.config = { ...defaults, ...options.config };
    this.logger = options.logger ?? createLogger(this.config.log_level);
    this.hub = new Hub({ broker: options.broker ?? new MemoryBroker(), logger: this.logger, heartbeatMs: this.config.heartbeat });
    this.api = new Api({ hub: this.hub, logger: this.logger, apiKeys: this.config.api_keys, maxBodyBytes: this.config.max_message_size, version: VERSION });
    const page = readFileSync(new URL('../public/index.html', import.meta.url), 'utf8');
    this.testPage = Buffer.from(page.replace('<meta name="hubbub-ws-path" content="/ws">', `<meta name="hubbub-ws-path" content="${escapeAttr(this.config.ws_path)}">`));
    this.http = createServer((req, res) => this.onRequest(req, res));
    this.wss = attachWebSocket(this.http, {
      path: this.config.ws_path,
      maxMessageSize: this.config.max_message_size,
      maxQueueBytes: this.config.max_queue_bytes,
      admit: () => {
        if (this.shuttingDown) return { status: 503, code: ErrorCode.Unavailable, message: 'server shutting down' };
        const max = this.config.max_connections;
        if (max > 0 && this.hub.clients.size >= max) {
          return { status: 503, code: ErrorCode.TooManyConnections, message: `the server is at its limit of ${max} connections` };
        }
        return undefined;
      },
      onConnection: (transport) => {
        new Session(transport, { hub: this.hub, logger: this.logger, serverVersion: VERSION, heartbeatMs: this.config.heartbeat });
      },
    });
  }

  /** Start the hub and listen. Resolves with the bound address. */
  async listen(): Promise<AddressInfo> {
    await this.hub.start();
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.config.port, this.config.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const address = this.address;
    this.logger.info(
      { host: address.address, port: address.port, ws_path: this.config.ws_path, broker: this.hub.brokerName, version: VERSION },
      `hubbub listening on http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port} (WebSocket at ${this.config.ws_path})`,
    );
    if (this.config.api_keys.length === 0) {
      this.logger.warn('no API key configured: the HTTP API answers requests from loopback only (set --api-key or HUBBUB_API_KEY)');
    }
    return address;
  }

  get address(): AddressInfo {
    return this.http.address() as AddressInfo;
  }

  /**
   * Graceful shutdown: stop accepting, close every client with 1001 after flushing what is queued
   * for it, wait up to `shutdown_timeout` for them to go, drop the rest, stop the hub.
   */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.shuttingDown = true;
    const stopped = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeIdleConnections();
    const count = this.hub.clients.size;
    for (const client of this.hub.clients.values()) client.transport.close(CloseCode.GoingAway, 'server shutting down');
    const deadline = Date.now() + this.config.shutdown_timeout;
    while (this.hub.clients.size > 0 && Date.now() < deadline) await sleep(20);
    const dropped = this.hub.clients.size;
    for (const client of this.hub.clients.values()) client.transport.terminate();
    this.wss.close();
    await this.hub.stop();
    this.http.closeAllConnections();
    await stopped;
    this.logger.info({ clients: count, dropped }, 'hubbub stopped');
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (path.startsWith('/api/')) {
      void this.api.handle(req, res, path);
    } else if (path === '/health') {
      sendJson(res, this.shuttingDown ? 503 : 200, {
        status: this.shuttingDown ? 'shutting_down' : 'ok',
        server: 'hubbub',
        version: VERSION,
        uptime: Math.round((Date.now() - this.hub.startedAt) / 1000),
        connections: this.hub.clients.size,
      });
    } else if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': this.testPage.length });
      res.end(req.method === 'HEAD' ? undefined : this.testPage);
    } else {
      sendError(res, 404, ErrorCode.NotFound, `nothing at ${path}`);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}
