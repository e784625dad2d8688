import { Command } from 'commander';
import { VERSION } from '../version.js';
import { benchCommand } from './bench.js';
import { certCommand } from './cert.js';
import { chatCommand } from './chat.js';
import { clientCommand } from './client.js';
import { pubCommand } from './pub.js';
import { serveCommand } from './serve.js';
import { subCommand } from './sub.js';
import { tokenCommand } from './token.js';

const program = new Command('hubbub')
  .description('Hubbub: a real-time messaging server (WebSocket pub/sub, presence, direct messages, HTTP API)')
  .version(VERSION)
  .addCommand(serveCommand())
  .addCommand(subCommand())
  .addCommand(pubCommand())
  .addCommand(clientCommand())
  .addCommand(chatCommand())
  .addCommand(tokenCommand())
  .addCommand(certCommand())
  .addCommand(benchCommand());

await program.parseAsync(process.argv);
