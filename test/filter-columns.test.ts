// A where filter checked against a real table's columns: types as the catalog
// has them (domains as their base type, arrays, enums), unknown columns and
// mismatches refused, a missing table reported as such.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db/pool.js';
import { compileWhere } from '../src/pipeline/filter/compile.js';
import { tableColumns } from '../src/pipeline/filter/columns.js';
import { payloadRow } from '../src/pipeline/filter/record.js';
import { useBufferDb } from './helpers/pg.js';

const db = useBufferDb('filter_columns');
let pool: Pool;
beforeAll(async () => {
  pool = db.pool;
  await pool.query(`CREATE DOMAIN money_amount AS numeric(12, 2)`);
  await pool.query(`CREATE TYPE order_state AS ENUM ('new', 'paid')`);
  await pool.query(`CREATE TABLE "Shop Orders" (id bigint PRIMARY KEY, amount money_amount, note varchar(20), tags text[],
    placed_at timestamptz, state order_state, gone int)`);
  await pool.query(`ALTER TABLE "Shop Orders" DROP COLUMN gone`);
});

describe('tableColumns', () => {
  it('reads names and types from the catalog; domains as their base type; dropped columns left out', async () => {
    expect(await tableColumns(pool, 'public.Shop Orders')).toEqual({
      id: 'int8', amount: 'numeric', note: 'varchar', tags: '_text', placed_at: 'timestamptz', state: 'enum:order_state',
    });
    expect(await tableColumns(pool, 'public.nope')).toBeNull();
  });

  it('checks a filter against them, and evaluates it on a stored payload', async () => {
    const columns = (await tableColumns(pool, 'public.Shop Orders'))!;
    const f = compileWhere("amount >= 100 AND note LIKE 'gift%' AND placed_at >= '2026-01-01' AND tags IS NOT NULL", columns);
    const payload = `{"record":{"id":9007199254740993,"amount":"120.00","note":"gift card","tags":["x"],"placed_at":"2026-02-01T10:00:00.000000Z","state":"paid"},"changes":null,"action":"insert","metadata":{}}`;
    expect(f.test(payloadRow(payload))).toBe(true);
    expect(() => compileWhere('amont >= 100', columns)).toThrow(/column "amont" does not exist/);
    expect(compileWhere("state IN ('paid', 'new') AND state <> 'new'", columns).test(payloadRow(payload))).toBe(true);
    expect(() => compileWhere("state > 'new'", columns)).toThrow(/enum is compared with/);
    expect(() => compileWhere('note > 5', columns)).toThrow(/cannot be compared/);
  });
});
