/**
 * The engine's schema, migrated the way graphile-worker and pg-boss migrate
 * theirs: numbered SQL files (`migrations/001_log.sql`, `002_leases.sql`, …)
 * applied in order, each exactly once, recorded in a table.
 *
 * Chapters 3 to 5 ran one `CREATE TABLE IF NOT EXISTS` script at every start.
 * That cannot change a table that already exists: adding the lease columns to
 * a log full of workflows needs an `ALTER TABLE`, run once. So the schema is a
 * sequence of changes, and the database remembers how far it got.
 */
import fs from 'node:fs';
import type pg from 'pg';
import { EngineError, toError } from './errors.ts';

const directory = new URL('./migrations/', import.meta.url);

/** The schema in the database is newer than this code: an older deploy is running against it. */
export class SchemaTooNewError extends EngineError {}

/** The engine's tables are not in the database: `migrate(db)` has not run on it. Nothing was written. */
export class SchemaMissingError extends EngineError {
  constructor(options?: { cause?: unknown }) {
    super(
      'the engine\'s tables are not in this database (relation "workflows" does not exist)',
      'Run migrate(db) first — once per database, before createEngine is used (main.ts does it at every start).',
      options,
    );
  }
}

/** `thrown` as a {@link SchemaMissingError} when PostgreSQL said 42P01 (undefined_table); otherwise `thrown` itself. */
export function explainMissingSchema(thrown: unknown): unknown {
  return (thrown as { code?: unknown } | null)?.code === '42P01' ? new SchemaMissingError({ cause: thrown }) : thrown;
}

/** A connection string that is not a PostgreSQL URL. Nothing was connected to. */
export class InvalidConnectionStringError extends EngineError {}

/**
 * Throw {@link InvalidConnectionStringError} unless `url` is a `postgres://` or
 * `postgresql://` URL; `source` names it in the message (`DATABASE_URL`). Without
 * this, pg reads `not a url` as a socket path and a host (`getaddrinfo
 * ENOTFOUND base`), and `mysql://…` as a local PostgreSQL. createEngine checks
 * its pool's connection string with it.
 */
export function checkConnectionString(url: string, source = 'the connection string'): void {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch (thrown) {
    throw new InvalidConnectionStringError(`${source} is not a PostgreSQL connection string (${toError(thrown).message}).`, HOW_A_URL_LOOKS, { cause: thrown });
  }
  if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
    throw new InvalidConnectionStringError(`${source} is not a PostgreSQL connection string: it starts with ${protocol}//.`, HOW_A_URL_LOOKS);
  }
}

const HOW_A_URL_LOOKS = 'It should look like postgres://user:password@localhost:5432/dbname';

/** {@link checkConnectionString} on the string `db` was made from, if it was made from one (migrate and createEngine call it). */
export function checkPoolConnectionString(db: pg.Pool): void {
  const { connectionString } = db.options;
  if (connectionString !== undefined) checkConnectionString(connectionString, "the pool's connection string");
}

/** The migrations this code knows, in order: `001_log.sql`, `002_leases.sql`, … */
export function listMigrations(): string[] {
  return fs
    .readdirSync(directory)
    .filter((file) => /^\d{3}_[a-z0-9_]+\.sql$/.test(file))
    .sort();
}

/**
 * Bring the database's schema up to date: apply every migration it has not
 * had yet, in order, and record each one in `durable_migrations`. Safe to call
 * from every process at every start; returns the names it applied (usually none).
 *
 * All of it is ONE transaction under an advisory lock:
 *   - two processes starting at once take turns (the lock); the second finds
 *     everything applied and does nothing — without the lock both would try,
 *     and the slower one fail on the catalog;
 *   - a migration that fails leaves nothing behind, not half a schema
 *     (PostgreSQL's DDL is transactional). The cost: a migration cannot use
 *     statements that refuse to run in a transaction (CREATE INDEX
 *     CONCURRENTLY); such a step would need a file of its own, outside it.
 *
 * @throws {@link SchemaTooNewError} when the database has had migrations this code does not know;
 *   {@link InvalidConnectionStringError} when `db` was made from a connection string that is not PostgreSQL's.
 */
export async function migrate(db: pg.Pool): Promise<string[]> {
  checkPoolConnectionString(db);
  const known = listMigrations();
  const client = await db.connect();
  // The server ending this connection is reported as an 'error' event, which would crash the process unheard.
  let broken: Error | undefined;
  const onError = (error: Error) => (broken = error);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    // Chapter 6's key, not a new one: chapter 7 migrates the same schema one file
    // further, so a chapter 6 deploy and a chapter 7 deploy (a rolling upgrade)
    // migrating one database at once must take turns.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('durable-execution-course: chapter 6 migrations'))`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS durable_migrations (
         name       text        PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const applied = new Set((await client.query<{ name: string }>('SELECT name FROM durable_migrations')).rows.map((row) => row.name));
    const unknown = [...applied].filter((name) => !known.includes(name)).sort();
    if (unknown.length > 0) {
      throw new SchemaTooNewError(
        `the database's schema has migration(s) this code does not know: ${unknown.join(', ')}`,
        'A newer version of the engine migrated this database. Deploy that version (or newer) here too; never run older code on a newer schema.',
      );
    }
    const pending = known.filter((name) => !applied.has(name));
    for (const name of pending) {
      await client.query(fs.readFileSync(new URL(name, directory), 'utf8'));
      await client.query('INSERT INTO durable_migrations (name) VALUES ($1)', [name]);
    }
    await client.query('COMMIT');
    return pending;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
