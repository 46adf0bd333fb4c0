// Which process listens on a TCP port, for "port in use" messages. Linux's /proc
// tells: the listening socket's inode in /proc/net/tcp{,6}, then the process
// holding a descriptor to it. Elsewhere, or where we may not look, it is unknown.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

export interface PortOwner {
  pid: number;
  command: string;
}

const LISTEN = '0A';

export function portOwner(port: number): PortOwner | undefined {
  if (process.platform !== 'linux') return undefined;
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const row of read(table).split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const cols = row.trim().split(/\s+/);
      if (cols.length > 9 && cols[3] === LISTEN && parseInt(cols[1].split(':').pop()!, 16) === port) inodes.add(cols[9]);
    }
  }
  if (!inodes.size) return undefined;
  for (const pid of list('/proc').filter((d) => /^\d+$/.test(d))) {
    for (const fd of list(`/proc/${pid}/fd`)) {
      const socket = /^socket:\[(\d+)\]$/.exec(link(`/proc/${pid}/fd/${fd}`));
      if (socket && inodes.has(socket[1])) return { pid: Number(pid), command: commandOf(pid) };
    }
  }
  return undefined;
}

/** "pid 123 (node …/main.ts start)", or "" when nobody is known. */
export function describeOwner(owner: PortOwner | undefined): string {
  return owner ? `pid ${owner.pid}${owner.command ? ` (${owner.command})` : ''}` : '';
}

/** The program and the end of its arguments, where a command says what it is ("node … src/cli/main.ts start"). */
function commandOf(pid: string): string {
  const [program = '', ...args] = read(`/proc/${pid}/cmdline`).split('\0').filter(Boolean);
  const rest = args.join(' ');
  return `${path.basename(program)} ${rest.length > 80 ? '…' + rest.slice(-80) : rest}`.trim();
}

// Processes come and go while we look, and other users' are closed to us: a miss is just unknown.
function read(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function link(file: string): string {
  try {
    return readlinkSync(file);
  } catch {
    return '';
  }
}
