/** `hubbub sub`: subscribe and print every message, one per line (like mosquitto_sub). */
import { Command, Option } from 'commander';
import { HubbubError, patternError, type Data, type Json, type MessageFrame, type PresenceEventFrame } from '../client/index.js';
import { action, CliError, connectClient, Exit, urlOption, usageExit, wholeNumber } from './common.js';

interface SubOptions {
  url: string;
  count?: number;
  json?: boolean;
  presence?: boolean;
  verbose?: boolean;
}

/** How long a closing `sub` waits for the WebSocket close handshake before it exits anyway. */
const CLOSE_GRACE_MS = 2000;

export function subCommand(): Command {
  return new Command('sub')
    .description('subscribe to channels or patterns and print every message received, one per line')
    .argument('<pattern...>', 'channel names or MQTT-style patterns (+ is one level, # any number of levels)')
    .addOption(urlOption())
    .addOption(new Option('-n, --count <n>', 'exit 0 after receiving n messages').argParser(wholeNumber(1)))
    .option('--json', 'print each server frame as one line of JSON instead of "<channel> <data>"')
    .option('-p, --presence', 'also print join/leave events of the exact channels subscribed to')
    .option('-v, --verbose', 'print status (connected, reconnecting, disconnected) on stderr even when it is not a terminal')
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
Output (stdout, one line per message, written as it arrives):
  default   <channel> <data>: a string prints as is (JSON-quoted when it contains a line break),
            anything else as compact JSON. With --presence: <channel> join|leave <client JSON>.
  --json    the whole frame, e.g. {"type":"message","channel":"chat/lobby","pattern":"chat/+","data":"hi",...}
Status lines go to stderr, only when stderr is a terminal or with --verbose. The connection is
re-established automatically if it drops; Ctrl-C or SIGTERM closes it and exits 0.
Exit codes: 0 done (--count reached, Ctrl-C, SIGTERM), 1 runtime failure, 2 bad usage.

Examples:
  hubbub sub chat/lobby                          # print messages of one channel
  hubbub sub 'chat/+' 'alerts/#' --url ws://hub.example:8080/ws
  hubbub sub '#' --json | jq .data               # everything, as JSON frames
  hubbub sub sensors/+/temp -n 1                 # wait for one message, print it, exit
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

  const hub = await connectClient(opts.url);
  status(`connected to ${hub.url} as client ${hub.clientId ?? '?'}`);

  let done = false;
  let started = false;
  let received = 0;
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
    if (err) return settle(err);
    process.exitCode = code;
    // The close handshake normally ends the process on its own; do not wait for a silent server.
    setTimeout(() => process.exit(code), CLOSE_GRACE_MS).unref();
    settle();
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

  hub.on('message', (frame: MessageFrame) => {
    if (done) return;
    print(opts.json ? JSON.stringify(frame) : `${frame.channel} ${formatData(frame.data)}`);
    received++;
    if (opts.count !== undefined && received >= opts.count) stop(Exit.Ok);
  });
  if (opts.presence) {
    const onPresence = (event: PresenceEventFrame): void => {
      if (done) return;
      print(opts.json ? JSON.stringify(event) : `${event.channel} ${event.type} ${JSON.stringify(event.client)}`);
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
    process.stderr.write(`hubbub sub: ${err.code}: ${err.message}\n`);
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

/** A string as is, unless a line break would split the message over several lines; anything else as compact JSON. */
export function formatData(data: Data): string {
  if (data instanceof Uint8Array) return `<${data.length} bytes>`;
  if (typeof data === 'string' && !/[\r\n]/.test(data)) return data;
  return JSON.stringify(data);
}
