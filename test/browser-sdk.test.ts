/**
 * The client SDK in a real browser: headless Chromium loads the built ES modules (dist/client,
 * dist/protocol) as they ship, and talks to a real server with the browser's own WebSocket.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join, normalize } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { TestClient, startServer, type TestServer } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const dist = fileURLToPath(new URL('../dist/', import.meta.url));

let browser: Browser;
let statics: Server;
let staticBase: string;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the browser tests need Chromium (apt-get install chromium)`);
  assert.ok(existsSync(join(dist, 'client', 'index.js')), 'dist/ is missing: run `npm run build` (npm test does)');
  // Serve the built modules exactly as a static host or CDN would; nothing is bundled or rewritten.
  statics = createServer((req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]!));
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>sdk</title>');
      return;
    }
    const file = join(dist, path);
    if (!file.startsWith(dist) || !existsSync(file) || !file.endsWith('.js')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(file));
  });
  await new Promise<void>((r) => statics.listen(0, '127.0.0.1', () => r()));
  staticBase = `http://127.0.0.1:${(statics.address() as { port: number }).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  statics?.close();
});

async function sdkPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${staticBase}/`);
  return { page, errors };
}

describe('the SDK in Chromium', () => {
  it('connects, subscribes, publishes and receives with the browser WebSocket', async () => {
    const srv = await startServer();
    const { page, errors } = await sdkPage();
    try {
      const other = await TestClient.connect(srv.url);
      await other.request({ type: 'subscribe', channel: 'browser/in' });
      const result = await page.evaluate(async (url) => {
        const { Hubbub } = await import(/* served by the static host */ '/client/index.js' as string);
        const hub = new Hubbub(url, { name: 'Chromium' });
        const got: unknown[] = [];
        const sub = hub.subscribe('browser/+', (data: unknown) => got.push(data));
        await hub.connect();
        await sub.ready;
        await hub.publish('browser/in', { from: 'the page' });
        const echoed = await hub.echo({ ok: true });
        (window as unknown as { hub: unknown }).hub = hub;
        (window as unknown as { got: unknown[] }).got = got;
        return { client: hub.clientId, echoed, usesNativeWebSocket: typeof WebSocket === 'function' };
      }, srv.url);
      assert.deepEqual(result.echoed, { ok: true });
      assert.equal(result.usesNativeWebSocket, true);
      const m = await other.next((f) => f.type === 'message');
      assert.deepEqual(m.data, { from: 'the page' });
      assert.deepEqual(m.from, { client: result.client, name: 'Chromium' });
      await other.request({ type: 'publish', channel: 'browser/out', data: 'to the page' });
      await page.waitForFunction(() => (window as unknown as { got: unknown[] }).got.includes('to the page'), undefined, { timeout: 5000 });
      assert.deepEqual(errors, []);
      await other.close();
    } finally {
      await page.close();
      await srv.close();
    }
  });

  it('reconnects and resubscribes after the server restarts', async () => {
    const first = await startServer();
    const port = first.port;
    const { page, errors } = await sdkPage();
    let second: TestServer | undefined;
    try {
      await page.evaluate(async (url) => {
        const { Hubbub } = await import(/* served by the static host */ '/client/index.js' as string);
        const hub = new Hubbub(url, { minReconnectDelay: 50, maxReconnectDelay: 200 });
        const w = window as unknown as { got: unknown[]; events: string[] };
        w.got = [];
        w.events = [];
        hub.on('disconnected', (i: { code: number }) => w.events.push(`disconnected ${i.code}`));
        hub.on('connected', (i: { reconnected: boolean }) => w.events.push(i.reconnected ? 'reconnected' : 'connected'));
        hub.subscribe('phoenix', (d: unknown) => w.got.push(d));
        await hub.connect();
      }, first.url);
      await first.close();
      second = await startServer({ port });
      await page.waitForFunction(() => (window as unknown as { events: string[] }).events.includes('reconnected'), undefined, { timeout: 5000 });
      const pub = await TestClient.connect(second.url);
      await pub.request({ type: 'publish', channel: 'phoenix', data: 'risen' });
      await page.waitForFunction(() => (window as unknown as { got: unknown[] }).got.includes('risen'), undefined, { timeout: 5000 });
      const events = await page.evaluate(() => (window as unknown as { events: string[] }).events);
      assert.deepEqual(events, ['connected', 'disconnected 1001', 'reconnected']);
      assert.deepEqual(errors, []);
      await pub.close();
    } finally {
      await page.close();
      await second?.close();
    }
  });
});
