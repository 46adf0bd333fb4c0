// `sluice keygen [--v1a]`: a new signing secret, for a webhook consumer's
// `webhook.secrets` (config or API) and its receiver. Printed once, to stdout
// only; Sluice keeps no copy of what this prints.
import { generateKeyPair, generateSecret } from '../signing/secrets.js';
import { CliError } from './context.js';

export const KEYGEN_USAGE = `usage: sluice keygen [--v1a]

  (no flag)  a "whsec_" secret (v1, HMAC-SHA256): Sluice and the receiver both hold it
  --v1a      an ed25519 key pair (v1a): Sluice signs with the "whsk_" private key,
             receivers verify with the "whpk_" public key, which need not be kept secret`;

export function keygenCommand(positional: string[], flags: Record<string, string | true>, print: (text: string) => void = console.log): void {
  if (positional.length > 0) throw new CliError(`unexpected argument "${positional[0]}"\n\n${KEYGEN_USAGE}`, 2);
  if (flags.v1a !== undefined && flags.v1a !== true) throw new CliError(`--v1a takes no value\n\n${KEYGEN_USAGE}`, 2);
  for (const flag of Object.keys(flags)) {
    if (flag !== 'v1a' && flag !== 'help') throw new CliError(`unknown option --${flag}\n\n${KEYGEN_USAGE}`, 2);
  }
  if (flags.help) {
    print(KEYGEN_USAGE);
    return;
  }
  if (!flags.v1a) {
    print(generateSecret());
    return;
  }
  const { privateKey, publicKey } = generateKeyPair();
  print(`private key (for webhook.secrets; keep it secret): ${privateKey}`);
  print(`public key (for receivers, e.g. sluice listen --secret): ${publicKey}`);
}
