/**
 * Fresh databases for tests, on the run's one server: for a whole test file
 * (`freshDatabase`, `freshPool`, in beforeAll/afterAll) or for one test
 * (`withFreshDatabase`).
 *
 *   const database = await freshPool('ch03_engine');   // in beforeAll
 *   …database.db.query(…)… database.url…
 *   await database.drop();                              // in afterAll
 */
import { inject } from 'vitest';
import pg from 'pg';
import { createDatabase, dropDatabase } from '../db/databases.ts';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A fresh database with a pool on it; `drop()` ends the pool, then drops the database. */
export interface TestPool extends TestDatabase {
  db: pg.Pool;
}

/** A fresh, empty database. */
export async function freshDatabase(label = 'test'): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const url = await createDatabase(adminUrl, label);
  return { url, drop: () => dropDatabase(url, adminUrl) };
}

/**
 * A pool of at most `max` connections on `url` that a test may end and then
 * drop the database under. An idle connection the server ends (a test that
 * restarts PostgreSQL, or a DROP DATABASE … WITH (FORCE) racing the pool's
 * end: pool.end() resolves before its connections have closed) is not a test
 * failure — unheard, pg-pool's 'error' event would crash the whole test run.
 */
export function quietPool(url: string, { max = 10 } = {}): pg.Pool {
  const db = new pg.Pool({ connectionString: url, max });
  db.on('error', () => {});
  return db;
}

/** A fresh, empty database and a pool of at most `max` connections on it. */
export async function freshPool(label = 'test', { max = 10 } = {}): Promise<TestPool> {
  const database = await freshDatabase(label);
  const db = quietPool(database.url, { max });
  return {
    url: database.url,
    db,
    async drop() {
      await db.end();
      await database.drop();
    },
  };
}

/** A pool on `url` for as long as `body` runs, ended afterwards. */
export async function withPool<T>(url: string, body: (db: pg.Pool) => Promise<T>, { max = 4 } = {}): Promise<T> {
  const db = quietPool(url, { max });
  try {
    return await body(db);
  } finally {
    await db.end();
  }
}

/** A fresh database and a pool on it for one test, dropped afterwards, pass or fail. */
export async function withFreshDatabase(label: string, test: (url: string, db: pg.Pool) => Promise<void>): Promise<void> {
  const database = await freshDatabase(label);
  try {
    await withPool(database.url, (db) => test(database.url, db), { max: 10 });
  } finally {
    await database.drop().catch(() => {});
  }
}
