/**
 * The error catalogue and the close-code catalogue of the Hubbub protocol.
 *
 * Both are public contracts: codes are never renamed or renumbered, only added.
 * docs/protocol.md lists them; a test checks that every code here is documented there.
 */

/** Stable error codes carried by `error` frames and by HTTP API error bodies. */
export const ErrorCode = {
  /** The frame is not valid JSON, not an object, or a field is missing or of the wrong type. */
  BadRequest: 'bad_request',
  /** The frame's `type` is not one the server knows. */
  UnknownType: 'unknown_type',
  /** A channel name or pattern breaks the naming rules (or a pattern was given where a name is needed). */
  InvalidChannel: 'invalid_channel',
  /** The thing named does not exist: a subscription to remove, an HTTP route. (Messages to absent clients or users are not errors: they report `delivered: 0`.) */
  NotFound: 'not_found',
  /** The client is identified but not allowed to do this. */
  Forbidden: 'forbidden',
  /** The request needs credentials that are missing or wrong (HTTP API key, token). */
  Unauthorized: 'unauthorized',
  /** A message or request body is larger than the configured limit. */
  TooLarge: 'too_large',
  /** The client is sending faster than its limits allow. */
  RateLimited: 'rate_limited',
  /** A limit on connections was reached. */
  TooManyConnections: 'too_many_connections',
  /** The server is shutting down and takes no new work. */
  Unavailable: 'unavailable',
  /** A fault on the server's side; the request may be retried. */
  Internal: 'internal',
  /** A transfer ended without its last chunk: a chunk was refused (CRC-32, order, size), the sender cancelled it or disconnected. */
  TransferAborted: 'transfer_aborted',
  /** Storing a direct message would exceed the recipient's limits (max_stored_messages, max_stored_bytes). */
  QuotaExceeded: 'quota_exceeded',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** HTTP status used when an error code is answered over the HTTP API. */
export const httpStatusOf: Record<ErrorCode, number> = {
  bad_request: 400,
  unknown_type: 400,
  invalid_channel: 400,
  not_found: 404,
  forbidden: 403,
  unauthorized: 401,
  too_large: 413,
  rate_limited: 429,
  too_many_connections: 503,
  unavailable: 503,
  internal: 500,
  transfer_aborted: 400,
  quota_exceeded: 507,
};

/** An error that carries a catalogue code; thrown inside handlers and turned into an `error` frame or HTTP body. */
export class HubbubError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HubbubError';
  }
}

/**
 * WebSocket close codes the server uses.
 *
 * 4000–4499: the client should reconnect (with backoff). 4500–4999: terminal, do not reconnect
 * without a change (new credentials, user action). Standard codes keep their RFC 6455 meaning.
 */
export const CloseCode = {
  /** The client or the server ended the session normally. */
  Normal: 1000,
  /** The server is shutting down or restarting; reconnect. */
  GoingAway: 1001,
  /** A frame was not valid UTF-8 text (enforced by the WebSocket layer). */
  InvalidPayload: 1007,
  /** A frame was larger than `max_message_size`. */
  MessageTooBig: 1009,
  /** An unexpected server fault. */
  InternalError: 1011,
  /** The client did not answer WebSocket pings for about two heartbeat periods. */
  HeartbeatTimeout: 4000,
  /** The client read too slowly: its pending bytes stayed above `max_queue_bytes` for a second, or reached twice it. */
  SlowConsumer: 4001,
  /** Disconnected through the server API with `reconnect: true`. */
  ForceReconnect: 4002,
  /** The client kept sending faster than its message rate allows. Reconnect with backoff. */
  RateLimited: 4003,
  /** The user already has `max_connections_per_user` connections. */
  TooManyConnections: 4004,
  /** The token expired and was not refreshed in time; reconnect with a fresh token. */
  TokenExpired: 4005,
  /** Disconnected through the server API; do not reconnect automatically. */
  ForceDisconnect: 4500,
  /** No valid token: missing within `auth_timeout` (auth required), or refused. Reconnecting with the same token will not help. */
  Unauthorized: 4501,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** True when a client seeing this close code should not reconnect on its own. */
export function isTerminalCloseCode(code: number): boolean {
  return code >= 4500 && code <= 4999;
}
