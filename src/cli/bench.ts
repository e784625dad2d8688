/** `hubbub bench`: load-test a Hubbub server with one of five scenarios and report what it did. */
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Progress } from '../bench/progress.js';
import { renderHtml, renderTable } from '../bench/report.js';
import { DEFAULTS, runBench, SCENARIOS, type BenchOptions } from '../bench/scenarios.js';
import type { ScenarioName } from '../bench/summary.js';
import { action, CliError, encodingOption, Exit, normalizeUrl, urlOption, usageExit, wholeNumber } from './common.js';

interface RawOptions {
  url: string;
  encoding: 'json' | 'protobuf';
  clients?: number;
  messages?: number;
  size: number;
  rate?: number;
  duration?: number;
  channels: number;
  window?: number;
  sample?: number;
  processes: number;
  sourceAddresses?: string[];
  concurrency: number;
  late: number;
  token?: string;
  apiKey?: string;
  serverPid?: number;
  json?: string;
  html?: string;
  quiet?: boolean;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number above 0.');
  return n;
}

function addressList(value: string): string[] {
  const list = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0 || list.some((a) => !/^[\d.]+$|^[\da-f:]+$/i.test(a))) throw new InvalidArgumentError('expected a comma-separated list of IP addresses.');
  return list;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description('load-test a Hubbub server: fan-out, throughput, connection storms, sustained rates, latency')
    .argument('<scenario>', `one of ${SCENARIOS.join(', ')}`)
    .addOption(urlOption())
    .addOption(encodingOption())
    .addOption(new Option('-c, --clients <n>', 'subscribers (fanout, sustained, latency), publishing clients (throughput) or connections (storm)').argParser(wholeNumber(1)))
    .addOption(new Option('-m, --messages <n>', 'publications per channel (fanout) or per client (throughput)').argParser(wholeNumber(1)))
    .addOption(new Option('-s, --size <bytes>', 'size of each publication\'s data (JSON text)').argParser(wholeNumber(0)).default(64))
    .addOption(new Option('-r, --rate <n>', 'publications per second per channel (fanout: optional pacing; sustained, latency: the fixed rate)').argParser(positiveNumber))
    .addOption(new Option('-d, --duration <seconds>', 'how long to publish (sustained, latency)').argParser(positiveNumber))
    .addOption(new Option('--channels <n>', 'channels the subscribers are spread over (fanout, sustained, latency)').argParser(wholeNumber(1)).default(1))
    .addOption(new Option('-w, --window <n>', 'publications per burst (fanout) or outstanding per client (throughput)').argParser(wholeNumber(1)))
    .addOption(new Option('--sample <n>', 'subscribers that measure latency; the others only count').argParser(wholeNumber(0)))
    .addOption(new Option('--processes <n>', 'generator processes (0: one per 15,000 connections)').argParser(wholeNumber(0)).default(0))
    .addOption(new Option('--source-addresses <list>', 'local addresses to connect from, 20,000 connections each (default for a loopback server: 127.0.0.1, then 127.0.0.2, …)').argParser(addressList))
    .addOption(new Option('--concurrency <n>', 'connection attempts in flight at once, per generator process').argParser(wholeNumber(1)).default(200))
    .addOption(new Option('--late <ms>', 'a delivery later than this counts as late').argParser(positiveNumber).default(1000))
    .addOption(new Option('-t, --token <jwt>', 'token sent at the upgrade (Authorization: Bearer) by every connection').env('HUBBUB_TOKEN'))
    .addOption(new Option('-k, --api-key <key>', 'API key, to read the server\'s CPU and memory from /api/stats').env('HUBBUB_API_KEY'))
    .addOption(new Option('--server-pid <pid>', 'read the server\'s CPU and memory from /proc/<pid> instead (a server on this machine)').argParser(wholeNumber(1)))
    .option('--json <file>', 'write the full result as JSON')
    .option('--html <file>', 'write an HTML report (latency histograms, per-second charts)')
    .option('-q, --quiet', 'no progress line')
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
Scenarios (defaults in brackets):
  fanout      1 publisher -> --clients subscribers [1000] on --channels [1]; --messages [1000]
              publications per channel, in bursts of --window [32]: a burst is published at once,
              the next when every subscriber has received it (optionally paced with --rate).
              Deliveries/s and publish->deliver latency (p50 p90 p99 p99.9 max).
  throughput  --clients [100] clients, each publishing --messages [1000] to its own channel and
              receiving them, --window [8] outstanding per client.
  storm       open --clients [10000] connections as fast as the server takes them (--concurrency
              [200] attempts in flight per process): success rate, connections/s, handshake
              latency percentiles, errors by kind, server memory per connection.
  sustained   --rate [200] publications/s for --duration [60] s to --clients [1000] subscribers:
              latency percentiles per second, server RSS over time, lost and late (--late [1000]
              ms) deliveries.
  latency     a low fixed --rate [100]/s for --duration [10] s to --clients [100] subscribers, all
              sampled, for a clean latency distribution.

How it measures:
  Connections are held by generator processes (--processes; one per 15,000 connections, since a
  process may open at most ~20,000 files) and spread over source addresses (a loopback server
  gets 127.0.0.1, then 127.0.0.2, ... per 20,000, each address having ~28,000 ephemeral ports).
  Subscribers parse frames straight off the socket; --sample of them decode each message and
  read the publish time out of it (one monotonic clock for all processes), the others count.
  The publisher respects the server's per-connection message_rate (from welcome): run the server
  with --message-rate 0 to measure the server rather than its limit. Server CPU and memory come
  from /api/stats (--api-key) or /proc (--server-pid); the generator's CPU is reported next to
  them, so a saturated generator shows. Every run ends by itself (15 s without deliveries stops
  it); Ctrl-C stops it too.
  Output: a progress line on stderr, a table on stdout, --json and --html files.
Exit codes: 0 done, 1 runtime failure (unreachable server, nothing could connect), 2 bad usage.

Examples:
  hubbub serve --message-rate 0 &                 # a server to measure, without the per-connection rate limit
  hubbub bench fanout --clients 1000 --html report.html
  hubbub bench sustained --rate 200 --duration 60 --json sustained.json --api-key s3cret
  hubbub bench storm --clients 30000              # 2 processes, source addresses 127.0.0.1 and 127.0.0.2
  hubbub bench latency --encoding protobuf --url ws://10.0.0.5:8080/ws`,
    )
    .action(action('bench', run));
}

async function run(scenarioArg: string, raw: RawOptions): Promise<void> {
  if (!SCENARIOS.includes(scenarioArg as ScenarioName)) throw new CliError(`unknown scenario ${scenarioArg}: expected one of ${SCENARIOS.join(', ')}`, Exit.Usage);
  const scenario = scenarioArg as ScenarioName;
  const d = DEFAULTS[scenario];
  const clients = raw.clients ?? d.clients;
  const url = normalizeUrl(raw.url);
  if (url.startsWith('wss:')) throw new CliError('wss:// is not supported by the benchmark client: measure the server behind its TLS terminator, over ws://', Exit.Usage);
  const o: BenchOptions = {
    scenario,
    url,
    encoding: raw.encoding,
    clients,
    messages: raw.messages ?? d.messages,
    size: raw.size,
    rate: raw.rate ?? d.rate,
    duration: raw.duration ?? d.duration,
    channels: raw.channels,
    window: raw.window ?? d.window,
    sample: Math.min(clients, raw.sample ?? (scenario === 'latency' ? clients : d.sample)),
    processes: raw.processes,
    sourceAddresses: raw.sourceAddresses,
    concurrency: raw.concurrency,
    lateMs: raw.late,
    token: raw.token,
    apiKey: raw.apiKey,
    serverPid: raw.serverPid,
    timeoutMs: 10_000,
  };
  const progress = new Progress(process.stderr, !raw.quiet);
  let summary;
  try {
    summary = await runBench(o, progress);
  } catch (err) {
    progress.clear();
    const msg = (err as Error).message;
    if (/ECONNREFUSED|connection refused|no connection could be opened/i.test(msg)) throw new CliError(`cannot benchmark ${o.url}: ${msg}`);
    throw new CliError(msg);
  }
  process.stdout.write(renderTable(summary));
  if (raw.json) {
    writeFileSync(raw.json, JSON.stringify(summary, null, 2) + '\n');
    process.stderr.write(`wrote ${raw.json}\n`);
  }
  if (raw.html) {
    writeFileSync(raw.html, renderHtml(summary));
    process.stderr.write(`wrote ${raw.html}\n`);
  }
}
