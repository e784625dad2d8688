import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Hub } from '../hub/hub.js';
import { channelNameError } from '../protocol/channel.js';
import { CloseCode, ErrorCode, HubbubError, httpStatusOf } from '../protocol/errors.js';
import { DEFAULT_KIND, type DirectTarget, type Json } from '../protocol/frames.js';
import { fieldsError, payloadOf } from '../protocol/json-codec.js';
import type { Payload } from '../protocol/payload.js';
import type { StoredPublication } from '../engine/store.js';
import { isLoopback, readJsonBody, sendError, sendJson } from './util.js';

export interface ApiOptions {
  hub: Hub;
  logger: Logger;
  apiKeys: string[];
  maxBodyBytes: number;
  /** Longest channel name accepted, as for clients. */
  maxChannelLength?: number;
  version: string;
}

const SERVER: { server: true } = { server: true };

type Handler = (req: IncomingMessage, body: Record<string, unknown>) => Promise<object> | object;

/**
 * The HTTP server API under /api: what an application backend uses to publish, message users and
 * inspect the server. Every route needs an API key (or, with none configured, a loopback caller).
 */
export class Api {
  private readonly keyDigests: Buffer[];
  private readonly routes: Record<string, Handler>;

  constructor(private readonly options: ApiOptions) {
    // Compare fixed-length digests so that neither the content nor the length of a key leaks through timing.
    this.keyDigests = options.apiKeys.map(digest);
    const hub = options.hub;
    this.routes = {
      'POST /api/publish': async (_req, body) => {
        const payload = check('publish', body);
        const problem = channelNameError(body.channel, this.options.maxChannelLength);
        if (problem) throw new HubbubError(ErrorCode.InvalidChannel, problem);
        if (body.retain !== undefined && typeof body.retain !== 'boolean') throw new HubbubError(ErrorCode.BadRequest, 'retain must be a boolean');
        const o = await hub.publish(body.channel as string, payload, kindOf(body), SERVER, body.retain === true);
        return { ...(o.delivered !== undefined && { delivered: o.delivered }), ...(o.offset !== undefined && { offset: o.offset, epoch: o.epoch }) };
      },
      'POST /api/broadcast': async (_req, body) => {
        const payload = check('broadcast', body);
        return { delivered: (await hub.broadcast(payload, kindOf(body), SERVER)) ?? 0 };
      },
      'POST /api/send': async (_req, body) => {
        const payload = check('send', body);
        const o = await hub.send(body.to as DirectTarget, payload, kindOf(body), SERVER, body.persist === true);
        return { delivered: o.delivered ?? 0, ...(o.id !== undefined && { id: o.id }) };
      },
      'POST /api/disconnect': async (_req, body) => {
        const target = disconnectTarget(body);
        if (body.reconnect !== undefined && typeof body.reconnect !== 'boolean') throw new HubbubError(ErrorCode.BadRequest, 'reconnect must be a boolean');
        if (body.reason !== undefined && (typeof body.reason !== 'string' || Buffer.byteLength(body.reason) > 120)) {
          throw new HubbubError(ErrorCode.BadRequest, 'reason must be a string of at most 120 bytes');
        }
        const code = body.reconnect === true ? CloseCode.ForceReconnect : CloseCode.ForceDisconnect;
        const reason = (body.reason as string | undefined) ?? 'disconnected by the server';
        return { disconnected: (await hub.disconnect(target, code, reason)) ?? 0 };
      },
      'GET /api/clients': () => {
        const clients = hub.clientList();
        return { count: clients.length, clients };
      },
      'GET /api/stats': () => {
        const mem = process.memoryUsage();
        const cpu = process.cpuUsage();
        return {
          ...hub.stats(),
          uptime: Math.round((Date.now() - hub.startedAt) / 1000),
          rss: mem.rss,
          heap_used: mem.heapUsed,
          cpu_user: cpu.user,
          cpu_system: cpu.system,
          version: options.version,
        };
      },
      'GET /api/channels': () => hub.channelCounts(),
    };
  }

  /** Handle a request under /api. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    try {
      this.authorize(req);
      const method = req.method ?? 'GET';
      let handler: Handler | undefined = this.routes[`${method} ${path}`];
      if (!handler && path.startsWith('/api/channels/')) handler = this.channelRoute(method, path, new URL(req.url ?? '/', 'http://x').searchParams);
      if (!handler) {
        const other = Object.keys(this.routes).find((r) => r.endsWith(` ${path}`));
        if (other) throw new MethodNotAllowed(other.split(' ')[0]!);
        throw new HubbubError(ErrorCode.NotFound, `no API endpoint ${method} ${path}`);
      }
      const body = method === 'POST' ? await readJsonBody(req, this.options.maxBodyBytes) : {};
      sendJson(res, 200, await handler(req, body));
    } catch (err) {
      if (err instanceof MethodNotAllowed) {
        res.setHeader('Allow', err.allow);
        sendError(res, 405, ErrorCode.BadRequest, `${req.method} is not allowed here; use ${err.allow}`);
      } else if (err instanceof HubbubError) {
        if (err.code === ErrorCode.Unauthorized) res.setHeader('WWW-Authenticate', 'Bearer realm="hubbub"');
        if (err.code === ErrorCode.TooLarge) res.setHeader('Connection', 'close'); // do not read the rest of a huge body
        sendError(res, httpStatusOf[err.code], err.code, err.message);
      } else {
        this.options.logger.error({ err, path }, 'API request failed');
        sendError(res, 500, ErrorCode.Internal, 'internal error');
      }
    }
  }

  private authorize(req: IncomingMessage): void {
    if (this.keyDigests.length === 0) {
      if (isLoopback(req.socket.remoteAddress)) return;
      throw new HubbubError(ErrorCode.Forbidden, 'no API key is configured, so the API only answers requests from loopback');
    }
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new HubbubError(ErrorCode.Unauthorized, 'missing API key: send Authorization: Bearer <key>');
    const given = digest(m[1]!);
    let ok = false;
    for (const key of this.keyDigests) ok = timingSafeEqual(key, given) || ok; // no early exit: same work for every key
    if (!ok) throw new HubbubError(ErrorCode.Unauthorized, 'wrong API key');
  }

  /** /api/channels/<channel>/(presence|retained|history); undefined when the path is none of them. */
  private channelRoute(method: string, path: string, query: URLSearchParams): Handler | undefined {
    const m = /^\/api\/channels\/(.+)\/(presence|retained|history)$/.exec(path);
    if (!m) return undefined;
    const what = m[2]!;
    const allowed = what === 'retained' ? ['GET', 'DELETE'] : ['GET'];
    if (!allowed.includes(method)) throw new MethodNotAllowed(allowed.join(', '));
    let channel: string;
    try {
      channel = decodeURIComponent(m[1]!);
    } catch {
      throw new HubbubError(ErrorCode.InvalidChannel, 'channel is not valid percent-encoding');
    }
    const problem = channelNameError(channel, this.options.maxChannelLength);
    if (problem) throw new HubbubError(ErrorCode.InvalidChannel, problem);
    const hub = this.options.hub;
    if (what === 'presence') return () => ({ channel, clients: hub.presence(channel) });
    if (what === 'retained') {
      if (method === 'DELETE') return async () => ({ channel, cleared: await hub.clearRetained(channel) });
      return async () => {
        const r = await hub.retainedOf(channel);
        if (!r) throw new HubbubError(ErrorCode.NotFound, `channel ${channel} has no retained message`);
        return { channel, retained: publicationJson(r) };
      };
    }
    return async () => {
      const num = (name: string): number | undefined => {
        const v = query.get(name);
        if (v === null) return undefined;
        if (!/^\d+$/.test(v)) throw new HubbubError(ErrorCode.BadRequest, `${name} must be a non-negative integer`);
        return Number(v);
      };
      const reverse = query.get('reverse');
      if (reverse !== null && !['true', 'false', '1', '0'].includes(reverse)) throw new HubbubError(ErrorCode.BadRequest, 'reverse must be true or false');
      const offset = num('since_offset');
      const epoch = query.get('since_epoch');
      if ((offset === undefined) !== (epoch === null)) throw new HubbubError(ErrorCode.BadRequest, 'since_offset and since_epoch go together');
      const page = await hub.history(channel, { since: offset === undefined ? undefined : { offset, epoch: epoch! }, limit: num('limit'), reverse: reverse === 'true' || reverse === '1' });
      if (!page) throw new HubbubError(ErrorCode.NotFound, `channel ${channel} keeps no history (its namespace has no history_size)`);
      return { channel, publications: page.publications.map(publicationJson), offset: page.position.offset, epoch: page.position.epoch };
    };
  }
}

class MethodNotAllowed extends Error {
  constructor(readonly allow: string) {
    super('method not allowed');
  }
}

/** A stored publication as JSON: bytes as base64 with "encoding":"base64". */
function publicationJson(p: StoredPublication & { epoch?: string }): Record<string, unknown> {
  return {
    ...(p.offset > 0 && { offset: p.offset }),
    ...(p.epoch !== undefined && { epoch: p.epoch }),
    data: p.payload.toJson(),
    ...(p.payload.binary && { encoding: 'base64' }),
    kind: p.kind,
    from: p.from,
    ts: p.ts,
  };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Validate a body with the rules of the frame it stands for; gives its payload (`data`, base64 bytes with `"encoding":"base64"`). */
function check(type: 'publish' | 'broadcast' | 'send', body: Record<string, unknown>): Payload {
  const problem = fieldsError(type, body);
  if (problem) throw new HubbubError(ErrorCode.BadRequest, problem);
  const payload = payloadOf(body);
  if (typeof payload === 'string') throw new HubbubError(ErrorCode.BadRequest, payload);
  return payload;
}

function kindOf(body: Record<string, unknown>): string {
  return (body.kind as string | undefined) ?? DEFAULT_KIND;
}

function disconnectTarget(body: Record<string, unknown>): DirectTarget {
  const hasClient = body.client !== undefined;
  const hasUser = body.user !== undefined;
  if (hasClient === hasUser || typeof (hasClient ? body.client : body.user) !== 'string') {
    throw new HubbubError(ErrorCode.BadRequest, 'name exactly one of client or user, as a string');
  }
  return hasClient ? { client: body.client as string } : { user: body.user as string };
}
