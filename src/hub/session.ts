import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { channelNameError, patternError } from '../protocol/channel.js';
import { ErrorCode, HubbubError } from '../protocol/errors.js';
import type { ClientFrame, FrameId, Json, ReplyData, WelcomeFrame } from '../protocol/frames.js';
import { DEFAULT_KIND, PROTOCOL_VERSION } from '../protocol/frames.js';
import { encodeServerFrame, parseClientFrame } from '../protocol/json-codec.js';
import { Outgoing } from '../transport/outgoing.js';
import type { Transport } from '../transport/transport.js';
import { Client } from './client.js';
import type { Hub } from './hub.js';
import type { Delivered } from '../engine/broker.js';

export interface SessionOptions {
  hub: Hub;
  logger: Logger;
  serverVersion: string;
  heartbeatMs: number;
}

/**
 * Serves one connection: sends `welcome`, then parses each frame, runs it against the hub and
 * answers it. A bad frame gets an `error` frame and the connection stays usable.
 */
export class Session {
  readonly client: Client;
  private readonly hub: Hub;
  private readonly log: Logger;

  constructor(
    transport: Transport,
    private readonly options: SessionOptions,
  ) {
    this.hub = options.hub;
    this.client = new Client(randomUUID(), transport);
    this.log = options.logger.child({ client: this.client.id });
    this.hub.add(this.client);
    transport.attach({
      onMessage: (data, binary) => this.onMessage(data, binary),
      onPong: () => {
        this.client.seen = true;
      },
      onClose: (code, reason) => {
        this.hub.remove(this.client);
        this.log.debug({ code, reason }, 'disconnected');
      },
    });
    const welcome: WelcomeFrame = {
      type: 'welcome',
      client: this.client.id,
      server: 'hubbub',
      version: options.serverVersion,
      protocol: PROTOCOL_VERSION,
      heartbeat: options.heartbeatMs,
    };
    this.push(encodeServerFrame(welcome));
    this.log.debug({ remote: transport.remoteAddress }, 'connected');
  }

  private onMessage(data: Buffer, binary: boolean): void {
    const counters = this.hub.counters;
    counters.messages_in++;
    counters.bytes_in += data.length;
    this.client.seen = true;
    if (binary) {
      this.error(undefined, ErrorCode.BadRequest, 'binary frames are not part of the JSON protocol; send text frames');
      return;
    }
    const parsed = parseClientFrame(data.toString('utf8'));
    if (!parsed.ok) {
      this.error(parsed.id, parsed.code, parsed.message);
      return;
    }
    const frame = parsed.frame;
    try {
      const result = this.handle(frame);
      if (result instanceof Promise) {
        result.then(
          (d) => this.reply(frame.id, d),
          (err: unknown) => this.fail(frame.id, err),
        );
      } else if (result !== undefined) {
        this.reply(frame.id, result);
      }
    } catch (err) {
      this.fail(frame.id, err);
    }
  }

  /** Runs one valid frame. Returns the reply data (or a promise of it); undefined when the frame answered itself. */
  private handle(frame: ClientFrame): object | Promise<object> | undefined {
    const hub = this.hub;
    const client = this.client;
    switch (frame.type) {
      case 'hello': {
        if (client.identified) throw new HubbubError(ErrorCode.BadRequest, 'hello: this connection has already said hello');
        hub.identify(client, { user: frame.user, name: frame.name, version: frame.version });
        return { ...client.info() } satisfies ReplyData['hello'];
      }
      case 'ping':
        // Unlike other frames, a ping is answered even without an id: the pong is its whole point.
        this.push(encodeServerFrame(frame.id === undefined ? { type: 'pong', ts: Date.now() } : { type: 'pong', id: frame.id, ts: Date.now() }));
        return undefined;
      case 'echo':
        return { data: frame.data } satisfies ReplyData['echo'];
      case 'subscribe': {
        checkChannel(patternError(frame.channel), 'subscribe');
        hub.subscribe(client, frame.channel, frame.presence === true);
        return {};
      }
      case 'unsubscribe': {
        checkChannel(patternError(frame.channel), 'unsubscribe');
        if (!hub.unsubscribe(client, frame.channel)) {
          throw new HubbubError(ErrorCode.NotFound, `unsubscribe: not subscribed to "${frame.channel}"`);
        }
        return {};
      }
      case 'publish': {
        checkChannel(channelNameError(frame.channel), 'publish');
        return settle(hub.publish(frame.channel, frame.data, frame.kind ?? DEFAULT_KIND, client.info()), () => ({}));
      }
      case 'send':
        return settle(hub.send(frame.to, frame.data, frame.kind ?? DEFAULT_KIND, client.info()), delivered);
      case 'broadcast':
        return settle(hub.broadcast(frame.data, frame.kind ?? DEFAULT_KIND, client.info()), delivered);
      case 'presence': {
        checkChannel(channelNameError(frame.channel), 'presence');
        return { channel: frame.channel, clients: hub.presence(frame.channel) } satisfies ReplyData['presence'];
      }
      case 'clients': {
        const clients = hub.clientList();
        return { count: clients.length, clients } satisfies ReplyData['clients'];
      }
    }
  }

  private push(text: string): void {
    this.hub.sendTo(this.client, new Outgoing(text));
  }

  private reply(id: FrameId | undefined, data: object): void {
    if (id === undefined) return;
    this.push(JSON.stringify({ type: 'reply', id, data: data as Json }));
  }

  private error(id: FrameId | undefined, code: string, message: string): void {
    this.push(encodeServerFrame(id === undefined ? { type: 'error', code, message } : { type: 'error', id, code, message }));
  }

  private fail(id: FrameId | undefined, err: unknown): void {
    if (err instanceof HubbubError) {
      this.error(id, err.code, err.message);
    } else {
      this.log.error({ err }, 'request failed');
      this.error(id, ErrorCode.Internal, 'internal error');
    }
  }
}

/** Map a broker result to reply data, staying synchronous when the broker was (replies then keep request order). */
function settle<T>(result: Delivered | Promise<Delivered>, map: (n: Delivered) => T): T | Promise<T> {
  return result instanceof Promise ? result.then(map) : map(result);
}

const delivered = (n: Delivered) => ({ delivered: n ?? 0 });

function checkChannel(problem: string | undefined, type: string): void {
  if (problem) throw new HubbubError(ErrorCode.InvalidChannel, `${type}: ${problem}`);
}
