/**
 * Chapter 7's worker process when its database goes away: a PostgreSQL server
 * of this file's own (the run's shared server must not be killed under the
 * other test files), killed with kill -9 and restarted on the same data
 * directory, as a power cut or a crash of the server would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../../shared/db/databases.ts';
import { EmbeddedPostgres } from '../../shared/db/embedded.ts';
import { expectExactlyOnce } from '../../shared/testing/ledger.ts';
import { countMatches, printed } from '../../shared/testing/output.ts';
import { startWorker } from '../../shared/testing/processes.ts';
import { sleep, untilCompleted } from '../../shared/testing/waiting.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { startWorld, type World } from '../../shared/world/world.ts';
import { createEngine, migrate } from './index.ts';
import { orderWorkflow } from './workflow.ts';

const main = 'chapters/07-fast-path/main.ts';

let tmp: string;
let server: EmbeddedPostgres;
let world: World;
let db: pg.Pool;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'course-ch07-restart-'));
  // As root the server runs as `postgres`, which must reach the folder.
  fs.chmodSync(tmp, 0o755);
  server = await EmbeddedPostgres.start({ dataDir: path.join(tmp, 'pg') });
  const url = await createDatabase(server.url, 'ch07_restart');
  world = await startWorld({ databaseUrl: url, products: [{ sku: 'widget', onHand: 100 }] });
  db = new pg.Pool({ connectionString: url, max: 4 });
  db.on('error', () => {}); // the kills end this pool's idle connections too
  await migrate(db);
}, 120_000);

afterAll(async () => {
  await db?.end();
  await world?.stop({ removeDir: true });
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A `main.ts worker` on this file's server, with short leases and polls. */
const worker = (name: string, env: Record<string, string> = {}) =>
  startWorker(main, name, { ...world.env, LEASE_MS: '2000', POLL_MS: '100', ...env }, { timeoutMs: 90_000 });

describe('the engine survives its database restarting', () => {
  it('kill -9 of PostgreSQL while a worker holds workflows: the worker rides it out, and each workflow completes exactly once', async () => {
    const engine = createEngine({ db, workflows: { order: orderWorkflow() } });
    const ids = ['restart-1', 'restart-2', 'restart-3'];
    await world.setLatency(1500); // the charges are in flight when the server dies
    const w = worker('R');
    let exited = false;
    void w.done.then(() => (exited = true));
    await w.waitForLine(/worker R running/, 30_000);
    for (const id of ids) await engine.start('order', demoOrder(id), { id });
    await w.waitForLine(/claimed restart-/, 10_000);
    await sleep(300);

    await server.kill();
    await sleep(800);
    await server.restart();
    await world.setLatency(0);

    await untilCompleted(db, ids);
    expect(exited).toBe(false); // no crash, no exit: the same process finished them
    await expectExactlyOnce(world, ids);
    const steps = await db.query<{ workflow_id: string; n: number }>(
      `SELECT workflow_id, count(*)::int AS n FROM steps WHERE workflow_id = ANY($1) GROUP BY 1 ORDER BY 1`,
      [ids],
    );
    expect(steps.rows).toEqual(ids.map((id) => ({ workflow_id: id, n: 3 })));

    w.signal('SIGTERM');
    const done = await w.done;
    expect(done.exitCode, printed(done)).toBe(0);
    const said = printed(done);
    expect(countMatches(said, /the database is not answering/), said).toBe(1); // one line for the outage, not one per retry
    expect(said).toMatch(/the database answers again \(after \d+\.\d s\)/);
  });

  it('a worker started while the database is down waits for it, saying so in one line, and then works', async () => {
    await server.kill();
    const w = worker('D');
    try {
      await w.waitForLine(/is not answering/, 30_000);
      await sleep(3000); // several retries, backing off
    } finally {
      await server.restart();
    }
    await w.waitForLine(/worker D running/, 30_000);
    const engine = createEngine({ db, workflows: { order: orderWorkflow() } });
    await engine.start('order', demoOrder('late-1'), { id: 'late-1' });
    await untilCompleted(db, ['late-1']);
    await expectExactlyOnce(world, ['late-1']);

    w.signal('SIGTERM');
    const done = await w.done;
    expect(done.exitCode, printed(done)).toBe(0);
    const said = printed(done);
    expect(countMatches(said, /is not answering/), said).toBe(1);
    expect(said).toMatch(/the database at postgres:\/\/\S+ is not answering \(.+\); waiting for it, retrying with back-off/);
    expect(said).toMatch(/the database answers \(after \d+\.\d s\); going on/);
  });
});

describe('a DATABASE_URL that cannot work is a clear error, not a wait', () => {
  it('not a connection string: says what it should look like, exit 1, no stack trace', async () => {
    const done = await worker('U', { DATABASE_URL: 'localhost:5432' }).done;
    expect(done.exitCode).toBe(1);
    expect(printed(done)).toContain('DATABASE_URL is not a PostgreSQL connection string');
    expect(printed(done)).toContain('It should look like postgres://user:password@localhost:5432/dbname');
    expect(printed(done)).not.toMatch(/^\s+at /m);
  });

  it('a database that does not exist: says so at once, exit 1', async () => {
    const url = new URL(world.env.DATABASE_URL!);
    url.pathname = '/no_such_database';
    const done = await worker('N', { DATABASE_URL: url.href }).done;
    expect(done.exitCode).toBe(1);
    expect(printed(done)).toContain('database "no_such_database" does not exist');
    expect(printed(done)).toContain('Check the user, password and database name in DATABASE_URL');
    expect(printed(done)).not.toContain(url.password || 'never-empty');
  });
});
