/**
 * vitest global setup: start ONE PostgreSQL server for the whole test run
 * (embedded by default; DATABASE_URL or COURSE_DB=docker choose another) and
 * hand its admin URL to every test file through `inject('adminDatabaseUrl')`.
 */
import type { TestProject } from 'vitest/node';
import { startPostgres, type PostgresServer } from '../db/server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    databaseKind: string;
  }
}

let server: PostgresServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startPostgres({ purpose: 'test' });
  project.provide('adminDatabaseUrl', server.url);
  project.provide('databaseKind', server.kind);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
