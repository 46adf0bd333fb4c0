// The sluice command as users run it: a child process, its exit code and output.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { publicKeyOf } from '../src/signing/secrets.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sluice(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    // A buffer that does not exist: proves a bad config stops before any database is touched.
    env: { ...process.env, DATABASE_URL: 'postgres://nobody:x@127.0.0.1:1/none', SLUICE_DATA_DIR: dir, ...env },
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function configFile(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

const GOOD = `
sources:
  - name: app
    tables: [public.orders]
consumers:
  - name: orders-pull
    source: app
    kind: pull
    tables: [public.orders]
`;

describe('sluice CLI', () => {
  it.each([
    ['unknown key', GOOD.replace('tables: [public.orders]\nconsumers', 'tabels: [public.orders]\nconsumers'), /sources\[0\]\.tabels: unknown key/],
    ['wrong type', GOOD.replace('kind: pull', 'kind: pull\n    group_by: 7'), /consumers\[0\]\.group_by/],
    ['bad enum', GOOD.replace('kind: pull', 'kind: carrier-pigeon'), /consumers\[0\]\.kind/],
    ['bad duration', GOOD + '    pull:\n      ack_wait: soon\n', /consumers\[0\]\.pull\.ack_wait/],
    ['bad webhook url', GOOD.replace('kind: pull', 'kind: webhook\n    webhook:\n      url: ftp://example.com/x'), /consumers\[0\]\.webhook\.url/],
    [
      'private webhook host',
      GOOD.replace('kind: pull', 'kind: webhook\n    webhook:\n      url: http://169.254.169.254/latest'),
      /consumers\[0\]\.webhook\.url: host 169\.254\.169\.254 is a cloud metadata address, refused unless webhook\.allow_private_ranges covers it/,
    ],
    ['unknown source', GOOD.replace('source: app', 'source: nope'), /consumers\[0\]\.source/],
    ['unset variable', GOOD.replace('name: app', 'name: ${SLUICE_TEST_UNSET_VAR}'), /SLUICE_TEST_UNSET_VAR/],
  ])('start refuses a config with %s: exit 2, the path and reason, no stack trace', (_label, text, pattern) => {
    const r = sluice(['start', '--config', configFile(`bad-${_label.replace(/\W/g, '_')}.yaml`, text)]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(pattern);
    expect(r.err).toMatch(/invalid configuration/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('a missing config file is named', () => {
    const r = sluice(['start', '--config', path.join(dir, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/nope\.yaml: no such config file/);
  });

  it('setup --print shows the SQL a DBA would run', () => {
    const r = sluice(['setup', '--print', '--config', configFile('good.yaml', GOOD)]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/CREATE PUBLICATION "sluice_app" FOR TABLE "public"\."orders";/);
    expect(r.out).toMatch(/pg_create_logical_replication_slot\('sluice_app', 'pgoutput'\)/);
    expect(r.out).toMatch(/wal_level = logical/);
  });

  it('keygen prints a whsec_ secret, or with --v1a a whsk_/whpk_ pair that belong together', () => {
    const v1 = sluice(['keygen']);
    expect(v1.code).toBe(0);
    expect(v1.out.trim()).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const v1a = sluice(['keygen', '--v1a']);
    expect(v1a.code).toBe(0);
    const privateKey = /private key.*: (whsk_\S+)/.exec(v1a.out)![1];
    const publicKey = /public key.*: (whpk_\S+)/.exec(v1a.out)![1];
    expect(publicKeyOf(privateKey)).toBe(publicKey);
    const bad = sluice(['keygen', '--rsa']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/unknown option --rsa[\s\S]*usage: sluice keygen/);
  });

  it('an unknown command prints the usage and exits 2', () => {
    const r = sluice(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown command "frobnicate"/);
    expect(r.err).toMatch(/usage: sluice/);
  });

  it('a database error is one line, not a stack trace', () => {
    const r = sluice(['migrate']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^sluice: /);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});
