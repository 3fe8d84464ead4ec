/**
 * Chapter 6 under real crashes and real freezes: every kill is a SIGKILL of
 * a real worker process, every freeze a SIGSTOP (a pause point, or sent from
 * here), every verdict read from the world's ledger — and, for who wrote what,
 * from the `fencing_token` the log keeps on every step.
 */
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { mulberry32 } from '../../shared/crash/failpoints.ts';
import { startChild, type Attempt, type ChildRun } from '../../shared/crash/runner.ts';
import { runScenario } from '../../shared/scenarios.ts';
import { withPool } from '../../shared/testing/database.ts';
import { countMatches, noColourEnv, printed, stepsRan } from '../../shared/testing/output.ts';
import { startWorker } from '../../shared/testing/processes.ts';
import { sleep, until } from '../../shared/testing/waiting.ts';
import { withWorld } from '../../shared/testing/world.ts';
import { demoOrder } from '../../shared/world/services.ts';
import type { World } from '../../shared/world/world.ts';
import { createEngine, migrate } from './index.ts';
import { claimWorkflows, recordStep, renewLease } from './queries.ts';
import { orderWorkflow } from './workflow.ts';

const chapter = '06-leasing-workers';
const main = `chapters/${chapter}/main.ts`;
const adminUrl = inject('adminDatabaseUrl');

/** The engine on the world's database, in this (the test's) process: to start orders and look at the log. */
function withEngine<T>(world: World, body: (engine: ReturnType<typeof engineOn>, db: pg.Pool) => Promise<T>): Promise<T> {
  return withPool(world.databaseUrl, async (db) => {
    await migrate(db);
    return body(engineOn(db), db);
  });
}
const engineOn = (db: pg.Pool) => createEngine({ db, workflows: { order: orderWorkflow() } });

describe('chapter 6 fixes', () => {
  it('two processes run the same workflow: it executes once', async () => {
    // 1. Chapter 5's still-broken case: two processes recover at once, and A stalls after charging.
    //    Here A holds order-1's lease, so B finds nothing it may run, and leaves. A wakes and finishes.
    await withWorld('ch06_two_recovers', async (world) => {
      await withEngine(world, (engine) => engine.start('order', demoOrder('order-1'), { id: 'order-1' }));
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '10000' }; // A's stall stays well inside its lease
      const a = startChild({ script: main, args: ['recover'], env: { ...env, PAUSE_AT: 'after-effect:charge_card', WORKER_NAME: 'A' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      const b = await startChild({ script: main, args: ['recover'], env: { ...env, WORKER_NAME: 'B' }, timeoutMs: 30_000 }).done;
      a.signal('SIGCONT');
      const aDone = await a.done;
      expect(b.exitCode, b.stderr).toBe(0);
      expect(aDone.exitCode, aDone.stderr).toBe(0);
      // The step code ran in one process only: A. B claimed nothing and ran nothing.
      expect(stepsRan(aDone)).toBe(3);
      expect(printed(b)).not.toMatch(/claimed|▶ ran|↺ replayed/);
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      const info = await withEngine(world, (engine) => engine.inspect('order-1'));
      expect(info).toMatchObject({ status: 'completed', fencingToken: 1, leaseOwner: 'A' });
      expect(info?.steps.map((s) => s.fencingToken)).toEqual([1, 1, 1]);
    });

    // 2. The course's scenario: A froze after sending the email — longer than its lease (1.5 s).
    //    B cannot tell frozen from dead: it takes over, and A's late record is refused.
    const scenario = await runScenario(chapter, 'two-executors-one-workflow', { adminUrl });
    expect(scenario.verdict, scenario.detail).toBe('exactly-once');
    const [a, b] = scenario.runs.map((run) => printed(run.attempts[0]));
    expect(b).toMatch(/claimed order-1 \(fencing token 2/);
    expect(a).toMatch(/workflow order-1: lease lost \(fencing token 1\): taken over by worker-\d+ \(fencing token 2\)/);
    expect(scenario.ledger?.emails.map((e) => e.idempotencyKey)).toEqual(['order-1:2']);

    // 3. As the matrix runs part 1: chapter 5 ran the step's code twice, chapter 6 once.
    const [here, before] = await Promise.all([
      runScenario(chapter, 'two-recoveries-at-once', { adminUrl }),
      runScenario('05-idempotency-keys', 'two-recoveries-at-once', { adminUrl }),
    ]);
    expect(here.verdict, here.detail).toBe('exactly-once');
    expect(before.verdict, before.detail).toBe('work-twice');
  });

  it('kill -9 a worker mid-workflow: another completes it, effects exactly once', async () => {
    await withWorld('ch06_kill', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000' };
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A', CRASH_AT: 'after-record:charge_card' }, timeoutMs: 30_000 });
      await a.waitForLine(/claimed order-1/);
      const b = startWorker(main, 'B', { ...world.env, LEASE_MS: '1000' });
      const killed = await a.done;
      expect(killed.crashedAt).toBe('after-record:charge_card@1');
      const info = await withEngine(world, async (engine) => {
        await until('order-1 completed', async () => (await engine.status(['order-1']))['order-1'] === 'completed');
        return engine.inspect('order-1');
      });
      b.signal('SIGTERM');
      const bDone = await b.done;
      expect(bDone.exitCode, bDone.stderr).toBe(0);

      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      // A recorded the charge under token 1; B, the second claim, replayed it and did the rest.
      expect(info).toMatchObject({ status: 'completed', fencingToken: 2, leaseOwner: 'B' });
      expect(info?.steps.map((s) => [s.name, s.fencingToken])).toEqual([['charge_card', 1], ['reserve_inventory', 2], ['send_email', 2]]);
      expect(printed(bDone)).toMatch(/claimed order-1 \(fencing token 2[\s\S]*↺ replayed charge_card/);
      // B took over only once A's lease had run out (1 s after A's last renewal, on the database clock).
      const [charged, reserved] = info!.steps;
      expect(reserved!.recordedAt.getTime() - charged!.recordedAt.getTime()).toBeGreaterThanOrEqual(800);
    });
  });

  it('a worker paused past its lease is fenced when it wakes: nothing doubled', async () => {
    await withWorld('ch06_zombie', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000' };
      // A charges, then freezes before recording the charge.
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A', PAUSE_AT: 'after-effect:charge_card' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      // B waits out A's lease, takes over, and finishes the order while A is still frozen.
      const b = await startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'B' }, timeoutMs: 30_000 }).done;
      expect(b.exitCode, b.stderr).toBe(0);
      expect(printed(b)).toMatch(/claimed order-1 \(fencing token 2/);
      a.signal('SIGCONT');
      const zombie = await a.done;
      expect(zombie.exitCode, zombie.stderr).toBe(0); // its start saw order-1 completed, by B

      // The zombie's record of its charge was refused, and it stopped.
      expect(printed(zombie)).toContain('workflow order-1: lease lost (fencing token 1): taken over by B (fencing token 2). This run stopped and wrote nothing more.');
      expect(printed(zombie)).not.toMatch(/ran\s+reserve_inventory|ran\s+send_email/);
      const info = await withEngine(world, (engine) => engine.inspect('order-1'));
      expect(info?.steps.map((s) => s.fencingToken)).toEqual([2, 2, 2]); // no write by the fenced token
      expect(info).toMatchObject({ status: 'completed', fencingToken: 2 });
      // Both called the provider with key order-1:0; it charged once.
      const ledger = await world.ledger();
      expect(ledger.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      expect(ledger.charges.map((c) => c.idempotencyKey)).toEqual(['order-1:0']);
    });
  });

  it('a worker frozen inside a transaction step: PostgreSQL ends its session, its stock update rolls back, another finishes', async () => {
    await withWorld('ch06_zombie_tx', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000' };
      const a = startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'A', PAUSE_AT: 'after-effect:reserve_inventory' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      // A holds a lock on order-1's row (its fence) and on the widget's stock row. A frozen
      // session would hold them forever; idle_in_transaction_session_timeout ends it after a lease.
      const b = await startChild({ script: main, args: ['start', 'order-1'], env: { ...env, WORKER_NAME: 'B' }, timeoutMs: 30_000 }).done;
      expect(b.exitCode, b.stderr).toBe(0);
      a.signal('SIGCONT');
      const zombie = await a.done;
      expect(zombie.exitCode, zombie.stderr).toBe(0);
      expect(printed(zombie)).toMatch(/workflow order-1: lease lost \(fencing token 1\)/);
      const info = await withEngine(world, (engine) => engine.inspect('order-1'));
      expect(info?.steps.map((s) => [s.name, s.fencingToken])).toEqual([['charge_card', 1], ['reserve_inventory', 2], ['send_email', 2]]);
      // A's decrement never committed: one stock movement, B's.
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
    const scenario = await runScenario(chapter, 'race-on-the-stock-step', { adminUrl });
    expect(scenario.verdict, scenario.detail).toBe('exactly-once');
  });

  it('renewing an expired lease fails', async () => {
    await withWorld('ch06_renew', async (world) => {
      await withEngine(world, async (engine, db) => {
        await engine.start('order', demoOrder('order-1'), { id: 'order-1' });
        const [claim] = await claimWorkflows(db, { worker: 'A', limit: 1, leaseMs: 300 });
        expect(claim).toMatchObject({ id: 'order-1', fencingToken: 1 });
        const held = { workflowId: 'order-1', fencingToken: 1 };
        expect(await renewLease(db, held, 300)).toBe(true); // still valid: renewed
        await sleep(500);
        // Expired — and nobody has claimed it since. The renewal must fail all the same:
        // from the moment it expired, any worker could have claimed it.
        expect(await renewLease(db, held, 300)).toBe(false);
        expect(await recordStep(db, { workflowId: 'order-1', seq: 0, name: 'charge_card', output: {}, fencingToken: 1 })).toBe(false);
        const [again] = await claimWorkflows(db, { worker: 'B', limit: 1, leaseMs: 300 });
        expect(again).toMatchObject({ id: 'order-1', fencingToken: 2 });
        expect(await renewLease(db, held, 300)).toBe(false); // the old token, now taken over
        expect(await renewLease(db, { workflowId: 'order-1', fencingToken: 2 }, 300)).toBe(true);
      });
    });

    // The same in a real worker: frozen past its lease, alone. When it wakes, its renewal
    // fails, its run stops, and the workflow comes back to it under a new token. A world of
    // its own: order-1 above is left runnable, and the worker would run it too, freezing
    // at whichever of the two reaches the pause point first.
    await withWorld('ch06_renew_worker', async (world) => {
      await withEngine(world, (engine) => engine.start('order', demoOrder('order-2'), { id: 'order-2' }));
      const a = startChild({ script: main, args: ['start', 'order-2'], env: { ...world.env, ...noColourEnv, LEASE_MS: '1000', WORKER_NAME: 'A', PAUSE_AT: 'before-step:send_email' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      await sleep(1500);
      a.signal('SIGCONT');
      const done = await a.done;
      expect(done.exitCode, done.stderr).toBe(0);
      expect(printed(done)).toMatch(/workflow order-2: lease lost \(fencing token 1\)/);
      expect(printed(done)).toMatch(/claimed order-2 \(fencing token 2/);
      const info = await withEngine(world, (engine) => engine.inspect('order-2'));
      expect(info?.steps.map((s) => s.fencingToken)).toEqual([1, 1, 2]);
      expect((await world.ledger()).byOrder('order-2')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });

  it('3 workers × 200 workflows with random kills: every workflow completes exactly once, none stuck', async () => {
    await withWorld('ch06_random_kills', async (world) => {
      const orders = Array.from({ length: 200 }, (_, i) => `order-${String(i + 1).padStart(3, '0')}`);
      await world.setLatency(15); // every call to the providers takes a while: kills land mid-workflow
      const random = mulberry32(6);
      const env = { LEASE_MS: '800', POLL_MS: '100', CONCURRENCY: '4' };
      let restarts = 0;
      const ready = new Map<ChildRun, Promise<unknown>>();
      const start = (slot: number) => {
        restarts++;
        // Besides the kills from here, each worker dies by itself at 0.3 % of its durability points.
        const child = startWorker(main, `w${slot}.${restarts}`, { ...world.env, ...env, CRASH_RANDOM: `seed=${restarts},p=0.003,match=after-` });
        ready.set(child, child.waitForLine(/running \(concurrency/).catch(() => {}));
        return child;
      };
      const workers = [0, 1, 2].map(start);
      const exited: Attempt[] = [];
      let kills = 0;
      await withEngine(world, async (engine, db) => {
        await db.query(`UPDATE inventory SET on_hand = 1000 WHERE sku = 'widget'`); // the world stocks 100
        for (const id of orders) await engine.start('order', demoOrder(id), { id });
        const left = async () => Object.values(await engine.status(orders)).filter((s) => s !== 'completed').length;
        const deadline = Date.now() + 35_000;
        while ((await left()) > 0) {
          if (Date.now() > deadline) throw new Error(`not finished in time: ${await left()} workflow(s) left`);
          await sleep(200 + random() * 500);
          // Restart whoever died by itself; SIGKILL one at random, by the seeded schedule.
          for (const [slot, child] of workers.entries()) {
            const dead = await Promise.race([child.done, sleep(0).then(() => undefined)]);
            if (dead) {
              exited.push(dead);
              workers[slot] = start(slot);
            }
          }
          if (kills < 6 && random() < 0.6) {
            const slot = Math.floor(random() * workers.length);
            workers[slot]!.signal('SIGKILL');
            exited.push(await workers[slot]!.done);
            kills++;
            workers[slot] = start(slot);
          }
        }
        // Every workflow is done, so the workers hold nothing: each one still alive stops cleanly.
        const alive = [];
        for (const child of workers) {
          const dead = await Promise.race([child.done, sleep(0).then(() => undefined)]);
          if (dead) exited.push(dead);
          else alive.push(child);
        }
        await Promise.all(alive.map((child) => ready.get(child))); // a worker still booting has no SIGTERM handler yet
        for (const child of alive) child.signal('SIGTERM');
        for (const attempt of await Promise.all(alive.map((child) => child.done))) expect(attempt.exitCode, printed(attempt)).toBe(0);

        const ledger = await world.ledger();
        const wrong = orders.map((id) => ledger.byOrder(id)).filter((e) => e.charges !== 1 || e.stockDecrements !== 1 || e.emails !== 1);
        expect(wrong).toEqual([]);
        expect(ledger.orders).toHaveLength(200);
        expect(await left()).toBe(0);
        // The kills really interrupted work: some workflows were taken over.
        const takenOver = await Promise.all(orders.map((id) => engine.inspect(id)));
        expect(takenOver.filter((info) => (info?.fencingToken ?? 0) > 1).length).toBeGreaterThan(0);
      });
      const selfKilled = exited.filter((a) => a.crashedAt).length;
      console.info(`random kills: ${kills} from outside, ${selfKilled} at crash points, ${restarts - 3} restarts`);
      expect(kills + selfKilled).toBeGreaterThanOrEqual(5);
    });
  });

  it('SIGTERM: the worker stops claiming, finishes what it holds and exits 0', async () => {
    await withWorld('ch06_sigterm', async (world) => {
      await world.setLatency(400); // each workflow takes about a second
      const orders = ['order-1', 'order-2', 'order-3', 'order-4', 'order-5'];
      await withEngine(world, async (engine) => {
        for (const id of orders) await engine.start('order', demoOrder(id), { id });
        const w = startWorker(main, 'W', { ...world.env, CONCURRENCY: '2', LEASE_MS: '1000' });
        await w.waitForLine(/▶ ran\s+charge_card/);
        w.signal('SIGTERM');
        const done = await w.done;
        expect(done.exitCode, printed(done)).toBe(0);
        expect(printed(done)).toContain('SIGTERM: worker W stopping');
        expect(printed(done)).toContain('worker W stopping: no new claims; finishing 2 held workflow(s)');
        expect(countMatches(printed(done), /claimed order-/)).toBe(2); // nothing claimed after the signal
        const status = await engine.status(orders);
        expect(Object.values(status).filter((s) => s === 'completed')).toHaveLength(2);
        // The other three were never touched: runnable, no steps, for the next worker.
        const untouched = await Promise.all(orders.filter((id) => status[id] !== 'completed').map((id) => engine.inspect(id)));
        expect(untouched.map((info) => [info?.fencingToken, info?.steps.length, info?.leaseMsLeft])).toEqual([[0, 0, 0], [0, 0, 0], [0, 0, 0]]);
      });

      // With less grace than the work needs, it releases what it holds: the next worker takes it at once.
      await world.setLatency(3000);
      await withEngine(world, async (engine) => {
        const w = startWorker(main, 'W2', { ...world.env, CONCURRENCY: '1', LEASE_MS: '10000', SHUTDOWN_GRACE_MS: '200' });
        await w.waitForLine(/claimed order-/);
        w.signal('SIGTERM');
        const done = await w.done;
        expect(done.exitCode, printed(done)).toBe(0);
        expect(printed(done)).toMatch(/worker W2 released 1 lease\(s\): order-\d/);
        const id = /released 1 lease\(s\): (order-\d)/.exec(printed(done))![1]!;
        const info = await engine.inspect(id);
        expect(info).toMatchObject({ status: 'running', fencingToken: 1, leaseOwner: 'W2', leaseMsLeft: 0 }); // runnable now, not in 10 s
        expect(info?.steps).toEqual([]);
      });
    });
  });
});

describe('fixed since: a step that never returns no longer holds its workflow', () => {
  it('a hung step is timed out (STEP_TIMEOUT_MS): the attempt fails, the replay calls again under the same key, the order completes, charged once', async () => {
    await withWorld('ch06_hung_step', async (world) => {
      await world.setLatency(5000); // the payment provider stops answering, for longer than the step may wait
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000', STEP_TIMEOUT_MS: '1000', WORKER_NAME: 'A' };
      const a = startChild({ script: main, args: ['start', 'order-1'], env, timeoutMs: 30_000 });
      await a.waitForLine(/did not return within 1000 ms/, 10_000);
      await world.setLatency(0); // the provider answers again
      const done = await a.done;
      expect(done.exitCode, printed(done)).toBe(0);
      expect(printed(done)).toMatch(/attempt 1 failed \(workflow order-1 step #0 charge_card did not return within 1000 ms; its signal was aborted\)/);
      expect(printed(done)).toMatch(/workflow order-1 completed/);
      await sleep(5000); // the first, abandoned call lands at the provider too — under the same idempotency key
      const effects = (await world.ledger()).byOrder('order-1');
      expect(effects).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });
});
