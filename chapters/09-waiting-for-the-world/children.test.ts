/**
 * Child workflows in one process: a parent starts children (ids derived from
 * its own and their positions), waits for their ends holding no worker slot
 * — so one slot runs a parent and its child in turn, where waiting inside a
 * step (all chapter 8 has) holds the slot the child needs for ever — fans out
 * to 1,000 children and resumes once, hears a child's failure as an error it
 * can catch, and takes its children down when it is cancelled.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, quietPool, type TestPool } from '../../shared/testing/database.ts';
import { until } from '../../shared/testing/waiting.ts';
import * as chapter8 from '../08-failures-and-time/index.ts';
import { ChildWorkflowError, createEngine, migrate, type Context, type LogEntry } from './index.ts';

let test: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  test = await freshPool('ch09_children', { max: 30 });
  db = test.db;
  await migrate(db);
});
afterAll(async () => {
  await test?.drop();
});

/** A child: one step that doubles its input. */
const double = async (ctx: Context, n: number) => ctx.step('double', async () => n * 2);

/** A parent: starts one child, waits for it, adds one. */
const parent = async (ctx: Context, n: number) => {
  const child = await ctx.startChild<number>('double', n);
  return (await child.result()) + 1;
};

describe('a child workflow', () => {
  it('runs under an id derived from its parent’s and its position; the parent gets its output; both are in the log', async () => {
    const engine = createEngine({ db, workflows: { parent, double } });
    await engine.start('parent', 20, { id: 'family-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('family-1')).toBe(41);
    expect(await engine.result('family-1/0')).toBe(40);
    const info = await engine.inspect('family-1');
    expect(info?.steps.map((s) => [s.seq, s.kind, s.name])).toEqual([
      [0, 'child', 'double'],
      [1, 'event', 'durable:child:family-1/0'],
    ]);
    expect((await engine.inspect('family-1/0'))?.parentId).toBe('family-1');
  });

  it('one worker with one slot runs a parent and the child it waits for in turn: the parent holds no slot while it waits', async () => {
    const engine = createEngine({ db, workflows: { parent, double } });
    const worker = engine.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 50 });
    await worker.start();
    try {
      const handle = await engine.start('parent', 1, { id: 'one-slot' });
      expect(await handle.result()).toBe(3);
    } finally {
      await worker.stop();
    }
  });

  it('on chapter 8 — a parent that starts its child and waits for it inside a step — one slot is held by the parent for ever: the child is never claimed', async () => {
    // What a parent on chapter 8 can do: start the child, and wait for its result inside a step.
    let startAndWait = async (_id: string, _n: number, _signal: AbortSignal): Promise<number> => 0;
    // A pool of its own: chapter 8 names its prepared statements as chapter 9 does, with other texts.
    const db8 = quietPool(test.url, { max: 10 });
    const engine8 = chapter8.createEngine({
      db: db8,
      workflows: {
        double: async (ctx: chapter8.Context, n: number) => ctx.step('double', async () => n * 2),
        parent: async (ctx: chapter8.Context, n: number) => ctx.step('wait for child', async ({ signal }) => (await startAndWait(`${ctx.workflowId}-child`, n, signal)) + 1),
      },
    });
    startAndWait = async (id, n, signal) => (await (await engine8.start('double', n, { id })).result({ signal })) as number;
    const worker = engine8.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 50 });
    await worker.start();
    try {
      await engine8.start('parent', 1, { id: 'ch8-one-slot' });
      await until('the child is in the log', async () => (await engine8.status(['ch8-one-slot-child']))['ch8-one-slot-child'] === 'running');
      // Forty polls later, the child has still never been claimed: the only slot is the parent's, waiting for it.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const child = (await db.query(`SELECT fencing_token FROM workflows WHERE id = 'ch8-one-slot-child'`)).rows[0];
      expect(child.fencing_token).toBe(0);
      expect(worker.held).toEqual(['ch8-one-slot']);
    } finally {
      await worker.stop({ graceMs: 0 });
      await db8.end();
    }
  });

  it('a child that fails throws ChildWorkflowError in its parent, which may catch it — and every replay takes the same branch', async () => {
    let runsOfParent = 0;
    const engine = createEngine({
      db,
      maxAttempts: 2,
      workflows: {
        broken: async (ctx: Context) => {
          await ctx.waitForEvent('go'); // so that its parent is parked by the time it fails
          return ctx.step('boom', async () => Promise.reject(new Error('out of stock')), { retry: { maxAttempts: 1 } });
        },
        careful: async (ctx: Context) => {
          runsOfParent++;
          const child = await ctx.startChild('broken', {});
          try {
            await child.result();
            return 'shipped';
          } catch (error) {
            expect(error).toBeInstanceOf(ChildWorkflowError);
            expect(await child.result().catch((again: unknown) => again)).toBe(error); // the same promise: one wait, not two
            return ctx.step('refund', async () => `refunded: ${(error as ChildWorkflowError).status} — ${(error as ChildWorkflowError).childError}`);
          }
        },
      },
    });
    await engine.start('careful', {}, { id: 'careful-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect((await engine.inspect('careful-1'))?.waiting).toEqual({ reason: 'event', events: ['durable:child:careful-1/0'], until: null });
    await engine.send('careful-1/0', 'go', null);
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('careful-1')).toMatch(/^refunded: failed — .*out of stock/);
    expect(runsOfParent).toBe(2); // started the child and parked; woken by its end, replayed, and finished
  });

  it('fans out to 1,000 children started in one transaction; the parent parks once and resumes once, with every output in order', async () => {
    const said: LogEntry[] = [];
    const engine = createEngine({
      db,
      log: (entry) => void (entry.workflowId === 'fan-out' && said.push(entry)),
      workflows: {
        double,
        fanOut: async (ctx: Context, n: number) => {
          const children = await Promise.all(Array.from({ length: n }, (_, i) => ctx.startChild<number>('double', i)));
          const outputs = await Promise.all(children.map((child) => child.result()));
          return outputs.reduce((sum, x) => sum + x, 0);
        },
      },
    });
    await engine.start('fanOut', 1000, { id: 'fan-out' });
    await engine.createWorker({ concurrency: 16, leaseMs: 10_000 }).drain();
    expect(await engine.result('fan-out')).toBe(999 * 1000); // 2 × (0 + 1 + … + 999)
    const events = said.map((entry) => entry.event);
    expect(events.filter((e) => e === 'children-started')).toHaveLength(1);
    expect(events.filter((e) => e === 'waiting-for-event')).toHaveLength(1);
    expect(events.filter((e) => e === 'replaying')).toHaveLength(1);
    const counts = (await db.query(`SELECT count(*) FILTER (WHERE status = 'completed')::int AS completed, count(*)::int AS all FROM workflows WHERE parent_id = 'fan-out'`)).rows[0];
    expect(counts).toEqual({ completed: 1000, all: 1000 });
  }, 120_000);

  it('cancelling a parent cancels its children — one waiting for an event, one sleeping — and each ends cancelled', async () => {
    const engine = createEngine({
      db,
      workflows: {
        waits: async (ctx: Context) => ctx.waitForEvent('never'),
        sleeps: async (ctx: Context) => ctx.sleep(3_600_000),
        family: async (ctx: Context) => {
          const [a, b] = await Promise.all([ctx.startChild('waits', {}), ctx.startChild('sleeps', {})]);
          return Promise.all([a!.result(), b!.result()]);
        },
      },
    });
    const worker = engine.createWorker({ leaseMs: 5000, pollMs: 50 });
    await worker.start();
    try {
      await engine.start('family', {}, { id: 'fam-c' });
      await until('both children wait', async () => (await engine.inspect('fam-c/0'))?.waiting?.reason === 'event' && (await engine.inspect('fam-c/1'))?.waiting?.reason === 'sleep');
      expect(await engine.cancel('fam-c', { reason: 'customer left' })).toMatchObject({ outcome: 'requested' });
      await until('all three end', async () => Object.values(await engine.status(['fam-c', 'fam-c/0', 'fam-c/1'])).every((s) => s !== 'running'));
      expect(await engine.status(['fam-c', 'fam-c/0', 'fam-c/1'])).toEqual({ 'fam-c': 'cancelled', 'fam-c/0': 'cancelled', 'fam-c/1': 'cancelled' });
      expect((await engine.inspect('fam-c/0'))?.error).toBe('its parent fam-c was cancelled: customer left');
    } finally {
      await worker.stop();
    }
  });

  it('a connection PostgreSQL ends while the parent looks for its children’s ends stops the run: a parent that settles its children does not count it as their failure, and ends after them', async () => {
    // A pool of its own, whose connections are ended by PostgreSQL (a real pg_terminate_backend) as the first lock-for-wait goes out.
    const own = quietPool(test.url, { max: 10 });
    let armed = true;
    const connect = own.connect.bind(own) as () => Promise<pg.PoolClient>;
    (own as unknown as { connect: (callback?: unknown) => unknown }).connect = (callback?: unknown) => {
      if (callback) return (connect as unknown as (cb: unknown) => void)(callback);
      return connect().then((client) => {
        const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
        (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args: unknown[]) => {
          if (armed && (args[0] as { name?: string } | undefined)?.name === 'lock-for-wait') {
            armed = false;
            await db.query('SELECT pg_terminate_backend($1)', [(client as unknown as { processID: number }).processID]);
          }
          return query(...args);
        };
        return client;
      });
    };
    const engine = createEngine({
      db: own,
      workflows: {
        child: async (ctx: Context) => (await ctx.waitForEvent('go'), 'child done'),
        settles: async (ctx: Context) => {
          const [end] = await Promise.allSettled([(await ctx.startChild('child', {})).result()]);
          return end!.status === 'fulfilled' ? 'its child completed' : `its child failed: ${(end as PromiseRejectedResult).reason?.message}`;
        },
      },
    });
    const worker = engine.createWorker({ leaseMs: 5000, pollMs: 50 });
    await worker.start();
    try {
      await engine.start('settles', {}, { id: 'dropped' });
      await until('the child waits', async () => (await engine.inspect('dropped/0'))?.waiting?.reason === 'event');
      await until('the parent is parked for its child', async () => (await engine.inspect('dropped'))?.waiting?.reason === 'event');
      expect(armed).toBe(false); // the connection was ended under the parent's first look
      expect((await engine.status(['dropped'])).dropped).toBe('running');
      await engine.send('dropped/0', 'go', null);
      expect(await engine.result('dropped')).toBe('its child completed');
    } finally {
      await worker.stop();
      await own.end();
    }
  });

  it('a child id already taken by another workflow fails the parent with ChildIdTakenError, starting nothing', async () => {
    const engine = createEngine({ db, workflows: { parent, double } });
    await engine.start('double', 5, { id: 'taken/0' });
    await engine.start('parent', 1, { id: 'taken' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.result('taken')).rejects.toThrow(/cannot start child taken\/0: that id is already a workflow started by something else/);
    expect((await db.query(`SELECT count(*)::int AS n FROM steps WHERE workflow_id = 'taken' AND kind = 'child'`)).rows[0].n).toBe(0);
  });

  it('refuses what makes no sense at the call, writing nothing: an unknown child name, a bad maxAttempts, an event name of the engine’s own', async () => {
    const engine = createEngine({
      db,
      workflows: {
        double,
        typo: async (ctx: Context) => ctx.startChild('dubble', 1),
        badAttempts: async (ctx: Context) => ctx.startChild('double', 1, { maxAttempts: 0 }),
        spoof: async (ctx: Context) => ctx.waitForEvent('durable:child:x'),
      },
    });
    for (const name of ['typo', 'badAttempts', 'spoof'] as const) await engine.start(name, undefined as never, { id: `refuse-${name}` });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.result('refuse-typo')).rejects.toThrow(/dubble/);
    await expect(engine.result('refuse-badAttempts')).rejects.toThrow('maxAttempts must be a whole number ≥ 1');
    await expect(engine.result('refuse-spoof')).rejects.toThrow('are the engine');
    await expect(engine.send('refuse-typo', 'durable:child:refuse-typo/0', {})).rejects.toThrow('are the engine');
    expect((await db.query(`SELECT count(*)::int AS n FROM workflows WHERE parent_id LIKE 'refuse-%'`)).rows[0].n).toBe(0);
  });
});
