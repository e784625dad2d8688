/**
 * How a `hubbub bench` result is shown: a plain-text table for the terminal and one self-contained
 * HTML report (inline CSS and server-built SVG, no scripts, no external assets) to open in a browser.
 * Both accept a summary read back from `--json`, where NaN became null: any non-finite figure prints "-".
 */
import type { BenchSummary, Histogram, LatencyStats, SecondPoint } from './summary.js';

// ---------------------------------------------------------------- formatting

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** en-US number with thousands separators and exactly `decimals` decimals; "-" when not a finite number. */
export function fmtNum(v: number | null | undefined, decimals = 0): string {
  if (!isNum(v)) return '-';
  return v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** Milliseconds with about three significant digits (0.412, 1.23, 14.8, 1,234). */
function fmtMs(v: number | null | undefined): string {
  if (!isNum(v)) return '-';
  const a = Math.abs(v);
  return fmtNum(v, a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
}

/** A rate or other large figure: whole numbers from 100 up, one decimal below. */
const fmtRate = (v: number | null | undefined): string => fmtNum(v, isNum(v) && (v === 0 || Math.abs(v) >= 100) ? 0 : 1);

const MiB = 1024 * 1024;
const fmtMiB = (bytes: number | null | undefined): string => (isNum(bytes) ? `${fmtNum(bytes / MiB, 1)} MiB` : '-');
const withUnit = (text: string, unit: string): string => (text === '-' ? text : `${text} ${unit}`);

function fmtDuration(ms: number): string {
  if (!isNum(ms)) return '-';
  return ms < 1000 ? `${fmtNum(ms)} ms` : `${fmtNum(ms / 1000, 1)} s`;
}

/** Compact counts for axis ticks: 950, 12k, 1.5M. */
function fmtCompact(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toFixed(2));
}

/** The run's start as "2025-06-14 09:41:07 UTC" (no locale or time zone of the reader involved). */
function fmtDate(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A histogram bound in ms as a label: "0.5 ms", "20 ms", "2 s". */
function fmtBound(ms: number): string {
  return ms >= 1000 ? `${+(ms / 1000).toFixed(3)} s` : `${+ms.toFixed(3)} ms`;
}

function bucketLabel(h: Histogram, i: number): string {
  return i < h.bounds.length ? `≤${fmtBound(h.bounds[i]!)}` : `>${fmtBound(h.bounds[h.bounds.length - 1]!)}`;
}

// ---------------------------------------------------------------- the table (text and HTML)

type Row = [metric: string, value: string];
interface Section {
  title: string;
  rows: Row[];
}

function latencyRows(l: LatencyStats): Row[] {
  return [
    ['p50', fmtMs(l.p50)],
    ['p90', fmtMs(l.p90)],
    ['p99', fmtMs(l.p99)],
    ['p99.9', fmtMs(l.p999)],
    ['max', fmtMs(l.max)],
    ['mean', fmtMs(l.mean)],
    ['samples', fmtNum(l.samples)],
  ];
}

function sections(s: BenchSummary): Section[] {
  const c = s.connections;
  const run: Row[] = [
    ['scenario', s.scenario],
    ['url', s.url],
    ['encoding', s.encoding],
    ['duration', fmtDuration(s.durationMs)],
    ['connections ok/attempted', `${fmtNum(c.ok)} / ${fmtNum(c.attempted)}`],
  ];
  if (c.failed > 0) {
    const kinds = Object.entries(c.errors ?? {}).map(([k, n]) => `${k} ${fmtNum(n)}`);
    run.push(['connections failed', fmtNum(c.failed) + (kinds.length ? ` (${kinds.join(', ')})` : '')]);
  }
  run.push(['processes', fmtNum(c.processes)], ['source addresses', c.sourceAddresses?.length ? c.sourceAddresses.join(', ') : '-']);

  const storm = s.scenario === 'storm'; // connections only: no publications, no latency
  const out: Section[] = [{ title: 'Run', rows: run }];
  if (!storm) {
    out.push(
      {
        title: 'Throughput',
        rows: [
          ['published', fmtNum(s.published)],
          ['delivered', fmtNum(s.delivered)],
          ['expected', fmtNum(s.expected)],
          ['lost', fmtNum(s.lost)],
          [`late (> ${fmtNum(s.lateMs)} ms)`, fmtNum(s.late)],
          ['disorder', fmtNum(s.disorder)],
          ['deliveries/s', fmtRate(s.deliveriesPerSec)],
          ['publishes/s', fmtRate(s.publishesPerSec)],
        ],
      },
      { title: 'Latency (ms)', rows: latencyRows(s.latency) },
    );
  }
  if (c.attempted > 0) out.push({ title: 'Handshake (ms)', rows: [...latencyRows(c.handshake), ['upgrades/s', fmtRate(c.perSecond)]] });

  const cpu: Row[] = [];
  if (s.cpu.server) {
    cpu.push(['server', withUnit(fmtNum(s.cpu.server.percent, 1), '% of a core')]);
    if (!storm) cpu.push(['server per delivery', withUnit(fmtNum(s.cpu.server.usPerDelivery, 2), 'µs')]);
  }
  cpu.push(['generator', withUnit(fmtNum(s.cpu.generator.percent, 1), '% of a core')]);
  if (!storm) cpu.push(['generator per delivery', withUnit(fmtNum(s.cpu.generator.usPerDelivery, 2), 'µs')]);
  out.push({ title: 'CPU', rows: cpu });

  if (s.serverMemory) {
    const m = s.serverMemory;
    out.push({
      title: 'Server memory',
      rows: [
        ['RSS at start', fmtMiB(m.start)],
        ['RSS at end', fmtMiB(m.end)],
        ['RSS slope (2nd half)', withUnit(fmtNum(isNum(m.slopePerSec) ? m.slopePerSec / 1024 : NaN, 1), 'KiB/s')],
      ],
    });
  }
  return out;
}

/** The plain-text summary printed at the end of a run. */
export function renderTable(s: BenchSummary): string {
  const secs = sections(s);
  const width = Math.max(...secs.flatMap((sec) => sec.rows.map(([m]) => m.length))) + 2;
  const lines = [`${s.tool} ${s.version} · ${s.scenario} · ${fmtDate(s.started)}`];
  for (const sec of secs) {
    lines.push('', sec.title);
    for (const [m, v] of sec.rows) lines.push(`  ${m.padEnd(width)}${v}`);
  }
  if (s.notes.length) {
    lines.push('', 'Notes');
    for (const n of s.notes) lines.push(`  • ${n}`);
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- HTML helpers

export function escapeHtml(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
const esc = escapeHtml;
/** SVG coordinates: one decimal is plenty and keeps the file small. */
const n1 = (v: number): string => String(Math.round(v * 10) / 10);

const COLORS = {
  deliveries: '#2563eb',
  p50: '#2563eb',
  p99: '#f59e0b',
  max: '#e11d48',
  serverRss: '#7c3aed',
  serverCpu: '#0d9488',
  generatorCpu: '#db2777',
  connected: '#16a34a',
  bar: '#3b82f6',
} as const;

/** Tick step of 1, 2, 2.5 or 5 × 10^n giving about `count` ticks over `range`. */
function niceStep(range: number, count: number): number {
  const raw = range / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

/** Ticks from 0 up to a nice maximum at or above `max`. */
function linearTicks(max: number, count = 5): number[] {
  const step = niceStep(max > 0 ? max : 1, count);
  const top = Math.max(step, Math.ceil((max > 0 ? max : 1) / step - 1e-9) * step);
  const ticks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

/** 1-2-5 ticks from the one at or below `min` to the one at or above `max` (both > 0), for a log axis. */
function logTicks(min: number, max: number): number[] {
  const steps: number[] = [];
  for (let e = Math.floor(Math.log10(min)) - 1; e <= Math.ceil(Math.log10(max)) + 1; e++) {
    for (const m of [1, 2, 5]) steps.push(+(m * 10 ** e).toPrecision(6));
  }
  const lo = steps.filter((v) => v <= min).pop()!;
  const hi = steps.find((v) => v >= max && v > lo)!;
  return steps.filter((v) => v >= lo && v <= hi);
}

function panel(title: string, subtitle: string, body: string, wide = false): string {
  return `<figure class="panel${wide ? ' wide' : ''}"><figcaption><h3>${esc(title)}</h3>${subtitle ? `<span>${esc(subtitle)}</span>` : ''}</figcaption>${body}</figure>`;
}

function emptyPanel(title: string, why: string, wide = false): string {
  return panel(title, '', `<p class="empty">${esc(why)}</p>`, wide);
}

// ---------------------------------------------------------------- histogram chart

function histogramChart(id: string, h: Histogram, title: string, what: string): string {
  const total = h.counts.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return emptyPanel(title, `No ${what} samples in this run.`, true);
  const W = 1000;
  const H = 300;
  const L = 64;
  const R = 12;
  const T = 24;
  const B = 44;
  const ticks = linearTicks(Math.max(...h.counts));
  const top = ticks[ticks.length - 1]!;
  const y = (v: number): number => T + (H - T - B) * (1 - v / top);
  const band = (W - L - R) / h.counts.length;
  const parts: string[] = [];
  for (const v of ticks) {
    parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${n1(y(v))}" y2="${n1(y(v))}"/>`, `<text class="tick" x="${L - 8}" y="${n1(y(v) + 4)}" text-anchor="end">${esc(fmtCompact(v))}</text>`);
  }
  h.counts.forEach((count, i) => {
    const x = L + i * band + band * 0.12;
    // A bucket with any samples stays visible (≥ 1.5 units) even next to one holding a million.
    const bh = count > 0 ? Math.max(1.5, y(0) - y(count)) : 0;
    const label = bucketLabel(h, i);
    const pct = (100 * count) / total;
    parts.push(
      `<rect class="bar" data-count="${count}" x="${n1(x)}" y="${n1(y(0) - bh)}" width="${n1(band * 0.76)}" height="${n1(bh)}" rx="2"><title>${esc(`${label}: ${fmtNum(count)} (${fmtNum(pct, 2)} %)`)}</title></rect>`,
      // Two lines ("≤0.5" over "ms") so eighteen buckets fit side by side.
      `<text class="tick" x="${n1(L + (i + 0.5) * band)}" y="${H - B + 17}" text-anchor="middle">${esc(label.split(' ')[0])}<tspan class="bunit" x="${n1(L + (i + 0.5) * band)}" dy="13">${esc(label.split(' ')[1])}</tspan></text>`,
    );
    if (count > 0) parts.push(`<text class="barlabel" x="${n1(L + (i + 0.5) * band)}" y="${n1(y(0) - bh - 5)}" text-anchor="middle">${esc(pct >= 0.1 ? `${fmtNum(pct, 1)}%` : '<0.1%')}</text>`);
  });
  parts.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${n1(y(0))}" y2="${n1(y(0))}"/>`, `<text class="unit" x="${L - 8}" y="${T - 10}" text-anchor="end">count</text>`);
  const svg = `<svg data-chart="${id}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg>`;
  return panel(title, `${fmtNum(total)} samples · hover a bar for its count`, svg, true);
}

// ---------------------------------------------------------------- time-series chart

interface Line {
  /** The SecondPoint field plotted (also the path's data-name). */
  name: keyof SecondPoint;
  label: string;
  color: string;
  scale?: number;
}

function lineChart(id: string, title: string, unit: string, series: SecondPoint[], lines: Line[], opts: { log?: boolean; fmt: (v: number) => string; area?: boolean }): string {
  const W = 560;
  const H = 270;
  const L = 58;
  const R = 14;
  const T = 36;
  const B = 30;
  const vals = (ln: Line): (number | undefined)[] => series.map((p) => (isNum(p[ln.name]) ? (p[ln.name] as number) * (ln.scale ?? 1) : undefined));
  const data = lines.map(vals);
  const all = data.flat().filter(isNum);
  const xs = series.map((p) => p.t);
  const x0 = Math.min(0, ...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const x = (t: number): number => L + ((W - L - R) * (t - x0)) / (x1 - x0);
  const log = opts.log === true && all.length > 0 && all.every((v) => v > 0) && Math.max(...all) / Math.min(...all) > 5;
  const ticks = log ? logTicks(Math.min(...all), Math.max(...all)) : linearTicks(Math.max(0, ...all));
  const lo = ticks[0]!;
  const hi = ticks[ticks.length - 1]!;
  const y = log
    ? (v: number): number => T + (H - T - B) * (1 - (Math.log(Math.max(v, lo)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)))
    : (v: number): number => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const parts: string[] = [];
  for (const v of ticks) {
    parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${n1(y(v))}" y2="${n1(y(v))}"/>`, `<text class="tick" x="${L - 7}" y="${n1(y(v) + 4)}" text-anchor="end">${esc(opts.fmt(v))}</text>`);
  }
  const xstep = niceStep(x1 - x0, 6);
  for (let t = Math.ceil(x0 / xstep) * xstep; t <= x1 + 1e-9; t += xstep) {
    parts.push(`<line class="xtick" x1="${n1(x(t))}" x2="${n1(x(t))}" y1="${H - B}" y2="${H - B + 4}"/>`, `<text class="tick" x="${n1(x(t))}" y="${H - B + 17}" text-anchor="middle">${esc(`${+t.toFixed(2)} s`)}</text>`);
  }
  parts.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>`, `<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>`);
  parts.push(`<text class="unit" x="${L - 7}" y="${T - 14}" text-anchor="end">${esc(unit)}${log ? ' (log)' : ''}</text>`);

  // One column per second, highlighted on hover, whose <title> lists that second's values.
  const colW = (W - L - R) / Math.max(1, x1 - x0);
  series.forEach((p, i) => {
    const tip = [`${p.t} s`, ...lines.map((ln, j) => `${ln.label}: ${isNum(data[j]![i]) ? opts.fmt(data[j]![i]!) : '-'}`)].join('\n');
    parts.push(`<rect class="col" x="${n1(x(p.t) - colW / 2)}" y="${T}" width="${n1(colW)}" height="${H - T - B}"><title>${esc(tip)}</title></rect>`);
  });

  // Each line is one path; a missing second starts a new subpath (M) so the line breaks there.
  lines.forEach((ln, j) => {
    let d = '';
    let points = 0;
    let prevOk = false;
    series.forEach((p, i) => {
      const v = data[j]![i];
      if (v === undefined) return void (prevOk = false);
      const next = data[j]![i + 1];
      d += `${prevOk ? 'L' : 'M'}${n1(x(p.t))} ${n1(y(v))}`;
      if (!prevOk && next === undefined) d += 'h0'; // a lone point: drawn as a dot by the round cap
      prevOk = true;
      points++;
    });
    if (opts.area && lines.length === 1 && points > 1) {
      // Light fill under the line, segment by segment so gaps stay gaps.
      const fill = d.split(/(?=M)/).map((seg) => {
        const coords = [...seg.matchAll(/[ML]([\d.]+) ([\d.]+)/g)];
        if (coords.length < 2) return '';
        return `${seg.replace(/h0$/, '')}L${coords[coords.length - 1]![1]} ${n1(y(lo))}L${coords[0]![1]} ${n1(y(lo))}Z`;
      }).join('');
      parts.push(`<path class="area" d="${fill}" fill="${ln.color}"/>`);
    }
    parts.push(`<path class="series" data-name="${esc(ln.name)}" data-points="${points}" d="${d}" stroke="${ln.color}"/>`);
  });

  // Legend across the top right.
  let lx = W - R;
  for (const ln of [...lines].reverse()) {
    const w = ln.label.length * 6.5 + 36;
    lx -= w;
    parts.push(`<line x1="${n1(lx)}" x2="${n1(lx + 16)}" y1="${T - 18}" y2="${T - 18}" stroke="${ln.color}" stroke-width="3" stroke-linecap="round"/>`, `<text class="legend" x="${n1(lx + 21)}" y="${T - 14}">${esc(ln.label)}</text>`);
  }
  const svg = `<svg data-chart="${id}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg>`;
  return panel(title, 'per second', svg);
}

// ---------------------------------------------------------------- the page

function card(label: string, value: string, unit: string, sub: string[], tone = ''): string {
  const v = value === '-' ? '<span class="num">-</span>' : `<span class="num">${esc(value)}</span>${unit ? `<span class="u">${esc(unit)}</span>` : ''}`;
  return `<div class="card${tone ? ` ${tone}` : ''}"><div class="label">${esc(label)}</div><div class="value">${v}</div><div class="sub">${sub.map(esc).join('<br>')}</div></div>`;
}

function kvTable(rows: Row[]): string {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

const CSS = `
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f4f6fa;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
header{display:flex;flex-wrap:wrap;align-items:flex-end;justify-content:space-between;gap:8px 24px;margin-bottom:20px}
header .tool{font-size:12px;font-weight:600;letter-spacing:.08em;text-transform:uppercase;color:var(--accent)}
header h1{margin:2px 0 4px;font-size:28px;letter-spacing:-.01em}
header h1 .badge{display:inline-block;vertical-align:middle;margin-left:10px;padding:2px 8px;border-radius:999px;background:#e0e7ff;color:#3730a3;font-size:12px;font-weight:600;letter-spacing:.02em}
header .url{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#334155;word-break:break-all}
header .meta{color:var(--muted);font-size:13px;text-align:right}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:12px;margin-bottom:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;box-shadow:0 1px 2px rgba(15,23,42,.04)}
.card .label{font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.card .value{margin:4px 0 2px;white-space:nowrap}
.card .num{font-size:28px;font-weight:700;letter-spacing:-.02em;font-variant-numeric:tabular-nums}
.card .u{margin-left:4px;font-size:14px;font-weight:600;color:var(--muted)}
.card .sub{font-size:12px;color:var(--muted)}
.card.good .num{color:#15803d}.card.bad .num{color:#b91c1c}.card.warn .num{color:#b45309}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:12px;margin-bottom:16px}
.panel{margin:0;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px 8px;box-shadow:0 1px 2px rgba(15,23,42,.04);min-width:0}
.panel.wide{grid-column:1/-1}
.panel figcaption{display:flex;align-items:baseline;gap:10px;margin-bottom:4px}
.panel h3{margin:0;font-size:15px}
.panel figcaption span{color:var(--muted);font-size:12px}
.panel .empty{color:var(--muted);margin:18px 0 20px}
svg{display:block;width:100%;height:auto}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
svg .grid{stroke:#eef2f7;stroke-width:1}
svg .axis,svg .xtick{stroke:#94a3b8;stroke-width:1}
svg .tick{font-size:11px;fill:#64748b;font-variant-numeric:tabular-nums}
svg .unit{font-size:11px;fill:#64748b;font-weight:600}
svg .legend{font-size:11.5px;fill:#334155}
svg .bunit{font-size:10px;fill:#94a3b8}
svg .barlabel{font-size:11px;fill:#334155;font-weight:600}
svg .bar{fill:${COLORS.bar}}
svg .bar:hover{fill:#1d4ed8}
svg .series{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
svg .area{opacity:.08}
svg .col{fill:transparent}
svg .col:hover{fill:rgba(148,163,184,.16)}
.tables{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,340px),1fr));gap:12px;align-items:start}
.tables h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
table th,table td{text-align:left;padding:5px 8px;border-bottom:1px solid #f1f5f9;vertical-align:top}
table td{font-variant-numeric:tabular-nums;word-break:break-word}
table.summary td.v{text-align:right}
table.summary tr.section th{padding-top:14px;font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--accent);border-bottom:1px solid var(--line)}
table.summary th{font-weight:500;color:#334155}
table.kv th{font-weight:500;color:var(--muted);width:40%}
.notes ul{margin:0;padding-left:18px}
.notes li{margin:4px 0}
footer{margin-top:24px;color:var(--muted);font-size:12px;text-align:center}
`;

/** One self-contained HTML report of a run: cards, charts, the full table, options, machine, notes. */
export function renderHtml(s: BenchSummary): string {
  const c = s.connections;
  const srv = s.cpu.server;
  const gen = s.cpu.generator;
  const lostTone = isNum(s.lost) ? (s.lost > 0 ? 'bad' : 'good') : '';
  const cards = [
    card('Deliveries/s', fmtRate(s.deliveriesPerSec), '', [`${fmtNum(s.delivered)} delivered`, `${fmtRate(s.publishesPerSec)} publishes/s`]),
    card('Latency p50', fmtMs(s.latency.p50), 'ms', [`mean ${withUnit(fmtMs(s.latency.mean), 'ms')}`, `${fmtNum(s.latency.samples)} samples`]),
    card('Latency p99', fmtMs(s.latency.p99), 'ms', [`p99.9 ${withUnit(fmtMs(s.latency.p999), 'ms')}`, `max ${withUnit(fmtMs(s.latency.max), 'ms')}`]),
    card('Lost', fmtNum(s.lost), '', [`of ${fmtNum(s.expected)} expected`, `${fmtNum(s.late)} late · ${fmtNum(s.disorder)} out of order`], lostTone),
    srv
      ? card('Server CPU', fmtNum(srv.usPerDelivery, 2), 'µs', ['per delivery', withUnit(fmtNum(srv.percent, 1), '% of a core')])
      : card('Server CPU', '-', '', ['not reported', 'by the server']),
    card('Generator CPU', fmtNum(gen.percent, 1), '%', ['of a core', withUnit(fmtNum(gen.usPerDelivery, 2), 'µs per delivery')], isNum(gen.percent) && gen.percent > 85 ? 'warn' : ''),
  ].join('');

  const series = s.series ?? [];
  const has = (k: keyof SecondPoint): boolean => series.some((p) => isNum(p[k]));
  const charts: string[] = [histogramChart('histogram', s.histogram, 'Latency distribution', 'latency')];
  if (c.attempted > 0 && c.handshake.samples > 0) charts.push(histogramChart('handshake', c.handshakeHistogram, 'Handshake time', 'handshake'));
  if (series.length === 0) {
    charts.push(emptyPanel('Per second', 'No per-second data in this run.', true));
  } else {
    const ms = (v: number): string => (v >= 1 ? fmtCompact(v) : String(+v.toPrecision(2)));
    if (has('delivered')) charts.push(lineChart('deliveries', 'Deliveries/s', '/s', series, [{ name: 'delivered', label: 'deliveries/s', color: COLORS.deliveries }], { fmt: fmtCompact, area: true }));
    if (has('connected')) charts.push(lineChart('connections', 'Connections opened/s', '/s', series, [{ name: 'connected', label: 'connections/s', color: COLORS.connected }], { fmt: fmtCompact, area: true }));
    if (has('p50') || has('p99') || has('max')) {
      const lines: Line[] = [
        { name: 'p50', label: 'p50', color: COLORS.p50 },
        { name: 'p99', label: 'p99', color: COLORS.p99 },
        { name: 'max', label: 'max', color: COLORS.max },
      ];
      charts.push(lineChart('latency', 'Latency', 'ms', series, lines, { log: true, fmt: ms }));
    }
    if (has('serverRss')) charts.push(lineChart('memory', 'Server memory', 'MiB', series, [{ name: 'serverRss', label: 'RSS MiB', color: COLORS.serverRss, scale: 1 / MiB }], { fmt: fmtCompact, area: true }));
    const cpuLines: Line[] = [];
    if (has('serverCpu')) cpuLines.push({ name: 'serverCpu', label: 'server %', color: COLORS.serverCpu });
    if (has('generatorCpu')) cpuLines.push({ name: 'generatorCpu', label: 'generator %', color: COLORS.generatorCpu });
    if (cpuLines.length) charts.push(lineChart('cpu', 'CPU (% of a core)', '%', series, cpuLines, { fmt: fmtCompact }));
  }

  const summaryRows = sections(s)
    .map((sec) => `<tr class="section"><th colspan="2">${esc(sec.title)}</th></tr>${sec.rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td class="v">${esc(v)}</td></tr>`).join('')}`)
    .join('');
  const options = Object.entries(s.options ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]): Row => [k, String(v)]);
  const m = s.machine;
  const machine: Row[] = [
    ['CPUs', `${fmtNum(m.cpus)} × ${m.cpuModel}`],
    ['Node.js', m.node],
    ['load average', (m.loadAvg ?? []).map((v) => fmtNum(v, 2)).join(' / ') || '-'],
  ];
  const notes = s.notes.length ? `<ul>${s.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : '<p class="empty">None.</p>';

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(`${s.tool} · ${s.scenario} · ${fmtDate(s.started)}`)}</title>
<style>${CSS}</style></head>
<body><main>
<header><div><div class="tool">${esc(s.tool)} ${esc(s.version)}</div><h1>${esc(s.scenario)}<span class="badge">${esc(s.encoding)}</span></h1><div class="url">${esc(s.url)}</div></div>
<div class="meta">${esc(fmtDate(s.started))}<br>${esc(fmtDuration(s.durationMs))} measured · ${esc(fmtNum(c.ok))} / ${esc(fmtNum(c.attempted))} connections · ${esc(fmtNum(c.processes))} processes</div></header>
<section class="cards">${cards}</section>
<section class="charts">${charts.join('\n')}</section>
<section class="tables">
<div class="panel"><h2>Summary</h2><table class="summary">${summaryRows}</table></div>
<div><div class="panel"><h2>Options</h2>${kvTable(options)}</div><br><div class="panel"><h2>Machine</h2>${kvTable(machine)}</div><br><div class="panel notes"><h2>Notes</h2>${notes}</div></div>
</section>
<footer>Generated by ${esc(s.tool)} ${esc(s.version)}</footer>
</main></body></html>
`;
}
