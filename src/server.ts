import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { WebSocketServer } from 'ws';
import { ConfigError, defaults, type Config } from './config.js';
import type { Broker } from './engine/broker.js';
import { MemoryBroker } from './engine/memory-broker.js';
import { MemoryStore } from './engine/memory-store.js';
import { SqliteStore } from './engine/sqlite-store.js';
import type { Store } from './engine/store.js';
import { join } from 'node:path';
import { Api } from './http/api.js';
import { sendError, sendJson } from './http/util.js';
import { Hub } from './hub/hub.js';
import { Session } from './hub/session.js';
import { codecFor, SUBPROTOCOLS } from './hub/codec.js';
import { createLogger, type Logger } from './log.js';
import { CloseCode, ErrorCode } from './protocol/errors.js';
import { attachWebSocket, type Admission } from './transport/ws-server.js';
import { TokenVerifier, type Identity } from './auth/jwt.js';
import { Permissions } from './auth/permissions.js';
import { KeyedBuckets } from './limits/token-bucket.js';
import { HubbubError } from './protocol/errors.js';
import { VERSION } from './version.js';

export interface HubbubOptions {
  /** Settings; anything left out takes its default. */
  config?: Partial<Config>;
  logger?: Logger;
  /** The broker engine; the in-memory one by default. */
  broker?: Broker;
  /** The storage engine; by default the one `storage` names (SQLite in data_dir, or memory). */
  store?: Store;
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
  readonly verifier: TokenVerifier | undefined;
  readonly permissions: Permissions;
  readonly store: Store;
  private readonly api: Api;
  private readonly perIp = new Map<string, number>();
  private readonly connectRate: KeyedBuckets | undefined;
  private readonly wss: WebSocketServer;
  private readonly testPage: Buffer;
  private shuttingDown = false;
  private closed: Promise<void> | undefined;

  constructor(options: HubbubOptions = {}) {
    this.config = { ...defaults, ...options.config };
    this.logger = options.logger ?? createLogger(this.config.log_level);
    this.permissions = new Permissions(this.config.namespaces, this.config.default_namespace);
    this.store = options.store ?? (this.config.storage === 'memory' ? new MemoryStore() : new SqliteStore(join(this.config.data_dir, 'hubbub.db')));
    this.hub = new Hub({
      broker: options.broker ?? new MemoryBroker(),
      logger: this.logger,
      heartbeatMs: this.config.heartbeat,
      canRead: (client, channel) => this.permissions.canRead(client, channel),
      store: this.store,
      historyOf: (channel) => this.permissions.historyOf(channel),
      inbox: { count: this.config.max_stored_messages, bytes: this.config.max_stored_bytes, ttl: this.config.stored_message_ttl },
    });
    this.api = new Api({ hub: this.hub, logger: this.logger, apiKeys: this.config.api_keys, maxBodyBytes: this.config.max_message_size, maxChannelLength: this.config.max_channel_length, version: VERSION });
    const page = readFileSync(new URL('../public/index.html', import.meta.url), 'utf8');
    this.testPage = Buffer.from(page.replace('<meta name="hubbub-ws-path" content="/ws">', `<meta name="hubbub-ws-path" content="${escapeAttr(this.config.ws_path)}">`));
    this.verifier = TokenVerifier.create(this.config);
    if (this.config.auth === 'required' && !this.verifier) throw new ConfigError('auth required needs a way to verify tokens: set jwt_secret, jwt_public_key or jwks');
    const c = this.config;
    this.connectRate = c.connection_rate_per_ip > 0 ? new KeyedBuckets(c.connection_rate_per_ip, c.connection_rate_per_ip) : undefined;
    const onRequest = (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res);
    this.http = c.tls_cert ? (createHttpsServer({ cert: readFile(c.tls_cert, 'tls_cert'), key: readFile(c.tls_key, 'tls_key') }, onRequest) as unknown as Server) : createServer(onRequest);
    this.wss = attachWebSocket<Identity | undefined>(this.http, {
      path: c.ws_path,
      maxMessageSize: c.max_message_size,
      maxQueueBytes: c.max_queue_bytes,
      subprotocols: SUBPROTOCOLS,
      deflate: c.permessage_deflate ? { threshold: c.compression_threshold } : undefined,
      admit: (req) => this.admit(req),
      onConnection: (transport, _req, identity) => {
        const ip = transport.remoteAddress;
        this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
        new Session(transport, {
          hub: this.hub,
          logger: this.logger,
          serverVersion: VERSION,
          config: c,
          verifier: this.verifier,
          permissions: this.permissions,
          identity,
          codec: codecFor(transport.protocol),
          onClosed: () => {
            const n = (this.perIp.get(ip) ?? 1) - 1;
            if (n <= 0) this.perIp.delete(ip);
            else this.perIp.set(ip, n);
          },
        });
      },
    });
  }

  /** Why one more connection from `ip` would break a connection count limit, if it would. */
  private connectionsFull(ip: string): string | undefined {
    const c = this.config;
    if (c.max_connections > 0 && this.hub.clients.size >= c.max_connections) return `the server is at its limit of ${c.max_connections} connections`;
    if (c.max_connections_per_ip > 0 && (this.perIp.get(ip) ?? 0) >= c.max_connections_per_ip) return `${ip} already has ${c.max_connections_per_ip} connections`;
    return undefined;
  }

  /**
   * Admission control for a WebSocket upgrade, cheapest checks first: shutdown, origin, connection
   * rate and counts, then the token (query parameter `token` or `Authorization: Bearer`).
   */
  private admit(req: IncomingMessage): Admission<Identity | undefined> | Promise<Admission<Identity | undefined>> {
    const c = this.config;
    const refuse = (status: number, code: string, message: string) => ({ refuse: { status, code, message } });
    if (this.shuttingDown) return refuse(503, ErrorCode.Unavailable, 'server shutting down');
    const origin = req.headers.origin;
    if (c.allowed_origins.length > 0 && origin !== undefined && !c.allowed_origins.includes(origin)) {
      return refuse(403, ErrorCode.Forbidden, `origin ${origin} is not allowed`);
    }
    const ip = req.socket.remoteAddress ?? '';
    if (this.connectRate && !this.connectRate.take(ip)) return refuse(429, ErrorCode.RateLimited, `more than ${c.connection_rate_per_ip} connections per second from ${ip}`);
    const full = this.connectionsFull(ip);
    if (full) return refuse(503, ErrorCode.TooManyConnections, full);
    const token = upgradeToken(req);
    if (token === undefined) return { accept: undefined };
    if (!this.verifier) return refuse(401, ErrorCode.Unauthorized, 'this server verifies no tokens (no jwt_secret, jwt_public_key or jwks is configured)');
    return this.verifier.verify(token).then(
      (identity): Admission<Identity | undefined> => {
        // Counts may have moved while the token was verified: check again (from here to onConnection is one turn).
        if (this.shuttingDown) return refuse(503, ErrorCode.Unavailable, 'server shutting down');
        const fullNow = this.connectionsFull(ip);
        if (fullNow) return refuse(503, ErrorCode.TooManyConnections, fullNow);
        if (c.max_connections_per_user > 0 && this.hub.userConnections(identity.user) >= c.max_connections_per_user) {
          return refuse(503, ErrorCode.TooManyConnections, `user ${identity.user} already has ${c.max_connections_per_user} connections`);
        }
        return { accept: identity };
      },
      (err: unknown) => refuse(401, ErrorCode.Unauthorized, err instanceof HubbubError ? err.message : 'invalid token'),
    );
  }

  /** Start the hub and listen. Resolves with the bound address. */
  async listen(): Promise<AddressInfo> {
    await this.store.open();
    if (this.store instanceof SqliteStore) this.store.startSweeping(this.config.stored_message_ttl);
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
      { host: address.address, port: address.port, ws_path: this.config.ws_path, broker: this.hub.brokerName, storage: this.store instanceof SqliteStore ? this.store.file : this.store.name, version: VERSION },
      `hubbub listening on ${this.config.tls_cert ? 'https' : 'http'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port} (WebSocket at ${this.config.ws_path})`,
    );
    if (this.config.api_keys.length === 0) {
      this.logger.warn('no API key configured: the HTTP API answers requests from loopback only (set --api-key or HUBBUB_API_KEY)');
    }
    const auth = this.config.auth;
    this.logger[auth === 'optional' ? 'warn' : 'info'](
      { auth, tokens: this.verifier ? this.verifier.algorithms.join(',') : 'none' },
      auth === 'optional'
        ? `auth is optional: anonymous clients are allowed where namespace rules permit${this.verifier ? '' : ', and no token verification is configured (development mode)'}`
        : 'auth is required: every connection must present a valid token',
    );
    if (this.config.allowed_origins.length === 0) {
      this.logger.warn('allowed_origins is empty: WebSocket upgrades from any Origin are accepted (set --allowed-origins in production)');
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
    await this.store.close();
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

/** The token offered at the upgrade: `?token=` or `Authorization: Bearer`. */
function upgradeToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  const bearer = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  if (bearer) return bearer;
  const q = (req.url ?? '').indexOf('?');
  if (q < 0) return undefined;
  return new URLSearchParams((req.url ?? '').slice(q + 1)).get('token') ?? undefined;
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}
