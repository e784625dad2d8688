import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config.js';

/**
 * Structured JSON logs on stdout; human-readable lines when stdout is a terminal. Message bodies
 * are never passed to the logger, and credentials are redacted should a caller pass them by mistake.
 */
export function createLogger(level: LogLevel, options: { pretty?: boolean; destination?: NodeJS.WritableStream } = {}): Logger {
  const base = {
    level,
    base: { service: 'hubbub' },
    redact: { paths: ['token', '*.token', 'apiKey', '*.apiKey', 'authorization', '*.authorization', 'headers.authorization'], censor: '[redacted]' },
  };
  const usePretty = options.pretty ?? Boolean(process.stdout.isTTY);
  if (usePretty) return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service', destination: options.destination ?? 1 }));
  return options.destination ? pino(base, options.destination as pino.DestinationStream) : pino(base);
}

export type { Logger };
