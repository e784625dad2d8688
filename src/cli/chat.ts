/** `hubbub chat`: a chat room on channel `chat/<room>`, with presence. */
import { userInfo } from 'node:os';
import { Command, Option } from 'commander';
import { channelNameError, type Encoding, type Subscription } from '../client/index.js';
import type { ClientInfo, Sender } from '../protocol/frames.js';
import { action, CliError, connectClient, encodingOption, Exit, urlOption, usageExit } from './common.js';
import { describeError, finish, sanitize, Session, showData, showPayload, splitWord, withTimeout, type Colour, followConnection } from './terminal.js';

const COMMANDS: [usage: string, help: string][] = [
  ['<text>', 'say something to the room (start with // to say a line that begins with /)'],
  ['/broadcast <msg>', 'send a message to every connection of the server'],
  ['/list', 'who is in the room'],
  ['/ping', 'round trip to the server, in ms'],
  ['/join <room>', 'leave this room and join another'],
  ['/help', 'this list'],
  ['/quit', 'leave (also Ctrl-D or Ctrl-C)'],
];

interface ChatOptions {
  url: string;
  encoding: Encoding;
  name?: string;
  room: string;
}

export function chatCommand(): Command {
  return new Command('chat')
    .description('a chat room: lines you type go to everyone in the room (channel chat/<room>)')
    .addOption(urlOption())
    .addOption(encodingOption())
    .option('--name <name>', 'your name, sent in hello as name and user (default: your login name)')
    .addOption(new Option('--room <room>', 'the room to join').default('general'))
    .addHelpText(
      'after',
      `
In the chat:
${COMMANDS.map(([u, h]) => `  ${u.padEnd(20)}${h}`).join('\n')}

Messages show as "name: text"; "* alice joined" and "* alice left" as people come and go. With
stdin not a terminal, lines are sent one by one (each waits for the server) and chat exits 0 at end
of input. Exit codes: 0 ok, 1 the server is unreachable, refused the connection or ended it, 2 bad usage.

Examples:
  hubbub chat --name alice
  hubbub chat --name bob --room support --url ws://chat.example.com/ws
  echo 'deploy finished' | hubbub chat --name ci --room ops`,
    )
    .exitOverride(usageExit)
    .action(action('chat', runChat));
}

const channelOf = (room: string): string => `chat/${room}`;

function roomError(room: string): string | undefined {
  const problem = channelNameError(channelOf(room));
  return problem ? `room ${room}: ${problem}` : undefined;
}

function defaultName(): string | undefined {
  try {
    return userInfo().username || undefined;
  } catch {
    return process.env.USER || undefined;
  }
}

async function runChat(opts: ChatOptions): Promise<void> {
  const problem = roomError(opts.room);
  if (problem) throw new CliError(problem, Exit.Usage);
  const name = opts.name ?? defaultName();
  const hub = await connectClient(opts.url, { ...(name !== undefined && { name, user: name }), encoding: opts.encoding });
  let room = opts.room;
  let sub: Subscription | undefined;
  let joining = 0;
  let closing = false;

  const session: Session = new Session({
    prompt: `#${room}> `,
    words: COMMANDS.map(([u]) => u.split(' ')[0]!).filter((w) => w.startsWith('/')),
    run: (line) => runLine(line),
  });
  const say = (text: string, colour?: Colour): void => session.print(text, colour);
  const who = (c: ClientInfo): string => sanitize(c.name ?? c.user ?? `anonymous-${c.client.slice(0, 8)}`);
  const from = (s: Sender): string => ('server' in s ? 'server' : who(s));

  hub.on('direct', (m) => say(`[direct] ${from(m.from)}: ${showPayload(m)}`, 'magenta'));
  hub.on('broadcast', (m) => say(`[broadcast] ${from(m.from)}: ${showData(m.data)}`, 'yellow'));
  hub.on('join', (e) => {
    if (e.channel === channelOf(room)) say(`* ${who(e.client)} joined`, 'green');
  });
  hub.on('leave', (e) => {
    if (e.channel === channelOf(room)) say(`* ${who(e.client)} left`, 'green');
  });
  hub.on('error', (err) => {
    if (joining > 0 && err.request === 'subscribe') return; // reported by /join itself
    say(describeError(err), 'red');
  });
  followConnection(hub, { say, stop, isClosing: () => closing, reconnected: () => '* reconnected' });

  function stop(message: string): void {
    if (closing) return;
    closing = true;
    session.warn(`hubbub chat: ${message}`);
    session.end(Exit.Failure);
  }

  /** Subscribe to a room with presence and say who is there. */
  async function join(next: string): Promise<void> {
    const channel = channelOf(next);
    joining++;
    try {
      const s = hub.subscribe(channel, (_data, m) => say(`${from(m.from)}: ${showPayload(m)}`, m.kind === 'notification' ? 'yellow' : undefined), { presence: true });
      sub = s;
      room = next;
      await withTimeout(s.ready, hub.options.requestTimeout, `join ${next}`);
    } finally {
      joining--;
    }
    const members = (await hub.presence(channel)).filter((e) => e.client !== hub.clientId);
    session.setPrompt(`#${next}> `);
    say(`* you joined #${sanitize(next)}${members.length ? `; here: ${members.map(who).join(', ')}` : '; nobody else is here'}`, 'gray');
  }

  try {
    await join(room);
  } catch (err) {
    hub.close();
    throw new CliError(`cannot join #${room}: ${describeError(err)}`);
  }
  if (session.interactive) say(`* connected to ${hub.url} as ${sanitize(name ?? hub.clientId ?? '')}; /help for commands`, 'gray');

  async function runLine(line: string): Promise<void | 'quit'> {
    if (line.trim() === '') return;
    try {
      if (!line.startsWith('/') || line.startsWith('//')) {
        await hub.publish(channelOf(room), { text: line.startsWith('//') ? line.slice(1) : line });
        return;
      }
      const [word, rest] = splitWord(line.slice(1));
      const arg = rest.trim();
      switch (word.toLowerCase()) {
        case 'broadcast': {
          if (!arg) return say('usage: /broadcast <msg>', 'red');
          await hub.broadcast({ text: arg });
          return;
        }
        case 'list':
        case 'who': {
          const members = await hub.presence(channelOf(room));
          const count = members.length === 1 ? '1 person' : `${members.length} people`;
          say(`* ${count} in #${sanitize(room)}: ${members.map((e) => who(e) + (e.client === hub.clientId ? ' (you)' : '')).join(', ')}`, 'gray');
          return;
        }
        case 'ping':
          say(`* pong in ${await hub.ping()} ms`, 'gray');
          return;
        case 'join': {
          if (!arg) return say('usage: /join <room>', 'red');
          if (arg === room) return say(`* you are already in #${sanitize(room)}`, 'gray');
          const problem = roomError(arg);
          if (problem) return say(problem, 'red');
          const old = sub;
          const oldRoom = room;
          sub = undefined;
          await old?.unsubscribe();
          say(`* you left #${sanitize(oldRoom)}`, 'gray');
          await join(arg);
          return;
        }
        case 'help':
          say(COMMANDS.map(([u, h]) => `  ${u.padEnd(20)}${h}`).join('\n'));
          return;
        case 'quit':
        case 'exit':
          return 'quit';
        default:
          say(`unknown command /${sanitize(word)} (try /help)`, 'red');
          return;
      }
    } catch (err) {
      say(describeError(err), 'red');
    }
  }

  const code = await session.start();
  closing = true;
  finish(hub, code);
}
