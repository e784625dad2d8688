/**
 * Command-line options of the bench scripts: node:util's parseArgs (strict: unknown options and
 * missing values are errors) plus the checked conversions every script needs, so that a typo fails
 * with the usage text instead of running a different benchmark.
 */
import { parseArgs } from 'node:util';

export class Args {
  private readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];

  /** `strings` take a value, `flags` do not; -h/--help prints `usage` and exits 0. */
  constructor(argv: string[], usage: string, strings: string[], flags: string[] = []) {
    const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
    for (const s of strings) options[s] = { type: 'string' };
    for (const f of flags) options[f] = { type: 'boolean' };
    try {
      const parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
      this.values = parsed.values;
      this.positionals = parsed.positionals;
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${usage}`);
    }
    if (this.values.help) {
      console.log(usage);
      process.exit(0);
    }
  }

  private raw(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : undefined;
  }

  /** An integer in [min, max], or `fallback` when the option is absent. */
  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    return v === undefined ? fallback : parseInteger(`--${name}`, v, min, max);
  }

  /** A comma-separated list of integers in [min, max]. */
  ints(name: string, fallback: number[], min: number, max: number): number[] {
    const v = this.raw(name);
    return v === undefined ? fallback : v.split(',').map((s) => parseInteger(`--${name}`, s, min, max));
  }

  /** A comma-separated list of `allowed` values, without repeats. */
  list<T extends string>(name: string, fallback: T[], allowed: readonly T[]): T[] {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const items = [...new Set(v.split(',').filter(Boolean))];
    if (items.length === 0 || items.some((x) => !allowed.includes(x as T))) throw new Error(`--${name}: a list of ${allowed.join(', ')}`);
    return items as T[];
  }

  /** One of `allowed`. */
  choice<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!allowed.includes(v as T)) throw new Error(`--${name}: one of ${allowed.join(', ')}`);
    return v as T;
  }

  string(name: string): string | undefined {
    const v = this.raw(name);
    if (v === '') throw new Error(`--${name}: a value is needed`);
    return v;
  }

  flag(name: string): boolean {
    return this.values[name] === true;
  }
}

/** An integer option value within [min, max], or an error naming the option. */
export function parseInteger(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected an integer in [${min}, ${max}], got ${v}`);
  return n;
}
