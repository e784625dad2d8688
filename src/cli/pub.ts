/** `hubbub pub`: publish messages and exit once the server has acknowledged them (like mosquitto_pub). */
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'commander';
import type { Hubbub, Json } from '../client/index.js';
import { action, CliError, connectClient, Exit, parseData, urlOption, usageExit, wholeNumber } from './common.js';

interface PubOptions {
  url: string;
  kind?: string;
  repeat: number;
  interval: number;
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
    .argument('<data>', 'the message: JSON when it parses as JSON, else the text as a string; - reads stdin, one message per line')
    .addOption(urlOption())
    .option('-k, --kind <kind>', 'message kind, e.g. text, notification, system (server default: text)')
    .addOption(new Option('-r, --repeat <n>', 'publish the message n times').default(1).argParser(wholeNumber(1)))
    .addOption(new Option('-i, --interval <ms>', 'wait ms milliseconds between publications (also between stdin lines)').default(0).argParser(wholeNumber(0)))
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
Exit codes: 0 every publication acknowledged, 1 runtime failure (unreachable server, refused
publication such as invalid_channel, lost connection, timeout), 2 bad usage.

Examples:
  hubbub pub chat/lobby 'hello world'                # the string "hello world"
  hubbub pub chat/lobby '{"text":"hi","from":"ops"}' --kind notification
  hubbub pub sensors/1/temp 21.5 --repeat 10 --interval 1000
  tail -F app.log | hubbub pub logs/app -            # one message per line
  HUBBUB_URL=ws://hub.example:8080/ws hubbub pub alerts/disk '"90% full"'`,
    )
    .action(action('pub', run));
}

async function run(channel: string, data: string, opts: PubOptions): Promise<void> {
  if (data === '-' && opts.repeat !== 1) throw new CliError('--repeat cannot be combined with - (stdin): each line is published once', Exit.Usage);
  const status = opts.verbose ? (msg: string) => void process.stderr.write(`hubbub pub: ${msg}\n`) : () => {};
  // No reconnect: a publication in flight when the connection drops is reported as failed, never silently resent.
  const hub = await connectClient(opts.url, { reconnect: false });
  status(`connected to ${hub.url} as client ${hub.clientId ?? '?'}`);
  const publisher = new Publisher(hub, channel, opts.kind);
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

/** Sends publications without waiting for each answer (at most WINDOW outstanding) and remembers the first failure. */
class Publisher {
  private readonly inflight = new Set<Promise<void>>();
  private failure: Error | undefined;
  acknowledged = 0;

  constructor(
    private readonly hub: Hubbub,
    private readonly channel: string,
    private readonly kind: string | undefined,
  ) {}

  async send(data: Json): Promise<void> {
    this.check();
    const p: Promise<void> = this.hub.publish(this.channel, data, this.kind === undefined ? {} : { kind: this.kind }).then(
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
