/**
 * How a `hubbub bench` result is shown (src/bench/report.ts): the terminal table, and the HTML
 * report opened in a real headless Chromium and measured there. Needs Debian's /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { renderHtml, renderTable } from '../src/bench/report.js';
import { histogram, latencyStats } from '../src/bench/stats.js';
import type { BenchSummary, SecondPoint } from '../src/bench/summary.js';

const CHROMIUM = '/usr/bin/chromium';

/** A recorded-looking `sustained` run, read back as `--json` wrote it (NaN would be null). */
const fixture = (): BenchSummary => JSON.parse(readFileSync(new URL('./fixtures/bench-summary.json', import.meta.url), 'utf8')) as BenchSummary;

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** A connection storm: handshakes measured, nothing published, no per-second series, no server stats. */
function storm(): BenchSummary {
  const s = fixture();
  const hs = Array.from({ length: 5000 }, (_, i) => 2 + (i % 97) * 0.4);
  return {
    ...s,
    scenario: 'storm',
    connections: { ...s.connections, attempted: 5007, ok: 5000, failed: 7, errors: { timeout: 3, 'http 503': 4 }, handshake: latencyStats(hs), handshakeHistogram: histogram(hs) },
    published: 0,
    expected: 0,
    delivered: 0,
    lost: 0,
    late: 0,
    disorder: 0,
    deliveriesPerSec: 0,
    publishesPerSec: 0,
    latency: latencyStats([]),
    histogram: histogram([]),
    series: [],
    cpu: { generator: { seconds: 1.2, percent: 40, usPerDelivery: NaN } },
    serverMemory: undefined,
    notes: [],
  };
}

/** User-supplied strings (url, notes, options) that would inject markup if not escaped. */
function hostile(): BenchSummary {
  const s = fixture();
  s.url = 'ws://x/"><script>alert(1)</script>';
  s.notes = ['<script>alert(2)</script> & <img src=x onerror=alert(3)>'];
  s.options = { ...s.options, token: '</style><script>alert(4)</script>' };
  s.machine = { ...s.machine, cpuModel: '<iframe src="https://example.com">' };
  return s;
}

/** The metric/value rows of the text table, in order (notes excluded). */
function rowList(table: string): [string, string][] {
  return table
    .split('\n')
    .filter((line) => !line.startsWith('  • '))
    .map((line) => /^ {2}(\S.*?) {2,}(\S.*)$/.exec(line))
    .filter((r) => r !== null)
    .map((r) => [r[1]!, r[2]!]);
}

/** Metric → value; a metric in two sections (p99 in Latency and Handshake) keeps the first. */
function rows(table: string): Map<string, string> {
  return new Map(rowList(table).reverse());
}

describe('bench report: text table', () => {
  test('shows the key figures formatted, aligned, grouped, with the notes', () => {
    const s = fixture();
    const table = renderTable(s);
    const r = rows(table);
    assert.equal(r.get('deliveries/s'), '200,008');
    assert.equal(r.get('publishes/s'), '2,000');
    assert.equal(r.get('expected'), '12,000,500');
    assert.equal(r.get('connections ok/attempted'), '1,000 / 1,000');
    assert.equal(r.get('p99'), '3.33', 'latency p99 (the first p99 row is the latency section)');
    assert.equal(r.get('samples'), '1,200,000');
    assert.equal(r.get('RSS at start'), '81.4 MiB');
    assert.equal(r.get('server per delivery'), '2.99 µs');
    assert.equal(r.get('late (> 1,000 ms)'), '0');
    for (const title of ['Run', 'Throughput', 'Latency (ms)', 'Handshake (ms)', 'CPU', 'Server memory', 'Notes']) {
      assert.match(table, new RegExp(`^${title.replace(/[()]/g, '\\$&')}$`, 'm'), `section ${title}`);
    }
    for (const note of s.notes) assert.ok(table.includes(`  • ${note}\n`), `note: ${note}`);
    // Every value starts in the same column.
    const starts = new Set(table.split('\n').filter((l) => /^ {2}\S/.test(l) && !l.startsWith('  • ')).map((l) => /^ {2}\S.*? {2,}/.exec(l)![0].length));
    assert.equal(starts.size, 1, `values start in one column, not ${[...starts].join(', ')}`);
  });

  test('prints "-" for NaN and for the nulls NaN becomes in JSON', () => {
    const s = fixture();
    s.latency = latencyStats([]);
    s.cpu.generator.usPerDelivery = NaN;
    for (const summary of [s, JSON.parse(JSON.stringify(s)) as BenchSummary]) {
      const table = renderTable(summary);
      const r = rows(table);
      assert.equal(r.get('p50'), '-');
      assert.equal(r.get('p99.9'), '-');
      assert.equal(r.get('generator per delivery'), '-');
      assert.equal(r.get('samples'), '0');
      assert.doesNotMatch(table, /NaN|null|undefined/);
    }
  });

  test('a storm without series or latency samples renders, with the connection failures, and no NaN', () => {
    const table = renderTable(storm());
    const r = rows(table);
    assert.equal(r.get('connections ok/attempted'), '5,000 / 5,007');
    assert.equal(r.get('connections failed'), '7 (timeout 3, http 503 4)');
    // A storm publishes nothing: no throughput or publish latency sections, only the handshake's.
    assert.ok(!table.includes('Latency (ms)') && !table.includes('deliveries/s') && table.includes('Handshake (ms)'), 'storm sections');
    assert.ok(!table.includes('Server memory') && !/^ {2}server /m.test(table), 'no server sections without server stats');
    assert.doesNotMatch(table, /NaN|undefined|Infinity/);
  });
});

describe('bench report: HTML', () => {
  test('escapes user-supplied strings', () => {
    const html = renderHtml(hostile());
    assert.ok(!/<script/i.test(html), 'no <script> element');
    assert.ok(!/<img|<iframe|<\/style><script/i.test(html), 'no injected elements');
    assert.ok(html.includes('ws://x/&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;'), 'the url is there, escaped');
  });

  test('a storm (no series, no latency samples) renders without NaN', () => {
    const s = storm();
    for (const summary of [s, JSON.parse(JSON.stringify(s)) as BenchSummary]) {
      const html = renderHtml(summary);
      assert.doesNotMatch(html, /NaN|undefined|Infinity|null/);
      assert.ok(html.includes('data-chart="handshake"'));
      assert.ok(!html.includes('data-chart="histogram"') && !html.includes('class="series"'));
    }
  });
});

describe('bench report in a browser', { timeout: 60_000 }, () => {
  let browser: Browser | undefined;

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: the browser test needs Chromium (on Debian/Ubuntu: apt-get install chromium)`);
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
  });

  /** A page showing `html`, recording console errors, page errors and any request it makes. */
  async function open(html: string, width = 1280): Promise<{ page: Page; problems: string[] }> {
    const page = await browser!.newPage({ viewport: { width, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => problems.push(`request: ${r.url()}`)); // self-contained: it fetches nothing
    await page.setContent(html, { waitUntil: 'load' });
    return { page, problems };
  }

  test('the fixture report: charts drawn from the data, no errors, screenshot', async () => {
    const s = fixture();
    const { page, problems } = await open(renderHtml(s));
    try {
      const charts = await page.$$eval('svg[data-chart]', (els) => els.map((e) => e.getAttribute('data-chart')));
      assert.deepEqual(charts, ['histogram', 'handshake', 'deliveries', 'latency', 'memory', 'cpu']);

      // Histogram bars: one per bucket, height ordered like the counts, empty buckets flat.
      for (const [chart, counts] of [['histogram', s.histogram.counts], ['handshake', s.connections.handshakeHistogram.counts]] as const) {
        const heights = await page.$$eval(`svg[data-chart="${chart}"] rect.bar`, (els) => els.map((e) => e.getBoundingClientRect().height));
        assert.equal(heights.length, counts.length, `${chart}: one bar per bucket`);
        counts.forEach((c, i) => assert.equal(heights[i]! > 0, c > 0, `${chart} bucket ${i} (count ${c}) height ${heights[i]}`));
        const argmax = (xs: readonly number[]): number => xs.indexOf(Math.max(...xs));
        assert.equal(argmax(heights), argmax(counts), `${chart}: the tallest bar is the fullest bucket`);
        for (let i = 0; i < counts.length; i++) {
          for (let j = 0; j < counts.length; j++) {
            if (counts[i]! > counts[j]!) assert.ok(heights[i]! >= heights[j]!, `${chart}: bucket ${i} (${counts[i]}) not shorter than ${j} (${counts[j]})`);
          }
        }
      }

      // Lines: one point per second that has a value, a new subpath after each missing second.
      const paths = await page.$$eval('path.series', (els) =>
        els.map((e) => {
          const box = e.getBoundingClientRect();
          const svg = e.closest('svg')!.getBoundingClientRect();
          return {
            chart: e.closest('svg')!.getAttribute('data-chart'),
            name: e.getAttribute('data-name') as keyof SecondPoint,
            points: Number(e.getAttribute('data-points')),
            d: e.getAttribute('d') ?? '',
            inside: box.width > 0 && box.height > 0 && box.left >= svg.left && box.right <= svg.right && box.top >= svg.top && box.bottom <= svg.bottom,
          };
        }),
      );
      assert.deepEqual(
        paths.map((p) => `${p.chart}/${p.name}`),
        ['deliveries/delivered', 'latency/p50', 'latency/p99', 'latency/max', 'memory/serverRss', 'cpu/serverCpu', 'cpu/generatorCpu'],
      );
      for (const p of paths) {
        const present = s.series.map((pt) => isNum(pt[p.name]));
        const runs = present.filter((ok, i) => ok && !present[i - 1]).length;
        assert.equal(p.points, present.filter(Boolean).length, `${p.name}: data-points`);
        assert.equal(p.d.match(/[ML]/g)?.length, p.points, `${p.name}: points in the path`);
        assert.equal(p.d.match(/M/g)?.length, runs, `${p.name}: the line breaks at missing seconds`);
        assert.ok(p.inside, `${p.name}: drawn inside its chart`);
      }
      assert.ok(paths.find((p) => p.name === 'serverRss')!.d.match(/M/g)!.length >= 2, 'the fixture has a missing second, so the memory line breaks');
      // Higher values are drawn higher (smaller y).
      const meanY = (name: string): number => {
        const ys = [...paths.find((p) => p.name === name)!.d.matchAll(/[ML][\d.]+ ([\d.]+)/g)].map((m) => Number(m[1]));
        return ys.reduce((a, b) => a + b, 0) / ys.length;
      };
      assert.ok(meanY('max') < meanY('p99') && meanY('p99') < meanY('p50'), 'latency lines in order (log axis)');
      assert.ok(meanY('generatorCpu') < meanY('serverCpu'), 'generator CPU (~70 %) above server CPU (~60 %) (linear axis)');

      // Cards and table carry the headline figures.
      const cards = await page.locator('.card .num').allTextContents();
      assert.deepEqual(cards, ['200,008', '0.970', '3.33', '0', '2.99', '69.9']);
      assert.equal(await page.locator('table.summary tr:not(.section)').count(), rowList(renderTable(s)).length, 'every row of the text table is in the HTML table');

      await page.screenshot({ path: '/tmp/bench-report.png', fullPage: true });

      // Narrow window: everything reflows, nothing scrolls sideways.
      await page.setViewportSize({ width: 400, height: 800 });
      assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 400, 'no horizontal scrolling at 400 px');
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  test('hostile strings show as text, and a storm report has no series but a handshake histogram', async () => {
    const s = hostile();
    const { page, problems } = await open(renderHtml(s));
    try {
      assert.equal(await page.locator('header .url').textContent(), s.url);
      assert.equal(await page.locator('.notes li').textContent(), s.notes[0]);
      assert.equal(await page.locator('script, img, iframe').count(), 0);
    } finally {
      await page.close();
    }
    const st = storm();
    const { page: page2, problems: problems2 } = await open(renderHtml(st));
    try {
      assert.equal(await page2.locator('svg[data-chart="handshake"] rect.bar').count(), st.connections.handshakeHistogram.counts.length);
      assert.equal(await page2.locator('path.series').count(), 0);
      assert.ok(!(await page2.locator('body').innerText()).includes('NaN'));
    } finally {
      await page2.close();
    }
    assert.deepEqual([...problems, ...problems2], []);
  });
});
