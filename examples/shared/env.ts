// Settings every example reads from the environment, checked once at start-up so
// a missing or mangled secret fails loudly here instead of turning every
// delivery into a 400 that Sluice would keep retrying.

export interface ReceiverSettings {
  /** 0 lets the OS pick a free port (the tests do that). */
  port: number;
  host: string;
  /** One secret, or several separated by spaces while you rotate (any one may match). */
  secrets: string[];
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): ReceiverSettings {
  const secrets = (env.SLUICE_WEBHOOK_SECRET ?? '').split(/\s+/).filter(Boolean);
  if (secrets.length === 0) fail('set SLUICE_WEBHOOK_SECRET to the consumer\'s whsec_… secret');
  // Pass the secret exactly as Sluice shows it: the prefix tells the verifier how
  // to decode it. Stripping "whsec_" yourself is a classic source of bad signatures.
  const bad = secrets.find((s) => !s.startsWith('whsec_') && !s.startsWith('whpk_'));
  if (bad !== undefined) fail('SLUICE_WEBHOOK_SECRET must start with "whsec_" (copy it with the prefix)');
  const port = Number(env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('PORT must be a port number');
  return { port, host: env.HOST ?? '127.0.0.1', secrets };
}

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}
