/** `hubbub sub`: subscribe and print every message, one per line (like mosquitto_sub). */
import { access, constants, mkdir, open, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { HubbubError, patternError, toBase64, type Data, type Encoding, type Json, type MessageFrame, type PresenceEventFrame, type TransferInfo } from '../client/index.js';
import { action, CliError, connectClient, encodingOption, Exit, urlOption, usageExit, wholeNumber } from './common.js';
import { sanitize, showPayload } from './terminal.js';

interface SubOptions {
  url: string;
  encoding: Encoding;
  count?: number;
  json?: boolean;
  presence?: boolean;
  saveDir?: string;
  verbose?: boolean;
}

/** How long a closing `sub` waits for the WebSocket close handshake before it exits anyway. */
const CLOSE_GRACE_MS = 2000;

export function subCommand(): Command {
  return new Command('sub')
    .description('subscribe to channels or patterns and print every message received, one per line')
    .argument('<pattern...>', 'channel names or MQTT-style patterns (+ is one level, # any number of levels)')
    .addOption(urlOption())
    .addOption(encodingOption())
    .addOption(new Option('-n, --count <n>', 'exit 0 after receiving n messages').argParser(wholeNumber(1)))
    .option('--json', 'print each server frame as one line of JSON instead of "<channel> <data>"')
    .option('-p, --presence', 'also print join/leave events of the exact channels subscribed to')
    .option('-d, --save-dir <dir>', 'write each received transfer (e.g. from pub --file) to a file in dir, created if missing; never overwrites')
    .option('-v, --verbose', 'print status (connected, reconnecting, disconnected) on stderr even when it is not a terminal')
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
Output (stdout, one line per message, written as it arrives):
  default   <channel> <data>: a string prints as is (JSON-quoted when it contains a line break),
            anything else as compact JSON. With --presence: <channel> join|leave <client JSON>.
  --json    the whole frame, e.g. {"type":"message","channel":"chat/lobby","pattern":"chat/+","data":"hi",...}
Byte payloads print as <N bytes> (a transfer as <N bytes: name>); with --json as base64 with
"encoding":"base64". With --save-dir, every transfer is written to a file named after the
transfer's name (reduced to a plain file name; -1, -2, ... added when it exists) and prints
<channel> saved <N> bytes to <path> (--json: the frame with "saved":"<path>" instead of data).
A transfer that fails or is aborted is reported on stderr; sub carries on.
Status lines go to stderr, only when stderr is a terminal or with --verbose. The connection is
re-established automatically if it drops; Ctrl-C or SIGTERM closes it and exits 0.
Exit codes: 0 done (--count reached, Ctrl-C, SIGTERM), 1 runtime failure, 2 bad usage.

Examples:
  hubbub sub chat/lobby                          # print messages of one channel
  hubbub sub 'chat/+' 'alerts/#' --url ws://hub.example:8080/ws
  hubbub sub '#' --json | jq .data               # everything, as JSON frames
  hubbub sub sensors/+/temp -n 1                 # wait for one message, print it, exit
  hubbub sub 'files/#' --save-dir ./inbox        # receive files sent with hubbub pub --file
  hubbub sub 'telemetry/#' --encoding protobuf   # Protocol Buffers on the wire
  HUBBUB_URL=ws://10.0.0.5:8080/ws hubbub sub chat/lobby --presence`,
    )
    .action(action('sub', run));
}

async function run(patterns: string[], opts: SubOptions): Promise<void> {
  for (const pattern of patterns) {
    const problem = patternError(pattern);
    if (problem) throw new HubbubError('invalid_channel', `subscribe ${JSON.stringify(pattern)}: ${problem}`, 'subscribe');
  }
  const status = opts.verbose || process.stderr.isTTY ? (msg: string) => void process.stderr.write(`hubbub sub: ${msg}\n`) : () => {};
  const saveDir = opts.saveDir;
  if (saveDir !== undefined) await prepareDir(saveDir);

  const hub = await connectClient(opts.url, { encoding: opts.encoding });
  status(`connected to ${hub.url} as client ${hub.clientId ?? '?'}`);

  let done = false;
  let started = false;
  let received = 0;
  /**
   * Output in arrival order: saving a file takes a while, and a message that arrives meanwhile
   * prints after the file's line. Stopping waits for it, so that no file is left half written.
   */
  let output: Promise<void> = Promise.resolve();
  let settle!: (err?: Error) => void;
  const finished = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  finished.catch(() => {}); // observed below; never an unhandled rejection

  /** Stop: close the connection and let the process exit once stdout and the socket have drained. */
  const stop = (code: number, err?: Error): void => {
    if (done) return;
    done = true;
    hub.close();
    void output.then(() => {
      if (err) return settle(err);
      process.exitCode = code;
      // The close handshake normally ends the process on its own; do not wait for a silent server.
      setTimeout(() => process.exit(code), CLOSE_GRACE_MS).unref();
      settle();
    });
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (done) process.exit(process.exitCode ?? Exit.Ok); // a second signal: do not wait for the close handshake
    status(`${signal}: closing`);
    stop(Exit.Ok);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // `hubbub sub … | head -n 3`: the reader went away, which is a normal way to stop.
    if (err.code === 'EPIPE') stop(Exit.Ok);
    else stop(Exit.Failure, new CliError(`cannot write to stdout: ${err.message}`));
  });
  // The SDK gave up (a terminal close, an HTTP 4xx refusal of a reconnect, attempts exhausted).
  hub.on('closed', (info) => {
    if (!done) stop(Exit.Failure, new CliError(`the connection to ${hub.url} was lost and will not be re-established: ${info.reason}`));
  });

  const print = (line: string): void => void process.stdout.write(`${line}\n`);

  /** Print (or save) one message; false when it was not shown (its file could not be written), so it does not count. */
  const show = async (frame: MessageFrame): Promise<boolean> => {
    if (saveDir !== undefined && frame.transfer !== undefined && frame.data instanceof Uint8Array) {
      let path: string;
      try {
        path = await saveTransfer(saveDir, frame.transfer, frame.data);
      } catch (err) {
        // Like a failed transfer: reported, and sub carries on (the next file may well fit).
        process.stderr.write(`hubbub sub: cannot save transfer ${sanitize(frame.transfer.id)} from ${sanitize(frame.channel)}: ${(err as Error).message}\n`);
        return false;
      }
      const { data: _saved, ...rest } = frame;
      print(opts.json ? JSON.stringify({ ...rest, saved: path }) : `${frame.channel} saved ${frame.data.length} bytes to ${path}`);
    } else {
      print(opts.json ? jsonLine(frame) : `${frame.channel} ${formatMessage(frame)}`);
    }
    return true;
  };

  hub.on('message', (frame: MessageFrame) => {
    if (done) return;
    output = output
      .then(async () => {
        if (opts.count !== undefined && received >= opts.count) return; // arrived while the last counted one was being saved
        if (!(await show(frame))) return;
        received++;
        if (opts.count !== undefined && received >= opts.count) stop(Exit.Ok);
      })
      .catch((err: unknown) => stop(Exit.Failure, err instanceof Error ? err : new Error(String(err))));
  });
  if (opts.presence) {
    const onPresence = (event: PresenceEventFrame): void => {
      if (done) return;
      const line = opts.json ? JSON.stringify(event) : `${event.channel} ${event.type} ${JSON.stringify(event.client)}`;
      output = output.then(() => print(line)); // in order with messages still being saved
    };
    hub.on('join', onPresence);
    hub.on('leave', onPresence);
  }
  hub.on('disconnected', ({ code, reason, willReconnect }) => {
    if (done) return;
    if (willReconnect) status(`disconnected (${code}${reason ? ` ${reason}` : ''})`);
    else stop(Exit.Failure, new CliError(`disconnected by the server (${code}${reason ? ` ${reason}` : ''}); not reconnecting`));
  });
  hub.on('reconnecting', ({ attempt, delay }) => {
    if (!done) status(`reconnecting in ${delay} ms (attempt ${attempt})`);
  });
  hub.on('connected', ({ client, reconnected }) => {
    if (!done && reconnected) status(`reconnected as client ${client}, subscriptions restored`);
  });
  hub.on('error', (err: HubbubError) => {
    if (done) return;
    if (err.request === 'subscribe') {
      // At startup a refusal rejects `ready` (handled below); after a reconnect it would silently stop the output.
      if (started) stop(Exit.Failure, new CliError(`${err.code}: ${err.message}`));
      return;
    }
    // Failed and aborted transfers land here too; they cost that one message, not the subscription.
    process.stderr.write(`hubbub sub: ${err.code}: ${sanitize(err.message)}\n`);
  });

  // The SDK calls a handler once per matching pattern; printing from the `message` event (once per
  // frame) keeps overlapping patterns (`a/#` and `+/b`) from printing a message twice.
  const subscriptions = patterns.map((pattern) => hub.subscribe(pattern, () => {}, { presence: opts.presence === true }));
  try {
    await Promise.race([Promise.all(subscriptions.map((s) => s.ready)), finished]);
  } catch (err) {
    if (!done) {
      done = true;
      hub.close();
    }
    throw err;
  }
  if (!done) {
    started = true;
    status(`subscribed to ${patterns.join(', ')}`);
  }
  return finished;
}

/** The data of a message for the default output: a transfer shows its size and name. */
export function formatMessage(frame: MessageFrame): string {
  return frame.transfer !== undefined && frame.data instanceof Uint8Array ? showPayload(frame) : formatData(frame.data);
}

/** A frame as one line of JSON, bytes as base64 the way the JSON protocol carries them. */
export function jsonLine(frame: MessageFrame): string {
  if (!(frame.data instanceof Uint8Array)) return JSON.stringify(frame);
  return JSON.stringify({ ...frame, data: toBase64(frame.data), encoding: 'base64' });
}

/** A string as is, unless a line break would split the message over several lines; anything else as compact JSON. */
export function formatData(data: Data): string {
  if (data instanceof Uint8Array) return `<${data.length} bytes>`;
  if (typeof data === 'string' && !/[\r\n]/.test(data)) return data;
  return JSON.stringify(data);
}

/** Create the --save-dir (and its parents) when missing; it must end up a writable directory. */
async function prepareDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
    await access(dir, constants.W_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EEXIST' || e.code === 'ENOTDIR' ? 'it is not a directory' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new CliError(`--save-dir ${dir}: ${why}`);
  }
}

/** Longest file name written, in UTF-8 bytes: file systems stop at 255, and a -N suffix may be added. */
const MAX_NAME_BYTES = 200;

/**
 * A transfer's name reduced to a plain file name: the sender chooses it, so it must not reach
 * outside the directory (path separators, '..'), nor carry control characters or bidirectional
 * overrides that disguise what a terminal shows. Undefined when nothing usable is left.
 */
export function safeFileName(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  let base = (name.split(/[\/\\]/).pop() ?? '').replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '').trim();
  if (base === '' || base === '.' || base === '..') return undefined;
  if (Buffer.byteLength(base) > MAX_NAME_BYTES) {
    const { stem, ext } = splitExtension(base);
    const keep = Buffer.byteLength(ext) <= MAX_NAME_BYTES / 2 ? ext : '';
    let cut = stem;
    while (cut.length > 0 && Buffer.byteLength(cut) + Buffer.byteLength(keep) > MAX_NAME_BYTES) cut = cut.slice(0, -1);
    base = (cut.replace(/[\ud800-\udbff]$/, '') + keep).trim(); // no lone high surrogate at the cut
    if (base === '' || base === '.' || base === '..') return undefined;
  }
  return base;
}

/** 'report.pdf' -> report + .pdf, 'logs.tar.gz' -> logs + .tar.gz: where a -N suffix goes. */
function splitExtension(name: string): { stem: string; ext: string } {
  const m = /^(.+?)((?:\.[A-Za-z0-9]{1,5}){0,2})$/.exec(name)!;
  return { stem: m[1]!, ext: m[2]! };
}

/**
 * Write a received transfer into `dir` under its safe name (else its id, else "transfer"), adding
 * -1, -2, ... before the extension rather than overwriting anything. The exclusive create also
 * refuses to follow a symbolic link planted under that name. Returns the path written.
 */
export async function saveTransfer(dir: string, transfer: TransferInfo, data: Uint8Array): Promise<string> {
  const name = safeFileName(transfer.name) ?? safeFileName(transfer.id) ?? 'transfer';
  const { stem, ext } = splitExtension(name);
  for (let n = 0; ; n++) {
    const path = join(dir, n === 0 ? name : `${stem}-${n}${ext}`);
    let file;
    try {
      file = await open(path, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && n < 100_000) continue;
      throw err;
    }
    try {
      await file.writeFile(data);
      await file.close();
    } catch (err) {
      await file.close().catch(() => {});
      await unlink(path).catch(() => {}); // no truncated file left behind under a good name
      throw err;
    }
    return path;
  }
}
