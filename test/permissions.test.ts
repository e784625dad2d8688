/**
 * Namespace permissions as a unit (src/auth/permissions.ts): the rule values, token grants, user
 * channels, subscription verdicts, config validation, and randomized checks of `covers`/`overlaps`
 * and of the verdicts against per-channel read permission (what keeps wildcards from leaking).
 * End-to-end checks against a real server are in test/access.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Permissions, covers, overlaps, parseRule, type Access, type Principal } from '../src/auth/permissions.js';
import { ConfigError, type NamespaceRuleInput } from '../src/config.js';
import { matchPattern, patternError } from '../src/protocol/channel.js';

const ACCESS: Access[] = ['anonymous', 'authenticated', 'token', 'none'];
const ACTIONS = ['subscribe', 'publish', 'presence'] as const;

const anon: Principal = {};
const alice: Principal = { user: 'alice' };
const bob: Principal = { user: 'bob' };

describe('rule values', () => {
  // Who may act on `ns/a` under each value; the token principal is granted `ns/a` only.
  const granted: Principal = { user: 'tok', channels: ['ns/a'] };
  const grantedElsewhere: Principal = { user: 'tok2', channels: ['other/#'] };
  const expected: Record<Access, [Principal, string, boolean][]> = {
    anonymous: [[anon, 'ns/a', true], [alice, 'ns/a', true], [granted, 'ns/b', true]],
    authenticated: [[anon, 'ns/a', false], [alice, 'ns/a', true], [granted, 'ns/b', true], [{ channels: ['ns/a'] }, 'ns/a', false]],
    token: [[anon, 'ns/a', false], [alice, 'ns/a', false], [granted, 'ns/a', true], [granted, 'ns/b', false], [grantedElsewhere, 'ns/a', false]],
    none: [[anon, 'ns/a', false], [alice, 'ns/a', false], [granted, 'ns/a', false]],
  };

  for (const action of ACTIONS) {
    for (const access of ACCESS) {
      it(`${action}: ${access}`, () => {
        const perms = new Permissions({ ns: { [action]: access } });
        for (const [p, channel, want] of expected[access]) {
          const w = want;
          assert.equal(perms.can(p, action, channel), w, `${action}=${access}: ${JSON.stringify(p)} on ${channel}`);
          if (action === 'subscribe') {
            assert.equal(perms.subscribe(p, channel), w ? 'allow' : 'deny', `subscribe verdict ${access}: ${JSON.stringify(p)} on ${channel}`);
            assert.equal(perms.canRead(p, channel), w, `canRead ${access}: ${JSON.stringify(p)} on ${channel}`);
          }
        }
        // The other actions keep the open default, and other namespaces are untouched.
        for (const other of ACTIONS.filter((a) => a !== action)) assert.equal(perms.can(anon, other, 'ns/a'), true, `${other} stays anonymous`);
        assert.equal(perms.can(anon, action, 'elsewhere/a'), true, 'another namespace uses the default rule');
        assert.equal(perms.open, access === 'anonymous');
      });
    }
  }

  it('the namespace is the first level, including the bare namespace channel', () => {
    const perms = new Permissions({ ns: { subscribe: 'none', publish: 'none' } });
    assert.equal(perms.can(anon, 'publish', 'ns'), false);
    assert.equal(perms.can(anon, 'publish', 'ns/a/b/c'), false);
    assert.equal(perms.can(anon, 'publish', 'nsx/a'), true, 'a namespace is a whole level, not a prefix');
    assert.equal(perms.can(anon, 'publish', 'x/ns'), true, 'only the first level names the namespace');
  });

  it('default_namespace applies to namespaces without an entry; an entry overrides only the keys it names', () => {
    const perms = new Permissions({ open: { subscribe: 'anonymous', publish: 'anonymous' }, half: { publish: 'anonymous' } }, { subscribe: 'authenticated', publish: 'none' });
    assert.equal(perms.can(anon, 'subscribe', 'misc/a'), false);
    assert.equal(perms.can(alice, 'subscribe', 'misc/a'), true);
    assert.equal(perms.can(alice, 'publish', 'misc/a'), false);
    assert.equal(perms.can(anon, 'subscribe', 'open/a'), true);
    assert.equal(perms.can(anon, 'publish', 'open/a'), true);
    assert.equal(perms.can(anon, 'publish', 'half/a'), true);
    assert.equal(perms.can(anon, 'subscribe', 'half/a'), false, 'half inherits subscribe: authenticated from default_namespace');
    assert.equal(perms.open, false);
    assert.equal(new Permissions().open, true);
    assert.equal(new Permissions({ a: {} }, {}).open, true);
  });
});

describe('token grants', () => {
  const perms = new Permissions({ chat: { subscribe: 'token', publish: 'token', presence: 'token' }, news: { subscribe: 'token' } });
  const p: Principal = { user: 'u', channels: ['chat/lobby', 'chat/team/+', 'news/#'] };

  it('an exact grant allows that channel only', () => {
    assert.equal(perms.can(p, 'publish', 'chat/lobby'), true);
    assert.equal(perms.can(p, 'presence', 'chat/lobby'), true);
    assert.equal(perms.can(p, 'publish', 'chat/lobby/sub'), false);
    assert.equal(perms.can(p, 'publish', 'chat/other'), false);
    assert.equal(perms.can(p, 'publish', 'chat'), false);
  });

  it('a wildcard grant allows the channels it matches', () => {
    assert.equal(perms.can(p, 'publish', 'chat/team/red'), true);
    assert.equal(perms.can(p, 'publish', 'chat/team'), false, '+ needs a level');
    assert.equal(perms.can(p, 'publish', 'chat/team/red/x'), false);
    assert.equal(perms.can(p, 'subscribe', 'news'), true, 'news/# matches news itself');
    assert.equal(perms.can(p, 'subscribe', 'news/a/b/c'), true);
  });

  it('subscription verdicts: allow when a grant covers the pattern, filter when one overlaps it, deny otherwise', () => {
    const cases: [string, string][] = [
      ['chat/lobby', 'allow'],
      ['chat/team/red', 'allow'],
      ['chat/team/+', 'allow'],
      ['news/#', 'allow'],
      ['news/+/x', 'allow'],
      ['chat/+', 'filter'],
      ['chat/#', 'filter'],
      ['chat/team/#', 'filter'], // chat/team/+ does not match chat/team or chat/team/a/b
      ['chat/+/red', 'filter'],
      ['#', 'filter'],
      ['+/x', 'filter'],
      ['+', 'filter'],
      ['chat/other', 'deny'],
      ['chat/other/+', 'deny'],
      ['chat/lobby/#', 'filter'], // matches chat/lobby itself
      ['chat/lobby/+', 'deny'],
      ['chat', 'deny'],
    ];
    for (const [pattern, want] of cases) assert.equal(perms.subscribe(p, pattern), want, pattern);
  });

  it('without a channels claim every token-ruled pattern is denied, but # is only filtered', () => {
    for (const q of [anon, alice, { user: 'u', channels: [] }]) {
      assert.equal(perms.subscribe(q, 'chat/lobby'), 'deny');
      assert.equal(perms.subscribe(q, 'chat/#'), 'deny');
      assert.equal(perms.subscribe(q, '#'), 'filter');
      assert.equal(perms.canRead(q, 'chat/lobby'), false);
      assert.equal(perms.canRead(q, 'other/x'), true);
    }
  });

  it('a # grant allows everything in token namespaces', () => {
    const all: Principal = { user: 'root', channels: ['#'] };
    assert.equal(perms.subscribe(all, 'chat/#'), 'allow');
    assert.equal(perms.subscribe(all, 'chat/x/y'), 'allow');
    assert.equal(perms.can(all, 'publish', 'chat/anything'), true);
  });
});

describe('user channels', () => {
  const perms = new Permissions({ inbox: { user_channel: true } });

  it('ns/<user>/… belongs to that user for every action', () => {
    for (const action of ACTIONS) {
      assert.equal(perms.can(alice, action, 'inbox/alice'), true, action);
      assert.equal(perms.can(alice, action, 'inbox/alice/x/y'), true, action);
      assert.equal(perms.can(bob, action, 'inbox/alice'), false, action);
      assert.equal(perms.can(anon, action, 'inbox/alice'), false, action);
      assert.equal(perms.can(bob, action, 'inbox/alice/x'), false, action);
      assert.equal(perms.can(anon, action, 'inbox'), true, `${action}: the bare namespace is nobody's`);
    }
  });

  it('verdicts', () => {
    const cases: [Principal, string, string][] = [
      [alice, 'inbox/alice', 'allow'],
      [alice, 'inbox/alice/#', 'allow'],
      [alice, 'inbox/alice/+', 'allow'],
      [bob, 'inbox/alice', 'deny'],
      [bob, 'inbox/alice/#', 'deny'],
      [anon, 'inbox/alice', 'deny'],
      [alice, 'inbox/+', 'filter'],
      [alice, 'inbox/#', 'filter'],
      [alice, 'inbox/+/x', 'filter'],
      [anon, 'inbox/+', 'filter'],
      [alice, 'inbox', 'allow'],
      [alice, '#', 'filter'],
    ];
    for (const [p, pattern, want] of cases) assert.equal(perms.subscribe(p, pattern), want, `${JSON.stringify(p)} ${pattern}`);
    assert.equal(perms.canRead(alice, 'inbox/bob'), false);
    assert.equal(perms.canRead(alice, 'inbox/alice/deep'), true);
  });

  it('combines with the access rule: both must allow', () => {
    const strict = new Permissions({ inbox: { user_channel: true, subscribe: 'token' } });
    const withGrant: Principal = { user: 'alice', channels: ['inbox/#'] };
    assert.equal(strict.subscribe(alice, 'inbox/alice'), 'deny', 'no grant');
    assert.equal(strict.subscribe(withGrant, 'inbox/alice'), 'allow');
    assert.equal(strict.subscribe(withGrant, 'inbox/bob'), 'deny', 'a grant does not open another user’s channel');
    assert.equal(strict.subscribe(withGrant, 'inbox/+'), 'filter');
    assert.equal(strict.canRead(withGrant, 'inbox/bob'), false);
  });
});

describe('deny and filter', () => {
  const perms = new Permissions({ closed: { subscribe: 'none' }, members: { subscribe: 'authenticated' } });

  it('none denies every pattern inside the namespace, wildcards included', () => {
    for (const pattern of ['closed', 'closed/x', 'closed/+', 'closed/#', 'closed/+/y']) {
      assert.equal(perms.subscribe(alice, pattern), 'deny', pattern);
    }
  });

  it('authenticated denies anonymous patterns inside the namespace and allows users', () => {
    assert.equal(perms.subscribe(anon, 'members/#'), 'deny');
    assert.equal(perms.subscribe(alice, 'members/#'), 'allow');
  });

  it('patterns that span namespaces are filtered, never denied, when any rule is closed; allowed when all are open', () => {
    for (const pattern of ['#', '+', '+/x', '+/#', '+/+/z']) {
      assert.equal(perms.subscribe(anon, pattern), 'filter', pattern);
      assert.equal(new Permissions().subscribe(anon, pattern), 'allow', `${pattern} on an open server`);
    }
    assert.equal(perms.canRead(anon, 'closed/x'), false);
    assert.equal(perms.canRead(anon, 'members/x'), false);
    assert.equal(perms.canRead(alice, 'members/x'), true);
    assert.equal(perms.canRead(anon, 'public/x'), true);
  });
});

describe('invalid configuration', () => {
  const bad: [string, () => unknown, RegExp][] = [
    ['unknown key', () => new Permissions({ chat: { subscibe: 'none' } }), /namespaces\.chat: unknown key "subscibe"/],
    ['bad access value', () => new Permissions({ chat: { publish: 'everyone' } }), /namespaces\.chat\.publish: expected one of/],
    ['non-string access value', () => new Permissions({ chat: { subscribe: true } }), /namespaces\.chat\.subscribe/],
    ['user_channel not a boolean', () => new Permissions({ chat: { user_channel: 'yes' } }), /user_channel: expected true or false/],
    ['namespace with /', () => new Permissions({ 'a/b': {} }), /"a\/b" is not a namespace/],
    ['namespace +', () => new Permissions({ '+': {} }), /not a namespace/],
    ['namespace #', () => new Permissions({ '#': {} }), /not a namespace/],
    ['empty namespace', () => new Permissions({ '': {} }), /not a namespace/],
    ['rule not an object', () => new Permissions({ chat: 'none' as unknown as NamespaceRuleInput }), /namespaces\.chat: expected an object/],
    ['rule null', () => new Permissions({ chat: null as unknown as NamespaceRuleInput }), /expected an object/],
    ['rule array', () => new Permissions({ chat: [] as unknown as NamespaceRuleInput }), /expected an object/],
    ['default_namespace unknown key', () => new Permissions({}, { publsh: 'none' }), /default_namespace: unknown key "publsh"/],
    ['default_namespace bad value', () => new Permissions({}, { presence: 'nobody' }), /default_namespace\.presence/],
  ];
  for (const [name, fn, re] of bad) {
    it(`throws ConfigError: ${name}`, () => {
      assert.throws(fn, (err: unknown) => err instanceof ConfigError && re.test(err.message), re.source);
    });
  }

  it('accepts every valid value and the durable-delivery keys', () => {
    for (const v of ACCESS) assert.doesNotThrow(() => new Permissions({ ns: { subscribe: v, publish: v, presence: v, history: v, user_channel: true } }));
    assert.doesNotThrow(() => new Permissions({ ns: { history_size: 100, history_ttl: '1h' } }));
    const rule = parseRule({ publish: 'none' }, 'x');
    assert.deepEqual(rule, { subscribe: 'anonymous', publish: 'none', presence: 'anonymous', history: 'anonymous', user_channel: false, history_size: 0, history_ttl: 0 });
    assert.deepEqual(parseRule({ history_size: 100, history_ttl: '1h' }, 'x').history_ttl, 3_600_000);
    assert.throws(() => parseRule({ history_ttl: '1h' }, 'x'), /needs history_size/);
    assert.throws(() => parseRule({ history_size: -1 }, 'x'), /history_size/);
  });
});

// ---- randomized -------------------------------------------------------------------------------

/** A small deterministic PRNG (mulberry32), so that a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = ['a', 'b'];
/** Every channel of 1..5 levels over a, b and c: c never appears in a pattern, so it stands for "any other name". */
const CHANNELS: string[] = (() => {
  const out: string[] = [];
  let layer = [''];
  for (let depth = 1; depth <= 5; depth++) {
    layer = layer.flatMap((prefix) => ['a', 'b', 'c'].map((l) => (prefix ? `${prefix}/${l}` : l)));
    out.push(...layer);
  }
  return out;
})();

function randomPattern(rand: () => number): string {
  const depth = 1 + Math.floor(rand() * 4);
  const levels: string[] = [];
  for (let i = 0; i < depth; i++) {
    const r = rand();
    if (i === depth - 1 && r < 0.25) levels.push('#');
    else if (r < 0.5) levels.push('+');
    else levels.push(LETTERS[Math.floor(rand() * LETTERS.length)]!);
  }
  const p = levels.join('/');
  assert.equal(patternError(p), undefined, p);
  return p;
}

describe('covers and overlaps (randomized against brute force)', () => {
  const seed = Number(process.env.HUBBUB_TEST_SEED ?? Date.now() % 1_000_000);

  it(`covers(a, b) holds exactly when every channel matching b matches a (seed ${seed})`, () => {
    const rand = prng(seed);
    let coveredPairs = 0;
    // A missed cover is no leak (the subscription is filtered instead of allowed). The one known case:
    // `+/#` does cover `#` (a channel has at least one level) but covers() says no.
    const missed = new Set<string>();
    for (let n = 0; n < 3000; n++) {
      const a = randomPattern(rand);
      const b = randomPattern(rand);
      const byB = CHANNELS.filter((c) => matchPattern(b, c));
      const escaping = byB.find((c) => !matchPattern(a, c));
      if (covers(a, b)) {
        coveredPairs++;
        assert.equal(escaping, undefined, `covers(${a}, ${b}) but ${escaping} matches ${b} and not ${a} (seed ${seed})`);
      } else if (escaping === undefined) {
        missed.add(`${a} ⊇ ${b}`);
      }
    }
    assert.ok(coveredPairs > 50, `the generator produced too few covering pairs (${coveredPairs}) to mean much`);
    assert.deepEqual([...missed].filter((m) => m !== '+/# ⊇ #'), [], `covers() misses these covers (seed ${seed})`);
  });

  it(`overlaps(a, b) agrees with a search for a channel matching both (seed ${seed})`, () => {
    const rand = prng(seed + 1);
    let overlapping = 0;
    for (let n = 0; n < 3000; n++) {
      const a = randomPattern(rand);
      const b = randomPattern(rand);
      const witness = CHANNELS.find((c) => matchPattern(a, c) && matchPattern(b, c));
      assert.equal(overlaps(a, b), witness !== undefined, `overlaps(${a}, ${b}); witness ${witness} (seed ${seed})`);
      assert.equal(overlaps(b, a), overlaps(a, b), `overlaps is symmetric: ${a} ${b}`);
      if (witness) overlapping++;
    }
    assert.ok(overlapping > 300 && overlapping < 2900, `degenerate sample: ${overlapping} overlapping pairs`);
  });

  it('fixed cases', () => {
    assert.equal(covers('a/#', 'a'), true);
    assert.equal(covers('#', '+/x/#'), true);
    assert.equal(covers('a/+', 'a/#'), false);
    assert.equal(covers('a/b', 'a/b/#'), false);
    assert.equal(overlaps('a/b/#', 'a'), false);
    assert.equal(overlaps('+/#', 'a'), true);
    assert.equal(overlaps('a/+', 'a'), false);
  });

  it(`subscription verdicts never let a pattern reach a channel the principal may not read (seed ${seed})`, () => {
    const rand = prng(seed + 2);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    let allows = 0;
    let filters = 0;
    for (let round = 0; round < 60; round++) {
      const rule = (): NamespaceRuleInput => ({ subscribe: pick(ACCESS), user_channel: rand() < 0.4 });
      const perms = new Permissions({ a: rule(), b: rule() }, rule());
      const principals: Principal[] = [
        {},
        { user: 'a' },
        { user: 'b', channels: [randomPattern(rand), randomPattern(rand)] },
        { user: 'c', channels: [randomPattern(rand)] },
      ];
      for (let n = 0; n < 60; n++) {
        const pattern = randomPattern(rand);
        const matching = CHANNELS.filter((c) => matchPattern(pattern, c));
        for (const p of principals) {
          const verdict = perms.subscribe(p, pattern);
          const where = `${JSON.stringify(p)} on ${pattern} with rules a=${JSON.stringify(perms.rule('a'))} b=${JSON.stringify(perms.rule('b'))} default=${JSON.stringify(perms.defaultRule)} (seed ${seed})`;
          if (verdict === 'allow') {
            allows++;
            const leak = matching.find((c) => !perms.canRead(p, c));
            assert.equal(leak, undefined, `allow (unfiltered) would deliver ${leak}, which the principal may not read: ${where}`);
          } else if (verdict === 'deny') {
            const lost = matching.find((c) => perms.canRead(p, c));
            assert.equal(lost, undefined, `deny although ${lost} is readable: ${where}`);
          } else {
            filters++;
          }
        }
      }
    }
    assert.ok(allows > 100 && filters > 100, `degenerate sample: ${allows} allow, ${filters} filter`);
  });
});
