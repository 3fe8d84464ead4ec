/**
 * Events in one process: a workflow waits, the world sends — before or after
 * the wait, once per key, with a timeout recorded as an end like any other —
 * and the race that loses wake-ups, replayed statement by statement on a
 * naive protocol (the event is stranded) and on the chapter's (it is not).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { until } from '../../shared/testing/waiting.ts';
import { createEngine, migrate, NoSuchWorkflowError, WorkflowNotRunningError, type Context } from './index.ts';
import { claimWorkflows, inTransaction, lockForWait, parkForEvents, takeEvents } from './queries.ts';

let test: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  test = await freshPool('ch09_events', { max: 20 });
  db = test.db;
  await migrate(db);
});
afterAll(async () => {
  await test?.drop();
});

/** An order that waits for its payment webhook, then records what it got. */
const paid = async (ctx: Context, input: { timeoutMs?: number }) => {
  const payment = await ctx.waitForEvent<{ amount: number }>('payment', { timeoutMs: input.timeoutMs });
  return ctx.step('ship', async () => (payment ? `shipped, paid ${payment.amount}` : 'cancelled: not paid in time'));
};

describe('waiting for an event', () => {
  it('sent while the workflow waits: it is woken and takes it; while it waits it holds no worker slot', async () => {
    const engine = createEngine({ db, workflows: { paid, quick: async (ctx: Context) => ctx.step('noop', async () => 'done') } });
    const worker = engine.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 10_000 });
    await worker.start();
    try {
      await engine.start('paid', {}, { id: 'ev-1' });
      await until('ev-1 waits', async () => (await engine.inspect('ev-1'))?.waiting?.reason === 'event', { timeoutMs: 5000, everyMs: 10 });
      expect(worker.held).toEqual([]);
      expect((await engine.inspect('ev-1'))?.waiting).toEqual({ reason: 'event', events: ['payment'], until: null });
      expect(await (await engine.start('quick', {}, { id: 'ev-1-other' })).result()).toBe('done'); // the one slot is free
      // From "another process": an engine of its own, no worker.
      const sender = createEngine({ db, workflows: {} });
      expect(await sender.send('ev-1', 'payment', { amount: 42 }, { key: 'psp-evt-1' })).toEqual({ delivered: true, woke: true });
      expect(await engine.result('ev-1')).toBe('shipped, paid 42');
      const entry = (await engine.inspect('ev-1'))!.steps[0]!;
      expect(entry).toMatchObject({ kind: 'event', name: 'payment', output: { payload: { amount: 42 }, key: 'psp-evt-1' } });
    } finally {
      await worker.stop();
    }
  });

  it('the send ends the wait in the log, and hands the workflow to its own process’s idle worker: the woken run claims nothing and takes nothing, it replays', async () => {
    // Counted on the pool every statement goes through: the claims, and the waiter's own look for its event.
    const counted = { claims: 0, takes: 0 };
    const query = db.query.bind(db) as (...args: unknown[]) => unknown;
    (db as unknown as { query: unknown }).query = (config: unknown, ...rest: unknown[]) => {
      const name = (config as { name?: string } | null)?.name;
      if (name === 'claim-workflows') counted.claims++;
      if (name === 'take-events') counted.takes++;
      return query(config, ...rest);
    };
    const ends: string[] = [];
    const engine = createEngine({ db, workflows: { paid } });
    const worker = engine.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 60_000, onRunEnd: (e) => void ends.push(e.outcome) });
    await worker.start();
    try {
      for (const [id, from] of [['ev-local', engine], ['ev-remote', createEngine({ db, workflows: {} })]] as const) {
        ends.length = 0;
        await engine.start('paid', {}, { id });
        await until(`${id} parks`, async () => ends.includes('waiting'), { timeoutMs: 5000, everyMs: 5 });
        const before = { ...counted };
        expect(await from.send(id, 'payment', { amount: 5 })).toEqual({ delivered: true, woke: true });
        expect(await engine.result(id)).toBe('shipped, paid 5');
        // The sender's own engine: handed over in the send's statement. Another engine (another process, for
        // all it knows): runnable, a NOTIFY, and this worker claims it. Neither run looks for its event again.
        const claims = counted.claims - before.claims;
        expect({ id, handedOver: claims === 0, takes: counted.takes - before.takes }).toEqual({ id, handedOver: from === engine, takes: 0 });
      }
      // A sender whose own worker has no code for the workflow does not hand it over: the worker that has it claims it, at once.
      const other = createEngine({ db, workflows: { unrelated: async () => null } });
      const otherWorker = other.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 60_000 });
      await otherWorker.start();
      try {
        ends.length = 0;
        await engine.start('paid', {}, { id: 'ev-no-code' });
        await until('ev-no-code parks', async () => ends.includes('waiting'), { timeoutMs: 5000, everyMs: 5 });
        expect(await other.send('ev-no-code', 'payment', { amount: 6 })).toEqual({ delivered: true, woke: true });
        expect(await engine.result('ev-no-code', { signal: AbortSignal.timeout(5000) })).toBe('shipped, paid 6');
      } finally {
        await otherWorker.stop();
      }
    } finally {
      await worker.stop();
      (db as unknown as { query: unknown }).query = query;
    }
  });

  it('sent before the workflow waits: kept, and taken when it comes to wait; the same key again is the same event, kept once', async () => {
    const engine = createEngine({ db, workflows: { paid } });
    await engine.start('paid', {}, { id: 'ev-2' });
    expect(await engine.send('ev-2', 'payment', { amount: 7 }, { key: 'k1' })).toEqual({ delivered: true, woke: false });
    expect(await engine.send('ev-2', 'payment', { amount: 999 }, { key: 'k1' })).toEqual({ delivered: false, woke: false });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('ev-2')).toBe('shipped, paid 7');
    const events = await db.query(`SELECT key, payload, taken_at_seq FROM events WHERE workflow_id = 'ev-2'`);
    expect(events.rows).toEqual([{ key: 'k1', payload: { amount: 7 }, taken_at_seq: 0 }]);
  });

  it('two waits for the same name take two events, oldest first; a wait with a timeout that passes returns undefined, recorded, and a replay takes the same branch', async () => {
    const seen: unknown[] = [];
    const engine = createEngine({
      db,
      workflows: {
        twice: async (ctx: Context) => {
          seen.push(await ctx.waitForEvent('tick'), await ctx.waitForEvent('tick'), await ctx.waitForEvent('tick', { timeoutMs: 200 }));
          await ctx.sleep(20); // a new claim: the whole log is replayed
          return seen.length;
        },
      },
    });
    await engine.start('twice', {}, { id: 'ev-3' });
    await engine.send('ev-3', 'tick', 'first');
    await engine.send('ev-3', 'tick', 'second');
    const startedAt = performance.now();
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('ev-3')).toBe(6);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(180);
    expect(seen).toEqual(['first', 'second', undefined, 'first', 'second', undefined]);
    const entries = (await engine.inspect('ev-3'))!.steps.map((s) => [s.kind, s.output]);
    expect(entries.slice(0, 3)).toEqual([
      ['event', { payload: 'first', key: expect.any(String) }],
      ['event', { payload: 'second', key: expect.any(String) }],
      ['event', { timedOut: true }],
    ]);
  });

  it('send refuses what cannot be delivered, writing nothing: no such workflow, a finished one, a bad name, key or payload', async () => {
    const engine = createEngine({ db, workflows: { paid, done: async () => 'over' } });
    await expect(engine.send('nobody', 'payment', {})).rejects.toThrow(NoSuchWorkflowError);
    await engine.start('done', {}, { id: 'ev-done' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.send('ev-done', 'payment', {})).rejects.toThrow(WorkflowNotRunningError);
    // …but a webhook redelivered after its workflow finished is the same event, already delivered: no error.
    expect(await engine.send('ev-2', 'payment', { amount: 999 }, { key: 'k1' })).toEqual({ delivered: false, woke: false });
    await engine.start('paid', {}, { id: 'ev-4' });
    await expect(engine.send('ev-4', '', {})).rejects.toThrow('an event name is 1–200 characters, not blank');
    await expect(engine.send('ev-4', 'payment', {}, { key: '' })).rejects.toThrow('an event key is a non-empty string');
    await expect(engine.send('ev-4', 'payment', undefined)).rejects.toThrow('send null, or a value');
    await expect(engine.send('ev-4', 'payment', { at: new Date() })).rejects.toThrow(/JSON cannot record/);
    expect((await db.query(`SELECT count(*)::int AS n FROM events WHERE workflow_id IN ('ev-4', 'ev-done', 'nobody')`)).rows[0].n).toBe(0);
  });
});

describe('the race that loses wake-ups', () => {
  /** A workflow claimed by "a worker" (this test), as a run would hold it: its fence. */
  async function claimed(id: string) {
    await db.query(`INSERT INTO workflows (id, name, input) VALUES ($1, 'paid', '{}')`, [id]);
    const [claim] = (await claimWorkflows(db, { worker: 'test', limit: 50, leaseMs: 30_000 })).filter((c) => c.id === id);
    return { workflowId: id, fencingToken: claim!.fencingToken };
  }
  const sender = () => createEngine({ db, workflows: {} });
  const row = async (id: string) =>
    (await db.query<{ runnable: boolean; waitEvents: string[] | null }>(
      `SELECT lease_expires_at <= now() AS runnable, (SELECT array_agg(name) FROM waits WHERE workflow_id = $1) AS "waitEvents" FROM workflows WHERE id = $1`,
      [id],
    )).rows[0]!;
  const untaken = async (id: string) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM events WHERE workflow_id = $1 AND taken_at_seq IS NULL`, [id])).rows[0]!.n;

  it('a naive waiter — look, then park, no lock — strands an event sent in between: parked for ever, its event never taken', async () => {
    const fence = await claimed('race-naive');
    // 1. The waiter looks: nothing yet.
    const looked = await db.query(`SELECT 1 FROM events WHERE workflow_id = $1 AND name = 'payment' AND taken_at_seq IS NULL`, [fence.workflowId]);
    expect(looked.rowCount).toBe(0);
    // 2. The event lands. Its sender sees a workflow that is running — held, not parked — and wakes nobody.
    expect(await sender().send(fence.workflowId, 'payment', { amount: 1 })).toEqual({ delivered: true, woke: false });
    // 3. The waiter parks, on what it saw in 1.
    await db.query(`INSERT INTO waits (workflow_id, seq, name) VALUES ($1, 0, 'payment')`, [fence.workflowId]);
    await db.query(`UPDATE workflows SET waits_missing = 1, lease_owner = NULL, fencing_token = fencing_token + 1, lease_expires_at = timestamptz '9999-12-31' WHERE id = $1`, [fence.workflowId]);
    // Stranded: parked until the year 9999, with its event in the table.
    expect(await row(fence.workflowId)).toEqual({ runnable: false, waitEvents: ['payment'] });
    expect(await untaken(fence.workflowId)).toBe(1);
  });

  it('the chapter’s waiter locks the row first: a send in between waits for the park, then ends the wait in the log and wakes it — the next run replays it', async () => {
    const fence = await claimed('race-locked');
    const waiter = await db.connect();
    try {
      await waiter.query('BEGIN');
      expect(await lockForWait(waiter, fence)).not.toBeNull(); // 1. the row's lock, first
      expect((await takeEvents(waiter, fence.workflowId, [{ seq: 0, name: 'payment' }])).size).toBe(0); // 2. the look: nothing yet
      // 3. The event is sent now — and its transaction waits for the waiter's lock.
      let settled = false;
      const sent = sender()
        .send(fence.workflowId, 'payment', { amount: 2 })
        .finally(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(settled).toBe(false);
      // 4. The waiter parks and commits; only then does the send go on — and find it parked.
      expect(await parkForEvents(waiter, fence, [{ seq: 0, name: 'payment', timeoutMs: null }])).toBeNull();
      await waiter.query('COMMIT');
      expect(await sent).toEqual({ delivered: true, woke: true });
    } finally {
      waiter.release();
    }
    // The send ended the wait itself, under the lock it held: the event taken at position 0, its entry in the log, the wait's row gone.
    expect(await row(fence.workflowId)).toEqual({ runnable: true, waitEvents: null });
    const entry = await db.query(`SELECT seq, name, kind, output FROM steps WHERE workflow_id = $1`, [fence.workflowId]);
    expect(entry.rows).toEqual([{ seq: 0, name: 'payment', kind: 'event', output: { payload: { amount: 2 }, key: expect.any(String) } }]);
    // The next claim's run replays it (a real engine's worker, with the workflow's code).
    const engine = createEngine({ db, workflows: { paid } });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result(fence.workflowId)).toBe('shipped, paid 2');
  });

  it('the other order: a sender that locks first has committed its event before the waiter looks — taken at once, nothing parked', async () => {
    const fence = await claimed('race-sender-first');
    const senderTx = await db.connect();
    try {
      await senderTx.query('BEGIN');
      await senderTx.query(`SELECT 1 FROM workflows WHERE id = $1 FOR NO KEY UPDATE`, [fence.workflowId]);
      await senderTx.query(`INSERT INTO events (workflow_id, name, key, payload) VALUES ($1, 'payment', 'k', '{"amount": 3}')`, [fence.workflowId]);
      // The waiter's transaction starts now, and waits for the sender's lock.
      const taken = inTransaction(db, async (tx) => {
        await lockForWait(tx, fence);
        return (await takeEvents(tx, fence.workflowId, [{ seq: 0, name: 'payment' }])).get(0);
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await senderTx.query('COMMIT');
      expect(await taken).toEqual({ payload: { amount: 3 }, key: 'k' });
    } finally {
      senderTx.release();
    }
  });

  it('a run whose lease is gone cannot take an event: its fenced lock is refused', async () => {
    const fence = await claimed('race-zombie');
    await db.query(`UPDATE workflows SET fencing_token = fencing_token + 1 WHERE id = $1`, [fence.workflowId]); // taken over
    await sender().send(fence.workflowId, 'payment', { amount: 4 });
    const locked = await inTransaction(db, (tx) => lockForWait(tx, fence));
    expect(locked).toBeNull();
    expect(await untaken(fence.workflowId)).toBe(1);
  });
});
