/**
 * `hubbub token`: sign a JWT for development and testing; `hubbub token verify`: check a token
 * with the server's own verifier, so it says exactly what `hubbub serve` would say about it.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { Command, InvalidArgumentError, Option } from 'commander';
import { decodeJwt, SignJWT, type JWTPayload } from 'jose';
import { TokenVerifier } from '../auth/jwt.js';
import { ConfigError, parseDuration } from '../config.js';
import { HubbubError } from '../protocol/errors.js';
import { action, CliError, Exit, usageExit } from './common.js';

const HMAC = ['HS256', 'HS384', 'HS512'];
const SIGNING_ALGORITHMS = [...HMAC, 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

interface SignOptions {
  sub?: string;
  name?: string;
  channels?: string[];
  info?: unknown;
  ttl: number;
  iss?: string;
  aud?: string;
  alg?: string;
  secret?: string;
  privateKey?: string;
}

interface VerifyOptions {
  secret?: string;
  publicKey?: string;
  jwks?: string;
  iss?: string;
  aud?: string;
  alg?: string[];
  clockTolerance: number;
}

/**
 * `token` groups `sign` (the default: `hubbub token --sub alice …`) and `verify`. Signing is a default
 * subcommand rather than an action of `token` itself because both share option names (--secret,
 * --iss, --aud, --alg): options of a parent command are consumed before its subcommand sees them,
 * so `hubbub token verify <t> --secret s` would hand the secret to the signing options.
 */
export function tokenCommand(): Command {
  return new Command('token')
    .description('sign a JWT for hubbub clients (development and testing); `hubbub token verify` checks one')
    .usage('[sign] --sub <user> [options] | verify <token> [options]')
    .helpOption(false) // `hubbub token --help` is the help of the default command, sign
    .addHelpText('after', '\nRun hubbub token --help for the signing options, hubbub token verify --help for verification.')
    .exitOverride(usageExit)
    .addCommand(signCommand(), { isDefault: true })
    .addCommand(verifyCommand());
}

function signCommand(): Command {
  return new Command('sign')
    .description('sign a JWT (the default: `hubbub token …` is `hubbub token sign …`); print it on stdout')
    .option('-s, --sub <user>', 'the user id (sub claim); required')
    .option('-n, --name <name>', 'display name (name claim)')
    .addOption(new Option('-c, --channels <patterns>', 'channel patterns the token grants, comma-separated (channels claim)').argParser(list))
    .addOption(new Option('--info <json>', 'JSON shown in presence (info claim)').argParser(json))
    .addOption(new Option('-t, --ttl <duration>', 'lifetime: 30s, 10m, 1h, 1d, …; 0 for no expiry').default(3_600_000, '1h').argParser(ttl))
    .addOption(new Option('--iss <issuer>', 'issuer (iss claim)').env('HUBBUB_JWT_ISSUER'))
    .addOption(new Option('--aud <audience>', 'audience (aud claim)').env('HUBBUB_JWT_AUDIENCE'))
    .addOption(new Option('--alg <alg>', 'signing algorithm (default: HS256 with a secret, else the one of the key type)').choices(SIGNING_ALGORITHMS))
    .addOption(new Option('--secret <secret>', 'shared secret for HS256/HS384/HS512').env('HUBBUB_JWT_SECRET'))
    .option('--private-key <file>', 'PEM private key for RS*/PS*/ES*/EdDSA (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA)')
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
Prints the token on stdout and nothing else, so TOKEN=$(hubbub token …) works. The server must
know the matching key: hubbub serve --jwt-secret <secret>, or --jwt-public-key <public PEM>.
A secret given with --secret is visible to other local users in the process list; prefer
HUBBUB_JWT_SECRET. --iss and --aud default to HUBBUB_JWT_ISSUER and HUBBUB_JWT_AUDIENCE, like the server.
Exit codes: 0 token printed, 1 failure (unreadable or unusable key), 2 bad usage.
To check a token: hubbub token verify --help.

Examples:
  hubbub token --sub alice --secret dev-secret
  TOKEN=$(HUBBUB_JWT_SECRET=dev-secret hubbub token --sub alice --name Alice --channels 'chat/#,user/alice/#' --ttl 8h)
  hubbub token --sub bot --info '{"role":"bot"}' --ttl 0 --secret dev-secret     # never expires
  hubbub token --sub alice --private-key jwt-private.pem --iss https://auth.example --aud hubbub
  hubbub token verify "$TOKEN" --secret dev-secret`,
    )
    .action(action('token', sign));
}

function verifyCommand(): Command {
  return new Command('verify')
    .description('verify a token as the server would; print its claims as JSON')
    .argument('<token>', 'the JWT; - reads it from stdin')
    .addOption(new Option('--secret <secret>', 'shared secret for HS256/HS384/HS512').env('HUBBUB_JWT_SECRET'))
    .addOption(new Option('--public-key <file>', 'PEM public key for RS*/PS*/ES*/EdDSA tokens').env('HUBBUB_JWT_PUBLIC_KEY'))
    .addOption(new Option('--jwks <file|url>', 'JWKS file or http(s) URL').env('HUBBUB_JWKS'))
    .addOption(new Option('--iss <issuer>', 'require this issuer').env('HUBBUB_JWT_ISSUER'))
    .addOption(new Option('--aud <audience>', 'require this audience').env('HUBBUB_JWT_AUDIENCE'))
    .addOption(new Option('--alg <list>', 'algorithm allowlist, comma-separated (default: every one the keys allow)').env('HUBBUB_JWT_ALGORITHMS').argParser(list))
    .addOption(new Option('--clock-tolerance <duration>', 'clock skew allowed for exp and nbf').env('HUBBUB_JWT_CLOCK_TOLERANCE').default(5000, '5s').argParser(duration))
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
The options and their environment variables are the server's (--jwt-secret, --jwt-public-key, --jwks,
--jwt-algorithms, --jwt-issuer, --jwt-audience, --jwt-clock-tolerance), and the check is the server's own.
A valid token: its claims as JSON on stdout, a one-line summary with the expiry on stderr.
Exit codes: 0 valid, 1 invalid (the reason on stderr, e.g. "invalid token: expired") or an unreadable key, 2 bad usage.

Examples:
  hubbub token verify "$TOKEN" --secret dev-secret
  hubbub token verify "$TOKEN" --public-key jwt-public.pem --iss https://auth.example --aud hubbub
  hubbub token verify "$TOKEN" --jwks https://auth.example/.well-known/jwks.json | jq .channels
  hubbub token --sub alice --secret s | hubbub token verify - --secret s`,
    )
    .action(action('token verify', verify));
}

async function sign(opts: SignOptions, cmd: Command): Promise<void> {
  if (!opts.sub) throw new CliError('--sub <user> is required (the user id the token is for)', Exit.Usage);
  // A secret from the environment gives way to an explicit --private-key; two explicit keys are a mistake.
  const secretFromEnv = cmd.getOptionValueSource('secret') === 'env';
  if (opts.secret !== undefined && opts.privateKey !== undefined && !secretFromEnv) throw new CliError('give --secret or --private-key, not both', Exit.Usage);
  let key: Uint8Array | KeyObject;
  let alg: string;
  if (opts.privateKey !== undefined) {
    const privateKey = readPrivateKey(opts.privateKey);
    const fitting = algorithmsFor(privateKey, opts.privateKey);
    alg = opts.alg ?? fitting[0]!;
    if (HMAC.includes(alg)) throw new CliError(`--alg ${alg} needs --secret, not a private key`, Exit.Usage);
    if (!fitting.includes(alg)) throw new CliError(`--alg ${alg} does not fit the ${privateKey.asymmetricKeyType} key in ${opts.privateKey} (it signs ${fitting.join(', ')})`, Exit.Usage);
    key = privateKey;
  } else if (opts.secret !== undefined && opts.secret !== '') {
    alg = opts.alg ?? 'HS256';
    if (!HMAC.includes(alg)) throw new CliError(`--alg ${alg} needs --private-key; a secret signs HS256, HS384 or HS512`, Exit.Usage);
    key = new TextEncoder().encode(opts.secret);
  } else {
    throw new CliError('no signing key: give --secret <secret> (or HUBBUB_JWT_SECRET) or --private-key <file>', Exit.Usage);
  }

  const claims: JWTPayload = {};
  if (opts.name !== undefined) claims.name = opts.name;
  if (opts.channels !== undefined) claims.channels = opts.channels;
  if (opts.info !== undefined) claims.info = opts.info;
  const jwt = new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).setSubject(opts.sub).setIssuedAt();
  if (opts.ttl > 0) jwt.setExpirationTime(Math.floor(Date.now() / 1000) + opts.ttl / 1000);
  if (opts.iss) jwt.setIssuer(opts.iss);
  if (opts.aud) jwt.setAudience(opts.aud);
  let token: string;
  try {
    token = await jwt.sign(key);
  } catch (err) {
    throw new CliError(`cannot sign with ${alg}: ${(err as Error).message}`);
  }
  process.stdout.write(`${token}\n`);
}

async function verify(raw: string, opts: VerifyOptions): Promise<void> {
  const token = (raw === '-' ? await text(process.stdin) : raw).trim();
  if (opts.alg?.some((a) => a.toLowerCase() === 'none')) throw new CliError('--alg: "none" is never allowed', Exit.Usage);
  let verifier: TokenVerifier | undefined;
  try {
    verifier = TokenVerifier.create({
      jwt_secret: opts.secret ?? '',
      jwt_public_key: opts.publicKey ?? '',
      jwks: opts.jwks ?? '',
      jwt_algorithms: opts.alg ?? [],
      jwt_issuer: opts.iss ?? '',
      jwt_audience: opts.aud ?? '',
      jwt_clock_tolerance: opts.clockTolerance,
    });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(flagNames(err.message), /^cannot read|is not a PEM|has no "keys"|unsupported key type/.test(err.message) ? Exit.Failure : Exit.Usage);
    throw err;
  }
  if (!verifier) throw new CliError('no verification key: give --secret <secret>, --public-key <file> or --jwks <file|url>', Exit.Usage);
  let identity;
  try {
    identity = await verifier.verify(token);
  } catch (err) {
    if (err instanceof HubbubError) throw new CliError(err.message);
    throw err;
  }
  // The signature and the claims checked out, so decoding the payload is now safe.
  process.stdout.write(`${JSON.stringify(decodeJwt(token), null, 2)}\n`);
  const expiry = identity.expiresAt === undefined ? 'never expires' : `expires ${new Date(identity.expiresAt).toISOString()} (${relative(identity.expiresAt - Date.now())})`;
  process.stderr.write(`hubbub token verify: valid token for user ${JSON.stringify(identity.user)}; ${expiry}\n`);
}

/** The server's configuration errors, in terms of this command's options. */
function flagNames(message: string): string {
  return message
    .replace(/\bjwt_public_key\b/g, '--public-key')
    .replace(/\bjwt_secret\b/g, '--secret')
    .replace(/\bjwt_algorithms\b/g, '--alg')
    .replace(/\bjwks\b/g, '--jwks');
}

function readPrivateKey(file: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read the private key ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return createPrivateKey(pem);
  } catch {
    throw new CliError(`${file} is not a PEM private key (a public key or certificate will not do)`);
  }
}

/** The algorithms a private key can sign, its natural one first. */
function algorithmsFor(key: KeyObject, file: string): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return ['ES256'];
      if (curve === 'secp384r1') return ['ES384'];
      if (curve === 'secp521r1') return ['ES512'];
      throw new CliError(`${file}: EC curve ${curve ?? '?'} has no JWT algorithm (use P-256, P-384 or P-521)`);
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      throw new CliError(`${file}: ${key.asymmetricKeyType ?? 'this'} keys cannot sign JWTs (use RSA, EC or Ed25519)`);
  }
}

/** "in 59m 58s", "3h 2m ago": a human form of a time difference in ms. */
function relative(ms: number): string {
  let s = Math.round(Math.abs(ms) / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (s >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  const span = parts.slice(0, 2).join(' ');
  return ms >= 0 ? `in ${span}` : `${span} ago, within the clock tolerance`;
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function json(value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch {
    throw new InvalidArgumentError('expected JSON, e.g. \'{"role":"admin"}\'.');
  }
}

function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new InvalidArgumentError('expected a duration such as 500ms, 5s, 1m.');
  }
}

/** A token lifetime: a duration with a unit (a bare number would be milliseconds, which surprises), 0 for none. */
function ttl(value: string): number {
  if (/^\s*0+\s*$/.test(value)) return 0;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) throw new InvalidArgumentError(`give a unit: ${value.trim()}s, ${value.trim()}m, ${value.trim()}h or ${value.trim()}d (0: no expiry).`);
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch {
    throw new InvalidArgumentError('expected a duration such as 30s, 10m, 1h, 1d (0: no expiry).');
  }
  if (ms !== 0 && ms < 1000) throw new InvalidArgumentError('expected at least 1s (0: no expiry).');
  return Math.round(ms / 1000) * 1000;
}
