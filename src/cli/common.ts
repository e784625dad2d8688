/** What every client-side command shares: the --url option, connecting, one-line errors, exit codes. */
import { InvalidArgumentError, Option, type CommanderError } from 'commander';
import { Hubbub, HubbubError, type Encoding, type HubbubClientOptions } from '../client/index.js';
import type { Json, WelcomeFrame } from '../protocol/frames.js';

export const DEFAULT_URL = 'ws://localhost:8080/ws';

/** Exit codes of the client commands: 0 success, 1 a runtime failure (unreachable, refused, timeout), 2 bad usage. */
export const Exit = { Ok: 0, Failure: 1, Usage: 2 } as const;

/** A failure to report as one line on stderr, without a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = Exit.Failure,
  ) {
    super(message);
  }
}

export function urlOption(): Option {
  return new Option('-u, --url <url>', 'server WebSocket URL').env('HUBBUB_URL').default(DEFAULT_URL);
}

/** `--encoding json|protobuf`: the wire encoding (WebSocket subprotocol); any other value is bad usage. */
export function encodingOption(): Option {
  return new Option('-e, --encoding <encoding>', 'wire encoding: JSON text frames or Protocol Buffers binary frames')
    .choices(['json', 'protobuf'] satisfies Encoding[])
    .env('HUBBUB_ENCODING')
    .default('json');
}

/** Accept ws(s):// URLs, and http(s):// ones (mapped to ws(s)://, path /ws when none is given). */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`not a valid URL: ${raw} (expected something like ${DEFAULT_URL})`, Exit.Usage);
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (url.pathname === '/') url.pathname = '/ws';
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new CliError(`unsupported URL scheme ${url.protocol} in ${raw} (use ws:// or wss://)`, Exit.Usage);
  return url.toString();
}

/**
 * Connect a client for a command. The first connection attempt must succeed (a clear error
 * otherwise); later drops reconnect by the SDK's rules.
 */
export async function connectClient(rawUrl: string, options: HubbubClientOptions = {}, onWelcome?: (welcome: WelcomeFrame) => void): Promise<Hubbub> {
  const url = normalizeUrl(rawUrl);
  const hub = new Hubbub(url, { connectTimeout: 5000, ...options });
  if (onWelcome) hub.on('connected', ({ welcome }) => onWelcome(welcome));
  try {
    await hub.connect({ retry: false });
  } catch (err) {
    throw new CliError(describeConnectError(url, err));
  }
  return hub;
}

export function describeConnectError(url: string, err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/ECONNREFUSED/.test(msg)) return `cannot reach the server at ${url}: connection refused (is hubbub serve running?)`;
  if (/ENOTFOUND|EAI_AGAIN/.test(msg)) return `cannot resolve the host of ${url}`;
  const status = /Unexpected server response: (\d+)/.exec(msg);
  if (status) return `the server at ${url} refused the WebSocket upgrade with HTTP ${status[1]}${status[1] === '404' ? ' (wrong path?)' : ''}`;
  if (err instanceof HubbubError && (err.code === 'unauthorized' || err.code === 'forbidden')) return `the server refused the token: ${err.message}`;
  return `cannot connect to ${url}: ${msg}`;
}

/** Run a command body, turning expected failures into one line on stderr and an exit code. */
export function action<A extends unknown[]>(name: string, body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (err) {
      if (err instanceof CliError) {
        process.stderr.write(`hubbub ${name}: ${err.message}\n`);
        process.exit(err.exitCode);
      }
      if (err instanceof HubbubError) {
        process.stderr.write(`hubbub ${name}: ${err.code}: ${err.message}\n`);
        process.exit(Exit.Failure);
      }
      throw err;
    }
  };
}

/** Command-line data: JSON when it parses as JSON, else the text as a string. */
export function parseData(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

/** Commander's own usage errors (unknown option, missing argument, bad number) exit 2, like ours. */
export function usageExit(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? Exit.Ok : Exit.Usage);
}

/** An option parser for whole numbers of at least `min`. */
export function wholeNumber(min: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number of at least ${min}.`);
    return n;
  };
}
