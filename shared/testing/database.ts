/**
 * A fresh database for the test file that asks, on the run's one server.
 *
 *   const db = await freshDatabase();   // in beforeAll
 *   …db.url…
 *   await db.drop();                    // in afterAll
 */
import { inject } from 'vitest';
import { createDatabase, dropDatabase } from '../db/databases.ts';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function freshDatabase(label = 'test'): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const url = await createDatabase(adminUrl, label);
  return { url, drop: () => dropDatabase(url, adminUrl) };
}
