/** The Hubbub client SDK (`hubbub/client`): browsers and Node. */
export { Hubbub, HubbubError, ClientCloseCode } from './hubbub.js';
export type { HubbubClientOptions, HubbubEvents, Subscription, MessageHandler, ConnectionState, DisconnectInfo, Clock, SocketLike, SocketFactory } from './hubbub.js';
export { backoffCap, backoffDelay, type BackoffOptions } from './backoff.js';
export * from '../protocol/frames.js';
export { CloseCode, ErrorCode, isTerminalCloseCode } from '../protocol/errors.js';
export { matchPattern, patternError, channelNameError } from '../protocol/channel.js';
