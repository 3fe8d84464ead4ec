/**
 * Exercise 4's tests: when a workflow fails for good after the card was
 * charged, the refund runs — once, recorded as a step — and the workflow ends
 * failed; and a real SIGKILL anywhere around the refund changes none of that.
 *
 * The shop (charges, refunds, inventory) and its order workflow are in
 * drivers/04-compensation-shop.ts. Each test gets a fresh schema of the run's
 * database. The import names the exercise's starter for the type checker; the
 * grading config swaps it for the implementation under test. Points:
 * exercises/04-compensation/points.json.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startChild, type Attempt } from '../../../shared/crash/runner.ts';
import { createEngine, type Context, type Workflows } from '../../../exercises/04-compensation/engine.ts';
import { createSchema } from '../../../exercises/04-compensation/queries.ts';
import { createShop, effectsOf, loggedSteps, order, orderWorkflow, restock, workflowRow } from '../drivers/04-compensation-shop.ts';
import { childTimeoutMs, crashTest, scratchSchema, type ScratchSchema } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/04-compensation.ts';

let schema: ScratchSchema | undefined;
let db: pg.Pool | undefined;

beforeEach(() => {
  vi.spyOn(console, 'log').mockImplementation(() => {}); // the engine's trace lines
});
afterEach(async () => {
  vi.restoreAllMocks();
  await db?.end();
  await schema?.drop();
  db = undefined;
  schema = undefined;
});

/** A fresh schema with the log's tables and the shop's, `onHand` widgets on the shelf. */
async function freshShop(onHand: number): Promise<pg.Pool> {
  schema = await scratchSchema('ex04');
  db = new pg.Pool({ connectionString: schema.url });
  await createSchema(db);
  await createShop(db, onHand);
  return db;
}

function engineOn<W extends Workflows>(pool: pg.Pool, workflows: W) {
  return createEngine({ db: pool, workflows, attempts: 3 });
}

/** An error that says retrying cannot help, like OutOfStockError. */
class Declined extends Error {
  readonly retryable = false;
}

describe('compensation, in process', () => {
  it('an order with stock completes, and its compensation never runs', async () => {
    const pool = await freshShop(5);
    const engine = engineOn(pool, { order: orderWorkflow(pool) });
    await expect(engine.start('order', 'order-1', order('order-1'))).resolves.toMatchObject({ onHand: 4 });
    expect(await effectsOf(pool, 'order-1')).toEqual({ charges: 1, refunds: 0, stockDecrements: 1 });
    expect((await loggedSteps(pool, 'order-1')).map((s) => s.name)).toEqual(['charge_card', 'reserve_inventory', 'send_email']);
  });

  it('out of stock after the charge: refund_card runs once, recorded after the failed reserve_inventory, and the workflow ends failed', async () => {
    const pool = await freshShop(0);
    const engine = engineOn(pool, { order: orderWorkflow(pool) });
    await expect(engine.start('order', 'order-1', order('order-1'))).rejects.toThrow(/Out of stock/);
    expect(await effectsOf(pool, 'order-1')).toEqual({ charges: 1, refunds: 1, stockDecrements: 0 });
    expect(await loggedSteps(pool, 'order-1')).toEqual([
      { seq: 0, name: 'charge_card', failed: false },
      { seq: 1, name: 'reserve_inventory', failed: true },
      { seq: 2, name: 'refund_card', failed: false },
    ]);
    expect(await workflowRow(pool, 'order-1')).toMatchObject({ status: 'failed', error: expect.stringMatching(/Out of stock/) });
  });

  it('a failed workflow stays failed: resuming it compensates nothing again', async () => {
    const pool = await freshShop(0);
    const engine = engineOn(pool, { order: orderWorkflow(pool) });
    await expect(engine.start('order', 'order-1', order('order-1'))).rejects.toThrow(/Out of stock/);
    await restock(pool, 5);
    await expect(engine.resume('order-1')).rejects.toThrow(/failed earlier/);
    expect(await effectsOf(pool, 'order-1')).toEqual({ charges: 1, refunds: 1, stockDecrements: 0 });
  });

  it('compensations run newest first, each recorded as a step of its own', async () => {
    const pool = await freshShop(0);
    const ran: string[] = [];
    const engine = engineOn(pool, {
      trip: async (ctx: Context) => {
        await ctx.step('book_flight', async () => 'flight');
        ctx.compensate('cancel_flight', async () => ran.push('cancel_flight'));
        await ctx.step('book_hotel', async () => 'hotel');
        ctx.compensate('cancel_hotel', async () => ran.push('cancel_hotel'));
        await ctx.step('book_car', async (): Promise<string> => {
          throw new Declined('no cars left');
        });
        return 'booked';
      },
    });
    await expect(engine.start('trip', 'trip-1', null)).rejects.toThrow('no cars left');
    expect(ran).toEqual(['cancel_hotel', 'cancel_flight']);
    expect((await loggedSteps(pool, 'trip-1')).map((s) => `${s.seq} ${s.name}${s.failed ? ' (failed)' : ''}`)).toEqual([
      '0 book_flight',
      '1 book_hotel',
      '2 book_car (failed)',
      '3 cancel_hotel',
      '4 cancel_flight',
    ]);
    expect(await workflowRow(pool, 'trip-1')).toMatchObject({ status: 'failed', error: 'no cars left' });
  });

  it('a failure that may pass (not retryable: false) is retried, never compensated', async () => {
    const pool = await freshShop(0);
    let calls = 0;
    const engine = engineOn(pool, {
      flaky: async (ctx: Context) => {
        await ctx.step('charge_card', async () => 'ch_1');
        ctx.compensate('refund_card', async () => 'refunded');
        return ctx.step('send_email', async () => {
          calls += 1;
          if (calls === 1) throw Object.assign(new Error('mail service unavailable'), { retryable: true });
          return 'msg_1';
        });
      },
    });
    await expect(engine.start('flaky', 'flaky-1', null)).resolves.toBe('msg_1');
    expect((await loggedSteps(pool, 'flaky-1')).map((s) => s.name)).toEqual(['charge_card', 'send_email']);
  });

  it('a permanent failure is not retried: the failing step runs once', async () => {
    const pool = await freshShop(0);
    let calls = 0;
    const engine = engineOn(pool, {
      doomed: async (ctx: Context) => {
        await ctx.step('charge_card', async () => 'ch_1');
        ctx.compensate('refund_card', async () => 'refunded');
        return ctx.step('reserve', async (): Promise<string> => {
          calls += 1;
          throw new Declined('sold out');
        });
      },
    });
    await expect(engine.start('doomed', 'doomed-1', null)).rejects.toThrow('sold out');
    expect(calls).toBe(1);
    expect((await loggedSteps(pool, 'doomed-1')).map((s) => s.name)).toEqual(['charge_card', 'reserve', 'refund_card']);
  });
});

describe('compensation, after a real crash', () => {
  const run = (url: string, fault?: string): Promise<Attempt> =>
    startChild({ script: driver, args: ['start', 'order-1', '1'], fault, env: { DATABASE_URL: url, FORCE_COLOR: '0' }, timeoutMs: childTimeoutMs() }).done;
  const report = (a: Attempt) => `exit ${a.exitCode} signal ${a.signal}\n${a.stdout}${a.stderr}`;

  /** Out of stock; killed at `fault`; `between` runs while no process is up; then a clean restart. */
  async function crashThenRestart(fault: string, between?: (pool: pg.Pool) => Promise<void>): Promise<pg.Pool> {
    const pool = await freshShop(0);
    const crashed = await run(schema!.url, fault);
    expect(crashed.crashedAt, report(crashed)).toBe(`${fault}@1`);
    await between?.(pool);
    const restarted = await run(schema!.url);
    expect(restarted.exitCode, report(restarted)).toBe(0);
    expect(restarted.stdout, report(restarted)).toMatch(/workflow order-1 failed: .*Out of stock/);
    return pool;
  }

  crashTest('killed right after the refund committed: the restart refunds nothing more, takes no stock that arrived meanwhile, and ends the workflow failed', async () => {
    const pool = await crashThenRestart('after-record:refund_card', (p) => restock(p, 5));
    expect(await effectsOf(pool, 'order-1')).toEqual({ charges: 1, refunds: 1, stockDecrements: 0 });
    expect(await workflowRow(pool, 'order-1')).toMatchObject({ status: 'failed' });
  });

  crashTest('killed inside the refund transaction, before it committed: the restart refunds exactly once', async () => {
    const pool = await crashThenRestart('after-effect:refund_card');
    expect(await effectsOf(pool, 'order-1')).toEqual({ charges: 1, refunds: 1, stockDecrements: 0 });
    expect((await loggedSteps(pool, 'order-1')).map((s) => s.name)).toEqual(['charge_card', 'reserve_inventory', 'refund_card']);
    expect(await workflowRow(pool, 'order-1')).toMatchObject({ status: 'failed' });
  });

  crashTest('killed after the failure was recorded, before any refund: the restart refunds exactly once', async () => {
    const pool = await crashThenRestart('after-record:reserve_inventory');
    expect(await effectsOf(pool, 'order-1')).toEqual({ charges: 1, refunds: 1, stockDecrements: 0 });
    expect(await workflowRow(pool, 'order-1')).toMatchObject({ status: 'failed' });
  });
});
