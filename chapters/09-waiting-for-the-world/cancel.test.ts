/**
 * Cancellation in one process: a running step's signal aborts, no further
 * step starts, compensation runs where the workflow asks for it
 * (ctx.nonCancellable), a sleeping or waiting workflow is woken to end, and
 * the end is `cancelled`.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { until } from '../../shared/testing/waiting.ts';
import { runCli } from './cli.ts';
import { claimWorkflows } from './queries.ts';
import { createEngine, migrate, NoSuchWorkflowError, WorkflowCancelledError, type Context, type RunEndEvent } from './index.ts';

let test: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  test = await freshPool('ch09_cancel', { max: 20 });
  db = test.db;
  await migrate(db);
});
afterAll(async () => {
  await test?.drop();
});

describe('cancellation', () => {
  it('a running step’s signal aborts with WorkflowCancelledError; the saga refunds in ctx.nonCancellable, once; no other step starts; the end is cancelled', async () => {
    const effects: string[] = [];
    const reasons: unknown[] = [];
    const ends: RunEndEvent[] = [];
    const engine = createEngine({
      db,
      workflows: {
        saga: async (ctx: Context) => {
          await ctx.step('charge', async () => void effects.push('charge'));
          try {
            await ctx.step('ship', ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => (reasons.push(signal.reason), reject(signal.reason)))));
            await ctx.step('email', async () => void effects.push('email'));
          } catch (error) {
            await ctx.nonCancellable(() => ctx.step('refund', async () => void effects.push('refund')));
            throw error;
          }
        },
      },
    });
    const worker = engine.createWorker({ leaseMs: 5000, onRunEnd: (e) => ends.push(e) });
    await worker.start();
    try {
      await engine.start('saga', {}, { id: 'c-1' });
      await until('c-1 ships', async () => (await engine.inspect('c-1'))?.steps.length === 1, { timeoutMs: 5000, everyMs: 10 });
      expect(await engine.cancel('c-1', { reason: 'customer changed their mind' })).toEqual({ outcome: 'requested', status: 'running' });
      const error = await engine.result('c-1').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkflowCancelledError);
      expect((error as Error).message).toBe('workflow c-1 was cancelled: customer changed their mind');
    } finally {
      await worker.stop();
    }
    expect(effects).toEqual(['charge', 'refund']);
    expect(reasons[0]).toBeInstanceOf(WorkflowCancelledError);
    expect(ends.map((e) => e.outcome)).toEqual(['cancelled']);
    const info = await engine.inspect('c-1');
    expect(info).toMatchObject({ status: 'cancelled', error: 'customer changed their mind' });
    expect(info?.steps.map((s) => s.name)).toEqual(['charge', 'refund']);
    expect(info?.failures).toEqual([]); // the aborted step was no failed attempt: nothing retried
  });

  it('a sleeping workflow and one waiting for an event are woken to end: cancelled at once, not when their waits would end', async () => {
    const engine = createEngine({
      db,
      workflows: {
        napper: async (ctx: Context) => ctx.sleep(60_000),
        waiter: async (ctx: Context) => ctx.waitForEvent('never'),
      },
    });
    const worker = engine.createWorker({ leaseMs: 5000, pollMs: 10_000 });
    await worker.start();
    try {
      await engine.start('napper', {}, { id: 'c-2' });
      await engine.start('waiter', {}, { id: 'c-3' });
      await until('both wait', async () => (await engine.inspect('c-2'))?.waiting !== null && (await engine.inspect('c-3'))?.waiting !== null, { timeoutMs: 5000, everyMs: 10 });
      const startedAt = performance.now();
      await engine.cancel('c-2');
      await engine.cancel('c-3', { reason: 'timed out upstream' });
      await expect(engine.result('c-2')).rejects.toThrow('workflow c-2 was cancelled: cancelled');
      await expect(engine.result('c-3')).rejects.toThrow('workflow c-3 was cancelled: timed out upstream');
      expect(performance.now() - startedAt).toBeLessThan(3000);
    } finally {
      await worker.stop();
    }
  });

  it('cancel twice is one cancellation; a finished workflow is not changed; an id not in the log is NoSuchWorkflowError', async () => {
    const engine = createEngine({ db, workflows: { quick: async () => 'done', slow: async (ctx: Context) => ctx.sleep(60_000) } });
    await engine.start('slow', {}, { id: 'c-4' });
    expect((await engine.cancel('c-4', { reason: 'first' })).outcome).toBe('requested');
    expect((await engine.cancel('c-4', { reason: 'second' })).outcome).toBe('already');
    await engine.start('quick', {}, { id: 'c-5' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.result('c-4')).rejects.toThrow('cancelled: first');
    expect(await engine.cancel('c-5')).toEqual({ outcome: 'finished', status: 'completed' });
    expect(await engine.result('c-5')).toBe('done');
    await expect(engine.cancel('nobody')).rejects.toThrow(NoSuchWorkflowError);
  });

  it('cancelled after its last attempt’s worker vanished: ends cancelled with its reason, its code never run again (torture finding 4)', async () => {
    let runs = 0;
    const engine = createEngine({ db, workflows: { once: async (ctx: Context) => ctx.step('charge', async () => void runs++) } });
    await engine.start('once', {}, { id: 'c-10', maxAttempts: 1 });
    // Its one attempt: a claim whose process is gone (made here by hand), its lease left to run out.
    await claimWorkflows(db, { worker: 'vanished', limit: 50, leaseMs: 50 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await engine.cancel('c-10', { reason: 'the customer changed their mind' })).toEqual({ outcome: 'requested', status: 'running' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.result('c-10')).rejects.toThrow('workflow c-10 was cancelled: the customer changed their mind');
    expect(runs).toBe(0);
  });

  it('durable cancel: an operator cancels a sleeping workflow; again, nothing changes; a finished one, exit 1', async () => {
    const engine = createEngine({ db, workflows: { slow: async (ctx: Context) => ctx.sleep(60_000) } });
    await engine.start('slow', {}, { id: 'c-6' });
    const out: string[] = [];
    const io = { out: (t: string) => void out.push(t), err: (t: string) => void out.push(t), env: { DATABASE_URL: test.url }, interactive: false };
    expect(await runCli(['cancel', 'c-6', '--reason', 'duplicate order'], io)).toBe(0);
    expect(await runCli(['cancel', 'c-6'], io)).toBe(0);
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await runCli(['cancel', 'c-6'], io)).toBe(1);
    expect(out).toEqual([
      'workflow c-6: cancellation requested; its run stops at its next step (its code may compensate first) and it ends cancelled.\n',
      'workflow c-6: cancellation was requested already; nothing changed.\n',
      'workflow c-6 is cancelled: nothing to cancel.\n',
    ]);
    expect(await engine.inspect('c-6')).toMatchObject({ status: 'cancelled', error: 'duplicate order' });
  });
});
