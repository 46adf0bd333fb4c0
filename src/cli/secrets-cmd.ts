// `sluice secrets new-key | status | rotate-key`: the keys that encrypt webhook
// secrets, header values and connection strings at rest (docs/configuration.md,
// "Secrets at rest"). Like `sluice config`, these never start the embedded
// Postgres; they need DATABASE_URL (or a running `npm start`).
import { createPool } from '../db/pool.js';
import { currentKeyring, KEY_ENV, newKey, OLD_KEYS_ENV } from '../secrets/keyring.js';
import { countStoredSecrets, formatCount, formatRotation, rotateKey } from '../secrets/rotate.js';
import { bufferUrlForCommand, CliError } from './context.js';

export const SECRETS_USAGE = `usage: sluice secrets new-key [--id ID]
       sluice secrets status
       sluice secrets rotate-key

Webhook signing secrets, header values and source/webhook URLs are stored
encrypted (AES-256-GCM) when ${KEY_ENV} is set, as "<key id>:<base64 of 32 bytes>".
  new-key     print a new key in that form (the id defaults to today's date)
  status      how many stored secrets are in plain text or under each key id
  rotate-key  encrypt every stored secret with ${KEY_ENV}: plain-text ones and
              those under older keys (which must be in ${OLD_KEYS_ENV},
              comma-separated, until this has run), in one transaction
The buffer database comes from DATABASE_URL (or buffer.url in --config FILE).`;

export async function secretsCommand(
  positional: string[],
  flags: Record<string, string | true>,
  opts: { bufferUrl?: () => string; print?: (text: string) => void } = {},
): Promise<void> {
  const { bufferUrl = () => bufferUrlForCommand(null), print = console.log } = opts;
  const [sub, ...extra] = positional;
  if (extra.length > 0) throw new CliError(`unexpected argument "${extra[0]}"\n\n${SECRETS_USAGE}`, 2);
  const allowed = sub === 'new-key' ? ['id', 'help'] : ['config', 'help'];
  for (const flag of Object.keys(flags)) {
    if (!allowed.includes(flag)) throw new CliError(`unknown option --${flag}\n\n${SECRETS_USAGE}`, 2);
  }
  if (flags.help || sub === undefined || sub === 'help') {
    print(SECRETS_USAGE);
    return;
  }
  switch (sub) {
    case 'new-key': {
      if (flags.id === true) throw new CliError(`--id needs a value\n\n${SECRETS_USAGE}`, 2);
      print(`${KEY_ENV}=${newKey(flags.id)}`);
      return;
    }
    case 'status':
    case 'rotate-key': {
      // Read before connecting: a malformed key stops here, naming the variable.
      const keyring = currentKeyring();
      const pool = createPool(bufferUrl(), { max: 1, name: 'sluice-secrets' });
      try {
        print(sub === 'status' ? formatCount(await countStoredSecrets(pool), keyring) : formatRotation(await rotateKey(pool, keyring)));
      } finally {
        await pool.end();
      }
      return;
    }
    default:
      throw new CliError(`unknown secrets command "${sub}"\n\n${SECRETS_USAGE}`, 2);
  }
}
