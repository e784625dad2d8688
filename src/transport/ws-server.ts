import type { IncomingMessage, Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCode } from '../protocol/errors.js';
import { WsTransport } from './ws-transport.js';

export interface WsEndpointOptions<A> {
  path: string;
  maxMessageSize: number;
  maxQueueBytes: number;
  /** Subprotocols this endpoint speaks; a client that asks only for others is refused at the upgrade. */
  subprotocols: readonly string[];
  /** Offer permessage-deflate; frames of at least `threshold` bytes are then sent compressed. */
  deflate?: { threshold: number };
  /**
   * Decide whether an upgrade may proceed (may be async, e.g. to verify a token). A refusal is
   * answered over plain HTTP before the WebSocket exists; an acceptance carries what was learnt.
   */
  admit(req: IncomingMessage): Admission<A> | Promise<Admission<A>>;
  onConnection(transport: WsTransport, req: IncomingMessage, accepted: A): void;
}

export type Admission<A> = { refuse: Refusal } | { accept: A };

export interface Refusal {
  status: number;
  code: string;
  message: string;
}

/**
 * The WebSocket endpoint: takes HTTP upgrades on one path from a Node HTTP(S) server and hands each
 * accepted connection to `onConnection` as a transport.
 */
export function attachWebSocket<A>(server: Server | HttpsServer, options: WsEndpointOptions<A>): WebSocketServer {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxMessageSize,
    // server_no_context_takeover makes every outgoing message compress on its own, so one
    // publication's compressed frame is shared by all its recipients (see Outgoing.wsDeflated), and
    // the server keeps no compression state per connection for what it sends.
    perMessageDeflate: options.deflate ? { serverNoContextTakeover: true, threshold: options.deflate.threshold } : false,
    clientTracking: false,
    handleProtocols: (offered) => pickSubprotocol(offered, options.subprotocols) ?? false,
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', ignoreError); // a reset during the handshake is the peer's business, not a crash
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== options.path) {
      refuseUpgrade(socket, { status: 404, code: ErrorCode.NotFound, message: `no WebSocket endpoint at ${path}; use ${options.path}` });
      return;
    }
    const offered = offeredSubprotocols(req);
    if (offered.length > 0 && pickSubprotocol(offered, options.subprotocols) === undefined) {
      refuseUpgrade(socket, { status: 400, code: ErrorCode.BadRequest, message: `unsupported subprotocol ${offered.join(', ')}; this server speaks ${options.subprotocols.join(', ')}` });
      return;
    }
    const proceed = (admission: Admission<A>): void => {
      if ('refuse' in admission) {
        refuseUpgrade(socket, admission.refuse);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const remote = req.socket.remoteAddress ?? '';
        const deflate = options.deflate ? negotiatedDeflate(ws, options.deflate.threshold) : undefined;
        options.onConnection(new WsTransport(ws, socket, remote, { maxQueueBytes: options.maxQueueBytes, deflate }), req, admission.accept);
      });
    };
    let admission: Admission<A> | Promise<Admission<A>>;
    try {
      admission = options.admit(req);
    } catch {
      refuseUpgrade(socket, { status: 500, code: ErrorCode.Internal, message: 'internal error' });
      return;
    }
    if (admission instanceof Promise) {
      admission.then(proceed, () => refuseUpgrade(socket, { status: 500, code: ErrorCode.Internal, message: 'internal error' }));
    } else {
      proceed(admission);
    }
  });
  return wss;
}

/**
 * A module-level no-op, not an arrow in the upgrade handler: the socket keeps its listener for its
 * whole life, and an arrow would keep the handler's closure context with it, request and all
 * (about 2 KB per idle connection).
 */
function ignoreError(): void {}

/** The subprotocols a client asks for, in its order of preference. */
function offeredSubprotocols(req: IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'];
  return header ? header.split(',').map((p) => p.trim()).filter((p) => p !== '') : [];
}

/** The client's most preferred subprotocol that we speak. */
function pickSubprotocol(offered: Iterable<string>, supported: readonly string[]): string | undefined {
  for (const p of offered) if (supported.includes(p)) return p;
  return undefined;
}

/** Whether this connection negotiated permessage-deflate, and the window it allows us. */
function negotiatedDeflate(ws: WebSocket, threshold: number): { threshold: number; windowBits: number } | undefined {
  // `ws` keeps the negotiated parameters on its (internal) extension object; its public
  // `extensions` getter only names the extensions.
  const ext = (ws as unknown as { _extensions: Record<string, { params?: Record<string, unknown> } | undefined> })._extensions['permessage-deflate'];
  if (!ext) return undefined;
  const bits = Number(ext.params?.server_max_window_bits);
  return { threshold, windowBits: Number.isInteger(bits) && bits >= 8 && bits <= 15 ? bits : 15 };
}

/** Answer an upgrade request with a plain HTTP error and a JSON body, then close the socket. */
export function refuseUpgrade(socket: Duplex, refusal: Refusal): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code: refusal.code, message: refusal.message } });
  socket.end(
    `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
