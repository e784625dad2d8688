/** `hubbub pub`: publish messages and exit once the server has acknowledged them (like mosquitto_pub). */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'commander';
import { COMPRESSIONS, HubbubError, type Compression, type Encoding, type Hubbub, type Json, type WelcomeFrame } from '../client/index.js';
import { action, CliError, connectClient, encodingOption, Exit, parseData, urlOption, usageExit, wholeNumber } from './common.js';
import { plural, sanitize } from './terminal.js';

interface PubOptions {
  url: string;
  encoding: Encoding;
  kind?: string;
  repeat: number;
  interval: number;
  file?: string;
  compression?: Compression;
  chunkSize?: number;
  retain?: boolean;
  verbose?: boolean;
}

/** Publications sent ahead of their acknowledgements (stdin and --repeat); answers come back in order. */
const WINDOW = 64;

/** How long a finished `pub` waits for the WebSocket close handshake before it exits anyway. */
const CLOSE_GRACE_MS = 2000;

export function pubCommand(): Command {
  return new Command('pub')
    .description('publish a message to a channel; exit 0 once the server has acknowledged every publication')
    .argument('<channel>', 'channel name (no wildcards)')
    .argument('[data]', 'the message: JSON when it parses as JSON, else the text as a string; - reads stdin, one message per line; none with --file')
    .addOption(urlOption())
    .addOption(encodingOption())
    .option('-k, --kind <kind>', 'message kind, e.g. text, notification, system (server default: text)')
    .addOption(new Option('-r, --repeat <n>', 'publish the message n times').default(1).argParser(wholeNumber(1)))
    .addOption(new Option('-i, --interval <ms>', 'wait ms milliseconds between publications (also between stdin lines)').default(0).argParser(wholeNumber(0)))
    .option('-f, --file <path>', "send the file's bytes as a transfer (in place of <data>); - reads stdin to its end")
    .addOption(new Option('-c, --compression <method>', 'with --file: compress each chunk (kept raw when that does not make it smaller)').choices(COMPRESSIONS))
    .addOption(new Option('--chunk-size <bytes>', 'with --file: bytes of the file per chunk (default 16384)').argParser(wholeNumber(1)))
    .option('--retain', "also keep the publication as the channel's retained message (data null clears it)")
    .option('-v, --verbose', 'print what was done on stderr')
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
<data> is JSON when it parses as JSON: 42, true, null, {"text":"hi"}, "\\"42\\"" (the string "42").
Anything else is sent as a string. Negative numbers work as is (pub t -5); other data starting
with - goes last, after --: hubbub pub --url … t -- '-x'.
With - as <data>, each non-blank line of stdin is one message, published in order; pub exits at
the end of the input once every message has been acknowledged.
With --file, the file goes as one transfer of numbered, CRC-checked chunks, whatever its size (up
to the server's max_transfer_size); receivers using the SDK get it as one message of bytes, and
hubbub sub --save-dir writes it to a file. The transfer carries the file's name (without its
directory). <data>, --repeat and --interval do not combine with --file. On success pub prints one
line: sent <name> (<N> bytes, <C> chunks) to <channel>: delivered to <D> connections.
Exit codes: 0 every publication acknowledged, 1 runtime failure (unreachable server, refused
publication such as invalid_channel, lost connection, timeout, unreadable file), 2 bad usage.

Examples:
  hubbub pub chat/lobby 'hello world'                # the string "hello world"
  hubbub pub chat/lobby '{"text":"hi","from":"ops"}' --kind notification
  hubbub pub sensors/1/temp 21.5 --repeat 10 --interval 1000
  tail -F app.log | hubbub pub logs/app -            # one message per line
  HUBBUB_URL=ws://hub.example:8080/ws hubbub pub alerts/disk '"90% full"'
  hubbub pub files/reports --file q3.pdf --compression gzip
  tar cz logs/ | hubbub pub backups/logs --file -
  hubbub pub telemetry/1 '{"t":21.5}' --encoding protobuf`,
    )
    .action(action('pub', run));
}

async function run(channel: string, data: string | undefined, opts: PubOptions): Promise<void> {
  if (opts.file !== undefined) return runFile(channel, data, opts.file, opts);
  if (data === undefined) throw new CliError("missing required argument 'data' (or --file <path>)", Exit.Usage);
  if (opts.compression !== undefined || opts.chunkSize !== undefined) throw new CliError('--compression and --chunk-size go with --file', Exit.Usage);
  if (data === '-' && opts.repeat !== 1) throw new CliError('--repeat cannot be combined with - (stdin): each line is published once', Exit.Usage);
  const status = opts.verbose ? (msg: string) => void process.stderr.write(`hubbub pub: ${msg}\n`) : () => {};
  // No reconnect: a publication in flight when the connection drops is reported as failed, never silently resent.
  const hub = await connectClient(opts.url, { reconnect: false, encoding: opts.encoding });
  status(`connected to ${hub.url} as client ${hub.clientId ?? '?'}`);
  const publisher = new Publisher(hub, channel, opts.kind, opts.retain === true);
  let closing = false;
  hub.on('disconnected', ({ code, reason }) => {
    if (!closing) publisher.fail(new CliError(`lost the connection to ${hub.url} (${code}${reason ? ` ${reason}` : ''}) before every publication was acknowledged`));
  });
  try {
    if (data === '-') {
      const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
      let first = true;
      for await (const line of lines) {
        if (line.trim() === '') continue;
        if (!first && opts.interval > 0) await sleep(opts.interval);
        first = false;
        await publisher.send(parseData(line));
      }
    } else {
      const value = parseData(data);
      for (let i = 0; i < opts.repeat; i++) {
        if (i > 0 && opts.interval > 0) await sleep(opts.interval);
        await publisher.send(value);
      }
    }
    await publisher.flush();
  } finally {
    closing = true;
    hub.close();
  }
  status(`published ${publisher.acknowledged} message${publisher.acknowledged === 1 ? '' : 's'} to ${channel}`);
  process.exitCode = Exit.Ok;
  setTimeout(() => process.exit(Exit.Ok), CLOSE_GRACE_MS).unref();
}

/** `pub --file`: one transfer of the file's bytes, with a summary line once the server has relayed its last chunk. */
async function runFile(channel: string, data: string | undefined, path: string, opts: PubOptions): Promise<void> {
  if (data !== undefined) throw new CliError('give either <data> or --file, not both', Exit.Usage);
  if (opts.repeat !== 1 || opts.interval !== 0) throw new CliError('--repeat and --interval cannot be combined with --file: the file is sent once', Exit.Usage);
  const status = opts.verbose ? (msg: string) => void process.stderr.write(`hubbub pub: ${msg}\n`) : () => {};
  // Read before connecting: a missing file costs no connection, and the bytes sent are the bytes read.
  const bytes = await readInput(path);
  const name = path === '-' ? undefined : basename(path);
  const shown = name ?? 'stdin';

  let welcome: WelcomeFrame | undefined;
  const hub = await connectClient(opts.url, { reconnect: false, encoding: opts.encoding }, (w) => (welcome = w));
  status(`connected to ${hub.url} as client ${hub.clientId ?? '?'}`);
  try {
    const maxMessage = welcome?.max_message_size;
    // The JSON wire carries chunk bytes as base64 (4/3) in a frame with a few fields: the SDK's margin.
    const maxChunk = maxMessage !== undefined ? Math.floor(((maxMessage - 4096) * 3) / 4) : undefined;
    if (opts.chunkSize !== undefined && maxChunk !== undefined && opts.chunkSize > maxChunk) {
      throw new CliError(`--chunk-size ${opts.chunkSize} is too large for this server: at most ${maxChunk} bytes (its max_message_size is ${maxMessage})`, Exit.Usage);
    }
    const maxTransfer = welcome?.max_transfer_size;
    if (maxTransfer !== undefined && bytes.length > maxTransfer) {
      throw new CliError(`${sanitize(shown)} is ${bytes.length} bytes, over the server's max_transfer_size of ${maxTransfer}`);
    }
    const progress = progressLine(shown);
    let result;
    try {
      result = await hub.transfer({ channel }, bytes, {
        ...(name !== undefined && { name }),
        ...(opts.kind !== undefined && { kind: opts.kind }),
        ...(opts.compression !== undefined && { compression: opts.compression }),
        ...(opts.chunkSize !== undefined && { chunkSize: opts.chunkSize }),
        onProgress: progress.update,
      });
    } catch (err) {
      if (err instanceof HubbubError && err.code === 'disconnected') throw new CliError(`lost the connection to ${hub.url} before the transfer of ${sanitize(shown)} was acknowledged`);
      throw err;
    } finally {
      progress.done();
    }
    process.stdout.write(`sent ${sanitize(shown)} (${plural(result.bytes, 'byte')}, ${plural(result.chunks, 'chunk')}) to ${channel}: delivered to ${plural(result.delivered, 'connection')}\n`);
  } finally {
    hub.close();
  }
  process.exitCode = Exit.Ok;
  setTimeout(() => process.exit(Exit.Ok), CLOSE_GRACE_MS).unref();
}

/** The whole file (or stdin for -), with a one-line reason when it cannot be read. */
async function readInput(path: string): Promise<Uint8Array> {
  if (path === '-') {
    const parts: Buffer[] = [];
    for await (const part of process.stdin) parts.push(part as Buffer);
    return Buffer.concat(parts);
  }
  try {
    return await readFile(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'it is a directory' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new CliError(`cannot read ${path}: ${why}`);
  }
}

/** Progress of a transfer on stderr, redrawn in place, only when stderr is a terminal (a log file gets nothing). */
function progressLine(name: string): { update: (sent: number, total: number) => void; done: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, done: () => {} };
  let last = 0;
  let drawn = false;
  return {
    update(sent, total) {
      const now = Date.now();
      if (now - last < 100 && sent < total) return;
      last = now;
      drawn = true;
      process.stderr.write(`\rhubbub pub: ${sanitize(name)} ${total === 0 ? 100 : Math.floor((sent / total) * 100)}% (${sent}/${total} bytes)\x1b[K`);
    },
    done() {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}

/** Sends publications without waiting for each answer (at most WINDOW outstanding) and remembers the first failure. */
class Publisher {
  private readonly inflight = new Set<Promise<void>>();
  private failure: Error | undefined;
  acknowledged = 0;

  constructor(
    private readonly hub: Hubbub,
    private readonly channel: string,
    private readonly kind: string | undefined,
    private readonly retain: boolean,
  ) {}

  async send(data: Json): Promise<void> {
    this.check();
    const p: Promise<void> = this.hub.publish(this.channel, data, { ...(this.kind !== undefined && { kind: this.kind }), ...(this.retain && { retain: true }) }).then(
      () => {
        this.inflight.delete(p);
        this.acknowledged++;
      },
      (err: Error) => {
        this.inflight.delete(p);
        this.failure ??= err;
      },
    );
    this.inflight.add(p);
    if (this.inflight.size >= WINDOW) await Promise.race(this.inflight);
    this.check();
  }

  /** Record a failure that is not the answer to one publication (the connection was lost). */
  fail(err: Error): void {
    this.failure ??= err;
  }

  /** Wait for every outstanding answer; throw the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.inflight);
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }
}
