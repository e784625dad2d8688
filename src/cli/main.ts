import { Command } from 'commander';
import { VERSION } from '../version.js';
import { serveCommand } from './serve.js';

const program = new Command('hubbub')
  .description('Hubbub: a real-time messaging server (WebSocket pub/sub, presence, direct messages, HTTP API)')
  .version(VERSION)
  .addCommand(serveCommand());

await program.parseAsync(process.argv);
