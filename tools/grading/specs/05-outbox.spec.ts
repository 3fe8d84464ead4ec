/**
 * Exercise 5's tests: the email goes through an outbox — queued in the
 * send_email step's transaction, sent later by a relay under the row's key —
 * and a real SIGKILL between the send and the relay's mark still gives one
 * email, counted by the world's mail service (another process).
 *
 * Each test gets a fresh schema of the run's database; the tests that call
 * the payment or mail service start a world of their own (the world server,
 * with its ledger). The engine and the log's queries are chapter 5's own;
 * the exercise's files are imported through exercises/ for the type checker,
 * and the grading config swaps them for the implementation under test.
 * Points: exercises/05-outbox/points.json.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startChild, type Attempt } from '../../../shared/crash/runner.ts';
import { startWorld, type World } from '../../../shared/world/world.ts';
import { demoOrder, type Email, type Order } from '../../../shared/world/services.ts';
import { createEngine } from '../../../chapters/05-idempotency-keys/engine.ts';
import { createSchema, inTransaction } from '../../../chapters/05-idempotency-keys/queries.ts';
import { createOutbox, enqueueEmail, relayOutbox } from '../../../exercises/05-outbox/outbox.ts';
import { orderWorkflow } from '../../../exercises/05-outbox/workflow.ts';
import { childTimeoutMs, crashTest, scratchSchema, type ScratchSchema } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/05-outbox.ts';

let schema: ScratchSchema | undefined;
let db: pg.Pool | undefined;
let world: World | undefined;

beforeEach(() => {
  vi.spyOn(console, 'log').mockImplementation(() => {}); // the engine's trace lines
});
afterEach(async () => {
  vi.restoreAllMocks();
  delete process.env.WORLD_URL;
  await world?.stop({ removeDir: true });
  await db?.end();
  await schema?.drop();
  world = undefined;
  db = undefined;
  schema = undefined;
});

/** A fresh schema with the log's tables (and the outbox), and a pool on it. */
async function freshSchema(): Promise<pg.Pool> {
  schema = await scratchSchema('ex05');
  db = new pg.Pool({ connectionString: schema.url });
  await createSchema(db);
  await createOutbox(db);
  return db;
}

/** The same, with a world (payments, mail, inventory) on that schema. */
async function freshWorld(): Promise<{ pool: pg.Pool; world: World }> {
  const pool = await freshSchema();
  world = await startWorld({ databaseUrl: schema!.url });
  process.env.WORLD_URL = world.url; // where chargeCard (in this process) finds the payment service
  return { pool, world };
}

async function outboxRows(pool: pg.Pool): Promise<Array<{ key: string; status: string }>> {
  const { rows } = await pool.query<{ key: string; status: string }>(`SELECT key, status FROM outbox ORDER BY key`);
  return rows;
}

/** Queue `orderIds`' emails the way the step does: in a transaction, under the key `<id>:2`. */
async function queue(pool: pg.Pool, orderIds: string[]): Promise<void> {
  for (const id of orderIds) await inTransaction(pool, (tx) => enqueueEmail(tx, `${id}:2`, demoOrder(id)));
}

/** A stand-in mail service: remembers each call. */
function fakeMail(options: { failFirst?: number; delayMs?: number } = {}) {
  const calls: Array<{ key: string; orderId: string }> = [];
  let failures = options.failFirst ?? 0;
  const send = async (order: Order, { idempotencyKey }: { idempotencyKey: string }): Promise<Email> => {
    if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
    if (failures > 0) {
      failures -= 1;
      throw new Error('mail service unavailable');
    }
    calls.push({ key: idempotencyKey, orderId: order.orderId });
    return { id: `msg_${idempotencyKey}`, orderId: order.orderId, to: order.email, subject: '', body: '', createdAt: new Date(0).toISOString() };
  };
  return { calls, send };
}

describe('the outbox, in process', () => {
  it('the order completes while the mail service is down: charged once, stock taken once', async () => {
    const { pool, world } = await freshWorld();
    await world.failNext('mail', 100);
    const engine = createEngine({ db: pool, workflows: { order: orderWorkflow() } });
    await engine.start('order', demoOrder('order-1'), { id: 'order-1' });
    expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1 });
  });

  it('the workflow queues the email in the outbox under its step key, and sends nothing itself', async () => {
    const { pool, world } = await freshWorld();
    await world.failNext('mail', 100);
    const engine = createEngine({ db: pool, workflows: { order: orderWorkflow() } });
    await engine.start('order', demoOrder('order-1'), { id: 'order-1' });
    expect(await outboxRows(pool)).toEqual([{ key: 'order-1:2', status: 'pending' }]);
    expect((await world.ledger()).byOrder('order-1').emails).toBe(0);
  });

  it('the relay sends each pending email once, under its row key, and marks it sent', async () => {
    const pool = await freshSchema();
    await queue(pool, ['order-1', 'order-2']);
    const mail = fakeMail();
    expect(await relayOutbox(pool, mail.send)).toBe(2);
    expect(mail.calls).toEqual([
      { key: 'order-1:2', orderId: 'order-1' },
      { key: 'order-2:2', orderId: 'order-2' },
    ]);
    expect(await outboxRows(pool)).toEqual([
      { key: 'order-1:2', status: 'sent' },
      { key: 'order-2:2', status: 'sent' },
    ]);
    expect(await relayOutbox(pool, mail.send)).toBe(0);
    expect(mail.calls).toHaveLength(2);
  });

  it('a send that fails leaves its email pending, the others are sent, and the next pass sends it', async () => {
    const pool = await freshSchema();
    await queue(pool, ['order-1', 'order-2']);
    const mail = fakeMail({ failFirst: 1 });
    expect(await relayOutbox(pool, mail.send)).toBe(1);
    expect(await outboxRows(pool)).toEqual([
      { key: 'order-1:2', status: 'pending' },
      { key: 'order-2:2', status: 'sent' },
    ]);
    expect(await relayOutbox(pool, mail.send)).toBe(1);
    expect(mail.calls.map((c) => c.key).sort()).toEqual(['order-1:2', 'order-2:2']);
  });

  it('two relays at once never send the same email twice', async () => {
    const pool = await freshSchema();
    const ids = ['order-1', 'order-2', 'order-3', 'order-4', 'order-5', 'order-6'];
    await queue(pool, ids);
    const mail = fakeMail({ delayMs: 30 });
    const [a, b] = await Promise.all([relayOutbox(pool, mail.send), relayOutbox(pool, mail.send)]);
    expect(a + b).toBe(6);
    expect(mail.calls.map((c) => c.key).sort()).toEqual(ids.map((id) => `${id}:2`));
  });
});

describe('the outbox, after a real crash', () => {
  const run = (env: Record<string, string>, args: string[], fault?: string): Promise<Attempt> =>
    startChild({ script: driver, args, fault, env: { ...env, FORCE_COLOR: '0' }, timeoutMs: childTimeoutMs() }).done;
  const report = (a: Attempt) => `exit ${a.exitCode} signal ${a.signal}\n${a.stdout}${a.stderr}`;

  crashTest('killed after the mail service sent the email, before the relay marked it: the next relay sends it again under the same key, and one email arrives', async () => {
    const { pool, world } = await freshWorld();
    const crashed = await run(world.env, ['start', 'order-1'], 'after-send:outbox');
    expect(crashed.crashedAt, report(crashed)).toBe('after-send:outbox@1');
    expect(await outboxRows(pool)).toEqual([{ key: 'order-1:2', status: 'pending' }]);

    const relayed = await run(world.env, ['relay']);
    expect(relayed.exitCode, report(relayed)).toBe(0);
    expect(relayed.stdout, report(relayed)).toMatch(/relayed 1/);
    const ledger = await world.ledger();
    expect(ledger.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    expect(ledger.emails.map((e) => e.idempotencyKey)).toEqual(['order-1:2']);
    expect(await outboxRows(pool)).toEqual([{ key: 'order-1:2', status: 'sent' }]);
  });

  crashTest('killed right after the send_email step committed: the restart queues nothing more, and one email arrives', async () => {
    const { pool, world } = await freshWorld();
    const crashed = await run(world.env, ['start', 'order-1'], 'after-record:send_email');
    expect(crashed.crashedAt, report(crashed)).toBe('after-record:send_email@1');
    expect(await outboxRows(pool)).toEqual([{ key: 'order-1:2', status: 'pending' }]);

    const restarted = await run(world.env, ['start', 'order-1']);
    expect(restarted.exitCode, report(restarted)).toBe(0);
    expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    expect(await outboxRows(pool)).toEqual([{ key: 'order-1:2', status: 'sent' }]);
  });
});
