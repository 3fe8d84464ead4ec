/**
 * Chapter 5's engine in one process, on a real database and (for the keyed
 * calls) a real world server: the keys steps get, and `start(name, input, { id })`
 * as the workflow's idempotency key. (Crashes are in crash.test.ts.)
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silenceConsoleLog } from '../../shared/testing/console.ts';
import { freshPool, type TestPool, quietPool } from '../../shared/testing/database.ts';
import { rejectionOf } from '../../shared/testing/errors.ts';
import { countedWorkflow } from '../../shared/testing/workflows.ts';
import { chargeCard, demoOrder, ServiceError, type Order } from '../../shared/world/services.ts';
import { startWorld, type World } from '../../shared/world/world.ts';
import { createEngine, stepKey, WorkflowIdConflictError, type StepInfo, type Workflow } from './engine.ts';
import { createSchema, getWorkflow } from './queries.ts';

let database: TestPool;
let db: pg.Pool;
let world: World;

beforeAll(async () => {
  database = await freshPool('ch05_engine');
  db = database.db;
  await createSchema(db);
  world = await startWorld({ databaseUrl: database.url });
});

afterAll(async () => {
  await world?.stop({ removeDir: true });
  await database?.drop();
});

silenceConsoleLog(); // the engine's trace lines

describe('every step gets an idempotency key', () => {
  it('the key is the workflow id and the step position, the same on every replay', async () => {
    const seen: StepInfo[] = [];
    let failures = 1;
    const engine = createEngine({
      db,
      workflows: {
        keyed: async (ctx) => {
          await ctx.step('a', async (info) => (seen.push(info), 'a'));
          await ctx.transaction('b', async (_tx, info) => (seen.push(info), 'b'));
          return ctx.step('c', async (info) => {
            seen.push(info);
            if (failures-- > 0) throw new Error('the provider did not answer'); // retried in this process
            return 'c';
          });
        },
      },
    });
    await engine.start('keyed', null, { id: 'keys-1' });
    await engine.start('keyed', null, { id: 'keys-2' });
    expect(seen.map((info) => info.idempotencyKey)).toEqual([
      'keys-1:0', 'keys-1:1', 'keys-1:2', // the first attempt: c fails
      'keys-1:2', //                         the retry: a and b come from the log, c runs again — same key
      'keys-2:0', 'keys-2:1', 'keys-2:2', // another workflow: other keys
    ]);
    expect(seen[0]).toEqual({ workflowId: 'keys-1', seq: 0, name: 'a', idempotencyKey: 'keys-1:0' });
    // The position goes last and is only digits, so ids with colons cannot collide.
    expect(stepKey('a:1', 0)).toBe('a:1:0');
    expect(stepKey('a', 10)).toBe('a:10');
  });

  it('a charge whose answer was lost is asked for again under the same key: the provider charges once', async () => {
    const order = demoOrder('lost-answer-1');
    const charges: string[] = [];
    const engine = createEngine({
      db,
      workflows: {
        pay: async (ctx, input: Order) =>
          ctx.step('charge_card', async ({ idempotencyKey }) => {
            const charge = await chargeCard(input, { idempotencyKey, worldUrl: world.url });
            charges.push(charge.id);
            // The provider charged, but the answer never reached us (a timeout, a
            // reset connection). Without the key, the retry would charge again.
            if (charges.length === 1) throw new Error('socket hang up');
            return charge.id;
          }),
      },
    });
    const chargeId = await engine.start('pay', order, { id: 'lost-answer-1' });
    expect(charges).toEqual([chargeId, chargeId]); // two requests, one charge: the second got the first back
    const ledger = await world.ledger();
    expect(ledger.byOrder('lost-answer-1').charges).toBe(1);
    expect(ledger.charges.find((c) => c.orderId === 'lost-answer-1')).toMatchObject({ id: chargeId, idempotencyKey: 'lost-answer-1:0' });
  });

  it('the same key with other parameters is refused by the provider (400 idempotency_error), not charged again', async () => {
    let attempt = 0;
    const engine = createEngine({
      db,
      attempts: 2,
      workflows: {
        pay: async (ctx, input: Order) =>
          ctx.step('charge_card', async ({ idempotencyKey }) => {
            attempt++;
            // As if a deploy between the two attempts changed how the amount is computed.
            const amountCents = attempt === 1 ? input.amountCents : input.amountCents * 2;
            await chargeCard({ ...input, amountCents }, { idempotencyKey, worldUrl: world.url });
            throw new Error('the answer was lost');
          }),
      },
    });
    const error = await rejectionOf(engine.start('pay', demoOrder('changed-1'), { id: 'changed-1' }));
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ status: 400, type: 'idempotency_error', retryable: false });
    const ledger = await world.ledger();
    expect(ledger.charges.filter((c) => c.orderId === 'changed-1').map((c) => c.amountCents)).toEqual([4200]);
    expect((await getWorkflow(db, 'changed-1'))?.status).toBe('failed');
  });
});

describe('workflow-level idempotency: start(name, input, { id })', () => {
  it('starting the same id twice runs the workflow once, and the second start returns the first run’s result', async () => {
    const { runs, workflow } = countedWorkflow();
    const engine = createEngine({ db, workflows: { counted: workflow } });
    const first = await engine.start('counted', { n: 1 }, { id: 'twice-1' });
    const second = await engine.start('counted', { n: 1 }, { id: 'twice-1' });
    expect(first).toBe('result 20');
    expect(second).toBe(first);
    expect(runs).toEqual(['a', 'b', 'c']);
    expect((await db.query(`SELECT count(*)::int AS n FROM workflows WHERE id = 'twice-1'`)).rows[0]).toEqual({ n: 1 });
  });

  it('the same input with its keys in another order is the same run (jsonb equality, compared in SQL)', async () => {
    const { runs, workflow } = countedWorkflow();
    const engine = createEngine({ db, workflows: { counted: workflow } });
    await engine.start('counted', { n: 2, note: 'gift' }, { id: 'order-of-keys-1' });
    expect(await engine.start('counted', { note: 'gift', n: 2 }, { id: 'order-of-keys-1' })).toBe('result 30');
    expect(runs).toEqual(['a', 'b', 'c']);
  });

  it('the same id with a different input is a WorkflowIdConflictError naming the id and what differs; nothing runs', async () => {
    const { runs, workflow } = countedWorkflow();
    const engine = createEngine({ db, workflows: { counted: workflow } });
    await engine.start('counted', { n: 3, note: 'gift' }, { id: 'conflict-1' });
    const again = engine.start('counted', { n: 4, note: 'gift' }, { id: 'conflict-1' });
    await expect(again).rejects.toThrow(WorkflowIdConflictError);
    await expect(again).rejects.toThrow(
      'workflow id conflict-1 is already in the log for another run: its input differs in n (the log has 3, this call passed 4)',
    );
    await expect(again).rejects.toMatchObject({ workflowId: 'conflict-1', differs: ['input'], fields: ['n'], hint: expect.stringContaining('use a new id') });
    // A field that is missing on one side is named too; inputs that are not objects are shown whole.
    await expect(engine.start('counted', { n: 3 }, { id: 'conflict-1' })).rejects.toThrow('its input differs in note (the log has "gift", this call passed nothing)');
    await expect(createEngine({ db, workflows: { counted: workflow as Workflow<unknown, string> } }).start('counted', [3], { id: 'conflict-1' })).rejects.toThrow(
      'its input differs (the log has {"n":3,"note":"gift"}, this call passed [3])',
    );
    expect(runs).toEqual(['a', 'b', 'c']); // only the first run's steps
    expect((await getWorkflow(db, 'conflict-1'))?.input).toEqual({ n: 3, note: 'gift' });
  });

  it('the same id under another workflow name is a WorkflowIdConflictError too, and the other workflow does not run', async () => {
    let refunds = 0;
    const engine = createEngine({
      db,
      workflows: { order: async () => 'ordered', refund: async (ctx) => ctx.step('pay_back', async () => ++refunds) },
    });
    await engine.create('refund', {}, { id: 'same-id' });
    const start = engine.start('order', {}, { id: 'same-id' });
    await expect(start).rejects.toThrow(WorkflowIdConflictError);
    await expect(start).rejects.toThrow(
      'workflow id same-id is already in the log for another run: its workflow name differs (the log has "refund", this call passed "order")',
    );
    expect(refunds).toBe(0);
  });

  it('a second start of an unfinished run resumes that run: finished steps are not run again', async () => {
    const runs: string[] = [];
    let dies = true;
    const workflow: Workflow<{ n: number }, string> = async (ctx, { n }) => {
      const a = await ctx.step('a', async () => (runs.push('a'), n + 1));
      if (dies) {
        dies = false;
        throw new Error('the process "died" here');
      }
      const b = await ctx.step('b', async () => (runs.push('b'), a * 10));
      return `result ${b}`;
    };
    const engine = createEngine({ db, workflows: { flaky: workflow }, attempts: 1 });
    await expect(engine.start('flaky', { n: 5 }, { id: 'resume-1' })).rejects.toThrow('died');
    await db.query(`UPDATE workflows SET status = 'running' WHERE id = 'resume-1'`); // undo the "failed" of attempts: 1
    expect(await engine.start('flaky', { n: 5 }, { id: 'resume-1' })).toBe('result 60');
    expect(runs).toEqual(['a', 'b']); // a came from the log the second time
  });

  it('five starts of one id at the same moment make one run', async () => {
    const { workflow } = countedWorkflow();
    const engine = createEngine({ db, workflows: { counted: workflow } });
    // Separate pools: separate connections, as separate processes would have.
    const pools = Array.from({ length: 5 }, () => quietPool(database.url, { max: 1 }));
    try {
      const created = await Promise.all(
        pools.map((pool) => createEngine({ db: pool, workflows: { counted: workflow } }).create('counted', { n: 6 }, { id: 'burst-1' })),
      );
      expect(created.filter(Boolean)).toHaveLength(1);
      expect(await engine.status(['burst-1'])).toEqual({ 'burst-1': 'running' });
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });
});
