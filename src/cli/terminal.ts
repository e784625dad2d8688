/**
 * The line-oriented session shared by `hubbub client` and `hubbub chat`.
 *
 * On a terminal (stdin and stdout both TTYs) it shows a prompt with readline editing and history,
 * and prints asynchronous output ABOVE the prompt: the prompt line is erased, the text written,
 * then the prompt and the half-typed input are redrawn where they were. Anywhere else (pipes,
 * files) it reads commands line by line without a prompt or echo, runs them one after the other
 * (each waits for the previous one's answer), prints plainly and ends at EOF once every command
 * has finished, so that sessions can be scripted.
 */
import * as readline from 'node:readline';
import { HubbubError, type Hubbub } from '../client/index.js';
import type { ClientInfo, Data, Json, Sender, TransferInfo } from '../protocol/frames.js';
import { CliError } from './common.js';

const SGR = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90 } as const;
export type Colour = keyof typeof SGR;

/** Colours when the stream is a terminal, unless NO_COLOR is set to anything non-empty (https://no-color.org). */
export function colourEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

/** Control characters from the network would let a peer drive the terminal: show them escaped instead. */
export function sanitize(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A payload as one line: a string as is, `{"text": "…"}` as its text, bytes as their size, anything else as JSON. */
export function showData(data: Data): string {
  if (data instanceof Uint8Array) return `<${data.length} bytes>`;
  if (typeof data === 'string') return sanitize(data).replace(/[\t\n]/g, ' ');
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const keys = Object.keys(data);
    if (keys.length === 1 && keys[0] === 'text' && typeof data.text === 'string') return showData(data.text);
  }
  return sanitize(JSON.stringify(data));
}

/** A message's payload as one line: like showData, and a completed transfer as its size and name. */
export function showPayload(m: { data: Data; transfer?: TransferInfo }): string {
  if (m.transfer !== undefined && m.data instanceof Uint8Array) return `<${m.data.length} bytes${m.transfer.name !== undefined ? `: ${sanitize(m.transfer.name)}` : ''}>`;
  return showData(m.data);
}

/** The first word of `text` and the rest (trimmed at the start only, so that data keeps its inner spaces). */
export function splitWord(text: string): [string, string] {
  const t = text.replace(/^\s+/, '');
  const m = /^(\S*)\s?([\s\S]*)$/.exec(t)!;
  return [m[1]!, m[2]!];
}

export interface SessionOptions {
  prompt: string;
  /** Runs one input line and resolves once its answer is printed; resolving `'quit'` ends the session. */
  run: (line: string) => Promise<void | 'quit'>;
  /** Tab completion of the first word. */
  words?: string[];
  input?: NodeJS.ReadStream;
  output?: NodeJS.WriteStream;
  errorOutput?: NodeJS.WriteStream;
}

export class Session {
  /** Prompt, line editing and history: stdin and stdout are both terminals. */
  readonly interactive: boolean;
  readonly colour: boolean;
  private readonly input: NodeJS.ReadStream;
  private readonly output: NodeJS.WriteStream;
  private readonly errorOutput: NodeJS.WriteStream;
  private rl: readline.Interface | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** readline closed (EOF, Ctrl-D): commands may still finish, but there is no prompt to redraw. */
  private rlClosed = false;
  private finished: ((code: number) => void) | undefined;
  private exitCode = 0;

  constructor(private readonly options: SessionOptions) {
    this.input = options.input ?? process.stdin;
    this.output = options.output ?? process.stdout;
    this.errorOutput = options.errorOutput ?? process.stderr;
    this.interactive = this.input.isTTY === true && this.output.isTTY === true;
    this.colour = colourEnabled(this.output);
    // `hubbub client | head -1`: a closed stdout ends the session quietly instead of with EPIPE.
    this.output.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') this.end(0);
    });
  }

  paint(colour: Colour | undefined, text: string): string {
    if (!this.colour || !colour) return text;
    return `\x1b[${SGR[colour]}m${text}\x1b[0m`;
  }

  /** Print a line (or several) of output; on a terminal above the prompt, keeping what is being typed. */
  print(text: string, colour?: Colour): void {
    const painted = text
      .split('\n')
      .map((l) => this.paint(colour, l))
      .join('\n');
    this.above(() => this.output.write(painted + '\n'));
  }

  /** A one-line message on stderr (above the prompt on a terminal). */
  warn(text: string): void {
    this.above(() => this.errorOutput.write(text + '\n'));
  }

  private above(write: () => void): void {
    const rl = this.rl;
    if (!this.interactive || !rl || this.rlClosed) {
      write();
      return;
    }
    // Erase the prompt and the input (which may wrap over several rows), write, then redraw them.
    this.erasePrompt(rl);
    write();
    // readline redraws by first moving up by the rows of its previous drawing: that drawing is gone.
    (rl as unknown as { prevRows: number }).prevRows = 0;
    rl.prompt(true);
  }

  setPrompt(prompt: string): void {
    this.options.prompt = prompt;
    const rl = this.rl;
    if (!rl) return;
    if (!this.interactive || this.rlClosed) {
      rl.setPrompt(prompt);
      return;
    }
    this.erasePrompt(rl); // measured with the old prompt
    rl.setPrompt(prompt);
    (rl as unknown as { prevRows: number }).prevRows = 0;
    rl.prompt(true);
  }

  private erasePrompt(rl: readline.Interface): void {
    const rows = rl.getCursorPos().rows;
    if (rows > 0) readline.moveCursor(this.output, 0, -rows);
    readline.cursorTo(this.output, 0);
    readline.clearScreenDown(this.output);
  }

  /** Read and run commands until `quit`, EOF (Ctrl-D), Ctrl-C or end(); resolves with the exit code. */
  start(): Promise<number> {
    if (this.stopped) return Promise.resolve(this.exitCode); // ended before it began
    const done = new Promise<number>((resolve) => (this.finished = resolve));
    const words = this.options.words;
    const rl = this.interactive
      ? readline.createInterface({
          input: this.input,
          output: this.output,
          terminal: true,
          prompt: this.options.prompt,
          historySize: 1000,
          removeHistoryDuplicates: true,
          completer: words ? (line: string): [string[], string] => completeFirstWord(words, line) : undefined,
        })
      : readline.createInterface({ input: this.input, terminal: false, crlfDelay: Infinity });
    this.rl = rl;
    rl.on('line', (line) => {
      if (this.stopped) return;
      if (this.interactive) rl.prompt();
      this.chain = this.chain.then(() => this.runLine(line));
    });
    // EOF (Ctrl-D on a terminal): finish the commands already read, then stop.
    rl.on('close', () => {
      if (this.interactive && !this.stopped) this.erasePrompt(rl);
      this.rlClosed = true;
      if (this.stopped) return;
      void this.chain.then(() => this.end(0));
    });
    rl.on('SIGINT', () => this.end(0));
    if (this.interactive) rl.prompt();
    return done;
  }

  private async runLine(line: string): Promise<void> {
    if (this.stopped) return;
    try {
      if ((await this.options.run(line)) === 'quit') this.end(0);
    } catch (err) {
      this.print(`error: ${err instanceof Error ? err.message : String(err)}`, 'red');
    }
  }

  /** Stop reading; start() resolves with `code`. */
  end(code: number): void {
    if (this.stopped) return;
    // Leave the terminal clean: no prompt drawn after the last output.
    if (this.interactive && this.rl && !this.rlClosed) this.erasePrompt(this.rl);
    this.stopped = true;
    this.exitCode = code;
    this.rl?.close();
    this.finished?.(code);
  }
}

function completeFirstWord(words: string[], line: string): [string[], string] {
  if (/\s/.test(line.trimStart())) return [[], line];
  const start = line.trimStart();
  const hits = words.filter((w) => w.startsWith(start));
  return [hits.length ? hits.map((w) => w + ' ') : [], start];
}

/** How a sender is shown: its name, else its user id, else its client id. */
export function sender(from: Sender | ClientInfo): string {
  if ('server' in from) return 'server';
  return sanitize(from.name ?? from.user ?? from.client);
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function describeError(err: unknown): string {
  if (err instanceof HubbubError) return `error ${err.code}: ${sanitize(err.message)}`;
  if (err instanceof CliError) return err.message;
  return `error: ${err instanceof Error ? err.message : String(err)}`;
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HubbubError('timeout', `${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Close the connection and let the process end by itself, so that the WebSocket close handshake
 * completes (others see a clean leave); exit anyway after a second if something still holds on.
 */
export function finish(hub: Hubbub, code: number): void {
  hub.close();
  process.exitCode = code;
  setTimeout(() => process.exit(code), 1000).unref();
}

/**
 * Tell the user about the connection: lost (and reconnecting), reconnected, or given up for good
 * (a terminal close code, a refused reconnection, or attempts exhausted), which calls `stop`.
 */
export function followConnection(
  hub: Hubbub,
  handlers: { say: (text: string, colour?: Colour) => void; stop: (message: string) => void; isClosing: () => boolean; reconnected: (client: string) => string },
): void {
  hub.on('disconnected', (info) => {
    if (handlers.isClosing()) return;
    if (info.willReconnect) handlers.say(`* connection lost (${info.code}${info.reason ? ` ${sanitize(info.reason)}` : ''}); reconnecting`, 'gray');
    else handlers.stop(`the server ended the connection: ${sanitize(info.reason)} (${info.code})`);
  });
  hub.on('reconnecting', (r) => handlers.say(`* reconnecting in ${r.delay} ms (attempt ${r.attempt})`, 'gray'));
  hub.on('connected', (c) => {
    if (c.reconnected) handlers.say(handlers.reconnected(c.client), 'gray');
  });
  hub.on('closed', (info) => {
    if (!handlers.isClosing()) handlers.stop(`the client gave up reconnecting: ${sanitize(info.reason)}`);
  });
}
