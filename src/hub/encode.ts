/**
 * Encodings of the frames the hub sends to many connections. A Push is one such frame: it is
 * encoded at most once per wire encoding actually used by its recipients (JSON text, protobuf
 * bytes), and those bytes are shared by all of them. JSON frames are built by concatenation so that
 * a payload is stringified once, whatever the number of patterns and recipients.
 */
import type { RelayedChunk } from '../engine/broker.js';
import type { ClientInfo, ServerFrame, Sender } from '../protocol/frames.js';
import type { Payload } from '../protocol/payload.js';
import { encodeMessageFrame, encodeServerFrame as encodeProto, type MessageExtras } from '../protocol/proto-codec.js';
import { Outgoing } from '../transport/outgoing.js';
import type { Client } from './client.js';

export class Push {
  private json: Outgoing | undefined;
  private proto: Outgoing | undefined;

  constructor(
    private readonly toJson: () => string,
    private readonly toProto: () => Uint8Array,
  ) {}

  /** A frame without a payload. */
  static of(frame: ServerFrame): Push {
    return new Push(
      () => JSON.stringify(frame),
      () => encodeProto(frame),
    );
  }

  /** A frame whose `data` is `payload`; `bytesOnly` for chunks, whose JSON data is base64 without an `encoding` field. */
  static withPayload(frame: { type: ServerFrame['type'] } & Record<string, unknown>, payload: Payload, bytesOnly = false): Push {
    return new Push(
      () => jsonWithData(JSON.stringify(frame), payload, bytesOnly),
      () => encodeProto(frame as unknown as ServerFrame, { payload }),
    );
  }

  /** The frame in the encoding this client speaks. */
  for(client: Client): Outgoing {
    return client.protobuf ? (this.proto ??= new Outgoing(this.toProto())) : (this.json ??= new Outgoing(this.toJson()));
  }
}

/** `{"type":…,…}` of a frame without data, with `"data"` (and `"encoding":"base64"` for bytes) put right after the type. */
function jsonWithData(frameText: string, payload: Payload, bytesOnly: boolean): string {
  const encoding = payload.binary && !bytesOnly ? ',"encoding":"base64"' : '';
  // `type` is the first key and its value holds no comma: the first comma (or the closing brace) ends it.
  let i = frameText.indexOf(',');
  if (i < 0) i = frameText.length - 1;
  return `${frameText.slice(0, i)},"data":${payload.jsonData()}${encoding}${frameText.slice(i)}`;
}

/**
 * The frames of one publication, one per matching pattern (only `pattern` differs). The JSON text
 * around the pattern is built once for all patterns.
 */
export class PublicationPushes {
  private head: string | undefined;
  private tail: string | undefined;

  constructor(
    private readonly channel: string,
    private readonly payload: Payload,
    private readonly kind: string,
    private readonly from: Sender,
    private readonly ts: number,
    /** Channels with history: the publication's place in the stream (and whether it is sent as the retained message). */
    private readonly stream?: MessageExtras,
  ) {}

  forPattern(pattern: string): Push {
    return new Push(
      () => {
        this.head ??= `{"type":"message","channel":${JSON.stringify(this.channel)},"pattern":`;
        this.tail ??= `,"data":${this.payload.jsonData()}${this.payload.binary ? ',"encoding":"base64"' : ''},"kind":${JSON.stringify(this.kind)},"from":${JSON.stringify(this.from)},"ts":${this.ts}${streamFields(this.stream)}}`;
        return this.head + JSON.stringify(pattern) + this.tail;
      },
      () => encodeMessageFrame(this.channel, pattern, this.payload, this.kind, this.from, this.ts, this.stream),
    );
  }
}

function streamFields(stream: MessageExtras | undefined): string {
  if (!stream) return '';
  let s = '';
  if (stream.offset !== undefined) s += `,"offset":${stream.offset}`;
  if (stream.epoch !== undefined) s += `,"epoch":${JSON.stringify(stream.epoch)}`;
  if (stream.retained) s += ',"retained":true';
  return s;
}

export function directPush(type: 'direct' | 'broadcast', payload: Payload, kind: string, from: Sender, ts: number, stored?: { id: string; stored?: boolean }): Push {
  const frame: { type: 'direct' | 'broadcast' } & Record<string, unknown> = { type, kind, from, ts };
  if (stored) {
    frame.id = stored.id;
    if (stored.stored) frame.stored = true;
  }
  return Push.withPayload(frame, payload);
}

export function presencePush(type: 'join' | 'leave', channel: string, client: ClientInfo): Push {
  return Push.of({ type, channel, client });
}

/** A relayed transfer chunk; `pattern` is set for channel transfers. */
export function chunkPush(chunk: RelayedChunk, channel: string | undefined, pattern: string | undefined, payload: Payload): Push {
  const frame: Record<string, unknown> = { type: 'chunk', ...chunk };
  if (channel !== undefined) frame.channel = channel;
  if (pattern !== undefined) frame.pattern = pattern;
  return Push.withPayload(frame as { type: 'chunk' }, payload, true);
}
