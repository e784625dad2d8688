/** The built `hubbub` bin as a child process with its output collected, shared by the CLI tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const bin = join(root, 'bin', 'hubbub.js');

export type Exited = { code: number | null; signal: NodeJS.Signals | null };

/** The test's environment without HUBBUB_* settings (which would leak into the child), plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('HUBBUB_') && !(k in extra)) delete env[k];
  return env;
}

export interface CliOptions {
  env?: Record<string, string>;
  stdin?: boolean;
  cwd?: string;
  /** Default deadline of `until` and `stderrLine`, ms. */
  waitMs?: number;
  /** Default deadline of `exit`, ms. */
  exitMs?: number;
}

/** One `hubbub` child process with its output collected. */
export class Cli {
  readonly child: ChildProcess;
  out = '';
  err = '';
  status: Exited | undefined;
  readonly exited: Promise<Exited>;
  private readonly waitMs: number;
  private readonly exitMs: number;

  constructor(args: string[], options: CliOptions = {}) {
    this.waitMs = options.waitMs ?? 8000;
    this.exitMs = options.exitMs ?? 10000;
    this.child = spawn(process.execPath, [bin, ...args], { env: childEnv(options.env), cwd: options.cwd, stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.err += d.toString()));
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.status = { code, signal };
        resolve(this.status);
      }),
    );
  }

  /** Complete stdout lines so far. */
  get lines(): string[] {
    const all = this.out.split('\n');
    all.pop();
    return all;
  }

  /** Wait until `ready()` holds; fail after `ms` or if the process exits first. */
  async until(what: string, ready: () => boolean, ms = this.waitMs): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ready()) {
      if (this.status) throw new Error(`exited (${JSON.stringify(this.status)}) before ${what}; stdout: ${this.out}; stderr: ${this.err}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; stdout: ${this.out}; stderr: ${this.err}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Wait for a stderr line matching `re` (status lines need --verbose when stderr is a pipe). */
  async stderrLine(re: RegExp, ms = this.waitMs): Promise<RegExpMatchArray> {
    let m: RegExpMatchArray | null = null;
    await this.until(`stderr ${re}`, () => (m = re.exec(this.err)) !== null, ms);
    return m!;
  }

  async exit(ms = this.exitMs): Promise<Exited> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running after ${ms} ms; stdout: ${this.out}; stderr: ${this.err}`)), ms);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface RunningServer {
  child: ChildProcess;
  port: number;
  /** Everything it printed, stdout line by line, stderr chunk by chunk. */
  lines: string[];
  exited: Promise<Exited>;
}

/**
 * `hubbub serve --host 127.0.0.1 --port 0 …args` from the built bin; resolves with the port once it
 * logs "hubbub listening" (JSON logs), fails if it exits first or says nothing within `timeoutMs`.
 */
export async function serveBin(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number, onSpawn?: (child: ChildProcess) => void): Promise<RunningServer> {
  if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  const child = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  onSpawn?.(child);
  const lines: string[] = [];
  const exited = new Promise<Exited>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no listening line; output: ${lines.join('\n')}`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        try {
          const rec = JSON.parse(line) as { port?: number; msg?: string };
          if (rec.msg?.startsWith('hubbub listening') && rec.port) {
            clearTimeout(timer);
            resolve(rec.port);
          }
        } catch {
          /* not JSON */
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => lines.push(d.toString()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`exited before listening; output: ${lines.join('\n')}`));
    });
  });
  return { child, port, lines, exited };
}
