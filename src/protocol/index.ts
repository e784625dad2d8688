/** The protocol module: frame types, codecs, channel rules, error and close codes. Shared with the client SDK. */
export * from './frames.js';
export * from './errors.js';
export * from './channel.js';
export * from './json-codec.js';
export * from './payload.js';
export * from './base64.js';
export * from './crc32.js';
/** The Protocol Buffers encoding (subprotocol hubbub.v1.protobuf). */
export * as protobuf from './proto-codec.js';
/** The generated message types of proto/hubbub.proto. */
export * as pb from './gen/hubbub_pb.js';
