// The `sluice` command. Errors users can act on are printed as one message
// and a non-zero exit code; never a stack trace (LOG_LEVEL=debug shows one).
import { ConfigError } from '../config/load.js';
import { setupSql } from '../capture/setup.js';
import { createPool } from '../db/pool.js';
import { migrate } from '../db/migrate.js';
import { bufferUrlForCommand, CliError, configPath, parseArgs, readConfig } from './context.js';
import { describeFailure } from './fatal.js';

const USAGE = `usage: sluice <command> [options]

  start [--config FILE]          run the gateway (embedded Postgres when DATABASE_URL is unset)
  migrate                        apply pending buffer migrations
  setup --print [--config FILE]  print the SQL a DBA would run instead of letting Sluice create it
  status [--json]                sources, slot lag, per-consumer pending counts
  config export|plan|apply       sources and consumers as YAML, from or to the database
  tail <consumer> [--ack]        print a pull consumer's messages as they arrive
  rewind <consumer> --to POINT   deliver retained changes again from POINT on (earliest, a time, an LSN)
  backfill <consumer> [--table T]  send the rows the tables hold already, and show the progress
  stream add|ls|rm|pub          streams: create, list, delete; publish a message (stream pub <stream> <subject> <json>)
  transform test <consumer>      try a transform (and the filter) on a sample or the latest change
  listen [--secret whsec_…]      a local webhook receiver that verifies and prints deliveries
  keygen [--v1a]                 a new webhook signing secret (--v1a: an ed25519 key pair)
  secrets new-key|status|rotate-key  keys that encrypt stored secrets; re-encrypt them all

Config: --config FILE, SLUICE_CONFIG, or config/sluice.yaml. Docs: README.md, docs/.
Secrets at rest: SLUICE_SECRETS_KEY="<key id>:<base64 of 32 bytes>" encrypts webhook
secrets, header values and source/webhook URLs in the database (AES-256-GCM);
SLUICE_SECRETS_KEYS_OLD (comma-separated, same form) still decrypts during a
rotation. Without a key they are stored in plain text, with a warning at start in
production mode (NODE_ENV=production, or DATABASE_URL/buffer.url set).`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { positional, flags } = parseArgs(rest);
  switch (command) {
    case 'start': {
      const { startCommand } = await import('./start.js');
      return startCommand(flags);
    }
    case 'migrate': {
      const config = tryConfig(flags);
      const pool = createPool(bufferUrlForCommand(config), { max: 1 });
      try {
        const applied = await migrate(pool);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'up to date');
      } finally {
        await pool.end();
      }
      return;
    }
    case 'setup': {
      if (!flags.print) throw new CliError('sluice setup creates nothing by itself: `sluice start` does (create_if_missing); use `sluice setup --print` for the SQL', 2);
      const config = readConfig(configPath(flags));
      for (const s of config.sources) console.log(setupSql(s));
      return;
    }
    case 'status': {
      const config = tryConfig(flags);
      const url = bufferUrlForCommand(config);
      const pool = createPool(url, { max: 2 });
      try {
        const { statusReport, formatStatus } = await import('./status.js');
        const report = await statusReport(pool, config, url);
        console.log(flags.json ? JSON.stringify(report, null, 2) : formatStatus(report));
      } finally {
        await pool.end();
      }
      return;
    }
    case 'config': {
      const { configCommand } = await import('./config-cmd.js');
      return configCommand(rest, process.env);
    }
    case 'tail': {
      const { tailCommand } = await import('./tail.js');
      return tailCommand(positional, flags);
    }
    case 'rewind': {
      const { rewindCommand } = await import('./rewind.js');
      return rewindCommand(positional, flags);
    }
    case 'backfill': {
      const { backfillCommand } = await import('./backfill.js');
      return backfillCommand(positional, flags);
    }
    case 'stream': {
      const { streamCommand } = await import('./stream.js');
      return streamCommand(positional, flags);
    }
    case 'transform': {
      const { transformTestCommand } = await import('./transform-test.js');
      return transformTestCommand(positional, flags);
    }
    case 'listen': {
      const mod = (await import(/* @vite-ignore */ './listen.js' as string)) as { listenCommand(args: string[]): Promise<void> };
      return mod.listenCommand(rest);
    }
    case 'keygen': {
      const { keygenCommand } = await import('./keygen.js');
      return keygenCommand(positional, flags);
    }
    case 'secrets': {
      const { secretsCommand } = await import('./secrets-cmd.js');
      return secretsCommand(positional, flags, { bufferUrl: () => bufferUrlForCommand(tryConfig(flags)) });
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new CliError(`unknown command "${command}"\n\n${USAGE}`, 2);
  }
}

/** Status and migrate work without a config file too (DATABASE_URL alone). */
function tryConfig(flags: Record<string, string | true>) {
  try {
    return readConfig(configPath(flags));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    return null;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const failure = describeFailure(err);
  console.error(failure.text);
  if (process.env.LOG_LEVEL === 'debug' && failure.stack) console.error(failure.stack);
  process.exit(failure.exitCode);
});
