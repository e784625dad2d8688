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
import { Hubbub } from '../src/client/index.js';
import { TestClient, startServer, type TestServer } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const dist = fileURLToPath(new URL('../dist/', import.meta.url));
// @bufbuild/protobuf's ES modules, served as a CDN would; the import map below resolves its bare specifiers.
const bufbuild = fileURLToPath(new URL('../node_modules/@bufbuild/protobuf/dist/esm/', import.meta.url));
const IMPORT_MAP = JSON.stringify({
  imports: {
    '@bufbuild/protobuf': '/vendor/bufbuild/index.js',
    '@bufbuild/protobuf/codegenv2': '/vendor/bufbuild/codegenv2/index.js',
    '@bufbuild/protobuf/wire': '/vendor/bufbuild/wire/index.js',
  },
});

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
    if (path === '/importmap') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>sdk</title><script type="importmap">${IMPORT_MAP}</script>`);
      return;
    }
    const [root, rel] = path.startsWith('/vendor/bufbuild/') ? [bufbuild, path.slice('/vendor/bufbuild/'.length)] : [dist, path];
    const file = join(root, rel);
    if (!file.startsWith(root) || !existsSync(file) || !file.endsWith('.js')) {
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

async function sdkPage(path = '/'): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${staticBase}${path}`);
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

  it('speaks protobuf, and sends and receives byte payloads and compressed transfers', async () => {
    const srv = await startServer();
    const { page, errors } = await sdkPage('/importmap');
    const node = new Hubbub(srv.url, { name: 'node' });
    try {
      await node.connect();
      const fromPage: { data: unknown; transfer?: unknown }[] = [];
      await node.subscribe('bin/up', (data, m) => fromPage.push({ data, transfer: m.transfer })).ready;
      const result = await page.evaluate(async (url) => {
        const { Hubbub } = await import(/* served by the static host */ '/client/index.js' as string);
        const hub = new Hubbub(url, { name: 'Chromium', encoding: 'protobuf' });
        const w = window as unknown as { got: unknown[]; hub: unknown };
        w.got = [];
        w.hub = hub;
        const sub = hub.subscribe('bin/down', (data: unknown, m: { transfer?: { name?: string } }) => {
          w.got.push(data instanceof Uint8Array ? { bytes: Array.from(data.subarray(0, 4)), length: data.length, sum: data.reduce((a, b) => (a + b) % 65521, 0), name: m.transfer?.name } : data);
        });
        await hub.connect();
        await sub.ready;
        const echoed = await hub.echo(new Uint8Array([1, 2, 3]));
        await hub.publish('bin/up', new Uint8Array([250, 251, 252]));
        const big = new Uint8Array(200_000).map((_, i) => (i * 7) % 13); // compressible
        const sent = await hub.transfer({ channel: 'bin/up' }, big, { name: 'page.bin', compression: 'gzip', chunkSize: 16384 });
        return { echoed: Array.from(echoed as Uint8Array), chunks: sent.chunks };
      }, srv.url);
      assert.deepEqual(result.echoed, [1, 2, 3]);
      assert.equal(result.chunks, 13);
      const deadline = Date.now() + 5000;
      while (fromPage.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual([...(fromPage[0]!.data as Uint8Array)], [250, 251, 252]);
      const big = fromPage[1]!.data as Uint8Array;
      assert.equal(big.length, 200_000);
      assert.ok(big.every((b, i) => b === (i * 7) % 13), 'the transfer arrives byte-identical');
      assert.deepEqual(fromPage[1]!.transfer, { id: (fromPage[1]!.transfer as { id: string }).id, size: 200_000, name: 'page.bin' });
      // The other way: JSON values, bytes, and a deflate-compressed transfer from Node to the page.
      await node.publish('bin/down', { text: 'hi' });
      await node.publish('bin/down', new Uint8Array([9, 8, 7, 6]));
      const payload = new Uint8Array(100_000).map((_, i) => i % 5);
      await node.transfer({ channel: 'bin/down' }, payload, { name: 'node.bin', compression: 'deflate' });
      await page.waitForFunction(() => (window as unknown as { got: unknown[] }).got.length >= 3, undefined, { timeout: 5000 });
      const got = await page.evaluate(() => (window as unknown as { got: unknown[] }).got);
      const sum = payload.reduce((a, b) => (a + b) % 65521, 0);
      assert.deepEqual(got, [{ text: 'hi' }, { bytes: [9, 8, 7, 6], length: 4, sum: 30, name: undefined }, { bytes: [0, 1, 2, 3], length: 100_000, sum, name: 'node.bin' }]);
      assert.deepEqual(errors, []);
    } finally {
      node.close();
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
