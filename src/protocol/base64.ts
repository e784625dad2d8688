/**
 * Base64 (RFC 4648 §4, with padding) for byte payloads in the JSON encoding. Runs in browsers as
 * well as Node (the SDK shares it): Node's Buffer when present, atob/btoa otherwise.
 */

interface BufferLike {
  from(data: ArrayBufferLike, offset: number, length: number): { toString(enc: 'base64'): string };
  from(data: string, enc: 'base64'): Uint8Array;
}
const NodeBuffer = (globalThis as { Buffer?: BufferLike }).Buffer;

export function toBase64(bytes: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Decode strict base64; undefined when `text` is not (wrong length, characters or padding). */
export function fromBase64(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0) return undefined;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const expected = (text.length / 4) * 3 - pad;
  if (NodeBuffer) {
    // Buffer skips characters outside the alphabet instead of failing: a short result betrays them.
    const bytes = NodeBuffer.from(text, 'base64');
    return bytes.length === expected && !/[^A-Za-z0-9+/=]|=[^=]/.test(text) ? bytes : undefined;
  }
  try {
    const s = atob(text);
    if (s.length !== expected) return undefined;
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}
