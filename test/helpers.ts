/**
 * Test helpers: a real server on a free loopback port, and a small promise-based WebSocket client
 * that records every frame it receives.
 */
import { createServer } from 'node:net';
import { WebSocket } from 'ws';
import type { Hubbub, HubbubEvents } from '../src/client/index.js';
import { HubbubServer } from '../src/server.js';
import type { Config } from '../src/config.js';
import { createLogger } from '../src/log.js';

export interface TestServer {
  server: HubbubServer;
  port: number;
  url: string;
  http: string;
  close(): Promise<void>;
}

/**
 * Start a server on 127.0.0.1 with an OS-chosen port. Logs are silent unless HUBBUB_TEST_LOG is set.
 * Client broadcasts are switched on (they are off by default) because most suites exercise them;
 * test/access.test.ts checks the default.
 */
export async function startServer(config: Partial<Config> = {}): Promise<TestServer> {
  const logger = createLogger((process.env.HUBBUB_TEST_LOG as Config['log_level']) ?? 'silent', { pretty: false });
  // In-memory storage unless a test asks for SQLite (with its own data_dir): no files left behind.
  const server = new HubbubServer({ config: { host: '127.0.0.1', port: 0, allow_client_broadcast: true, storage: 'memory', ...config }, logger });
  const { port } = await server.listen();
  return {
    server,
    port,
    url: `ws://127.0.0.1:${port}${server.config.ws_path}`,
    http: `http://127.0.0.1:${port}`,
    close: () => server.close(),
  };
}

export type Frame = Record<string, unknown> & { type: string };

/** A WebSocket client for tests: keeps every received frame and lets a test wait for the next matching one. */
export class TestClient {
  readonly frames: Frame[] = [];
  private cursor = 0;
  private waiters: (() => void)[] = [];
  private nextId = 1;
  closed: Promise<{ code: number; reason: string }>;
  welcome!: Frame;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, binary) => {
      this.frames.push(binary ? { type: '<binary>', bytes: data } : (JSON.parse(data.toString()) as Frame));
      this.wake();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => {
      this.wake();
      resolve({ code, reason: reason.toString() });
    }));
    ws.on('error', () => {});
  }

  /** Connect and wait for the welcome frame. */
  static async connect(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<TestClient> {
    const ws = new WebSocket(url, options);
    const c = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    });
    c.welcome = await c.next((f) => f.type === 'welcome');
    return c;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  send(frame: object | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Send a frame with a fresh id and wait for the frame answering it (reply, pong or error). */
  async request(frame: Record<string, unknown>, timeoutMs = 2000): Promise<Frame> {
    const id = this.nextId++;
    this.send({ ...frame, id });
    return this.next((f) => f.id === id && f.type !== 'message', timeoutMs);
  }

  /** The next frame (after those already consumed) that matches; frames skipped stay available to later calls. */
  async next(match: (f: Frame) => boolean = () => true, timeoutMs = 2000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = this.cursor; i < this.frames.length; i++) {
        const f = this.frames[i]!;
        if (match(f)) {
          this.frames.splice(i, 1);
          return f;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; unconsumed: ${JSON.stringify(this.frames.slice(this.cursor)).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Frames of a type received and not yet consumed by next(). */
  pending(type?: string): Frame[] {
    return this.frames.filter((f) => type === undefined || f.type === type);
  }

  /** Wait a little and assert nothing matching arrived: for "must not be delivered" checks. */
  async nothing(match: (f: Frame) => boolean = () => true, waitMs = 150): Promise<Frame[]> {
    await new Promise((r) => setTimeout(r, waitMs));
    return this.frames.filter(match);
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

export async function api(base: string, method: string, path: string, body?: unknown, key?: string): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Poll `check` every 10 ms until it holds; fail naming `what` after `timeoutMs`. */
export function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (check()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

/** The next `event` of an SDK client, with its argument. */
export function nextEvent<T>(hub: Hubbub, event: keyof HubbubEvents, timeoutMs = 8000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} event`)), timeoutMs);
    hub.once(event, ((info: T) => {
      clearTimeout(t);
      resolve(info);
    }) as never);
  });
}

/** A loopback port nothing listens on. */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
