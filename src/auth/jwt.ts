/**
 * Token verification with `jose`: HMAC (a shared secret), RSA/EC/EdDSA (a PEM public key), or a
 * JWKS file or URL. An explicit algorithm allowlist closes the classic holes: `alg: none` is never
 * accepted, and a token can only be checked with the key meant for its algorithm family (an HS256
 * token is never checked against a public key, which would let anyone who has the key sign).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../config.js';
import { ConfigError } from '../config.js';
import { ErrorCode, HubbubError } from '../protocol/errors.js';
import type { Json } from '../protocol/frames.js';

/** Who a verified token says the connection is. */
export interface Identity {
  /** The `sub` claim. */
  user: string;
  name?: string;
  /** Channel patterns the token grants (namespace rule `token`). */
  channels?: string[];
  /** Arbitrary JSON shown in presence. */
  info?: Json;
  /** When the token expires, in ms since the epoch (undefined: never). */
  expiresAt?: number;
}

export type VerifierConfig = Pick<Config, 'jwt_secret' | 'jwt_public_key' | 'jwks' | 'jwt_algorithms' | 'jwt_issuer' | 'jwt_audience' | 'jwt_clock_tolerance'>;

const HMAC = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

export class TokenVerifier {
  private constructor(
    private readonly secret: Uint8Array | undefined,
    private readonly publicKey: KeyObject | JWTVerifyGetKey | undefined,
    readonly algorithms: string[],
    private readonly options: VerifierConfig,
  ) {}

  /** Build the verifier from configuration; undefined when no key of any kind is configured. */
  static create(config: VerifierConfig): TokenVerifier | undefined {
    const secret = config.jwt_secret ? new TextEncoder().encode(config.jwt_secret) : undefined;
    if (config.jwt_public_key && config.jwks) throw new ConfigError('set jwt_public_key or jwks, not both');
    let publicKey: KeyObject | JWTVerifyGetKey | undefined;
    let keyAlgorithms: string[] = [];
    if (config.jwt_public_key) {
      let pem: string;
      try {
        pem = readFileSync(config.jwt_public_key, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read jwt_public_key ${config.jwt_public_key}: ${(err as Error).message}`);
      }
      let key: KeyObject;
      try {
        key = createPublicKey(pem);
      } catch (err) {
        throw new ConfigError(`jwt_public_key ${config.jwt_public_key} is not a PEM public key: ${(err as Error).message}`);
      }
      publicKey = key;
      keyAlgorithms = algorithmsFor(key);
    } else if (config.jwks) {
      if (/^https?:\/\//.test(config.jwks)) {
        // Cached; refetched after 10 minutes, or sooner (at most every 30 s) when a token names an unknown key id.
        publicKey = createRemoteJWKSet(new URL(config.jwks), { cacheMaxAge: 600_000, cooldownDuration: 30_000, timeoutDuration: 5000 });
      } else {
        let jwks: { keys: unknown[] };
        try {
          jwks = JSON.parse(readFileSync(config.jwks, 'utf8')) as { keys: unknown[] };
        } catch (err) {
          throw new ConfigError(`cannot read the JWKS file ${config.jwks}: ${(err as Error).message}`);
        }
        if (!Array.isArray(jwks?.keys)) throw new ConfigError(`JWKS file ${config.jwks} has no "keys" array`);
        publicKey = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
      }
      keyAlgorithms = ['RS256', 'ES256', 'EdDSA', 'Ed25519'];
    }
    if (!secret && !publicKey) return undefined;
    const algorithms = config.jwt_algorithms.length > 0 ? config.jwt_algorithms : [...(secret ? HMAC : []), ...keyAlgorithms];
    for (const alg of algorithms) {
      if (HMAC.includes(alg) && !secret) throw new ConfigError(`jwt_algorithms: ${alg} needs jwt_secret`);
      if (ASYMMETRIC.includes(alg) && !publicKey) throw new ConfigError(`jwt_algorithms: ${alg} needs jwt_public_key or jwks`);
      if (!HMAC.includes(alg) && !ASYMMETRIC.includes(alg)) throw new ConfigError(`jwt_algorithms: unknown algorithm ${alg}`);
    }
    return new TokenVerifier(secret, publicKey, algorithms, config);
  }

  /** Verify a token. Throws HubbubError `unauthorized` saying why. */
  async verify(token: string): Promise<Identity> {
    if (typeof token !== 'string' || token.length === 0) throw refuse('empty token');
    let payload: JWTPayload;
    try {
      const result = await jwtVerify(token, this.keyFor, {
        algorithms: this.algorithms,
        issuer: this.options.jwt_issuer || undefined,
        audience: this.options.jwt_audience || undefined,
        clockTolerance: this.options.jwt_clock_tolerance / 1000,
      });
      payload = result.payload;
    } catch (err) {
      throw refuse(describe(err));
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') throw refuse('the token has no sub (user id)');
    const identity: Identity = { user: payload.sub };
    if (typeof payload.name === 'string') identity.name = payload.name.slice(0, 128);
    if (payload.channels !== undefined) {
      const channels = payload.channels;
      if (!Array.isArray(channels) || !channels.every((c) => typeof c === 'string')) throw refuse('the channels claim must be an array of strings');
      identity.channels = channels;
    }
    if (payload.info !== undefined) identity.info = payload.info as Json;
    if (typeof payload.exp === 'number') identity.expiresAt = payload.exp * 1000;
    return identity;
  }

  // The key depends on the algorithm family the token claims, and only on that.
  private readonly keyFor: JWTVerifyGetKey = async (header, token) => {
    const alg = header.alg ?? '';
    if (HMAC.includes(alg)) {
      if (!this.secret) throw new errors.JOSEAlgNotAllowed(`${alg} is not accepted`);
      return this.secret;
    }
    if (!this.publicKey) throw new errors.JOSEAlgNotAllowed(`${alg} is not accepted`);
    return typeof this.publicKey === 'function' ? this.publicKey(header, token) : this.publicKey;
  };
}

function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return [curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : 'ES256'];
    }
    case 'ed25519':
      return ['EdDSA', 'Ed25519'];
    default:
      throw new ConfigError(`jwt_public_key: unsupported key type ${key.asymmetricKeyType}`);
  }
}

function refuse(reason: string): HubbubError {
  return new HubbubError(ErrorCode.Unauthorized, `invalid token: ${reason}`);
}

/** A short, safe reason for a verification failure (never the token itself). */
function describe(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'not yet valid';
    if (err.claim === 'iss') return 'wrong issuer';
    if (err.claim === 'aud') return 'wrong audience';
    return `claim ${err.claim} rejected`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key matches the token';
  if (err instanceof errors.JWKSTimeout) return 'the JWKS could not be fetched in time';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed';
  if (err instanceof errors.JOSENotSupported) return 'unsupported algorithm or key';
  if (err instanceof errors.JWKSInvalid || err instanceof errors.JWKSMultipleMatchingKeys) return 'the server’s key set is unusable';
  if (err instanceof errors.JOSEError) return `rejected (${err.code})`;
  // Not a verdict on the token: e.g. the JWKS URL could not be fetched.
  return 'could not be verified (the server could not get its keys)';
}
