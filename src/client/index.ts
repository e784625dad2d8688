/** The Hubbub client SDK (`hubbub/client`): browsers and Node. */
export { Hubbub, HubbubError, ClientCloseCode } from './hubbub.js';
export type { HubbubClientOptions, HubbubEvents, Subscription, MessageHandler, ConnectionState, DisconnectInfo, Clock, SocketLike, SocketFactory, Encoding, TransferOptions, TransferResult, SubscribedInfo, PublishResult, HistoryResult } from './hubbub.js';
export { backoffCap, backoffDelay, type BackoffOptions } from './backoff.js';
export * from '../protocol/frames.js';
export { CloseCode, ErrorCode, isTerminalCloseCode } from '../protocol/errors.js';
export { matchPattern, patternError, channelNameError } from '../protocol/channel.js';
export { crc32 } from '../protocol/crc32.js';
export { toBase64, fromBase64 } from '../protocol/base64.js';
