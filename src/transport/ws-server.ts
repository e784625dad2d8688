import type { IncomingMessage, Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { WebSocketServer } from 'ws';
import { ErrorCode } from '../protocol/errors.js';
import { WsTransport } from './ws-transport.js';

export interface WsEndpointOptions<A> {
  path: string;
  maxMessageSize: number;
  maxQueueBytes: number;
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
    perMessageDeflate: false,
    clientTracking: false,
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}); // a reset during the handshake is the peer's business, not a crash
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== options.path) {
      refuseUpgrade(socket, { status: 404, code: ErrorCode.NotFound, message: `no WebSocket endpoint at ${path}; use ${options.path}` });
      return;
    }
    const proceed = (admission: Admission<A>): void => {
      if ('refuse' in admission) {
        refuseUpgrade(socket, admission.refuse);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const remote = req.socket.remoteAddress ?? '';
        options.onConnection(new WsTransport(ws, socket, remote, { maxQueueBytes: options.maxQueueBytes }), req, admission.accept);
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
