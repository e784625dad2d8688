import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { WebSocketServer } from 'ws';
import { ErrorCode } from '../protocol/errors.js';
import { WsTransport } from './ws-transport.js';

export interface WsEndpointOptions {
  path: string;
  maxMessageSize: number;
  maxQueueBytes: number;
  /** Decide whether an upgrade may proceed; return an HTTP refusal to turn it away before the WebSocket exists. */
  admit(req: IncomingMessage): Refusal | undefined;
  onConnection(transport: WsTransport, req: IncomingMessage): void;
}

export interface Refusal {
  status: number;
  code: string;
  message: string;
}

/**
 * The WebSocket endpoint: takes HTTP upgrades on one path from a Node HTTP(S) server and hands each
 * accepted connection to `onConnection` as a transport.
 */
export function attachWebSocket(server: Server, options: WsEndpointOptions): WebSocketServer {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxMessageSize,
    perMessageDeflate: false,
    clientTracking: false,
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}); // a reset during the handshake is the peer's business, not a crash
    const path = (req.url ?? '/').split('?', 1)[0];
    const refusal =
      path !== options.path
        ? { status: 404, code: ErrorCode.NotFound, message: `no WebSocket endpoint at ${path}; use ${options.path}` }
        : options.admit(req);
    if (refusal) {
      refuseUpgrade(socket, refusal);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const remote = req.socket.remoteAddress ?? '';
      options.onConnection(new WsTransport(ws, socket, remote, { maxQueueBytes: options.maxQueueBytes }), req);
    });
  });
  return wss;
}

/** Answer an upgrade request with a plain HTTP error and a JSON body, then close the socket. */
export function refuseUpgrade(socket: Duplex, refusal: Refusal): void {
  const body = JSON.stringify({ error: { code: refusal.code, message: refusal.message } });
  socket.end(
    `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
