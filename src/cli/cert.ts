/** `hubbub cert`: a self-signed development certificate and key for `hubbub serve --tls-cert/--tls-key`. */
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { generate } from 'selfsigned';
import { action, CliError, usageExit, wholeNumber } from './common.js';

interface CertOptions {
  host?: string[];
  out: string;
  days: number;
  force?: boolean;
}

const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];

/** Let a certificate be valid from a little before now, for clocks slightly behind ours. */
const BACKDATE_MS = 5 * 60_000;

export function certCommand(): Command {
  return new Command('cert')
    .description('write a self-signed TLS certificate and key for development (cert.pem, key.pem)')
    .addOption(new Option('-H, --host <name>', `a DNS name or IP address the certificate is for; repeat or separate with commas (default: ${DEFAULT_HOSTS.join(', ')})`).argParser(hosts))
    .option('-o, --out <dir>', 'directory to write cert.pem and key.pem to (created if missing)', 'certs')
    .addOption(new Option('-d, --days <n>', 'days the certificate is valid').default(365).argParser(wholeNumber(1)))
    .option('-f, --force', 'overwrite existing cert.pem and key.pem')
    .exitOverride(usageExit)
    .addHelpText(
      'after',
      `
The certificate is self-signed: clients trust it only when told to, e.g. curl --cacert certs/cert.pem,
NODE_EXTRA_CA_CERTS=certs/cert.pem, or by adding it to the system or browser trust store. It is
for development; use a certificate from a real CA (e.g. Let's Encrypt) in production.
key.pem is written with mode 0600. Existing files are kept unless --force is given.
Exit codes: 0 written, 1 failure (files exist, cannot write), 2 bad usage.

Examples:
  hubbub cert                                        # localhost, 127.0.0.1, ::1 into certs/
  hubbub cert --host localhost --host hub.test --host 192.168.1.20 --days 30
  hubbub cert --out /etc/hubbub/tls --force
  hubbub serve --tls-cert certs/cert.pem --tls-key certs/key.pem`,
    )
    .action(action('cert', run));
}

async function run(opts: CertOptions): Promise<void> {
  const names = [...new Set(opts.host ?? DEFAULT_HOSTS)];
  const certPath = join(opts.out, 'cert.pem');
  const keyPath = join(opts.out, 'key.pem');
  if (!opts.force) {
    const existing = [certPath, keyPath].filter((p) => existsSync(p));
    if (existing.length > 0) throw new CliError(`${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; not overwriting (use --force to replace)`);
  }

  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const notAfter = new Date(Date.now() + opts.days * 86_400_000);
  const pems = await generate([{ name: 'commonName', value: names[0]! }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: names.map((n) => (isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n })) },
    ],
  });

  try {
    mkdirSync(opts.out, { recursive: true });
    if (opts.force) {
      rmSync(certPath, { force: true });
      rmSync(keyPath, { force: true });
    }
    // 'wx': never write through a file (or a symlink) that appeared since the check above.
    writeFileSync(keyPath, pems.private, { mode: 0o600, flag: 'wx' });
    chmodSync(keyPath, 0o600);
    writeFileSync(certPath, pems.cert, { mode: 0o644, flag: 'wx' });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CliError(`cannot write to ${e.path ?? opts.out}: ${e.code === 'EEXIST' ? 'the file appeared meanwhile' : (e.code ?? e.message)}`);
  }

  const x509 = new X509Certificate(pems.cert);
  process.stdout.write(
    [
      `wrote ${certPath} (self-signed certificate for ${names.join(', ')}, valid until ${new Date(x509.validTo).toISOString().slice(0, 10)})`,
      `wrote ${keyPath} (private key, mode 0600: keep it secret)`,
      `SHA-256 fingerprint ${x509.fingerprint256}`,
      '',
      'Serve HTTPS and WSS with them:',
      `  hubbub serve --tls-cert ${certPath} --tls-key ${keyPath}`,
      'Clients must be told to trust the certificate, for example:',
      `  curl --cacert ${certPath} https://${urlHost(names[0]!)}:8080/health`,
      `  NODE_EXTRA_CA_CERTS=${certPath} hubbub sub --url wss://${urlHost(names[0]!)}:8080/ws 'chat/#'`,
      '',
    ].join('\n'),
  );
}

function urlHost(name: string): string {
  return isIP(name) === 6 ? `[${name}]` : name;
}

/** Collect --host values: repeatable, and each may hold a comma-separated list. */
function hosts(value: string, previous: string[] | undefined): string[] {
  const out = [...(previous ?? [])];
  for (const raw of value.split(',')) {
    const name = raw.trim().replace(/^\[(.*)\]$/, '$1');
    if (name === '') continue;
    if (!isIP(name) && !/^(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/.test(name)) {
      throw new InvalidArgumentError(`${JSON.stringify(name)} is neither a DNS name nor an IP address.`);
    }
    out.push(name);
  }
  if (out.length === 0) throw new InvalidArgumentError('expected a DNS name or an IP address.');
  return out;
}
