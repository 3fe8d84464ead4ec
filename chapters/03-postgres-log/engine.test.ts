/**
 * Chapter 3's engine in one process, on a real database: the log's tables, the
 * registry of workflow names, replay and its checks. (Crashes are in crash.test.ts.)
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CourseError } from '../../shared/errors.ts';
import { silenceConsoleLog } from '../../shared/testing/console.ts';
import { freshDatabase, freshPool, type TestPool, quietPool } from '../../shared/testing/database.ts';
import { rejectionOf } from '../../shared/testing/errors.ts';
import { countedWorkflow } from '../../shared/testing/workflows.ts';
import { createEngine, NonDeterminismError, UnknownWorkflowError, WorkflowFailedError, type Workflow, type Workflows } from './engine.ts';
import { createSchema, getWorkflow, loadSteps } from './queries.ts';

let database: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  database = await freshPool('ch03_engine');
  db = database.db;
  await createSchema(db);
});

afterAll(async () => {
  await database?.drop();
});

silenceConsoleLog(); // the engine's trace lines

describe('the Postgres log', () => {
  it('two processes can create the schema at the same moment', async () => {
    const empty = await freshDatabase('ch03_schema');
    // Separate pools: separate connections, as separate processes would have.
    const pools = Array.from({ length: 4 }, () => quietPool(empty.url, { max: 1 }));
    try {
      await Promise.all(pools.map((pool) => createSchema(pool)));
      const tables = await pools[0]!.query<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
      );
      expect(tables.rows.map((r) => r.name)).toEqual(['steps', 'workflows']);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
      await empty.drop();
    }
  });

  it('a finished workflow is one row in workflows and one row per step, in order', async () => {
    const { workflow } = countedWorkflow();
    const engine = createEngine({ db, workflows: { counted: workflow } });
    expect(await engine.start('counted', 'rows-1', { n: 1 })).toBe('result 20');
    expect(await getWorkflow(db, 'rows-1')).toEqual({
      id: 'rows-1',
      name: 'counted',
      input: { n: 1 },
      status: 'completed',
      output: 'result 20',
      error: null,
    });
    expect(await loadSteps(db, 'rows-1')).toEqual([
      { workflowId: 'rows-1', seq: 0, name: 'a', output: 2 },
      { workflowId: 'rows-1', seq: 1, name: 'b', output: 20 },
      { workflowId: 'rows-1', seq: 2, name: 'c', output: 'result 20' },
    ]);
  });

  it('starting a completed workflow again runs nothing and returns its recorded output', async () => {
    const { runs, workflow } = countedWorkflow();
    const engine = createEngine({ db, workflows: { counted: workflow } });
    await engine.start('counted', 'again-1', { n: 2 });
    expect(await engine.start('counted', 'again-1', { n: 2 })).toBe('result 30');
    expect(runs).toEqual(['a', 'b', 'c']);
  });

  it('a resumed workflow runs only the steps the log does not have, with the input the log recorded', async () => {
    const first = countedWorkflow();
    // A first run that got as far as step b (as if the process had died there).
    const engine = createEngine({
      db,
      workflows: { counted: (async (ctx, { n }) => {
        await ctx.step('a', async () => n + 1);
        await ctx.step('b', async () => (n + 1) * 10);
        throw new Error('the process "died" here');
      }) as Workflow<{ n: number }, string> },
      attempts: 1,
    });
    await expect(engine.start('counted', 'resume-1', { n: 4 })).rejects.toThrow('died');
    await db.query(`UPDATE workflows SET status = 'running' WHERE id = 'resume-1'`); // undo the "failed" of attempts: 1

    const later = createEngine({ db, workflows: { counted: first.workflow } });
    // Whoever asks later passes other input; the log's input ({ n: 4 }) wins, so replay stays consistent.
    expect(await later.start('counted', 'resume-1', { n: 99 })).toBe('result 50');
    expect(first.runs).toEqual(['c']);
  });

  it('status says completed, running, failed or missing for each id', async () => {
    let calls = 0;
    const engine = createEngine({
      db,
      workflows: {
        ok: async (ctx) => ctx.step('only', async () => 'fine'),
        broken: async (ctx) => ctx.step('only', async () => { calls++; throw new Error('the service is down'); }),
      },
    });
    await engine.start('ok', 'st-done', null);
    await engine.create('ok', 'st-waiting', null);
    await expect(engine.start('broken', 'st-broken', null)).rejects.toThrow('the service is down');
    expect(calls).toBe(3); // the in-process retry: three attempts, then the log says failed
    expect(await engine.status(['st-done', 'st-waiting', 'st-broken', 'st-nobody'])).toEqual({
      'st-done': 'completed',
      'st-waiting': 'running',
      'st-broken': 'failed',
      'st-nobody': 'missing',
    });
    expect((await getWorkflow(db, 'st-broken'))?.error).toBe('the service is down');
    await expect(engine.start('broken', 'st-broken', null)).rejects.toThrow(WorkflowFailedError);
    expect(calls).toBe(3);
  });
});

describe('workflows are registered by name', () => {
  it('an unknown workflow name is a clear error, and nothing is written to the log', async () => {
    const engine = createEngine<Workflows>({ db, workflows: { order: async () => 'ok' } });
    const start = engine.start('odrer', 'typo-1', {});
    await expect(start).rejects.toThrow(UnknownWorkflowError);
    await expect(start).rejects.toThrow('workflow typo-1 is a "odrer" workflow, and this process has no workflow registered under that name.');
    await expect(start).rejects.toMatchObject({ hint: expect.stringContaining('Registered here: order.') });
    expect(await getWorkflow(db, 'typo-1')).toBeUndefined();
  });

  it('an id already in the log under another workflow name is refused, and the other workflow does not run', async () => {
    let refunds = 0;
    const engine = createEngine({
      db,
      workflows: { order: async () => 'ordered', refund: async (ctx) => ctx.step('pay_back', async () => ++refunds) },
    });
    await engine.create('refund', 'same-id', {});
    await expect(engine.start('order', 'same-id', {})).rejects.toThrow('workflow same-id is already in the log as a "refund" workflow, not "order"');
    expect(refunds).toBe(0);
  });

  it('a workflow in the log whose name this process does not know is reported by resume and recover', async () => {
    const old = createEngine({ db, workflows: { refund: async (ctx) => ctx.step('pay_back', async () => 1) } });
    await old.create('refund', 'refund-1', {});
    const current = createEngine<Workflows>({ db, workflows: { order: async () => 'ok' } });
    await expect(current.resume('refund-1')).rejects.toThrow(UnknownWorkflowError);
    const recover = current.recover();
    await expect(recover).rejects.toThrow(CourseError);
    await expect(recover).rejects.toThrow(/refund-1: workflow refund-1 is a "refund" workflow/);
    await old.resume('refund-1'); // tidy up: the code that knows it finishes it
  });
});

describe('replay checks the code against the log', () => {
  it('a different step at a recorded position stops the replay before that step runs', async () => {
    const v1 = countedWorkflow();
    await createEngine({ db, workflows: { counted: v1.workflow } }).start('counted', 'nd-1', { n: 1 });
    await db.query(`UPDATE workflows SET status = 'running' WHERE id = 'nd-1'`); // as if it had crashed before completing

    let ranB = false;
    const v2 = createEngine({
      db,
      workflows: { counted: (async (ctx) => {
        await ctx.step('a', async () => 0);
        await ctx.step('c', async () => (ranB = true));
        return 'never';
      }) as Workflow<{ n: number }, string> },
    });
    const error = await rejectionOf(v2.start('counted', 'nd-1', { n: 1 }));
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect(error).toMatchObject({ workflowId: 'nd-1', seq: 1, recorded: 'b', called: 'c' });
    expect((error as Error).message).toBe('workflow nd-1 step #1: the log says b, the code now calls c');
    expect(ranB).toBe(false);
  });

  it('code that returns before reaching a recorded step is a non-determinism error too', async () => {
    const v1 = countedWorkflow();
    await createEngine({ db, workflows: { counted: v1.workflow } }).start('counted', 'nd-2', { n: 1 });
    await db.query(`UPDATE workflows SET status = 'running' WHERE id = 'nd-2'`);

    const v2 = createEngine({
      db,
      workflows: { counted: (async (ctx) => String(await ctx.step('a', async () => 0))) as Workflow<{ n: number }, string> },
    });
    await expect(v2.start('counted', 'nd-2', { n: 1 })).rejects.toThrow('workflow nd-2 step #1: the log says b, the code now returns without calling it');
    expect((await getWorkflow(db, 'nd-2'))?.status).toBe('running');
  });
});
