/** The protocol module: frame types, codecs, channel rules, error and close codes. Shared with the client SDK. */
export * from './frames.js';
export * from './errors.js';
export * from './channel.js';
export * from './json-codec.js';
