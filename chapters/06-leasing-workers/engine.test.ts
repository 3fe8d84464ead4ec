/**
 * Chapter 6's engine as a library, in one process, on a real database: the
 * migrations, start/result/inspect, workers sharing the work, wake-ups, and
 * what a run does when its lease is taken from it. (Crashes, freezes and
 * takeovers between processes are in crash.test.ts.)
 */
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silenceConsoleLog } from '../../shared/testing/console.ts';
import { freshPool, withFreshDatabase, type TestPool, quietPool } from '../../shared/testing/database.ts';
import { sleep } from '../../shared/testing/waiting.ts';
import { countedWorkflow } from '../../shared/testing/workflows.ts';
import {
  checkConnectionString,
  createEngine,
  InvalidConnectionStringError,
  InvalidWorkflowIdError,
  LeaseLostError,
  listMigrations,
  MAX_WORKFLOW_ID_BYTES,
  migrate,
  SchemaMissingError,
  SchemaTooNewError,
  StepTimeoutError,
  UNDEFINED_IN_LOG,
  WorkflowFailedError,
  WorkflowIdConflictError,
  type RunEndEvent,
  type Workflow,
} from './index.ts';

let database: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  database = await freshPool('ch06_engine', { max: 12 });
  db = database.db;
  await migrate(db);
});

afterAll(async () => {
  await database?.drop();
});

silenceConsoleLog(); // the engine's trace lines

describe('the schema is migrated', () => {
  it('numbered migrations are applied once, in order, even by four processes at once', async () => {
    await withFreshDatabase('ch06_migrate', async (url) => {
      // Separate pools: separate connections, as separate processes would have.
      const pools = Array.from({ length: 4 }, () => quietPool(url, { max: 1 }));
      try {
        const applied = await Promise.all(pools.map((pool) => migrate(pool)));
        expect(applied.flat()).toEqual(['001_log.sql', '002_leases.sql']); // by one of them; the others found it done
        expect(listMigrations()).toEqual(['001_log.sql', '002_leases.sql']);
        expect(await migrate(pools[0]!)).toEqual([]);
        const recorded = await pools[0]!.query<{ name: string }>('SELECT name FROM durable_migrations ORDER BY name');
        expect(recorded.rows.map((r) => r.name)).toEqual(['001_log.sql', '002_leases.sql']);

        // A newer deploy migrated this database: this (older) code refuses to run on it.
        await pools[0]!.query(`INSERT INTO durable_migrations (name) VALUES ('003_from_the_future.sql')`);
        const refused = migrate(pools[1]!);
        await expect(refused).rejects.toThrow(SchemaTooNewError);
        await expect(refused).rejects.toThrow("the database's schema has migration(s) this code does not know: 003_from_the_future.sql");
      } finally {
        await Promise.all(pools.map((pool) => pool.end()));
      }
    });
  });

  it('a log made before the migrations (chapter 5’s tables, no lease columns) is adopted: its unfinished workflow runs', async () => {
    await withFreshDatabase('ch06_adopt', async (_url, pool) => {
      // What chapter 5's createSchema left: 001's statements, run without migrate(), and a workflow half done.
      await pool.query(fs.readFileSync(new URL('./migrations/001_log.sql', import.meta.url), 'utf8'));
      await pool.query(`INSERT INTO workflows (id, name, input) VALUES ('old-1', 'counted', '{"n": 1}')`);
      await pool.query(`INSERT INTO steps (workflow_id, seq, name, output) VALUES ('old-1', 0, 'a', '2')`);
      expect(await migrate(pool)).toEqual(['001_log.sql', '002_leases.sql']);
      const { runs, workflow } = countedWorkflow({ withWorkflowId: true });
      const engine = createEngine({ db: pool, workflows: { counted: workflow } });
      await engine.createWorker({ leaseMs: 5000 }).drain();
      expect(await engine.result('old-1')).toBe('result 20');
      expect(runs).toEqual(['old-1:b', 'old-1:c']); // a came from the old log
    });
  });
});

describe('start, workers, result', () => {
  it('start only writes the workflow; a worker runs it; result() returns its output and inspect() its steps', async () => {
    const { runs, workflow } = countedWorkflow({ withWorkflowId: true });
    const engine = createEngine({ db, workflows: { counted: workflow } });
    const run = await engine.start('counted', { n: 1 }, { id: 'api-1' });
    expect(run).toMatchObject({ id: 'api-1', created: true });
    expect(runs).toEqual([]); // nothing ran in start()
    expect(await engine.inspect('api-1')).toMatchObject({ status: 'running', fencingToken: 0, leaseOwner: null, leaseMsLeft: 0, steps: [] });

    const worker = engine.createWorker({ name: 'solo', leaseMs: 5000 });
    await worker.start();
    try {
      expect(await run.result()).toBe('result 20');
    } finally {
      await worker.stop();
    }
    expect(runs).toEqual(['api-1:a', 'api-1:b', 'api-1:c']);
    const info = await engine.inspect('api-1');
    expect(info).toMatchObject({ status: 'completed', output: 'result 20', fencingToken: 1, leaseOwner: 'solo' });
    expect(info?.steps.map(({ seq, name, output, fencingToken }) => ({ seq, name, output, fencingToken }))).toEqual([
      { seq: 0, name: 'a', output: 2, fencingToken: 1 },
      { seq: 1, name: 'b', output: 20, fencingToken: 1 },
      { seq: 2, name: 'c', output: 'result 20', fencingToken: 1 },
    ]);
    expect(await engine.inspect('nobody')).toBeUndefined();
    await expect(engine.result('nobody')).rejects.toThrow('workflow nobody is not in the log');
  });

  it('the same id twice is one run; the same id with another input is a WorkflowIdConflictError', async () => {
    const { runs, workflow } = countedWorkflow({ withWorkflowId: true });
    const engine = createEngine({ db, workflows: { counted: workflow } });
    const first = await engine.start('counted', { n: 2 }, { id: 'twice-1' });
    const second = await engine.start('counted', { n: 2 }, { id: 'twice-1' });
    expect([first.created, second.created]).toEqual([true, false]);
    await expect(engine.start('counted', { n: 3 }, { id: 'twice-1' })).rejects.toThrow(WorkflowIdConflictError);
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await second.result()).toBe('result 30');
    expect(await first.result()).toBe('result 30');
    expect(runs).toEqual(['twice-1:a', 'twice-1:b', 'twice-1:c']);
  });

  it('two workers share 30 workflows: each step runs once, each workflow is claimed once', async () => {
    const { runs, workflow } = countedWorkflow({ withWorkflowId: true });
    const engine = createEngine({ db, workflows: { counted: workflow } });
    const ids = Array.from({ length: 30 }, (_, i) => `shared-${i}`);
    const handles = await Promise.all(ids.map((id, i) => engine.start('counted', { n: i }, { id })));
    const ends: RunEndEvent[] = [];
    const workers = ['w1', 'w2'].map((name) => engine.createWorker({ name, concurrency: 4, leaseMs: 5000, onRunEnd: (e) => ends.push(e) }));
    await Promise.all(workers.map((w) => w.start()));
    try {
      expect(await Promise.all(handles.map((h) => h.result()))).toEqual(ids.map((_, i) => `result ${(i + 1) * 10}`));
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
    expect(runs.toSorted()).toEqual(ids.flatMap((id) => [`${id}:a`, `${id}:b`, `${id}:c`]).toSorted());
    expect(ends.map((e) => [e.workflowId, e.fencingToken, e.outcome]).toSorted()).toEqual(ids.map((id) => [id, 1, 'completed']).toSorted());
    const owners = await db.query<{ owner: string; n: number }>(
      `SELECT lease_owner AS owner, count(*)::int AS n FROM workflows WHERE id LIKE 'shared-%' GROUP BY 1 ORDER BY 1`,
    );
    expect(owners.rows.map((r) => r.owner)).toEqual(['w1', 'w2']); // both did some
  });

  it('a worker that polls once a minute still starts new work at once: start() wakes it with NOTIFY', async () => {
    const { workflow } = countedWorkflow();
    // Two pools, two engines: as if the worker and the caller were separate processes.
    const other = quietPool(database.url, { max: 2 });
    try {
      const workerSide = createEngine({ db, workflows: { counted: workflow } });
      const callerSide = createEngine({ db: other, workflows: { counted: workflow } });
      const worker = workerSide.createWorker({ pollMs: 60_000, leaseMs: 5000 });
      await worker.start(); // its first claim finds nothing; the next poll is a minute away
      try {
        const started = Date.now();
        const run = await callerSide.start('counted', { n: 4 }, { id: 'notified-1' });
        expect(await run.result()).toBe('result 50');
        expect(Date.now() - started).toBeLessThan(2000);
      } finally {
        await worker.stop();
      }
    } finally {
      await other.end();
    }
  });

  it('a workflow that fails on every attempt is marked failed, and result() says so', async () => {
    let calls = 0;
    const engine = createEngine({
      db,
      attempts: 2,
      workflows: { broken: async (ctx) => ctx.step('only', async () => { calls++; throw new Error('the service is down'); }) },
    });
    const run = await engine.start('broken', null, { id: 'broken-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(run.result()).rejects.toThrow(WorkflowFailedError);
    await expect(run.result()).rejects.toThrow('workflow broken-1 failed: the service is down');
    expect(calls).toBe(2);
    expect(await engine.status(['broken-1', 'nobody'])).toEqual({ 'broken-1': 'failed', nobody: 'missing' });
  });
});

describe('a run whose lease is taken from it stops, and writes nothing more', () => {
  it('its transaction step is refused, and the step’s SQL rolls back with the refused record', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS effects (workflow_id text NOT NULL, what text NOT NULL)');
    const ends: RunEndEvent[] = [];
    const engine = createEngine({
      db,
      workflows: {
        robbed: async (ctx) => {
          await ctx.step('a', async () => 'a');
          return ctx.transaction('b', async (tx) => {
            await tx.query(`INSERT INTO effects VALUES ($1, 'b')`, [ctx.workflowId]);
            // Meanwhile the lease passes to another run (this simulates a takeover, in one process).
            await db.query(`UPDATE workflows SET fencing_token = fencing_token + 1, lease_owner = 'thief' WHERE id = $1`, [ctx.workflowId]);
            return 'b';
          });
        },
      },
    });
    await engine.start('robbed', null, { id: 'robbed-1' });
    await engine.createWorker({ name: 'victim', leaseMs: 5000, onRunEnd: (e) => ends.push(e) }).drain();
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ workflowId: 'robbed-1', fencingToken: 1, outcome: 'lease-lost' });
    expect(ends[0]?.error).toBeInstanceOf(LeaseLostError);
    expect(ends[0]?.error?.message).toBe(
      'workflow robbed-1: lease lost (fencing token 1): taken over by thief (fencing token 2). This run stopped and wrote nothing more.',
    );
    const info = await engine.inspect('robbed-1');
    expect(info?.steps.map((s) => s.name)).toEqual(['a']); // b's record refused…
    expect((await db.query(`SELECT * FROM effects WHERE workflow_id = 'robbed-1'`)).rows).toEqual([]); // …and its INSERT rolled back
    expect(info?.status).toBe('running');
  });

  it('a run whose database connection is cut is not failed: it stops, gives the lease back, and the next claim finishes it', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS effects (workflow_id text NOT NULL, what text NOT NULL)');
    let cuts = 0;
    const ends: RunEndEvent[] = [];
    const engine = createEngine({
      db,
      attempts: 1, // were the cut counted as an attempt, the workflow would be marked failed
      workflows: {
        cut: async (ctx) =>
          ctx.transaction('write', async (tx) => {
            await tx.query(`INSERT INTO effects VALUES ($1, 'write')`, [ctx.workflowId]);
            if (cuts++ === 0) {
              // An administrator (or a failover) ends this very connection.
              const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
              await db.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
              await tx.query('SELECT 1');
            }
            return 'written';
          }),
      },
    });
    const run = await engine.start('cut', null, { id: 'cut-1' });
    await engine.createWorker({ leaseMs: 30_000, pollMs: 50, onRunEnd: (e) => ends.push(e) }).drain();
    expect(await run.result()).toBe('written');
    expect(ends.map((e) => [e.fencingToken, e.outcome])).toEqual([[1, 'error'], [2, 'completed']]); // taken again at once, not after 30 s
    expect(ends[0]?.error?.message).toMatch(/^workflow cut-1: the database connection failed/);
    expect((await db.query(`SELECT what FROM effects WHERE workflow_id = 'cut-1'`)).rows).toEqual([{ what: 'write' }]); // the cut transaction rolled back
  });

  it('the heartbeat finds the lease gone and aborts the run’s signal: a step waiting on it stops at once', async () => {
    const ends: RunEndEvent[] = [];
    let aborted: unknown;
    const engine = createEngine({
      db,
      workflows: {
        waiting: async (ctx) =>
          ctx.step('wait_for_ever', ({ signal }) =>
            new Promise((_, reject) => signal.addEventListener('abort', () => reject((aborted = signal.reason)), { once: true })),
          ),
      },
    });
    await engine.start('waiting', null, { id: 'waiting-1' });
    const worker = engine.createWorker({ leaseMs: 400, onRunEnd: (e) => ends.push(e) });
    await worker.start();
    try {
      await db.query(`UPDATE workflows SET fencing_token = fencing_token + 1, lease_owner = 'thief' WHERE id = 'waiting-1'`);
      const started = Date.now();
      while (ends.length === 0 && Date.now() - started < 3000) await sleep(20);
      expect(Date.now() - started).toBeLessThan(1000); // the next heartbeat, 200 ms away
    } finally {
      await worker.stop({ graceMs: 0 });
    }
    expect(aborted).toBeInstanceOf(LeaseLostError);
    expect(ends[0]).toMatchObject({ workflowId: 'waiting-1', outcome: 'lease-lost' });
    expect(ends[0]?.error?.message).toContain('renewal refused: taken over by thief (fencing token 2)');
    expect(worker.held).toEqual([]);
  });

  it('a step whose position something else wrote behind the engine’s back fails its attempt with StepAlreadyRecordedError, not a lost lease; the replay takes the recorded row', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const running = new Promise<void>((resolve) => (entered = resolve));
    const workflow: Workflow<null, string> = async (ctx) => {
      await ctx.step('first', async () => (entered(), await gate, 1));
      return 'done';
    };
    const engine = createEngine({ db, workflows: { intruded: workflow } });
    const ends: RunEndEvent[] = [];
    const worker = engine.createWorker({ name: 'intruded', pollMs: 60_000, leaseMs: 5000, onRunEnd: (e) => ends.push(e) });
    await worker.start();
    try {
      await engine.start('intruded', null, { id: 'intruded-1' });
      await running; // claimed, its log loaded (empty), the step under way
      // Not the engine: a row at the position the running step is about to record.
      await db.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('intruded-1', 0, 'first', '1', 1)`);
      const log = vi.mocked(console.log);
      log.mockClear();
      release();
      await vi.waitFor(() => expect(ends).toHaveLength(1), { timeout: 5000 });
      const said = log.mock.calls.flat().join('\n');
      expect(said).toContain('workflow intruded-1 step #0 first was recorded by another process first');
      expect(said).not.toMatch(/lease lost/);
      // The next attempt loads the log, finds the row, and replays it: same token, no takeover.
      expect(ends[0]).toMatchObject({ workflowId: 'intruded-1', fencingToken: 1, outcome: 'completed' });
      expect(await engine.inspect('intruded-1')).toMatchObject({ status: 'completed', output: 'done', fencingToken: 1 });
    } finally {
      await worker.stop();
    }
  });
});

describe('bad input gets a clear error, and nothing is lost', () => {
  it('a step that returns nothing is recorded as undefined and replayed as undefined: its effect runs once, and result() settles', async () => {
    let sends = 0;
    let failures = 0;
    const engine = createEngine({
      db,
      workflows: {
        mail: async (ctx) => {
          const sent = await ctx.step('send', async () => {
            sends++;
          });
          // Fails once after the send is recorded: the replay takes the send from the log.
          await ctx.step('flaky', async () => {
            if (failures++ === 0) throw new Error('once');
            return 1;
          });
          return { sentWasUndefined: sent === undefined };
        },
      },
    });
    const run = await engine.start('mail', undefined, { id: 'mail-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(run.result()).resolves.toEqual({ sentWasUndefined: true });
    expect(sends).toBe(1);
    const info = await engine.inspect('mail-1');
    expect(info).toMatchObject({ status: 'completed', input: undefined });
    expect(info?.steps[0]).toMatchObject({ name: 'send', output: undefined });
    const stored = await db.query(`SELECT output FROM steps WHERE workflow_id = 'mail-1' AND seq = 0`);
    expect(stored.rows[0].output).toEqual(UNDEFINED_IN_LOG); // the stated encoding
  });

  // What JSON cannot carry, and what is over the limit: each fails the step's workflow at once,
  // with the engine's own error — the same with the trace lines on (the default) and off.
  const badResults: Array<[string, () => unknown, string]> = [
    ['a Date', () => ({ at: new Date(0) }), '$.at is a Date, not a plain object'],
    ['NaN', () => NaN, '$ is NaN'],
    ['a Map', () => new Map([['a', 1]]), '$ is a Map, not a plain object'],
    ['a BigInt', () => 10n, '$ is a BigInt'],
    ['a function', () => () => 1, '$ is a function'],
    ['a cyclic object', () => { const cyclic: Record<string, unknown> = {}; cyclic.self = cyclic; return cyclic; }, '$.self refers back to itself (a cycle)'],
    ['the log\'s own tag for undefined', () => ({ $undefined: true }), 'which is how the log records undefined'],
    ['a result over maxRecordBytes', () => 'x'.repeat(200), 'is 202 bytes of JSON, over the 100-byte limit'],
  ];
  for (const traceSetting of ['1', '0']) {
    it.each(badResults)(`a step returning %s fails its workflow once, with the engine's error, COURSE_TRACE=${traceSetting}: the effect ran once, result() rejects with that message`, async (label, make, problem) => {
      vi.stubEnv('COURSE_TRACE', traceSetting);
      try {
        let effects = 0;
        const id = `bad-${traceSetting}-${label.replace(/\W+/g, '-')}`;
        const ends: RunEndEvent[] = [];
        const engine = createEngine({ db, maxRecordBytes: 100, workflows: { bad: async (ctx) => ctx.step('compute', async () => (effects++, make())) } });
        const run = await engine.start('bad', null, { id });
        await engine.createWorker({ leaseMs: 1000, onRunEnd: (e) => ends.push(e) }).drain();
        expect(effects).toBe(1);
        expect(ends.map((e) => e.outcome)).toEqual(['failed']);
        const failure = await run.result().catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(WorkflowFailedError);
        expect((failure as Error).message).toContain(`the result of workflow ${id}, step #0 compute`);
        expect((failure as Error).message).toContain(problem);
        expect(await engine.inspect(id)).toMatchObject({ status: 'failed', steps: [] });
      } finally {
        vi.unstubAllEnvs();
      }
    });
  }

  it('a workflow whose code no longer matches its log is failed once, naming the position, the logged step and the called one; no step of it runs again', async () => {
    let charges = 0;
    const changed: Workflow<null, string> = async (ctx) => {
      await ctx.step('charge_card', async () => ++charges);
      return 'done';
    };
    const engine = createEngine({ db, workflows: { changed } });
    await engine.start('changed', null, { id: 'changed-1' });
    // The log the code as it was left, under its first claim: another step at position 0.
    await db.query(`UPDATE workflows SET fencing_token = 1 WHERE id = 'changed-1'`);
    await db.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('changed-1', 0, 'reserve_stock', '1', 1)`);
    const ends: RunEndEvent[] = [];
    await engine.createWorker({ leaseMs: 1000, onRunEnd: (e) => ends.push(e) }).drain();
    await sleep(1500); // past a lease: nothing claims it again
    await engine.createWorker({ leaseMs: 1000, onRunEnd: (e) => ends.push(e) }).drain();
    expect(ends.map((e) => e.outcome)).toEqual(['failed']);
    expect(charges).toBe(0);
    const message = 'workflow changed-1 step #0: the log says reserve_stock, the code now calls charge_card';
    expect(await engine.inspect('changed-1')).toMatchObject({ status: 'failed', error: message });
    await expect(engine.result('changed-1')).rejects.toThrow(message);
  });

  it('start() refuses an id that is empty, only whitespace, over 1024 bytes or holds a NUL character, with InvalidWorkflowIdError, and writes nothing; result(), status() and inspect() refuse it too', async () => {
    const engine = createEngine({ db, workflows: { plain: async () => 'ok' } });
    const before = await db.query('SELECT count(*)::int AS n FROM workflows');
    for (const [id, problem] of [
      ['', 'is empty or only whitespace'],
      ['  \t', 'is empty or only whitespace'],
      ['x'.repeat(10_000), 'is 10000 bytes, over the 1024-byte limit'],
      ['order\u00001', 'contains a NUL character'],
    ] as const) {
      const refused = await engine.start('plain', null, { id }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(InvalidWorkflowIdError);
      expect((refused as Error).message).toContain(problem);
      await expect(engine.result(id)).rejects.toThrow(InvalidWorkflowIdError);
      await expect(engine.status(['plain-ok', id])).rejects.toThrow(InvalidWorkflowIdError);
      await expect(engine.inspect(id)).rejects.toThrow(InvalidWorkflowIdError);
    }
    expect((await engine.start('plain', null, { id: 'x'.repeat(MAX_WORKFLOW_ID_BYTES) })).created).toBe(true); // the limit itself is fine
    const after = await db.query('SELECT count(*)::int AS n FROM workflows');
    expect(after.rows[0].n).toBe(before.rows[0].n + 1);
  });

  it('on a database migrate() never ran on, the engine\'s calls fail with SchemaMissingError saying to run migrate(db) first, a worker says so once, and a drain fails with it', async () => {
    await withFreshDatabase('ch06_unmigrated', async (_url, bare) => {
      const engine = createEngine({ db: bare, workflows: { plain: async () => 'ok' } });
      const log = vi.mocked(console.log);
      log.mockClear();
      for (const call of [() => engine.start('plain', null, { id: 'p-1' }), () => engine.result('p-1'), () => engine.status(['p-1']), () => engine.inspect('p-1')]) {
        const refused = await call().catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(SchemaMissingError);
        expect((refused as SchemaMissingError).hint).toContain('Run migrate(db) first');
        expect((refused as Error).cause).toMatchObject({ code: '42P01' });
      }
      const worker = engine.createWorker({ pollMs: 20, leaseMs: 1000 });
      await worker.start();
      await sleep(300); // several claims, each refused
      await worker.stop();
      const said = log.mock.calls.flat().filter((line) => String(line).includes('Run migrate(db) first'));
      expect(said).toHaveLength(1);
      // A drain would wait for ever: it fails instead.
      await expect(engine.createWorker({ pollMs: 20, leaseMs: 1000 }).drain()).rejects.toThrow(SchemaMissingError);
    });
  });

  it('createEngine and migrate refuse a pool whose connection string is not a PostgreSQL URL, before any query, naming the fix', async () => {
    for (const [url, problem] of [
      ['not a url', "the pool's connection string is not a PostgreSQL connection string (Invalid URL)."],
      ['mysql://user@localhost/shop', "the pool's connection string is not a PostgreSQL connection string: it starts with mysql://."],
    ]) {
      const pool = new pg.Pool({ connectionString: url });
      const refused = (() => {
        try {
          createEngine({ db: pool, workflows: {} });
        } catch (error) {
          return error;
        }
      })();
      expect(refused).toBeInstanceOf(InvalidConnectionStringError);
      expect((refused as Error).message).toBe(problem);
      expect((refused as InvalidConnectionStringError).hint).toBe('It should look like postgres://user:password@localhost:5432/dbname');
      await expect(migrate(pool)).rejects.toThrow(problem);
      void pool.end();
    }
    expect(() => checkConnectionString('postgresql://user@localhost:5432/shop')).not.toThrow();
  });

  it('a workflow no worker here has code for stays running, is deferred rather than claimed again at once, is logged once, and runs where its code is', async () => {
    const log = vi.mocked(console.log);
    const { workflow } = countedWorkflow();
    const newDeploy = createEngine({ db, workflows: { counted: workflow, refund: async (ctx, n: number) => ctx.step('refund', async () => n * 2) } });
    await newDeploy.start('refund', 1, { id: 'refund-1' });
    await newDeploy.start('refund', 2, { id: 'refund-2' });

    const oldDeploy = createEngine({ db, workflows: { counted: workflow } });
    const ends: RunEndEvent[] = [];
    await oldDeploy.createWorker({ name: 'old', leaseMs: 5000, unknownWorkflowDelayMs: 60_000, onRunEnd: (e) => ends.push(e) }).drain();
    expect(ends).toEqual([]); // nothing ran, nothing failed
    for (const id of ['refund-1', 'refund-2']) {
      const info = await oldDeploy.inspect(id);
      expect(info).toMatchObject({ status: 'running', leaseOwner: 'old', fencingToken: 1, steps: [] });
      expect(info?.leaseMsLeft).toBeGreaterThan(40_000); // deferred: 60 s ± 20 %
    }
    const said = log.mock.calls.map((args) => String(args[0])).filter((line) => line.includes('"refund" workflow'));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('is a "refund" workflow, which this worker has no code for (it has: counted); left running and deferred');

    // Later (here: now), a worker of the new deploy takes them.
    await db.query(`UPDATE workflows SET lease_expires_at = now() WHERE id LIKE 'refund-%'`);
    await newDeploy.createWorker({ leaseMs: 5000 }).drain();
    expect([await newDeploy.result('refund-1'), await newDeploy.result('refund-2')]).toEqual([2, 4]);
  });

  it('ids, workflow names, step names and inputs shaped like SQL injection are stored and returned as the plain text they are', async () => {
    const name = `'; DROP TABLE workflows; --`;
    const id = `order-1'); DROP TABLE steps; --`;
    const step = `"; DELETE FROM workflows WHERE '1'='1`;
    const input = { note: `Robert'); DROP TABLE students;--`, $1: '$2' };
    const engine = createEngine({ db, workflows: { [name]: async (ctx, given: typeof input) => ctx.step(step, async () => given.note) } });
    const run = await engine.start(name, input, { id });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await run.result()).toBe(input.note);
    expect(await engine.inspect(id)).toMatchObject({ id, name, input, status: 'completed', steps: [{ seq: 0, name: step, output: input.note }] });
    const tables = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name IN ('workflows', 'steps')`);
    expect(tables.rows[0]?.n).toBe(2);
  });
});

describe('a step that never returns is timed out', () => {
  it('its signal aborts with a StepTimeoutError, the attempt fails, and the replay runs the step again and finishes', async () => {
    let calls = 0;
    let reason: unknown;
    const engine = createEngine({
      db,
      workflows: {
        hangs: async (ctx) =>
          ctx.step(
            'call',
            async ({ signal }) => {
              if (calls++ > 0) return 'answered';
              signal.addEventListener('abort', () => (reason = signal.reason), { once: true });
              return new Promise<string>(() => {}); // ignores its signal: never settles
            },
            { timeoutMs: 200 },
          ),
      },
    });
    const run = await engine.start('hangs', null, { id: 'hangs-1' });
    const started = Date.now();
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await run.result()).toBe('answered');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(calls).toBe(2);
    expect(reason).toBeInstanceOf(StepTimeoutError);
    expect((await engine.inspect('hangs-1'))?.steps.map((s) => [s.name, s.output])).toEqual([['call', 'answered']]);
  });

  it('a step that times out on every attempt (the engine-wide stepTimeoutMs) fails its workflow instead of holding it', async () => {
    const engine = createEngine({ db, attempts: 2, stepTimeoutMs: 150, workflows: { stuck: async (ctx) => ctx.step('call', () => new Promise(() => {})) } });
    const run = await engine.start('stuck', null, { id: 'stuck-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(run.result()).rejects.toThrow(WorkflowFailedError);
    await expect(run.result()).rejects.toThrow('workflow stuck-1 failed: workflow stuck-1 step #0 call did not return within 150 ms; its signal was aborted');
    expect(() => createEngine({ db, stepTimeoutMs: 0, workflows: {} })).toThrow(RangeError);
  });
});
