/** `hubbub client`: an interactive protocol client, or a scripted one when stdin is not a terminal. */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Command, Option } from 'commander';
import { channelNameError, HubbubError, type Encoding, type Hubbub, type Subscription } from '../client/index.js';
import type { ClientListEntry, DirectTarget, Json, ServerFrame } from '../protocol/frames.js';
import { action, CliError, connectClient, encodingOption, Exit, parseData, urlOption, usageExit } from './common.js';
import { describeError, finish, plural, sanitize, sender, Session, showData, showPayload, splitWord, withTimeout, type Colour, followConnection } from './terminal.js';

const COMMANDS: [usage: string, help: string][] = [
  ['text <msg>', 'publish {"text": msg} with kind text to the room'],
  ['notification <msg>', 'publish {"text": msg} with kind notification to the room'],
  ['ping', 'round trip to the server, in ms'],
  ['json <frame>', 'send a raw JSON frame (the client sets its id) and print the answer frame'],
  ['subscribe [--presence] <pattern>', 'subscribe to a channel or pattern (+ one level, # any levels)'],
  ['unsubscribe <pattern>', 'end a subscription'],
  ['publish <channel> <data>', 'publish data (JSON if it parses, else the text as a string)'],
  ['file <channel> <path>', "publish a file's bytes as a transfer (hubbub sub --save-dir writes it out)"],
  ['send <target> <data>', 'direct message; target: user:<id>, client:<id>, a client id (UUID), or else a user id'],
  ['broadcast <data>', 'send data to every connection of the server'],
  ['presence [channel]', 'who is in a channel (default: the room)'],
  ['list', 'every client connected to the server'],
  ['help', 'this list'],
  ['quit', 'leave (also Ctrl-D or Ctrl-C)'],
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface ClientOptions {
  url: string;
  encoding: Encoding;
  username?: string;
  token?: string;
  room: string;
  autoPing: boolean;
}

export function clientCommand(): Command {
  return new Command('client')
    .description('an interactive client: type protocol commands at a prompt, or pipe them in')
    .addOption(urlOption())
    .addOption(encodingOption())
    .option('--username <name>', 'development identity: sent in hello as name and user')
    .option('--token <token>', 'a token sent in hello')
    .addOption(new Option('--room <channel>', 'channel for text and notification, subscribed with presence').default('lobby'))
    .option('--no-auto-ping', 'do not ping a silent server (no dead-server detection)')
    .addHelpText(
      'after',
      `
Commands at the hubbub> prompt:
${COMMANDS.map(([u, h]) => `  ${u.padEnd(34)}${h}`).join('\n')}

Incoming messages, direct messages, broadcasts, joins and leaves are printed as they arrive. With
stdin not a terminal, commands are read line by line, each waits for its answer, and the client
exits 0 at end of input (lines starting with # are comments). Exit codes: 0 ok, 1 the server is
unreachable, refused the connection or ended it, 2 bad usage.

Examples:
  hubbub client --username alice
  hubbub client --url ws://chat.example.com/ws --room rooms/support
  hubbub client --encoding protobuf              # Protocol Buffers on the wire
  printf 'ping\\npublish a/b 1\\nsend user:bob {"hi":true}\\nquit\\n' | hubbub client
  echo 'json {"type":"clients"}' | hubbub client --url http://localhost:8080`,
    )
    .exitOverride(usageExit)
    .action(action('client', runClient));
}

async function runClient(opts: ClientOptions): Promise<void> {
  const roomProblem = channelNameError(opts.room);
  if (roomProblem) throw new CliError(`--room ${opts.room}: ${roomProblem}`, Exit.Usage);
  const hub = await connectClient(opts.url, {
    ...(opts.username !== undefined ? { name: opts.username, user: opts.username } : {}),
    ...(opts.token !== undefined ? { token: opts.token } : {}),
    autoPing: opts.autoPing,
    encoding: opts.encoding,
  });
  const room = opts.room;
  const subs = new Map<string, Subscription>();
  /** While a subscribe command waits, its refusal is reported by the command, not again by the `error` event. */
  let subscribing = 0;
  let closing = false;

  const session: Session = new Session({
    prompt: 'hubbub> ',
    words: COMMANDS.map(([u]) => u.split(' ')[0]!),
    run: (line) => runCommand(line),
  });
  const say = (text: string, colour?: Colour): void => session.print(text, colour);
  const fail = (err: unknown): void => say(describeError(err), 'red');

  hub.on('message', (m) => say(`[${sanitize(m.channel)}] ${kindTag(m.kind)}${sender(m.from)}: ${showPayload(m)}`, m.kind === 'notification' ? 'yellow' : 'cyan'));
  hub.on('direct', (m) => say(`[direct] ${kindTag(m.kind)}${sender(m.from)}: ${showPayload(m)}`, 'magenta'));
  hub.on('broadcast', (m) => say(`[broadcast] ${kindTag(m.kind)}${sender(m.from)}: ${showData(m.data)}`, 'yellow'));
  hub.on('join', (e) => say(`* ${sender(e.client)} joined ${sanitize(e.channel)}`, 'green'));
  hub.on('leave', (e) => say(`* ${sender(e.client)} left ${sanitize(e.channel)}`, 'green'));
  hub.on('error', (err) => {
    if (subscribing > 0 && err.request === 'subscribe') return;
    fail(err);
  });
  followConnection(hub, { say, stop, isClosing: () => closing, reconnected: (client) => `* reconnected as ${client}` });

  function stop(message: string): void {
    if (closing) return;
    closing = true;
    session.warn(`hubbub client: ${message}`);
    session.end(Exit.Failure);
  }

  // The room: subscribed with presence, so that joins and leaves show.
  subscribing++;
  try {
    const sub = hub.subscribe(room, () => {}, { presence: true });
    subs.set(room, sub);
    await withTimeout(sub.ready, hub.options.requestTimeout, `subscribe ${room}`);
  } catch (err) {
    hub.close();
    throw new CliError(`cannot join the room: ${describeError(err)}`);
  } finally {
    subscribing--;
  }
  say(`* connected to ${hub.url} as ${hub.clientId}${opts.username !== undefined ? ` (${sanitize(opts.username)})` : ''}; room ${sanitize(room)}`, 'gray');
  if (session.interactive) say('* type help for the commands, quit or Ctrl-D to leave', 'gray');

  async function runCommand(line: string): Promise<void | 'quit'> {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const [word, rest] = splitWord(trimmed);
    const arg = rest.trim();
    try {
      switch (word.toLowerCase()) {
        case 'text':
        case 'notification':
          if (!arg) return usage(`${word} <msg>`);
          await hub.publish(room, { text: rest }, { kind: word.toLowerCase() });
          return;
        case 'ping':
          say(`pong in ${await hub.ping()} ms`);
          return;
        case 'json':
          return await rawFrame(arg);
        case 'subscribe':
        case 'sub':
          return await subscribe(arg);
        case 'unsubscribe':
        case 'unsub': {
          if (!arg || /\s/.test(arg)) return usage('unsubscribe <pattern>');
          const sub = subs.get(arg);
          if (sub) {
            await sub.unsubscribe();
            subs.delete(arg);
          } else {
            // Not the SDK's (e.g. made with `json`): ask the server, which says not_found when there is none.
            await hub.request({ type: 'unsubscribe', channel: arg });
          }
          say(`unsubscribed from ${sanitize(arg)}`);
          return;
        }
        case 'publish':
        case 'pub': {
          const [channel, data] = splitWord(arg);
          if (!channel || !data.trim()) return usage('publish <channel> <data>');
          await hub.publish(channel, parseData(data.trim()));
          say(`published to ${sanitize(channel)}`);
          return;
        }
        case 'file': {
          const [channel, path] = splitWord(arg);
          if (!channel || !path.trim()) return usage('file <channel> <path>');
          let bytes: Uint8Array;
          try {
            bytes = await readFile(path.trim());
          } catch (err) {
            return say(`cannot read ${sanitize(path.trim())}: ${(err as Error).message}`, 'red');
          }
          const name = basename(path.trim());
          const r = await hub.transfer({ channel }, bytes, { name });
          say(`sent ${sanitize(name)} (${plural(r.bytes, 'byte')}, ${plural(r.chunks, 'chunk')}) to ${sanitize(channel)}: delivered to ${plural(r.delivered, 'connection')}`);
          return;
        }
        case 'send': {
          const [to, data] = splitWord(arg);
          const target = parseTarget(to);
          if (!target || !data.trim()) return usage('send <user:id|client:id|id> <data>');
          const n = await hub.send(target, parseData(data.trim()));
          say(`sent to ${'user' in target ? `user ${sanitize(target.user)}` : `client ${sanitize(target.client)}`}: delivered to ${plural(n, 'connection')}`);
          return;
        }
        case 'broadcast': {
          if (!arg) return usage('broadcast <data>');
          const n = await hub.broadcast(parseData(arg));
          say(`broadcast delivered to ${plural(n, 'connection')}`);
          return;
        }
        case 'presence': {
          const channel = arg || room;
          const members = await hub.presence(channel);
          say([`${sanitize(channel)}: ${plural(members.length, 'member')}`, ...members.map((e) => entry(e, hub))].join('\n'));
          return;
        }
        case 'list':
        case 'clients': {
          const { count, clients } = await hub.clients();
          say([`${plural(count, 'client')} online`, ...clients.map((e) => entry(e, hub))].join('\n'));
          return;
        }
        case 'help':
        case '?':
          say(COMMANDS.map(([u, h]) => `  ${u.padEnd(34)}${h}`).join('\n'));
          return;
        case 'quit':
        case 'exit':
          return 'quit';
        default:
          say(`unknown command: ${sanitize(word)} (type help)`, 'red');
          return;
      }
    } catch (err) {
      fail(err);
    }
  }

  function usage(text: string): void {
    say(`usage: ${text}`, 'red');
  }

  async function subscribe(arg: string): Promise<void> {
    const words = arg.split(/\s+/).filter(Boolean);
    const presence = words.includes('--presence') || words.includes('-p');
    const patterns = words.filter((w) => w !== '--presence' && w !== '-p');
    if (patterns.length !== 1) return usage('subscribe [--presence] <pattern>');
    const pattern = patterns[0]!;
    subscribing++;
    try {
      const sub = hub.subscribe(pattern, () => {}, { presence });
      if (!subs.has(pattern)) subs.set(pattern, sub);
      else void sub.unsubscribe(); // the SDK shares one server subscription per pattern: keep one handle
      await withTimeout(sub.ready, hub.options.requestTimeout, `subscribe ${pattern}`);
      say(`subscribed to ${sanitize(pattern)}${presence ? ' (with presence)' : ''}`);
    } catch (err) {
      if (!(err instanceof HubbubError && err.code === 'timeout')) subs.delete(pattern);
      fail(err);
    } finally {
      subscribing--;
    }
  }

  /** Send a frame as typed and print the server's answer frame (the SDK owns ids, so it sets one). */
  async function rawFrame(text: string): Promise<void> {
    if (!text) return usage('json <frame>, e.g. json {"type":"echo","data":1}');
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      return say(`not JSON: ${(err as Error).message}`, 'red');
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame) || typeof (frame as { type?: unknown }).type !== 'string') {
      return say('a frame is a JSON object with a string "type"', 'red');
    }
    const { id: _ignored, ...rest } = frame as Record<string, unknown>;
    const answers: ServerFrame[] = [];
    const off = hub.on('frame', (f) => {
      if ((f.type === 'reply' || f.type === 'pong' || f.type === 'error') && f.id !== undefined) answers.push(f);
    });
    try {
      const value = await hub.request<Json>(rest as Parameters<Hubbub['request']>[0]);
      // The SDK resolves with the reply's own `data` object (or {ts} for a pong): find the frame it came from.
      const answer = answers.find((f) => (f.type === 'reply' && f.data === value) || (f.type === 'pong' && f.ts === (value as { ts?: number } | null)?.ts));
      say(sanitize(JSON.stringify(answer ?? { type: 'reply', data: value })));
    } catch (err) {
      const answer = err instanceof HubbubError ? answers.find((f) => f.type === 'error' && f.code === err.code && f.message === err.message) : undefined;
      if (answer) say(sanitize(JSON.stringify(answer)), 'red');
      else fail(err);
    } finally {
      off();
    }
  }

  const code = await session.start();
  closing = true;
  finish(hub, code);
}

export function parseTarget(text: string): DirectTarget | undefined {
  if (!text) return undefined;
  const m = /^(user|client):(.*)$/.exec(text);
  if (m) return m[2] ? (m[1] === 'user' ? { user: m[2] } : { client: m[2] }) : undefined;
  return UUID.test(text) ? { client: text } : { user: text };
}

function kindTag(kind: string): string {
  return kind === 'text' ? '' : `(${sanitize(kind)}) `;
}

function entry(e: ClientListEntry, hub: Hubbub): string {
  const parts = [`  ${e.client}`];
  if (e.name !== undefined) parts.push(`name=${sanitize(e.name)}`);
  if (e.user !== undefined) parts.push(`user=${sanitize(e.user)}`);
  if (e.client === hub.clientId) parts.push('(you)');
  return parts.join(' ');
}

