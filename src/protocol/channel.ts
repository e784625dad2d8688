/**
 * Channel names and subscription patterns.
 *
 * A channel is 1 to 255 bytes of UTF-8 made of `/`-separated levels, none empty. A pattern may also
 * use MQTT wildcards as whole levels: `+` matches exactly one level, `#` any number of levels
 * (including none, so `a/#` matches `a`) and must be the last level.
 */

export const MAX_CHANNEL_BYTES = 255;

/** Why a name is refused, or undefined when it is a valid channel name (no wildcards). */
export function channelNameError(name: unknown, maxBytes = MAX_CHANNEL_BYTES): string | undefined {
  const common = commonError(name, maxBytes);
  if (common) return common;
  const s = name as string;
  if (s.includes('+') || s.includes('#')) return 'a channel name cannot contain the wildcards + or #';
  return undefined;
}

/** Why a pattern is refused, or undefined when it is a valid subscription pattern. */
export function patternError(pattern: unknown, maxBytes = MAX_CHANNEL_BYTES): string | undefined {
  const common = commonError(pattern, maxBytes);
  if (common) return common;
  const levels = (pattern as string).split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level === '#') {
      if (i !== levels.length - 1) return '# must be the last level of a pattern';
    } else if (level !== '+' && (level.includes('+') || level.includes('#'))) {
      return 'wildcards + and # must stand alone as a whole level';
    }
  }
  return undefined;
}

/** True when the pattern contains a wildcard level. Assumes a valid pattern. */
export function isWildcard(pattern: string): boolean {
  return pattern.includes('+') || pattern.includes('#');
}

function commonError(value: unknown, maxBytes: number): string | undefined {
  if (typeof value !== 'string') return 'channel must be a string';
  if (value.length === 0) return 'channel must not be empty';
  // Cheap bound first: a UTF-16 length above maxBytes is always above it in UTF-8 too.
  if (value.length > maxBytes || utf8Length(value) > maxBytes) {
    return `channel must be at most ${maxBytes} bytes of UTF-8`;
  }
  if (value.startsWith('/') || value.endsWith('/') || value.includes('//')) {
    return 'channel levels must not be empty (no leading, trailing or doubled /)';
  }
  // Lone surrogates would not survive a UTF-8 round trip, and control characters only cause grief in logs.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return 'channel must not contain control characters';
  if (!value.isWellFormed()) return 'channel must be well-formed Unicode';
  return undefined;
}

/** UTF-8 byte length without Buffer, so this module also runs in browsers. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** True when `channel` (a valid name) matches `pattern` (a valid pattern). For clients; the server uses a trie. */
export function matchPattern(pattern: string, channel: string): boolean {
  if (pattern === channel) return true;
  const p = pattern.split('/');
  const c = channel.split('/');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '#') return true;
    if (i >= c.length) return false;
    if (p[i] !== '+' && p[i] !== c[i]) return false;
  }
  return p.length === c.length;
}
