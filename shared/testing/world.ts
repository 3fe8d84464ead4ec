/**
 * A fresh world for one test: its own database on the run's server, its own
 * payment/mail server process and ledger — removed afterwards, pass or fail.
 *
 *   await withWorld('recover', async (world) => { …runUntilDone({ env: world.env })… });
 */
import { inject } from 'vitest';
import pg from 'pg';
import { createDatabase, dropDatabase } from '../db/databases.ts';
import { startWorld, type World } from '../world/world.ts';

export async function withWorld(label: string, test: (world: World) => Promise<void>): Promise<void> {
  const adminUrl = inject('adminDatabaseUrl');
  const databaseUrl = await createDatabase(adminUrl, label);
  const world = await startWorld({ databaseUrl });
  try {
    await test(world);
  } finally {
    await world.stop({ removeDir: true });
    await dropDatabase(databaseUrl, adminUrl).catch(() => {});
  }
}

/** A fresh database and a pool on it for one test, dropped afterwards. */
export async function withDatabase(label: string, test: (url: string, db: pg.Pool) => Promise<void>): Promise<void> {
  const adminUrl = inject('adminDatabaseUrl');
  const url = await createDatabase(adminUrl, label);
  const db = new pg.Pool({ connectionString: url });
  try {
    await test(url, db);
  } finally {
    await db.end();
    await dropDatabase(url, adminUrl).catch(() => {});
  }
}
