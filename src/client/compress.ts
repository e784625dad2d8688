/**
 * Per-chunk compression for transfers, in Node (zlib) and in browsers (CompressionStream: gzip and
 * deflate; brotli is not offered there). Decompression is bounded: a chunk that would inflate past
 * `maxBytes` fails instead of filling memory.
 */
import type { Compression } from '../protocol/frames.js';

type Zlib = typeof import('node:zlib');
let zlib: Promise<Zlib | undefined> | undefined;

function nodeZlib(): Promise<Zlib | undefined> {
  const isNode = Boolean((globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node);
  zlib ??= isNode ? import('node:zlib') : Promise.resolve(undefined);
  return zlib;
}

export class CompressionError extends Error {
  override name = 'CompressionError';
}

export async function compress(method: Compression, data: Uint8Array): Promise<Uint8Array> {
  const z = await nodeZlib();
  if (z) {
    if (method === 'gzip') return z.gzipSync(data);
    if (method === 'deflate') return z.deflateSync(data);
    return z.brotliCompressSync(data, { params: { [z.constants.BROTLI_PARAM_QUALITY]: 5 } });
  }
  if (method === 'brotli') throw new CompressionError('brotli compression is not available in this environment (browsers offer gzip and deflate)');
  return readAll(new Blob([data as BlobPart]).stream().pipeThrough(new CompressionStream(method)), Infinity);
}

export async function decompress(method: Compression, data: Uint8Array, maxBytes: number): Promise<Uint8Array> {
  const z = await nodeZlib();
  if (z) {
    const opts = { maxOutputLength: Math.max(1, maxBytes) };
    try {
      if (method === 'gzip') return z.gunzipSync(data, opts);
      if (method === 'deflate') return z.inflateSync(data, opts);
      return z.brotliDecompressSync(data, opts);
    } catch (err) {
      throw new CompressionError(`cannot ${method}-decompress a chunk: ${(err as Error).message}`);
    }
  }
  if (method === 'brotli') throw new CompressionError('brotli decompression is not available in this environment');
  return readAll(new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream(method)), maxBytes);
}

async function readAll(stream: ReadableStream<Uint8Array>, maxBytes: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      if (n > maxBytes) {
        await reader.cancel();
        throw new CompressionError(`a chunk inflates to more than ${maxBytes} bytes`);
      }
      parts.push(value);
    }
  } catch (err) {
    throw err instanceof CompressionError ? err : new CompressionError(`cannot decompress a chunk: ${(err as Error).message}`);
  }
  return concat(parts, n);
}

export function concat(parts: Uint8Array[], total = parts.reduce((n, p) => n + p.length, 0)): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
