/**
 * A message payload: a JSON value or raw bytes. One publication reaches clients of both encodings,
 * so a payload keeps whichever forms have been asked for, computed once and shared by every
 * recipient: the JSON text for JSON frames (bytes become a base64 string there) and the bytes for
 * protobuf frames (a JSON value becomes its UTF-8 text there).
 */
import { toBase64 } from './base64.js';
import type { Json } from './frames.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
interface BufferLike {
  from(s: string, enc: 'utf8'): Uint8Array;
  byteLength(s: string, enc: 'utf8'): number;
}
const NodeBuffer = (globalThis as { Buffer?: BufferLike }).Buffer;
const utf8 = (s: string): Uint8Array => (NodeBuffer ? NodeBuffer.from(s, 'utf8') : encoder.encode(s));

export class Payload {
  private constructor(
    /** Raw bytes (true) or a JSON value (false). */
    readonly binary: boolean,
    private value: Json | undefined,
    private text: string | undefined,
    private bytes: Uint8Array | undefined,
  ) {}

  /** A JSON value. */
  static json(value: Json): Payload {
    return new Payload(false, value, undefined, undefined);
  }

  /** JSON text the caller has already checked (for example by parsing it). */
  static jsonText(text: string, value?: Json): Payload {
    return new Payload(false, value, text, undefined);
  }

  /** UTF-8 JSON text, as a protobuf client sends it; the caller has checked it parses. */
  static jsonBytes(bytes: Uint8Array, value?: Json): Payload {
    return new Payload(false, value, undefined, bytes);
  }

  /** Raw bytes. */
  static bytes(bytes: Uint8Array): Payload {
    return new Payload(true, undefined, undefined, bytes);
  }

  /** What `data` holds in a JSON frame: JSON text of the value, or a quoted base64 string. */
  jsonData(): string {
    if (this.text === undefined) {
      if (this.binary) this.text = `"${toBase64(this.bytes!)}"`;
      else if (this.value !== undefined) this.text = JSON.stringify(this.value);
      else this.text = decoder.decode(this.bytes!);
    }
    return this.text;
  }

  /** What `data` holds in a protobuf frame: the bytes, or the UTF-8 JSON text (flag `json`). */
  protoData(): Uint8Array {
    if (this.bytes === undefined) this.bytes = utf8(this.jsonData());
    return this.bytes;
  }

  /** The payload as a JSON value: the value itself, or the base64 string of the bytes. */
  toJson(): Json {
    if (this.binary) return toBase64(this.bytes!);
    if (this.value === undefined) this.value = JSON.parse(this.jsonData()) as Json;
    return this.value;
  }

  /** JSON.stringify gives the JSON form (see toJson). */
  toJSON(): Json {
    return this.toJson();
  }

  /** The raw bytes of a binary payload. */
  raw(): Uint8Array | undefined {
    return this.binary ? this.bytes : undefined;
  }

  /** Size in bytes: of the raw bytes, or of the UTF-8 JSON text. */
  get size(): number {
    if (this.bytes !== undefined) return this.bytes.length;
    const text = this.jsonData();
    return NodeBuffer ? NodeBuffer.byteLength(text, 'utf8') : utf8(text).length;
  }
}
