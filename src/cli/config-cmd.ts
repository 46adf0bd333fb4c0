// `sluice config export | plan | apply`: sources and consumers as code.
//   export [--show-secrets]      print the database's sources and consumers as YAML the loader accepts;
//                                secrets become ${VAR} references or are left out, unless --show-secrets
//   plan  [-f FILE] [--prune]    what apply would change (secrets masked)
//   apply [-f FILE] [--prune]    make the database match FILE, in one transaction
// FILE defaults to --config, SLUICE_CONFIG, then config/sluice.yaml. These
// commands never start the embedded Postgres; they need a buffer to talk to.
import { applyConfig, exportConfig, formatPlan, planConfig } from '../config/apply.js';
import { formatExportNote, redactExport } from '../config/export.js';
import { stringifyConfig } from '../config/load.js';
import type { SluiceConfig, SourceConfig } from '../config/types.js';
import { prepareSource } from '../capture/setup.js';
import { markConfigChange } from '../capture/config-marker.js';
import { configVersion, selectSources } from '../config/queries.js';
import { createPool, type Pool } from '../db/pool.js';
import { bufferUrlForCommand, CliError, configPath, readConfig } from './context.js';

type Env = Record<string, string | undefined>;

const USAGE = `usage: sluice config export [--show-secrets]
       sluice config plan  [-f FILE] [--prune]
       sluice config apply [-f FILE] [--prune]

FILE: -f/--file/--config, else SLUICE_CONFIG, else config/sluice.yaml.
export prints no secret: webhook signing secrets are left out (apply keeps the
stored ones) and other secrets become \${VAR} references; stderr lists the
variables. --show-secrets prints everything in full (to move the config to a
new database): handle that output as a secret.
--prune also deletes sources and consumers that FILE does not list.
The buffer database comes from DATABASE_URL (or buffer.url in FILE).`;

interface Parsed {
  sub: string | undefined;
  file?: string;
  prune: boolean;
  showSecrets: boolean;
}

function parse(args: string[]): Parsed {
  const out: Parsed = { sub: undefined, prune: false, showSecrets: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (flag === '-f' || flag === '--file' || flag === '--config') {
      const value = inline ?? args[++i];
      if (!value) throw new CliError(`${flag} needs a file name\n\n${USAGE}`, 2);
      out.file = value;
    } else if (flag === '--prune') out.prune = true;
    else if (flag === '--show-secrets') out.showSecrets = true;
    else if (flag === '-h' || flag === '--help') out.sub = 'help';
    else if (!a.startsWith('-') && out.sub === undefined) out.sub = a;
    else throw new CliError(`unknown argument "${a}"\n\n${USAGE}`, 2);
  }
  return out;
}

/** The buffer URL, or an error that says how to give one. */
function bufferUrl(sub: string, config: SluiceConfig | null, env: Env): string {
  try {
    return bufferUrlForCommand(config, env as NodeJS.ProcessEnv);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    throw new CliError(
      `sluice config ${sub} needs the buffer database, and DATABASE_URL is not set.\n` +
        `  Run it as: DATABASE_URL=postgres://user:password@host:5432/db sluice config ${sub}\n` +
        '  (the embedded Postgres is only started by `sluice start`; these commands do not start one)',
      2,
    );
  }
}

async function withPool<T>(url: string, fn: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = createPool(url, { max: 2, name: 'sluice-config' });
  try {
    return await fn(pool);
  } catch (err) {
    // undefined_table: a buffer that was never migrated.
    if ((err as { code?: string }).code === '42P01') {
      throw new CliError('the buffer database has no Sluice tables yet: run `sluice migrate` (or `sluice start`) first', 1);
    }
    throw err;
  } finally {
    await pool.end();
  }
}

/**
 * `print` takes the command's output (stdout); `note` what is said about it
 * (stderr), so that `sluice config export > sluice.yaml` keeps the file clean.
 */
export async function configCommand(
  args: string[],
  env: Env = process.env,
  print: (text: string) => void = console.log,
  note: (text: string) => void = console.error,
): Promise<void> {
  const { sub, file, prune, showSecrets } = parse(args);
  switch (sub) {
    case 'export': {
      if (prune || file) throw new CliError(`export takes no -f or --prune\n\n${USAGE}`, 2);
      const url = bufferUrl(sub, null, env);
      const config = await withPool(url, exportConfig);
      if (showSecrets) {
        print(stringifyConfig(config));
        return;
      }
      const redacted = redactExport(config);
      print(redacted.yaml);
      const text = formatExportNote(redacted);
      if (text) note(text);
      return;
    }
    case 'plan':
    case 'apply': {
      if (showSecrets) throw new CliError(`--show-secrets is for export only (plan masks secrets)\n\n${USAGE}`, 2);
      const config = readConfig(file ?? configPath({}, env as NodeJS.ProcessEnv), env as NodeJS.ProcessEnv);
      const url = bufferUrl(sub, config, env);
      // A webhook consumer created without secrets gets one generated: this is
      // the only time it is shown, as `sluice start` does.
      const generated: string[] = [];
      const onGeneratedSecret = (consumer: string, secret: string) => generated.push(`Signing secret of ${consumer} (shown once): ${secret}`);
      // Publications and slots are set up before the apply commits: a table it
      // adds is captured from the moment it returns, or nothing is applied.
      const prepare = async (source: SourceConfig, opts: { slot: boolean }) => void (await prepareSource(source, source.url || url, opts));
      const plan = await withPool(url, async (pool) => {
        if (sub === 'plan') return planConfig(pool, config, { prune, onNote: note });
        const applied = await applyConfig(pool, config, { prune, onGeneratedSecret, prepareSource: prepare, onNote: note });
        // Running gateways route what is written after this returns by the new config.
        if (applied.length > 0) {
          await markConfigChange(await configVersion(pool), await selectSources(pool), url, (source, err) =>
            note(`warning: could not mark source ${source}'s database with the new config (${err.message}); gateways pick it up on their reload`),
          );
        }
        return applied;
      });
      print(formatPlan(plan));
      if (sub === 'apply' && plan.length > 0) print(`\nApplied ${plan.length} change${plan.length === 1 ? '' : 's'}.`);
      for (const line of generated) print(line);
      return;
    }
    case undefined:
    case 'help':
      print(USAGE);
      return;
    default:
      throw new CliError(`unknown config command "${sub}"\n\n${USAGE}`, 2);
  }
}
