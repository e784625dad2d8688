/**
 * Server configuration. One table describes every setting (its config-file key, flag, environment
 * variable, type, default and meaning); the CLI flags, the environment reader, the file reader and
 * docs/configuration.md all come from it. Precedence: flags, then environment, then file, then defaults.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export interface Config {
  host: string;
  port: number;
  ws_path: string;
  api_keys: string[];
  heartbeat: number;
  max_message_size: number;
  max_connections: number;
  max_queue_bytes: number;
  shutdown_timeout: number;
  log_level: LogLevel;
  auth: 'optional' | 'required';
  auth_timeout: number;
  jwt_secret: string;
  jwt_public_key: string;
  jwks: string;
  jwt_algorithms: string[];
  jwt_issuer: string;
  jwt_audience: string;
  jwt_clock_tolerance: number;
  allowed_origins: string[];
  tls_cert: string;
  tls_key: string;
  allow_client_send: boolean;
  allow_client_broadcast: boolean;
  allow_client_list: boolean;
  max_connections_per_ip: number;
  max_connections_per_user: number;
  connection_rate_per_ip: number;
  message_rate: number;
  message_burst: number;
  max_subscriptions: number;
  max_channel_length: number;
  max_transfer_size: number;
  max_transfers: number;
  permessage_deflate: boolean;
  compression_threshold: number;
  storage: 'sqlite' | 'memory';
  data_dir: string;
  max_stored_messages: number;
  max_stored_bytes: number;
  stored_message_ttl: number;
  /** Per-namespace rules (config file only); see src/auth/permissions.ts. */
  namespaces: Record<string, NamespaceRuleInput>;
  /** The rule for channels whose namespace has none (config file only). */
  default_namespace: NamespaceRuleInput;
}

/** A namespace rule as written in the config file; validated by src/auth/permissions.ts. */
export type NamespaceRuleInput = Record<string, unknown>;

type Kind = 'string' | 'text' | 'port' | 'int' | 'bytes' | 'duration' | 'list' | 'level' | 'auth' | 'storage' | 'bool' | 'object';

export interface Setting {
  key: keyof Config;
  flag: string;
  /** Placeholder shown in --help. */
  arg: string;
  env: string;
  kind: Kind;
  default: Config[keyof Config];
  description: string;
}

export const settings: Setting[] = [
  { key: 'host', flag: '--host', arg: '<address>', env: 'HUBBUB_HOST', kind: 'string', default: '0.0.0.0', description: 'Address to listen on for HTTP and WebSocket.' },
  { key: 'port', flag: '--port', arg: '<port>', env: 'HUBBUB_PORT', kind: 'port', default: 8080, description: 'TCP port for HTTP and WebSocket (0 picks a free port).' },
  { key: 'ws_path', flag: '--ws-path', arg: '<path>', env: 'HUBBUB_WS_PATH', kind: 'string', default: '/ws', description: 'URL path of the WebSocket endpoint.' },
  { key: 'api_keys', flag: '--api-key', arg: '<key>', env: 'HUBBUB_API_KEY', kind: 'list', default: [], description: 'Key(s) for the HTTP server API; repeat the flag or separate with commas. With none, the API answers loopback requests only.' },
  { key: 'heartbeat', flag: '--heartbeat', arg: '<ms>', env: 'HUBBUB_HEARTBEAT', kind: 'duration', default: 25000, description: 'Heartbeat period: the server pings each client this often and closes one silent for about two periods.' },
  { key: 'max_message_size', flag: '--max-message-size', arg: '<bytes>', env: 'HUBBUB_MAX_MESSAGE_SIZE', kind: 'bytes', default: 1048576, description: 'Largest frame a client may send (and largest HTTP API body); a larger frame closes the connection with 1009.' },
  { key: 'max_connections', flag: '--max-connections', arg: '<n>', env: 'HUBBUB_MAX_CONNECTIONS', kind: 'int', default: 0, description: 'Most concurrent WebSocket connections; further upgrades get HTTP 503. 0 means no limit but the operating system’s.' },
  { key: 'max_queue_bytes', flag: '--max-queue-bytes', arg: '<bytes>', env: 'HUBBUB_MAX_QUEUE_BYTES', kind: 'bytes', default: 8388608, description: 'Bound on bytes waiting to be written to one client: a client above it for 1 s, or at twice it, is closed as a slow consumer (4001).' },
  { key: 'shutdown_timeout', flag: '--shutdown-timeout', arg: '<ms>', env: 'HUBBUB_SHUTDOWN_TIMEOUT', kind: 'duration', default: 5000, description: 'On SIGINT/SIGTERM, how long clients get to close before they are dropped.' },
  { key: 'log_level', flag: '--log-level', arg: '<level>', env: 'HUBBUB_LOG_LEVEL', kind: 'level', default: 'info', description: 'One of trace, debug, info, warn, error, fatal, silent.' },
  // ---- access control
  { key: 'auth', flag: '--auth', arg: '<mode>', env: 'HUBBUB_AUTH', kind: 'auth', default: 'optional', description: 'optional: anonymous clients are allowed where namespace rules permit; required: a connection must present a valid token within auth_timeout.' },
  { key: 'auth_timeout', flag: '--auth-timeout', arg: '<ms>', env: 'HUBBUB_AUTH_TIMEOUT', kind: 'duration', default: 10000, description: 'With auth required, how long a connection has to present a valid token before it is closed (4501).' },
  { key: 'jwt_secret', flag: '--jwt-secret', arg: '<secret>', env: 'HUBBUB_JWT_SECRET', kind: 'text', default: '', description: 'Shared secret for HS256/HS384/HS512 tokens.' },
  { key: 'jwt_public_key', flag: '--jwt-public-key', arg: '<file>', env: 'HUBBUB_JWT_PUBLIC_KEY', kind: 'text', default: '', description: 'PEM file with the public key (SPKI) for RS256/ES256/EdDSA tokens.' },
  { key: 'jwks', flag: '--jwks', arg: '<file|url>', env: 'HUBBUB_JWKS', kind: 'text', default: '', description: 'JWKS file or http(s) URL with the token verification keys (a URL is cached and refreshed).' },
  { key: 'jwt_algorithms', flag: '--jwt-algorithms', arg: '<list>', env: 'HUBBUB_JWT_ALGORITHMS', kind: 'list', default: [], description: 'Algorithm allowlist. Empty means: HS256,HS384,HS512 with a secret; with a PEM key, those of its type (RSA: RS256/384/512, RSA-PSS: PS256/384/512, EC: the ES algorithm of its curve, Ed25519: EdDSA); with a JWKS: RS256,ES256,EdDSA. "none" is never accepted.' },
  { key: 'jwt_issuer', flag: '--jwt-issuer', arg: '<iss>', env: 'HUBBUB_JWT_ISSUER', kind: 'text', default: '', description: 'When set, tokens must carry this iss.' },
  { key: 'jwt_audience', flag: '--jwt-audience', arg: '<aud>', env: 'HUBBUB_JWT_AUDIENCE', kind: 'text', default: '', description: 'When set, tokens must carry this aud.' },
  { key: 'jwt_clock_tolerance', flag: '--jwt-clock-tolerance', arg: '<ms>', env: 'HUBBUB_JWT_CLOCK_TOLERANCE', kind: 'duration', default: 5000, description: 'Clock skew allowed when checking exp and nbf.' },
  { key: 'allowed_origins', flag: '--allowed-origins', arg: '<list>', env: 'HUBBUB_ALLOWED_ORIGINS', kind: 'list', default: [], description: 'Exact Origin values allowed to open WebSockets (comma-separated); others get 403. Empty allows any origin, with a warning.' },
  { key: 'tls_cert', flag: '--tls-cert', arg: '<file>', env: 'HUBBUB_TLS_CERT', kind: 'text', default: '', description: 'PEM certificate (chain): serve HTTPS and WSS on the same port (needs tls_key).' },
  { key: 'tls_key', flag: '--tls-key', arg: '<file>', env: 'HUBBUB_TLS_KEY', kind: 'text', default: '', description: 'PEM private key for tls_cert.' },
  { key: 'allow_client_send', flag: '--allow-client-send', arg: '<bool>', env: 'HUBBUB_ALLOW_CLIENT_SEND', kind: 'bool', default: true, description: 'Whether clients may send direct messages (the HTTP API always may).' },
  { key: 'allow_client_broadcast', flag: '--allow-client-broadcast', arg: '<bool>', env: 'HUBBUB_ALLOW_CLIENT_BROADCAST', kind: 'bool', default: false, description: 'Whether clients may broadcast to everyone (the HTTP API always may).' },
  { key: 'allow_client_list', flag: '--allow-client-list', arg: '<bool>', env: 'HUBBUB_ALLOW_CLIENT_LIST', kind: 'bool', default: true, description: 'Whether clients may list every connection (the clients frame shows user ids, names and token info); the HTTP API always may.' },
  // ---- limits
  { key: 'max_connections_per_ip', flag: '--max-connections-per-ip', arg: '<n>', env: 'HUBBUB_MAX_CONNECTIONS_PER_IP', kind: 'int', default: 0, description: 'Most concurrent connections from one IP address (HTTP 503 beyond). 0: no limit (many users may share one address behind NAT).' },
  { key: 'max_connections_per_user', flag: '--max-connections-per-user', arg: '<n>', env: 'HUBBUB_MAX_CONNECTIONS_PER_USER', kind: 'int', default: 0, description: 'Most concurrent connections of one user; the connection that would exceed it is closed (4004). 0: no limit.' },
  { key: 'connection_rate_per_ip', flag: '--connection-rate-per-ip', arg: '<n>', env: 'HUBBUB_CONNECTION_RATE_PER_IP', kind: 'int', default: 0, description: 'Most new connections per second from one IP address (burst of the same size; HTTP 429 beyond). 0: no limit.' },
  { key: 'message_rate', flag: '--message-rate', arg: '<n>', env: 'HUBBUB_MESSAGE_RATE', kind: 'int', default: 1000, description: 'Frames per second one connection may send (token bucket). Over it: rate_limited errors; still over it after a burst’s worth of refusals: closed (4003). 0: no limit.' },
  { key: 'message_burst', flag: '--message-burst', arg: '<n>', env: 'HUBBUB_MESSAGE_BURST', kind: 'int', default: 2000, description: 'Bucket size of message_rate: frames a connection may send at once after a quiet spell.' },
  { key: 'max_subscriptions', flag: '--max-subscriptions', arg: '<n>', env: 'HUBBUB_MAX_SUBSCRIPTIONS', kind: 'int', default: 1000, description: 'Most subscriptions per connection (rate_limited beyond). 0: no limit.' },
  { key: 'max_channel_length', flag: '--max-channel-length', arg: '<bytes>', env: 'HUBBUB_MAX_CHANNEL_LENGTH', kind: 'int', default: 255, description: 'Longest channel name or pattern, in bytes of UTF-8 (at most 255).' },
  { key: 'max_transfer_size', flag: '--max-transfer-size', arg: '<bytes>', env: 'HUBBUB_MAX_TRANSFER_SIZE', kind: 'bytes', default: 67108864, description: 'Largest payload a client may send as a chunked transfer (declared size; too_large beyond). Chunks are relayed as they arrive, never held whole.' },
  { key: 'max_transfers', flag: '--max-transfers', arg: '<n>', env: 'HUBBUB_MAX_TRANSFERS', kind: 'int', default: 4, description: 'Most transfers one connection may have open at once (rate_limited beyond). 0: no limit.' },
  // ---- compression
  { key: 'permessage_deflate', flag: '--permessage-deflate', arg: '<bool>', env: 'HUBBUB_PERMESSAGE_DEFLATE', kind: 'bool', default: false, description: 'Offer WebSocket permessage-deflate (with server_no_context_takeover: each publication is compressed once for all its recipients). Saves bandwidth on text payloads, costs CPU; see docs/performance.md.' },
  // ---- durable delivery (history per namespace: history_size, history_ttl in namespaces)
  { key: 'storage', flag: '--storage', arg: '<engine>', env: 'HUBBUB_STORAGE', kind: 'storage', default: 'sqlite', description: 'Where history, retained and stored direct messages live: sqlite (the file hubbub.db in data_dir; survives restarts) or memory (lost on restart).' },
  { key: 'data_dir', flag: '--data-dir', arg: '<dir>', env: 'HUBBUB_DATA_DIR', kind: 'string', default: './data', description: 'Directory of the SQLite database (created if missing).' },
  { key: 'max_stored_messages', flag: '--max-stored-messages', arg: '<n>', env: 'HUBBUB_MAX_STORED_MESSAGES', kind: 'int', default: 1000, description: 'Most stored (persist) direct messages per user awaiting acknowledgement; one more is refused with quota_exceeded. 0: no limit.' },
  { key: 'max_stored_bytes', flag: '--max-stored-bytes', arg: '<bytes>', env: 'HUBBUB_MAX_STORED_BYTES', kind: 'bytes', default: 4194304, description: 'Most payload bytes of stored direct messages per user; beyond: quota_exceeded. 0: no limit.' },
  { key: 'stored_message_ttl', flag: '--stored-message-ttl', arg: '<duration>', env: 'HUBBUB_STORED_MESSAGE_TTL', kind: 'duration', default: 604800000, description: 'How long a stored direct message waits for acknowledgement before it is dropped.' },
  { key: 'compression_threshold', flag: '--compression-threshold', arg: '<bytes>', env: 'HUBBUB_COMPRESSION_THRESHOLD', kind: 'bytes', default: 1024, description: 'With permessage_deflate, frames smaller than this are sent uncompressed.' },
];

/** Settings that only a config file can hold (structured values). */
export const fileOnlySettings: { key: keyof Config; default: Config[keyof Config]; description: string }[] = [
  { key: 'namespaces', default: {}, description: 'Per-namespace rules: {"<namespace>": {subscribe, publish, presence, history, user_channel, history_size, history_ttl}}.' },
  { key: 'default_namespace', default: {}, description: 'The rule for channels whose namespace has no entry in namespaces.' },
];

export const defaults: Config = Object.fromEntries([...settings, ...fileOnlySettings].map((s) => [s.key, s.default])) as unknown as Config;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1000, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** A duration in ms: a number, or a string such as "250ms", "25s", "10m", "1h". */
export function parseDuration(value: unknown, what = 'duration'): number {
  return parseUnits(value, DURATION_UNITS, 'ms', what);
}

/** A size in bytes: a number, or a string such as "64KiB", "1MiB", "8mb". */
export function parseBytes(value: unknown, what = 'size'): number {
  return parseUnits(value, BYTE_UNITS, 'b', what);
}

function parseUnits(value: unknown, units: Record<string, number>, base: string, what: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = m ? (m[2] || base).toLowerCase() : '';
    if (m && units[unit] !== undefined) return Math.round(Number(m[1]) * units[unit]!);
  }
  throw new ConfigError(`${what}: expected a non-negative number or a string like ${Object.keys(units).map((u) => `"10${u}"`).slice(0, 3).join(', ')}, got ${JSON.stringify(value)}`);
}

function coerce(setting: Setting, value: unknown, source: string): Config[keyof Config] {
  const what = `${setting.key} (${source})`;
  switch (setting.kind) {
    case 'string':
      if (typeof value !== 'string' || value === '') throw new ConfigError(`${what}: expected a non-empty string`);
      return value;
    case 'text':
      if (typeof value !== 'string') throw new ConfigError(`${what}: expected a string`);
      return value;
    case 'auth':
      if (value !== 'optional' && value !== 'required') throw new ConfigError(`${what}: expected optional or required, got ${JSON.stringify(value)}`);
      return value;
    case 'storage':
      if (value !== 'sqlite' && value !== 'memory') throw new ConfigError(`${what}: expected sqlite or memory, got ${JSON.stringify(value)}`);
      return value;
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (value === 'true' || value === '1' || value === 'yes') return true;
      if (value === 'false' || value === '0' || value === 'no') return false;
      throw new ConfigError(`${what}: expected true or false, got ${JSON.stringify(value)}`);
    case 'object':
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`${what}: expected an object`);
      return value as Record<string, unknown>;
    case 'port': {
      const n = typeof value === 'string' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${what}: expected a port number 0-65535, got ${JSON.stringify(value)}`);
      return n;
    }
    case 'int': {
      const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new ConfigError(`${what}: expected a non-negative integer, got ${JSON.stringify(value)}`);
      return n;
    }
    case 'bytes':
      return parseBytes(value, what);
    case 'duration':
      return parseDuration(value, what);
    case 'list': {
      const items = Array.isArray(value) ? value : [value];
      const out: string[] = [];
      for (const item of items) {
        if (typeof item !== 'string') throw new ConfigError(`${what}: expected strings`);
        out.push(...item.split(',').map((s) => s.trim()).filter(Boolean));
      }
      return out;
    }
    case 'level':
      if (!LEVELS.includes(value as LogLevel)) throw new ConfigError(`${what}: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(value)}`);
      return value as LogLevel;
  }
}

/** Read a JSON or YAML config file into a partial config (unknown keys are an error: they are usually typos). */
export function readConfigFile(path: string): Partial<Config> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  const isYaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
  try {
    raw = isYaml ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid ${isYaml ? 'YAML' : 'JSON'}: ${(err as Error).message}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${path} must hold an object`);
  const out: Partial<Config> = {};
  for (const [key, value] of Object.entries(raw)) {
    const setting = settings.find((s) => s.key === key) ?? fileOnly(key);
    if (!setting) throw new ConfigError(`config file ${path}: unknown key "${key}" (see docs/configuration.md)`);
    (out as Record<string, unknown>)[key] = coerce(setting, value, path);
  }
  return out;
}

function fileOnly(key: string): Setting | undefined {
  const f = fileOnlySettings.find((s) => s.key === key);
  return f && { key: f.key, flag: '', arg: '', env: '', kind: 'object', default: f.default, description: f.description };
}

/** Settings present in the environment. */
export function readEnv(env: NodeJS.ProcessEnv): Partial<Config> {
  const out: Partial<Config> = {};
  for (const s of settings) {
    const v = env[s.env];
    if (v !== undefined && v !== '') (out as Record<string, unknown>)[s.key] = coerce(s, v, s.env);
  }
  return out;
}

/** Settings given as flags (values as parsed by the CLI, keyed by config key). */
export function readFlags(flags: Partial<Record<keyof Config, unknown>>): Partial<Config> {
  const out: Partial<Config> = {};
  for (const s of settings) {
    const v = flags[s.key];
    if (v !== undefined) (out as Record<string, unknown>)[s.key] = coerce(s, v, s.flag);
  }
  return out;
}

/** Merge the layers: flags over environment over file over defaults. */
export function loadConfig(opts: { flags?: Partial<Record<keyof Config, unknown>>; env?: NodeJS.ProcessEnv; file?: string }): Config {
  const fromFile = opts.file ? readConfigFile(opts.file) : {};
  const fromEnv = readEnv(opts.env ?? {});
  const fromFlags = readFlags(opts.flags ?? {});
  const config = { ...defaults, ...fromFile, ...fromEnv, ...fromFlags };
  if (!config.ws_path.startsWith('/')) throw new ConfigError(`ws_path must start with /, got ${JSON.stringify(config.ws_path)}`);
  if (config.heartbeat < 100 || config.heartbeat > 3_600_000) throw new ConfigError(`heartbeat must be between 100 ms and 1 h, got ${config.heartbeat}`);
  if (config.max_message_size < 256) throw new ConfigError(`max_message_size must be at least 256 bytes`);
  // A delivered message is its payload plus an envelope, so one full-size message must fit with room to spare.
  if (config.max_queue_bytes < 2 * config.max_message_size) throw new ConfigError('max_queue_bytes must be at least twice max_message_size');
  if (config.max_channel_length < 1 || config.max_channel_length > 255) throw new ConfigError('max_channel_length must be between 1 and 255');
  if (Boolean(config.tls_cert) !== Boolean(config.tls_key)) throw new ConfigError('tls_cert and tls_key go together: set both or neither');
  if (config.jwt_algorithms.some((a) => a.toLowerCase() === 'none')) throw new ConfigError('jwt_algorithms: "none" is never allowed');
  return config;
}
