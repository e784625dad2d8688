/**
 * The test page (public/index.html) in a real headless Chromium: it is served at GET /, connects
 * to the server's WebSocket and shows what goes in and out. Needs Debian's /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { startServer, TestClient, type TestServer } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const WAIT = 5000;

let browser: Browser | undefined;
let srv: TestServer | undefined;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser test needs Chromium (on Debian/Ubuntu: apt-get install chromium)`);
  }
  srv = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

interface Opened {
  page: Page;
  errors: Error[];
  clientId: string;
  close(): Promise<void>;
}

/** A fresh page on GET /, connected (optionally with a name); resolves once the welcome is shown. */
async function openConnected(name?: string): Promise<Opened> {
  const page = await browser!.newPage();
  const errors: Error[] = [];
  page.on('pageerror', (err) => errors.push(err));
  try {
    const res = await page.goto(srv!.http + '/');
    assert.equal(res?.status(), 200);
    assert.equal(await page.locator('#url').inputValue(), srv!.url, 'the default WebSocket URL is derived from the page location');
    if (name) await page.fill('#name', name);
    await page.click('#connect');
    const welcome = entry(page, 'in', 'welcome');
    await welcome.waitFor({ timeout: WAIT });
    const clientId = (await page.locator('#client-id').textContent())?.trim() ?? '';
    assert.match(clientId, /^[0-9a-f-]{36}$/, 'the header shows the client id from the welcome');
    assert.ok((await welcome.textContent())?.includes(clientId), 'the welcome entry shows the client id');
    return { page, errors, clientId, close: () => page.close() };
  } catch (err) {
    await page.close();
    throw err;
  }
}

/** Log entries of one direction and type, optionally containing some text. */
function entry(page: Page, dir: 'in' | 'out' | 'local', type: string, hasText?: string): Locator {
  const l = page.locator(`[data-testid="log-entry"][data-dir="${dir}"][data-type="${type}"]`);
  return (hasText === undefined ? l : l.filter({ hasText })).first();
}

/** Subscribe the page to a channel through the UI and wait for the server's reply. */
async function subscribe(page: Page, channel: string, presence = false): Promise<void> {
  await page.fill('#channel', channel);
  await page.setChecked('#presence', presence);
  await page.click('#subscribe');
  await entry(page, 'in', 'reply', 'subscribe ok').filter({ hasText: channel }).waitFor({ timeout: WAIT });
  await page.locator(`#subscriptions [data-channel="${channel}"]`).waitFor({ timeout: WAIT });
}

describe('test page in a browser', { timeout: 30_000 }, () => {
  test('connects, shows the welcome with the client id and says hello with the name', async () => {
    const p = await openConnected('Ada');
    const other = await TestClient.connect(srv!.url);
    try {
      await entry(p.page, 'out', 'hello', 'Ada').waitFor({ timeout: WAIT });
      await entry(p.page, 'in', 'reply', 'you are').filter({ hasText: 'Ada' }).waitFor({ timeout: WAIT });
      assert.equal(await p.page.locator('#status').getAttribute('data-state'), 'open');
      // The server really knows the page's connection under that id and name.
      const list = await other.request({ type: 'clients' });
      assert.equal(list.type, 'reply');
      const clients = (list.data as { clients: { client: string; name?: string }[] }).clients;
      assert.deepEqual(clients.find((c) => c.client === p.clientId)?.name, 'Ada');
      assert.deepEqual(p.errors, []);
    } finally {
      await other.close();
      await p.close();
    }
  });

  test('subscribing and publishing text and a notification shows the messages', async () => {
    const p = await openConnected();
    const watcher = await TestClient.connect(srv!.url);
    try {
      await watcher.request({ type: 'subscribe', channel: 'rooms/browser-pub' });
      await subscribe(p.page, 'rooms/browser-pub');

      await p.page.fill('#text', 'hello from the page');
      await p.page.click('#send-text');
      const msg = entry(p.page, 'in', 'message', 'hello from the page');
      await msg.waitFor({ timeout: WAIT });
      assert.equal(await msg.getAttribute('data-kind'), 'text');
      assert.ok((await msg.textContent())?.includes('rooms/browser-pub'));

      await p.page.fill('#text', 'heads up');
      await p.page.click('#send-notification');
      const note = entry(p.page, 'in', 'message', 'heads up');
      await note.waitFor({ timeout: WAIT });
      assert.equal(await note.getAttribute('data-kind'), 'notification');

      // What went over the wire is the protocol's publish, as another subscriber sees it.
      const m1 = await watcher.next((f) => f.type === 'message');
      assert.deepEqual([m1.channel, m1.data, m1.kind, (m1.from as { client: string }).client], ['rooms/browser-pub', 'hello from the page', 'text', p.clientId]);
      const m2 = await watcher.next((f) => f.type === 'message');
      assert.deepEqual([m2.data, m2.kind], ['heads up', 'notification']);
      assert.deepEqual(p.errors, []);
    } finally {
      await watcher.close();
      await p.close();
    }
  });

  test('a message published by another client is shown', async () => {
    const p = await openConnected();
    const bob = await TestClient.connect(srv!.url);
    try {
      await subscribe(p.page, 'rooms/+');
      assert.equal((await bob.request({ type: 'hello', name: 'Bob' })).type, 'reply');
      assert.equal((await bob.request({ type: 'publish', channel: 'rooms/browser-other', data: 'hi from bob' })).type, 'reply');
      const msg = entry(p.page, 'in', 'message', 'hi from bob');
      await msg.waitFor({ timeout: WAIT });
      const text = (await msg.textContent()) ?? '';
      assert.ok(text.includes('Bob'), `the sender's name is shown: ${text}`);
      assert.ok(text.includes('rooms/browser-other'), `the channel is shown: ${text}`);
      assert.deepEqual(p.errors, []);
    } finally {
      await bob.close();
      await p.close();
    }
  });

  test('presence: a join and a leave on the same channel are shown, and presence lists the member', async () => {
    const p = await openConnected();
    const carol = await TestClient.connect(srv!.url);
    try {
      await subscribe(p.page, 'rooms/browser-presence', true);
      await entry(p.page, 'out', 'subscribe', 'with presence').waitFor({ timeout: WAIT });
      assert.equal((await carol.request({ type: 'hello', name: 'Carol' })).type, 'reply');
      assert.equal((await carol.request({ type: 'subscribe', channel: 'rooms/browser-presence' })).type, 'reply');

      const join = entry(p.page, 'in', 'join', 'Carol');
      await join.waitFor({ timeout: WAIT });
      assert.ok((await join.textContent())?.includes('rooms/browser-presence'));

      await p.page.click('#ask-presence');
      await entry(p.page, 'in', 'reply', 'presence ok').waitFor({ timeout: WAIT });
      const who = (await p.page.locator('#who').textContent()) ?? '';
      assert.ok(who.includes('Carol') && who.includes(carol.welcome.client as string), `presence lists Carol: ${who}`);

      assert.equal((await carol.request({ type: 'unsubscribe', channel: 'rooms/browser-presence' })).type, 'reply');
      await entry(p.page, 'in', 'leave', 'Carol').waitFor({ timeout: WAIT });
      assert.deepEqual(p.errors, []);
    } finally {
      await carol.close();
      await p.close();
    }
  });

  test('an error answer is shown as an error entry', async () => {
    const p = await openConnected();
    try {
      await p.page.fill('#pub-channel', 'a/+');
      await p.page.click('#publish');
      const err = entry(p.page, 'in', 'error');
      await err.waitFor({ timeout: WAIT });
      const text = (await err.textContent()) ?? '';
      assert.ok(text.includes('invalid_channel'), `the error code is shown: ${text}`);
      assert.ok(text.includes('publish'), `the failed request is named: ${text}`);
      // Errors look different from ordinary replies.
      const color = (l: Locator) => l.locator('.badge').evaluate((el) => getComputedStyle(el).color);
      await p.page.click('#ping');
      const pong = entry(p.page, 'in', 'pong');
      await pong.waitFor({ timeout: WAIT });
      assert.notEqual(await color(err), await color(pong));
      // The connection stays usable after an error.
      assert.equal(await p.page.locator('#status').getAttribute('data-state'), 'open');
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
    }
  });

  test('in a narrow window the log goes below the controls and nothing overlaps', async () => {
    const page = await browser!.newPage({ viewport: { width: 400, height: 800 } });
    const errors: Error[] = [];
    page.on('pageerror', (err) => errors.push(err));
    try {
      await page.goto(srv!.http + '/');
      await page.click('#connect');
      await entry(page, 'in', 'welcome').waitFor({ timeout: WAIT });
      const lastCard = await page.locator('.controls > .card').last().boundingBox();
      const log = await page.locator('.log-panel').boundingBox();
      assert.ok(lastCard && log);
      assert.ok(log.y >= lastCard.y + lastCard.height, `the log (y=${log.y}) is stacked under the last control card (bottom=${lastCard.y + lastCard.height})`);
      assert.ok(log.x >= 0 && log.x + log.width <= 400, 'the log fits the window width');
      // Every control is really clickable: no other element covers it.
      for (const id of ['url', 'name', 'connect', 'presence', 'subscribe', 'text', 'send-text', 'pub-channel', 'publish', 'ask-presence', 'ask-clients']) {
        const el = page.locator('#' + id);
        await el.scrollIntoViewIfNeeded();
        const hit = await el.evaluate((node) => {
          const r = node.getBoundingClientRect();
          const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
          return top === node || node.contains(top) || (top instanceof HTMLLabelElement && top.control === node);
        });
        assert.ok(hit, `#${id} is not covered by another element`);
      }
      await page.setChecked('#presence', true, { timeout: 2000 });
      await page.click('#subscribe', { timeout: 2000 });
      await entry(page, 'in', 'reply', 'subscribe ok').waitFor({ timeout: WAIT });
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});

describe('the test page with auth required', () => {
  test('sends the token field in hello and is served as that user', async () => {
    const secret = 'page-secret';
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'page-user', name: 'Page User', exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const token = `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
    const secured = await startServer({ auth: 'required', jwt_secret: secret });
    const page = await browser!.newPage();
    try {
      await page.goto(secured.http + '/');
      await page.fill('#token', token);
      await page.click('#connect');
      const watcher = await TestClient.connect(secured.url + `?token=${encodeURIComponent(token)}`);
      await page.waitForFunction(() => document.querySelector('[data-testid="log-entry"][data-type="reply"]') !== null, undefined, { timeout: WAIT });
      const listed = (await watcher.request({ type: 'clients' })).data as { clients: { user?: string; name?: string }[] };
      assert.equal(listed.clients.filter((c) => c.user === 'page-user' && c.name === 'Page User').length, 2, 'the page connected as the token user');
      await watcher.close();
    } finally {
      await page.close();
      await secured.close();
    }
  });
});
