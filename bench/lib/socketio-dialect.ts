/**
 * The Socket.IO 4 dialect for bench/servers/socketio-server.ts: Engine.IO v4 / Socket.IO v5 text
 * packets spoken directly over the lean client (socket.io-client would cost the generator far more
 * than the server being measured). A packet is the Engine.IO type digit ('0' open, '2' ping, '3' pong,
 * '4' message) and, inside a message, the Socket.IO type digit ('0' connect, '2' event, '3' ack),
 * an optional ack id, then JSON. The main namespace '/' is implied when none is written.
 */
import type { BenchData, Dialect } from '../../src/bench/dialect.js';
import { encodeClientFrame, OP_TEXT } from '../../src/bench/frame-parser.js';
import type { LeanClient } from '../../src/bench/lean-client.js';

/** The next packet that is not an Engine.IO ping (those are answered with a pong, as a client must). */
async function nextPacket(c: LeanClient, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = (await c.next(Math.max(1, deadline - Date.now()))).toString('utf8');
    if (p !== '2') return p;
    c.sendText('3');
  }
}

const MESSAGE_PREFIX = Buffer.from('42["message",');

export const socketIo: Dialect = {
  name: 'socket.io',
  path: '/socket.io/?EIO=4&transport=websocket',
  protocols: undefined,
  async handshake(c, timeoutMs) {
    const open = await nextPacket(c, timeoutMs);
    if (!open.startsWith('0{')) throw new Error(`expected the Engine.IO open packet, got ${open.slice(0, 200)}`);
    c.sendText('40');
    const connect = await nextPacket(c, timeoutMs);
    if (!connect.startsWith('40{"sid":')) throw new Error(`expected the Socket.IO connect packet, got ${connect.slice(0, 200)}`);
  },
  async subscribe(c, channel, timeoutMs) {
    c.sendText(`421${JSON.stringify(['subscribe', channel])}`);
    const ack = await nextPacket(c, timeoutMs);
    if (ack !== '431[]') throw new Error(`subscribe ${channel}: expected the ack 431[], got ${ack.slice(0, 200)}`);
  },
  publishFrame(channel, dataJson) {
    return encodeClientFrame(OP_TEXT, `42["publish",{"channel":${JSON.stringify(channel)},"data":${dataJson}}]`);
  },
  read(payload) {
    // Only an event named 'message' is a publication; checking the prefix avoids parsing anything else.
    if (payload.length < MESSAGE_PREFIX.length || !payload.subarray(0, MESSAGE_PREFIX.length).equals(MESSAGE_PREFIX)) return undefined;
    const [, m] = JSON.parse(payload.toString('utf8', 2)) as [string, { data?: unknown } | null];
    const d = m?.data as { s?: unknown; t?: unknown } | null | undefined;
    return typeof d?.s === 'number' && typeof d.t === 'number' ? ({ s: d.s, t: d.t } satisfies BenchData) : undefined;
  },
};
