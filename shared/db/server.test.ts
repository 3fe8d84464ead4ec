import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { freshDatabase, type TestDatabase } from '../testing/database.ts';

describe('the database provider', () => {
  let a: TestDatabase;
  let b: TestDatabase;
  beforeAll(async () => {
    a = await freshDatabase('provider a');
    b = await freshDatabase('provider b');
  });
  afterAll(async () => {
    await a.drop();
    await b.drop();
  });

  it('gives each caller its own database, so test files cannot see each other', async () => {
    const ca = new pg.Client(a.url);
    const cb = new pg.Client(b.url);
    await ca.connect();
    await cb.connect();
    await ca.query('create table only_in_a (x int)');
    const seen = await cb.query(`select count(*)::int as n from pg_tables where tablename = 'only_in_a'`);
    expect(seen.rows[0].n).toBe(0);
    const version = await ca.query('show server_version_num');
    expect(Number(version.rows[0].server_version_num)).toBeGreaterThanOrEqual(150000);
    await ca.end();
    await cb.end();
  });
});
