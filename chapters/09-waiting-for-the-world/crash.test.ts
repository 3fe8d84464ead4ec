/**
 * Chapter 9's events under real kills and freezes: the order waits for its
 * payment's "settled" webhook (AWAIT_SETTLEMENT=1), sent by another process
 * (`main.ts send`). Every kill a SIGKILL, every freeze a SIGSTOP, every
 * verdict from the world's ledger and the log.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startChild } from '../../shared/crash/runner.ts';
import { withPool } from '../../shared/testing/database.ts';
import { noColourEnv, printed } from '../../shared/testing/output.ts';
import { startWorker } from '../../shared/testing/processes.ts';
import { until } from '../../shared/testing/waiting.ts';
import { withWorld } from '../../shared/testing/world.ts';
import type { World } from '../../shared/world/world.ts';
import { createEngine, migrate, type WorkflowInfo } from './index.ts';
import { orderWorkflow } from './workflow.ts';

const main = 'chapters/09-waiting-for-the-world/main.ts';

function inspect(world: World, id: string): Promise<WorkflowInfo | undefined> {
  return withPool(world.databaseUrl, async (db: pg.Pool) => {
    await migrate(db);
    return createEngine({ db, workflows: { order: orderWorkflow() } }).inspect(id);
  });
}

const events = (world: World) =>
  withPool(world.databaseUrl, async (db) => (await db.query<{ key: string; taken_at_seq: number | null }>(`SELECT key, taken_at_seq FROM events ORDER BY arrival`)).rows);

/** `main.ts send <id> settled` as the payment provider's webhook handler would run it. */
const send = (world: World, id: string, env: Record<string, string> = {}) =>
  startChild({ script: main, args: ['send', id, 'settled', '--payload', '{"chargeId":"ch"}', '--key', `settled:${id}`], env: { ...world.env, ...noColourEnv, ...env }, timeoutMs: 30_000 }).done;

describe('events under kills and freezes', () => {
  it('the event arrives while the waiting workflow’s only worker is dead: the next worker takes it, and the order completes once', async () => {
    await withWorld('ch09_event_dead_worker', async (world) => {
      const env = { ...world.env, ...noColourEnv, AWAIT_SETTLEMENT: '1', LEASE_MS: '1000' };
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A' }, timeoutMs: 30_000 });
      await a.waitForLine(/waits for "settled"/);
      a.signal('SIGKILL');
      await a.done;
      const sent = await send(world, 'order-1');
      expect(sent.exitCode, sent.stderr).toBe(0);
      expect(sent.stdout).toContain('SENT {"delivered":true,"woke":true}');
      const b = startWorker(main, 'B', { ...env });
      await until('order-1 completed', async () => (await inspect(world, 'order-1'))?.status === 'completed', { timeoutMs: 20_000 });
      b.signal('SIGTERM');
      expect((await b.done).exitCode).toBe(0);
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      expect(await events(world)).toEqual([{ key: 'settled:order-1', taken_at_seq: 1 }]);
    });
  });

  it('the sender is killed right after its event commits: the event is delivered; sent again under the same key, it is the same event, taken once', async () => {
    await withWorld('ch09_event_sender_killed', async (world) => {
      const env = { ...world.env, ...noColourEnv, AWAIT_SETTLEMENT: '1' };
      const worker = startWorker(main, 'W', env);
      await withPool(world.databaseUrl, async (db) => {
        await migrate(db);
        await createEngine({ db, workflows: { order: orderWorkflow() } }).start('order', (await import('../../shared/world/services.ts')).demoOrder('order-1'), { id: 'order-1' });
      });
      await until('order-1 waits', async () => (await inspect(world, 'order-1'))?.waiting?.reason === 'event', { timeoutMs: 20_000 });
      const killed = await send(world, 'order-1', { CRASH_AT: 'after-event-sent' });
      expect(killed.crashedAt ?? killed.signal).toBe('after-event-sent@1');
      const again = await send(world, 'order-1'); // the webhook, redelivered by the provider
      expect(again.stdout).toContain('SENT {"delivered":false,"woke":false}');
      await until('order-1 completed', async () => (await inspect(world, 'order-1'))?.status === 'completed', { timeoutMs: 20_000 });
      worker.signal('SIGTERM');
      expect((await worker.done).exitCode).toBe(0);
      expect(await events(world)).toEqual([{ key: 'settled:order-1', taken_at_seq: 1 }]);
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });

  it('a worker frozen inside its wait, holding the row: PostgreSQL ends its session at the lease, another worker takes the event, and the frozen one takes nothing when it wakes', async () => {
    await withWorld('ch09_event_zombie', async (world) => {
      const env = { ...world.env, ...noColourEnv, AWAIT_SETTLEMENT: '1', LEASE_MS: '1000' };
      // A looks for the event, finds none, and freezes before it parks — inside its transaction, holding the row's lock.
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A', PAUSE_AT: 'before-park:settled' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      // The send waits for A's lock; PostgreSQL ends A's idle transaction one lease later, and the send goes on.
      const sent = await send(world, 'order-1');
      expect(sent.exitCode, sent.stderr).toBe(0);
      const b = startWorker(main, 'B', env);
      await until('order-1 completed', async () => (await inspect(world, 'order-1'))?.status === 'completed', { timeoutMs: 20_000 });
      a.signal('SIGCONT');
      const zombie = await a.done;
      b.signal('SIGTERM');
      await b.done;
      expect(printed(zombie)).not.toMatch(/got its event|ran\s+send_email/);
      const info = (await inspect(world, 'order-1'))!;
      expect(info.steps.map((s) => [s.name, s.fencingToken > 1])).toEqual([
        ['charge_card', false],
        ['settled', true],
        ['reserve_inventory', true],
        ['send_email', true],
      ]);
      expect(await events(world)).toEqual([{ key: 'settled:order-1', taken_at_seq: 1 }]);
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });

  it('cancel while the worker is frozen mid-step: another worker takes it over and records cancelled; the frozen one, woken, writes nothing', async () => {
    await withWorld('ch09_cancel_zombie', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000' };
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A', PAUSE_AT: 'after-effect:charge_card' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      await withPool(world.databaseUrl, async (db) => {
        expect(await createEngine({ db, workflows: { order: orderWorkflow() } }).cancel('order-1', { reason: 'fraud check failed' })).toMatchObject({ outcome: 'requested' });
      });
      const b = startWorker(main, 'B', env);
      await until('order-1 cancelled', async () => (await inspect(world, 'order-1'))?.status === 'cancelled', { timeoutMs: 20_000 });
      a.signal('SIGCONT');
      const zombie = await a.done;
      b.signal('SIGTERM');
      await b.done;
      expect(printed(zombie)).toMatch(/lease lost \(fencing token 1\)/);
      const info = (await inspect(world, 'order-1'))!;
      expect(info).toMatchObject({ status: 'cancelled', error: 'fraud check failed' });
      expect(info.steps).toEqual([]); // A's charge was never recorded; B started no step
      const ledger = (await world.ledger()).byOrder('order-1');
      expect(ledger).toMatchObject({ stockDecrements: 0, emails: 0 }); // A charged (its effect ran) — the refund is the workflow's to write, in ctx.nonCancellable
    });
  });
});

describe('the saga under a kill', () => {
  it('an order cancelled during its cooling-off while no worker runs: the next worker puts its stock back in ctx.nonCancellable, once, sends no email, and ends it cancelled', async () => {
    await withWorld('ch09_saga', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000', COOLING_OFF_MS: '600000' };
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A' }, timeoutMs: 30_000 });
      await a.waitForLine(/sleeps until/);
      a.signal('SIGKILL');
      await a.done;
      await withPool(world.databaseUrl, async (db) => {
        expect(await createEngine({ db, workflows: { order: orderWorkflow() } }).cancel('order-1', { reason: 'customer changed their mind' })).toMatchObject({ outcome: 'requested' });
      });
      const b = startWorker(main, 'B', env);
      await until('order-1 cancelled', async () => (await inspect(world, 'order-1'))?.status === 'cancelled', { timeoutMs: 20_000 });
      b.signal('SIGTERM');
      expect((await b.done).exitCode).toBe(0);
      const info = (await inspect(world, 'order-1'))!;
      expect(info).toMatchObject({ status: 'cancelled', error: 'customer changed their mind' });
      expect(info.steps.map((s) => s.name)).toEqual(['charge_card', 'reserve_inventory', 'sleep', 'release_inventory']);
      const ledger = await world.ledger();
      expect(ledger.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 0 });
      expect(ledger.stockReleases('order-1')).toBe(1);
    });
  });
});

/** The batch's children as the log has them: how many rows, and each one's status. */
const children = (world: World, batchId: string) =>
  withPool(world.databaseUrl, async (db) => (await db.query<{ id: string; status: string }>(`SELECT id, status FROM workflows WHERE parent_id = $1 ORDER BY id`, [batchId])).rows);

describe('child workflows under kills', () => {
  it('the parent’s worker is killed right after its children started: the restarted worker starts none again, and every order is charged once', async () => {
    await withWorld('ch09_children_parent_killed', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000', CONCURRENCY: '2' };
      const a = await startChild({ script: main, args: ['batch', 'batch-1', '5'], env: { ...env, WORKER_NAME: 'A', CRASH_AT: 'after-children-started' }, timeoutMs: 30_000 }).done;
      expect(a.crashedAt ?? a.signal).toBe('after-children-started@1');
      expect(await children(world, 'batch-1')).toHaveLength(5); // committed with the parent's log entries, before the kill
      const b = startWorker(main, 'B', env);
      await until('batch-1 completed', async () => (await inspect(world, 'batch-1'))?.status === 'completed', { timeoutMs: 30_000 });
      b.signal('SIGTERM');
      expect((await b.done).exitCode).toBe(0);
      const batch = (await inspect(world, 'batch-1'))!;
      expect(batch.output).toEqual({ completed: 5, failed: [] });
      expect(batch.steps.filter((s) => s.kind === 'child').map((s) => s.fencingToken)).toEqual([1, 1, 1, 1, 1]); // started once, by A
      expect(await children(world, 'batch-1')).toEqual([1, 2, 3, 4, 5].map((seq) => ({ id: `batch-1/${seq - 1}`, status: 'completed' })));
      const ledger = await world.ledger();
      for (let i = 1; i <= 5; i++) expect(ledger.byOrder(`batch-1-${i}`)).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });

  it('a child’s worker is killed right after the child’s end committed: its parent heard of it in that commit, and the batch completes once', async () => {
    await withWorld('ch09_children_child_killed', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000', CONCURRENCY: '2' };
      // The first workflow to complete is a child (its parent is parked, waiting for all three).
      const a = await startChild({ script: main, args: ['batch', 'batch-2', '3'], env: { ...env, WORKER_NAME: 'A', CRASH_AT: 'after-record:complete' }, timeoutMs: 30_000 }).done;
      expect(a.crashedAt ?? a.signal).toBe('after-record:complete@1');
      const b = startWorker(main, 'B', env);
      await until('batch-2 completed', async () => (await inspect(world, 'batch-2'))?.status === 'completed', { timeoutMs: 30_000 });
      b.signal('SIGTERM');
      expect((await b.done).exitCode).toBe(0);
      expect((await inspect(world, 'batch-2'))!.output).toEqual({ completed: 3, failed: [] });
      const sent = await withPool(world.databaseUrl, async (db) =>
        (await db.query<{ name: string; taken: boolean }>(`SELECT name, taken_at_seq IS NOT NULL AS taken FROM events WHERE workflow_id = 'batch-2' ORDER BY name`)).rows,
      );
      expect(sent).toEqual([0, 1, 2].map((seq) => ({ name: `durable:child:batch-2/${seq}`, taken: true }))); // one end each, each taken once
      const ledger = await world.ledger();
      for (let i = 1; i <= 3; i++) expect(ledger.byOrder(`batch-2-${i}`)).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });
});
