/**
 * The wire encoding of one connection, chosen by WebSocket subprotocol at the upgrade: parsing what
 * the client sends and encoding what the session answers (pushes to many go through encode.ts).
 */
import { ErrorCode } from '../protocol/errors.js';
import type { ClientFrameType, ServerFrame } from '../protocol/frames.js';
import { parseClientFrame, type ParseResult } from '../protocol/json-codec.js';
import { decodeClientFrame, encodeServerFrame, PROTOBUF_SUBPROTOCOL } from '../protocol/proto-codec.js';

export const JSON_SUBPROTOCOL = 'hubbub.v1.json';
/** In order of preference when a client offers both. */
export const SUBPROTOCOLS = [JSON_SUBPROTOCOL, PROTOBUF_SUBPROTOCOL] as const;

export interface SessionCodec {
  readonly name: 'json' | 'protobuf';
  parse(data: Buffer, binary: boolean): ParseResult;
  /** Encode a frame for this connection; replies name the request type they answer. */
  encode(frame: ServerFrame, request?: ClientFrameType): string | Uint8Array;
}

export const jsonCodec: SessionCodec = {
  name: 'json',
  parse(data, binary) {
    if (binary) return { ok: false, code: ErrorCode.BadRequest, message: `binary frames are not part of the JSON encoding; send text frames (or connect with subprotocol ${PROTOBUF_SUBPROTOCOL})` };
    return parseClientFrame(data.toString('utf8'));
  },
  encode: (frame) => JSON.stringify(frame),
};

export const protobufCodec: SessionCodec = {
  name: 'protobuf',
  parse(data, binary) {
    if (!binary) return { ok: false, code: ErrorCode.BadRequest, message: `text frames are not part of the protobuf encoding (${PROTOBUF_SUBPROTOCOL}); send one hubbub.v1.Frame per binary frame` };
    return decodeClientFrame(data);
  },
  encode: (frame, request) => encodeServerFrame(frame, { request }),
};

/** The codec of a negotiated subprotocol ('' when the client asked for none: JSON). */
export function codecFor(subprotocol: string): SessionCodec {
  return subprotocol === PROTOBUF_SUBPROTOCOL ? protobufCodec : jsonCodec;
}
