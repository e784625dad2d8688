import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TopicTrie } from '../src/hub/topic-trie.js';

function matches(trie: TopicTrie<string, true>, channel: string): string[] {
  const out: string[] = [];
  trie.match(channel, (node) => out.push(node.pattern));
  return out;
}

function trieOf(...patterns: string[]): TopicTrie<string, true> {
  const t = new TopicTrie<string, true>();
  for (const p of patterns) t.add(p, `sub:${p}`, true);
  return t;
}

describe('topic trie', () => {
  it('matches exact names only to themselves', () => {
    const t = trieOf('a/b', 'a/c', 'a', 'a/b/c');
    assert.deepEqual(matches(t, 'a/b'), ['a/b']);
    assert.deepEqual(matches(t, 'a'), ['a']);
    assert.deepEqual(matches(t, 'a/b/c'), ['a/b/c']);
    assert.deepEqual(matches(t, 'b'), []);
    assert.deepEqual(matches(t, 'a/b/c/d'), []);
  });

  it('+ matches exactly one level', () => {
    const t = trieOf('a/+', '+/b', '+/+', 'a/+/c');
    assert.deepEqual(matches(t, 'a/b').sort(), ['+/+', '+/b', 'a/+']);
    assert.deepEqual(matches(t, 'a'), []);
    assert.deepEqual(matches(t, 'a/x/c'), ['a/+/c']);
    assert.deepEqual(matches(t, 'a/x/y'), []);
    assert.deepEqual(matches(t, 'z/q'), ['+/+']);
  });

  it('# matches any number of levels, including none (parent match)', () => {
    const t = trieOf('a/#', '#', 'a/b/#', '+/#');
    assert.deepEqual(matches(t, 'a').sort(), ['#', '+/#', 'a/#']);
    assert.deepEqual(matches(t, 'a/b').sort(), ['#', '+/#', 'a/#', 'a/b/#']);
    assert.deepEqual(matches(t, 'a/b/c/d').sort(), ['#', '+/#', 'a/#', 'a/b/#']);
    assert.deepEqual(matches(t, 'q').sort(), ['#', '+/#']);
  });

  it('orders matches from the most specific: exact, then +, then #', () => {
    const t = trieOf('#', 'a/#', 'a/+', 'a/b');
    assert.deepEqual(matches(t, 'a/b'), ['a/b', 'a/+', 'a/#', '#']);
  });

  it('counts and removes subscriptions, pruning empty nodes', () => {
    const t = new TopicTrie<string, true>();
    assert.equal(t.add('a/b', 'x', true), true);
    assert.equal(t.add('a/b', 'x', true), false, 'same key twice is not new');
    t.add('a/b', 'y', true);
    t.add('a/+', 'x', true);
    assert.equal(t.subscriptionCount, 3);
    assert.equal(t.patternCount, 2);
    assert.equal(t.remove('a/b', 'x'), true);
    assert.equal(t.remove('a/b', 'x'), false);
    assert.equal(t.remove('nothing/here', 'x'), false);
    assert.deepEqual([...t.find('a/b')!.subs.keys()], ['y']);
    t.remove('a/b', 'y');
    t.remove('a/+', 'x');
    assert.equal(t.subscriptionCount, 0);
    assert.equal(t.patternCount, 0);
    assert.equal(t.find('a'), undefined, 'empty branches are pruned');
    assert.deepEqual([...t.nodes()], []);
  });

  it('keeps a parent that still has subscribers when a child goes', () => {
    const t = trieOf('a', 'a/b');
    t.remove('a/b', 'sub:a/b');
    assert.deepEqual(matches(t, 'a'), ['a']);
    assert.equal(t.find('a/b'), undefined);
  });

  it('agrees with a brute-force matcher on random patterns and channels', () => {
    const levels = ['a', 'b', 'c'];
    const rnd = (n: number) => Math.floor(Math.random() * n);
    const patterns = new Set<string>();
    while (patterns.size < 200) {
      const depth = 1 + rnd(4);
      const parts: string[] = [];
      for (let i = 0; i < depth; i++) {
        const r = rnd(5);
        if (r === 4 && i === depth - 1) parts.push('#');
        else parts.push(r === 3 ? '+' : levels[rnd(3)]!);
      }
      patterns.add(parts.join('/'));
    }
    const t = trieOf(...patterns);
    const brute = (p: string, c: string): boolean => {
      const pl = p.split('/');
      const cl = c.split('/');
      for (let i = 0; i < pl.length; i++) {
        if (pl[i] === '#') return true;
        if (i >= cl.length) return false;
        if (pl[i] !== '+' && pl[i] !== cl[i]) return false;
      }
      return pl.length === cl.length;
    };
    for (let k = 0; k < 300; k++) {
      const channel = Array.from({ length: 1 + rnd(4) }, () => levels[rnd(3)]).join('/');
      const expected = [...patterns].filter((p) => brute(p, channel)).sort();
      assert.deepEqual(matches(t, channel).sort(), expected, channel);
    }
  });
});
