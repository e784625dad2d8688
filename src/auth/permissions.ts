/**
 * Channel permissions per namespace (the first level of a channel name). Each namespace rule says
 * who may subscribe, publish, see presence and read history: `anonymous` (anyone), `authenticated`
 * (a connection with a user id), `token` (channels listed in the token's `channels` claim), `none`.
 * `user_channel: true` reserves `ns/<user id>/…` for that user.
 *
 * A subscription whose pattern spans channels the client may not all read (`#`, `+/x`, `chat/#`
 * with a `token` rule, `inbox/+` with user channels) is accepted but filtered: each publication is
 * checked before it is delivered, so nothing leaks through a wildcard.
 */
import { ConfigError, parseDuration, type NamespaceRuleInput } from '../config.js';
import { matchPattern } from '../protocol/channel.js';

export type Access = 'anonymous' | 'authenticated' | 'token' | 'none';
const ACCESS: Access[] = ['anonymous', 'authenticated', 'token', 'none'];

export interface NamespaceRule {
  subscribe: Access;
  publish: Access;
  presence: Access;
  history: Access;
  user_channel: boolean;
  /** Publications kept per channel; 0: no history. */
  history_size: number;
  /** How long a publication is kept, ms; 0: no age limit. */
  history_ttl: number;
}

/** What a rule check needs to know about a connection. */
export interface Principal {
  /** Set once the connection is identified (a verified token, or the development identity). */
  user?: string;
  /** Patterns from the token's `channels` claim. */
  channels?: string[];
}

export type Verdict = 'allow' | 'deny' | 'filter';
type Action = 'subscribe' | 'publish' | 'presence' | 'history';

const OPEN_RULE: NamespaceRule = { subscribe: 'anonymous', publish: 'anonymous', presence: 'anonymous', history: 'anonymous', user_channel: false, history_size: 0, history_ttl: 0 };

/** The most publications a channel may keep. */
export const MAX_HISTORY_SIZE = 100_000;

export function parseRule(input: NamespaceRuleInput, where: string, base: NamespaceRule = OPEN_RULE): NamespaceRule {
  const rule = { ...base };
  for (const [key, value] of Object.entries(input)) {
    if (key === 'user_channel') {
      if (typeof value !== 'boolean') throw new ConfigError(`${where}.user_channel: expected true or false`);
      rule.user_channel = value;
    } else if (key === 'subscribe' || key === 'publish' || key === 'presence' || key === 'history') {
      if (!ACCESS.includes(value as Access)) throw new ConfigError(`${where}.${key}: expected one of ${ACCESS.join(', ')}, got ${JSON.stringify(value)}`);
      rule[key] = value as Access;
    } else if (key === 'history_size') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_HISTORY_SIZE) throw new ConfigError(`${where}.history_size: expected an integer from 0 to ${MAX_HISTORY_SIZE}`);
      rule.history_size = value;
    } else if (key === 'history_ttl') {
      rule.history_ttl = parseDuration(value, `${where}.history_ttl`);
    } else {
      throw new ConfigError(`${where}: unknown key "${key}"`);
    }
  }
  if (rule.history_ttl > 0 && rule.history_size === 0) throw new ConfigError(`${where}.history_ttl: needs history_size (history is on when history_size is above 0)`);
  return rule;
}

export class Permissions {
  private readonly rules = new Map<string, NamespaceRule>();
  private readonly policies = new Map<NamespaceRule, { size: number; ttl: number }>();
  readonly defaultRule: NamespaceRule;

  constructor(namespaces: Record<string, NamespaceRuleInput> = {}, defaultNamespace: NamespaceRuleInput = {}) {
    this.defaultRule = parseRule(defaultNamespace, 'default_namespace');
    for (const [ns, input] of Object.entries(namespaces)) {
      if (ns === '' || ns.includes('/') || ns === '+' || ns === '#') throw new ConfigError(`namespaces: "${ns}" is not a namespace (one channel level, no wildcards)`);
      if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ConfigError(`namespaces.${ns}: expected an object`);
      this.rules.set(ns, parseRule(input, `namespaces.${ns}`, this.defaultRule));
    }
  }

  /** True when every rule lets anyone do anything: the hot path can skip checks entirely. */
  get open(): boolean {
    const isOpen = (r: NamespaceRule) => !r.user_channel && r.subscribe === 'anonymous' && r.publish === 'anonymous' && r.presence === 'anonymous' && r.history === 'anonymous';
    return isOpen(this.defaultRule) && [...this.rules.values()].every(isOpen);
  }

  rule(namespace: string): NamespaceRule {
    return this.rules.get(namespace) ?? this.defaultRule;
  }

  /** The history a concrete channel keeps (its namespace's history_size and history_ttl), or undefined. */
  historyOf(channel: string): { size: number; ttl: number } | undefined {
    const slash = channel.indexOf('/');
    const rule = this.rule(slash < 0 ? channel : channel.slice(0, slash));
    if (rule.history_size === 0) return undefined;
    let policy = this.policies.get(rule);
    if (!policy) this.policies.set(rule, (policy = { size: rule.history_size, ttl: rule.history_ttl }));
    return policy;
  }

  /** May this principal do `action` on the concrete channel? */
  can(p: Principal, action: Action, channel: string): boolean {
    const levels = channel.split('/');
    const rule = this.rule(levels[0]!);
    if (!accessOk(rule[action], p, channel)) return false;
    if (rule.user_channel && levels.length > 1 && levels[1] !== p.user) return false;
    return true;
  }

  /** May this principal read what is published on the concrete channel (wildcard delivery filter)? */
  canRead(p: Principal, channel: string): boolean {
    return this.can(p, 'subscribe', channel);
  }

  /** Subscribing to a pattern: allowed, refused, or allowed with per-publication filtering. */
  subscribe(p: Principal, pattern: string): Verdict {
    const levels = pattern.split('/');
    const ns = levels[0]!;
    if (ns === '+' || ns === '#') return this.open ? 'allow' : 'filter'; // spans namespaces: judged per channel
    const rule = this.rule(ns);
    let verdict: Verdict = 'allow';
    switch (rule.subscribe) {
      case 'none':
        return 'deny';
      case 'authenticated':
        if (p.user === undefined) return 'deny';
        break;
      case 'token': {
        const granted = p.channels ?? [];
        if (!granted.some((g) => covers(g, pattern))) {
          if (!granted.some((g) => overlaps(g, pattern))) return 'deny';
          verdict = 'filter';
        }
        break;
      }
      case 'anonymous':
        break;
    }
    if (rule.user_channel && levels.length > 1) {
      const owner = levels[1]!;
      if (owner === '+' || owner === '#') verdict = 'filter';
      else if (owner !== p.user) return 'deny';
    } else if (rule.user_channel && levels.length === 1) {
      // `inbox` alone is not anyone's personal channel; `inbox/#` is handled above as a wildcard owner.
    }
    return verdict;
  }
}

function accessOk(access: Access, p: Principal, channel: string): boolean {
  switch (access) {
    case 'anonymous':
      return true;
    case 'authenticated':
      return p.user !== undefined;
    case 'token':
      return (p.channels ?? []).some((g) => matchPattern(g, channel));
    case 'none':
      return false;
  }
}

/** Does every channel matched by `inner` also match `outer`? (Both are patterns.) */
export function covers(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const i = inner.split('/');
  for (let k = 0; k < o.length; k++) {
    if (o[k] === '#') return true;
    if (k >= i.length) return false;
    if (i[k] === '#') return false;
    if (o[k] === '+') continue;
    if (i[k] === '+' || o[k] !== i[k]) return false;
  }
  // `a/b` does not cover `a/b/#`'s deeper channels; equal length means every level was covered.
  return o.length === i.length;
}

/** Could some channel match both patterns? */
export function overlaps(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  for (let k = 0; ; k++) {
    const xa = x[k];
    const yb = y[k];
    if (xa === '#' || yb === '#') return true;
    if (xa === undefined || yb === undefined) return xa === yb;
    if (xa !== '+' && yb !== '+' && xa !== yb) return false;
  }
}
