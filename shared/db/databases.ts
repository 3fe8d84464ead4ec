/**
 * Databases inside a server: one fresh database per test file (so files cannot
 * see each other's rows), per crash scenario, or per demo run.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { DatabaseUnavailableError, toError } from '../errors.ts';
import { redact } from './server.ts';

/** Fail with one clear sentence if `url` cannot be reached. */
export async function checkConnection(url: string, source = 'the database'): Promise<void> {
  let parsed: URL;
  try {
    parsed = new URL(url);
    if (!/^postgres(ql)?:$/.test(parsed.protocol)) throw new Error(`protocol ${parsed.protocol}`);
  } catch (thrown) {
    throw new DatabaseUnavailableError(
      `${source} is not a PostgreSQL connection string: ${toError(thrown).message}.`,
      'It should look like postgres://user:password@localhost:5432/dbname',
      { cause: thrown },
    );
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (thrown) {
    const error = toError(thrown) as NodeJS.ErrnoException;
    const reason = error.code === 'ECONNREFUSED' ? 'nothing is listening there' : error.message;
    throw new DatabaseUnavailableError(
      `Cannot connect to ${source} at ${redact(url)}: ${reason}.`,
      source === 'DATABASE_URL'
        ? 'Start that server or fix the URL — or unset DATABASE_URL and the course starts its own embedded PostgreSQL.'
        : 'Is the server running?',
      { cause: thrown },
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/** `url` with its database name replaced. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** A unique database (or role) name made from `label`: `order_tests_1a2b3c4d`, easy to find with `\l`. */
export function uniqueName(label: string): string {
  const slug = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 40) || 'db';
  return `${slug}_${randomBytes(4).toString('hex')}`;
}

/**
 * CREATE DATABASE with a unique name; returns its connection string.
 * `label` becomes part of the name, so a learner can find it with `\l`.
 */
export async function createDatabase(adminUrl: string, label: string): Promise<string> {
  const name = uniqueName(label);
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } catch (thrown) {
    const error = toError(thrown);
    throw new DatabaseUnavailableError(
      `Could not create a database on ${redact(adminUrl)}: ${error.message}.`,
      /permission denied/i.test(error.message)
        ? 'The course creates a fresh database per test file and demo: give your user CREATEDB (ALTER ROLE … CREATEDB).'
        : 'Is the server running?',
      { cause: thrown },
    );
  } finally {
    await client.end().catch(() => {});
  }
  return withDatabase(adminUrl, name);
}

/** DROP DATABASE … WITH (FORCE): also ends sessions a killed process left open. */
export async function dropDatabase(url: string, adminUrl = withDatabase(url, 'postgres')): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** DROP (if it exists) and CREATE a database with exactly this name; returns its URL. */
export async function recreateDatabase(adminUrl: string, name: string): Promise<string> {
  const url = withDatabase(adminUrl, name);
  await dropDatabase(url, adminUrl);
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end().catch(() => {});
  }
  return url;
}
