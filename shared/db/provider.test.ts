import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startChild } from '../crash/runner.ts';
import { runScript } from '../testing/processes.ts';
import { EmbeddedPostgres } from './embedded.ts';
import { TESTCONTAINERS_PACKAGE, TESTCONTAINERS_VERSION } from './server.ts';

/** Run `npm run db` with this environment and return what a learner would see. */
const dbCommand = (env: Record<string, string>) => runScript('tools/bin/db.ts', [], env, { timeoutMs: 60_000 });

describe('a database that is missing or unreachable gets one clear sentence', () => {
  it('DATABASE_URL pointing at nothing: says so, and what to do, without a stack trace', () => {
    const { status, output } = dbCommand({ DATABASE_URL: 'postgres://course:secret@127.0.0.1:1/nowhere' });
    expect(status).toBe(1);
    expect(output).toContain('Cannot connect to DATABASE_URL at postgres://course:***@127.0.0.1:1/nowhere');
    expect(output).toContain('unset DATABASE_URL');
    expect(output).not.toContain('secret');
    expect(output).not.toMatch(/^\s+at /m);
  });

  it('DATABASE_URL that is not a connection string: says what it should look like', () => {
    const { status, output } = dbCommand({ DATABASE_URL: 'localhost:5432' });
    expect(status).toBe(1);
    expect(output).toContain('is not a PostgreSQL connection string');
    expect(output).toContain('postgres://user:password@localhost:5432/dbname');
  });

  const dockerRunning = spawnSync('docker', ['info'], { encoding: 'utf8' }).status === 0;
  it.skipIf(dockerRunning)('COURSE_DB=docker without a Docker engine: says so, and what to do instead', () => {
    const { status, output } = dbCommand({ DATABASE_URL: '', COURSE_DB: 'docker' });
    expect(status).toBe(1);
    expect(output).toContain('COURSE_DB=docker, but no container could be started');
    expect(output).toContain('unset COURSE_DB to use the embedded server');
  });

  const testcontainersInstalled = (() => {
    try {
      createRequire(import.meta.url).resolve(TESTCONTAINERS_PACKAGE);
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(testcontainersInstalled)('COURSE_DB=docker without its package (npm install leaves it out): says how to install it', () => {
    const { status, output } = dbCommand({ DATABASE_URL: '', COURSE_DB: 'docker' });
    expect(status).toBe(1);
    expect(output).toContain(`it needs the package ${TESTCONTAINERS_PACKAGE}`);
    expect(output).toContain(`npm install --no-save ${TESTCONTAINERS_PACKAGE}@${TESTCONTAINERS_VERSION}`);
    expect(output).not.toMatch(/^\s+at /m);
  });

  it('an unknown COURSE_DB choice is named', () => {
    const { status, output } = dbCommand({ DATABASE_URL: '', COURSE_DB: 'sqlite' });
    expect(status).toBe(1);
    expect(output).toContain('COURSE_DB=sqlite is not a choice I know');
  });
});

describe('the embedded server', () => {
  it('a server orphaned by a killed run is found and stopped, and the next start works', async () => {
    const dataDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'course-orphan-')), 'pg');
    // The owner of a server is this process; as root the server runs as `postgres`, which must reach the folder.
    fs.chmodSync(path.dirname(dataDir), 0o755);
    const owner = startChild({ script: 'shared/db/fixtures/start-and-hang.ts', args: [dataDir] });
    const line = await owner.waitForLine(/^POSTGRES_PID=\d+/, 60_000);
    const orphanPid = Number(line.split('=')[1]);
    owner.signal('SIGKILL');
    await owner.done;
    // The owner is dead; its server is not.
    expect(() => process.kill(orphanPid, 0)).not.toThrow();

    const said: string[] = [];
    const server = await EmbeddedPostgres.start({ dataDir, log: (l) => said.push(l) });
    try {
      expect(said.join('\n')).toContain(`left running by an earlier run that was killed`);
      expect(() => process.kill(orphanPid, 0)).toThrow();
      const client = new pg.Client(server.url);
      await client.connect();
      const { rows } = await client.query('select 1 as ok');
      expect(rows[0].ok).toBe(1);
      await client.end();
    } finally {
      await server.stop();
      fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
    }
  });

  it('survives kill -9 and restarts on the same data, keeping committed rows', async () => {
    const dataDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'course-kill9-')), 'pg');
    fs.chmodSync(path.dirname(dataDir), 0o755);
    const server = await EmbeddedPostgres.start({ dataDir });
    try {
      const before = new pg.Client(server.url);
      await before.connect();
      await before.query('create table kept (x int); insert into kept values (42)');
      before.on('error', () => {}); // the kill ends this session
      await server.kill();
      await server.restart();
      const after = new pg.Client(server.url);
      await after.connect();
      const { rows } = await after.query('select x from kept');
      expect(rows).toEqual([{ x: 42 }]);
      await after.end();
    } finally {
      await server.stop();
      fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
    }
  });
});
