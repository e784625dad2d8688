/**
 * Subscriptions indexed by pattern in a trie of channel levels, so that finding the subscribers of
 * a publication costs a walk down the levels of its channel rather than a scan of every pattern.
 *
 * `+` and `#` are children of their own at each level. A node exists only while it, or a node
 * below it, holds subscribers.
 */
export class TrieNode<K, V> {
  readonly children = new Map<string, TrieNode<K, V>>();
  plus: TrieNode<K, V> | undefined;
  hash: TrieNode<K, V> | undefined;
  /** Subscribers of exactly this pattern. */
  readonly subs = new Map<K, V>();

  constructor(
    /** The full pattern this node stands for. */
    readonly pattern: string,
    readonly parent: TrieNode<K, V> | undefined,
    readonly level: string,
  ) {}

  isEmpty(): boolean {
    return this.subs.size === 0 && this.children.size === 0 && !this.plus && !this.hash;
  }
}

export class TopicTrie<K, V> {
  private readonly root = new TrieNode<K, V>('', undefined, '');
  private patterns = 0;
  private subscriptions = 0;

  /** Number of distinct patterns with at least one subscriber. */
  get patternCount(): number {
    return this.patterns;
  }

  /** Number of (pattern, subscriber) pairs. */
  get subscriptionCount(): number {
    return this.subscriptions;
  }

  /** Add or replace `key`'s subscription to `pattern`. Returns true when it is new. */
  add(pattern: string, key: K, value: V): boolean {
    let node = this.root;
    for (const level of pattern.split('/')) {
      let next = level === '+' ? node.plus : level === '#' ? node.hash : node.children.get(level);
      if (!next) {
        next = new TrieNode(node === this.root ? level : `${node.pattern}/${level}`, node, level);
        if (level === '+') node.plus = next;
        else if (level === '#') node.hash = next;
        else node.children.set(level, next);
      }
      node = next;
    }
    const isNew = !node.subs.has(key);
    if (isNew) {
      if (node.subs.size === 0) this.patterns++;
      this.subscriptions++;
    }
    node.subs.set(key, value);
    return isNew;
  }

  /** Remove `key`'s subscription to `pattern`. Returns true when there was one. */
  remove(pattern: string, key: K): boolean {
    const node = this.find(pattern);
    if (!node || !node.subs.delete(key)) return false;
    this.subscriptions--;
    if (node.subs.size === 0) this.patterns--;
    this.prune(node);
    return true;
  }

  /** The node of exactly this pattern, if anyone subscribes to it or below it. */
  find(pattern: string): TrieNode<K, V> | undefined {
    let node: TrieNode<K, V> | undefined = this.root;
    for (const level of pattern.split('/')) {
      node = level === '+' ? node.plus : level === '#' ? node.hash : node.children.get(level);
      if (!node) return undefined;
    }
    return node;
  }

  /**
   * Call `visit` for every node with subscribers whose pattern matches `channel`. Order: at each
   * level the exact child first, then `+`, then `#`, so the most specific patterns come first.
   */
  match(channel: string, visit: (node: TrieNode<K, V>) => void): void {
    walk(this.root, channel.split('/'), 0, visit);
  }

  /** Every node with subscribers, depth first. */
  *nodes(): Generator<TrieNode<K, V>> {
    const stack: TrieNode<K, V>[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.subs.size > 0) yield node;
      for (const child of node.children.values()) stack.push(child);
      if (node.plus) stack.push(node.plus);
      if (node.hash) stack.push(node.hash);
    }
  }

  private prune(node: TrieNode<K, V>): void {
    let n: TrieNode<K, V> = node;
    while (n.parent && n.isEmpty()) {
      const parent: TrieNode<K, V> = n.parent;
      if (parent.plus === n) parent.plus = undefined;
      else if (parent.hash === n) parent.hash = undefined;
      else parent.children.delete(n.level);
      n = parent;
    }
  }
}

function walk<K, V>(node: TrieNode<K, V>, levels: string[], i: number, visit: (node: TrieNode<K, V>) => void): void {
  if (i === levels.length) {
    if (node.subs.size > 0) visit(node);
    // `a/#` also matches `a` itself.
    if (node.hash && node.hash.subs.size > 0) visit(node.hash);
    return;
  }
  const exact = node.children.get(levels[i]!);
  if (exact) walk(exact, levels, i + 1, visit);
  if (node.plus) walk(node.plus, levels, i + 1, visit);
  if (node.hash && node.hash.subs.size > 0) visit(node.hash);
}
