import { Command, Option } from 'commander';
import { ConfigError, loadConfig, settings, type Config } from '../config.js';
import { StoreOpenError } from '../engine/sqlite-store.js';
import { createLogger } from '../log.js';
import { HubbubServer } from '../server.js';

const camel = (flag: string): string => flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function serveCommand(): Command {
  const cmd = new Command('serve').description('run the Hubbub server').option('-c, --config <file>', 'JSON or YAML config file (env HUBBUB_CONFIG)');
  for (const s of settings) {
    const opt = new Option(`${s.flag} ${s.arg}`, `${s.description} (env ${s.env}, default ${JSON.stringify(s.default)})`);
    if (s.kind === 'list') opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    cmd.addOption(opt);
  }
  cmd.addHelpText(
    'after',
    `
Settings come from flags, then HUBBUB_* environment variables, then the config file, then defaults.
Examples:
  hubbub serve                                   # 0.0.0.0:8080, WebSocket at /ws
  hubbub serve --port 9000 --api-key s3cret --log-level debug
  HUBBUB_API_KEY=k1,k2 hubbub serve --config hubbub.yaml`,
  );
  cmd.action(async (opts: Record<string, unknown>) => {
    let config: Config;
    try {
      const flags: Partial<Record<keyof Config, unknown>> = {};
      for (const s of settings) flags[s.key] = opts[camel(s.flag)];
      config = loadConfig({ flags, env: process.env, file: (opts.config as string | undefined) ?? process.env.HUBBUB_CONFIG });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`hubbub: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    const logger = createLogger(config.log_level);
    let server: HubbubServer;
    try {
      server = new HubbubServer({ config, logger });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`hubbub: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    try {
      await server.listen();
    } catch (err) {
      if (err instanceof StoreOpenError) {
        // A damaged or foreign file is never reset silently: the operator decides.
        logger.fatal(err.message);
        process.exit(1);
      }
      const e = err as NodeJS.ErrnoException;
      logger.fatal({ code: e.code }, `cannot listen on ${config.host}:${config.port}: ${e.message}`);
      process.exit(1);
    }
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        logger.warn(`${signal} again: exiting now`);
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down');
      server.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
  return cmd;
}
