/**
 * Exercise 6's tests: the heartbeat. renewLease extends a lease only while
 * the token holds and the lease has not expired on the database clock; the
 * worker renews every lease/3 to lease/2, at random; a refused renewal stops
 * the run at once, and a run whose renewals cannot get through stops before
 * its lease runs out. Real worker processes are frozen (SIGSTOP) and killed
 * (SIGKILL) past their leases; the world's ledger counts the effects.
 *
 * Each test gets a fresh schema of the run's database; the real-process tests
 * start a world of their own. Leases are short (0.9–2 s) so the whole file
 * runs in about half a minute. The engine and the migrations are chapter 6's
 * own; the exercise's files are imported through exercises/ for the type
 * checker, and the grading config swaps them for the implementation under
 * test — in chapter 6's engine too, which runs the worker and the queries
 * under test. Points: exercises/06-heartbeats/points.json.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startChild, type Attempt, type ChildRun } from '../../../shared/crash/runner.ts';
import { demoOrder } from '../../../shared/world/services.ts';
import { startWorld, type World } from '../../../shared/world/world.ts';
import { createEngine, type Context, type Engine, type Workflows } from '../../../chapters/06-leasing-workers/engine.ts';
import { migrate } from '../../../chapters/06-leasing-workers/migrate.ts';
import { claimWorkflows, completeWorkflow, renewLease } from '../../../exercises/06-heartbeats/queries.ts';
import type { RunEndEvent, Worker, WorkerOptions } from '../../../exercises/06-heartbeats/worker.ts';
import { orderWorkflow, pause } from '../drivers/06-heartbeats-order.ts';
import { childTimeoutMs, crashTest, scratchSchema, type ScratchSchema } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/06-heartbeats.ts';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let schema: ScratchSchema | undefined;
let world: World | undefined;
const pools: pg.Pool[] = [];
const workers: Worker[] = [];
const children: ChildRun[] = [];

beforeEach(() => {
  vi.spyOn(console, 'log').mockImplementation(() => {}); // the engine's trace lines
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    child.signal('SIGKILL'); // a test that failed half-way may leave one running, or frozen
    await child.done.catch(() => {});
  }
  await Promise.all(workers.splice(0).map((worker) => worker.stop({ graceMs: 0 }).catch(() => {})));
  await Promise.all(pools.splice(0).map((pool) => pool.end().catch(() => {})));
  vi.restoreAllMocks();
  delete process.env.WORLD_URL;
  await world?.stop({ removeDir: true });
  await schema?.drop();
  world = undefined;
  schema = undefined;
});

/** A pool on the test's schema, closed after the test. */
function newPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: schema!.url, max: 6 });
  pool.on('error', () => {});
  pools.push(pool);
  return pool;
}

/** A fresh schema with the engine's tables, and a pool on it. */
async function freshSchema(): Promise<pg.Pool> {
  schema = await scratchSchema('ex06');
  const pool = newPool();
  await migrate(pool);
  return pool;
}

/** The same, with a world (payments, mail, inventory) on that schema. */
async function freshWorld(): Promise<{ pool: pg.Pool; world: World }> {
  const pool = await freshSchema();
  world = await startWorld({ databaseUrl: schema!.url });
  return { pool, world };
}

/** The runs a worker ended, and a promise that rejects at the first one that did not complete. */
function runLog() {
  const events: RunEndEvent[] = [];
  let fail: (error: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => {});
  return {
    events,
    failed,
    onRunEnd(event: RunEndEvent) {
      events.push(event);
      if (event.outcome !== 'completed') fail(new Error(`the run of ${event.workflowId} under fencing token ${event.fencingToken} ended ${event.outcome}: ${event.error?.message}`));
    },
  };
}

/** An engine on its own pool (as another process would have), and a started worker of it. */
async function startWorker(workflows: Workflows, options: WorkerOptions, log = runLog()): Promise<{ engine: Engine<Workflows>; worker: Worker; pool: pg.Pool }> {
  const pool = newPool();
  const engine = createEngine({ db: pool, workflows });
  const worker = engine.createWorker({ pollMs: 100, listen: false, concurrency: 2, ...options, onRunEnd: log.onRunEnd });
  workers.push(worker);
  await worker.start();
  return { engine, worker, pool };
}

/** A workflow's lease as the database has it; `expiresAt` in ms since the epoch, on the database clock. */
interface LeaseRow {
  token: number;
  owner: string | null;
  status: string;
  expiresAt: number;
  msLeft: number;
}
async function leaseOf(pool: pg.Pool, id: string): Promise<LeaseRow> {
  const { rows } = await pool.query<LeaseRow>(
    `SELECT fencing_token AS token, lease_owner AS owner, status,
            (extract(epoch FROM lease_expires_at) * 1000)::float8 AS "expiresAt",
            (extract(epoch FROM lease_expires_at - now()) * 1000)::float8 AS "msLeft"
       FROM workflows WHERE id = $1`,
    [id],
  );
  if (!rows[0]) throw new Error(`workflow ${id} is not in the log`);
  return rows[0];
}

async function stepsOf(pool: pg.Pool, id: string): Promise<Array<[string, number]>> {
  const { rows } = await pool.query<{ name: string; token: number }>(`SELECT name, fencing_token AS token FROM steps WHERE workflow_id = $1 ORDER BY seq`, [id]);
  return rows.map((row) => [row.name, row.token]);
}

/** Poll until `check` is true, or fail saying what we waited for. */
async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(10);
  }
}

/**
 * Watch `id`'s lease until it moves forward under `token`: a renewal. Its new
 * `lease_expires_at` minus the lease is the database's now() when it ran.
 * `notYetAt` is when (performance.now()) the last look that did not see it
 * was sent: the renewal ran after about then.
 */
async function nextRenewal(pool: pg.Pool, id: string, token: number, after: number, timeoutMs: number): Promise<{ expiresAt: number; notYetAt: number }> {
  const deadline = performance.now() + timeoutMs;
  let notYetAt = performance.now();
  for (;;) {
    const sentAt = performance.now();
    const lease = await leaseOf(pool, id);
    if (lease.token !== token) throw new Error(`${id} was claimed again (fencing token ${lease.token}, by ${lease.owner}) instead of renewed under token ${token}`);
    if (lease.status !== 'running') throw new Error(`${id} is ${lease.status}: no lease left to renew`);
    if (lease.expiresAt > after) return { expiresAt: lease.expiresAt, notYetAt };
    notYetAt = sentAt;
    if (performance.now() > deadline) throw new Error(`no renewal of ${id}'s lease (fencing token ${token}) within ${timeoutMs} ms: is the heartbeat running?`);
    await sleep(10);
  }
}

/** A workflow that holds its lease in one step until `release()`, or until its run's signal aborts. */
function holdingWorkflow() {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const seen: { abortedAt?: number; reason?: unknown; afterRan: boolean } = { afterRan: false };
  const workflow = async (ctx: Context) => {
    await ctx.step('hold', async ({ signal }) => {
      await Promise.race([
        released,
        pause(60_000, signal, (reason) => {
          seen.abortedAt = performance.now();
          seen.reason = reason;
        }),
      ]);
      return 'held';
    });
    await ctx.step('after', async () => {
      seen.afterRan = true;
      return 'after';
    });
    return 'done';
  };
  return { workflow, release, seen };
}

/** Worker A, under a `leaseMs` lease, holding hold-1 (a holdingWorkflow) once it has claimed it. */
async function aHoldsAWorkflow(leaseMs: number) {
  const log = runLog();
  const hold = holdingWorkflow();
  const pool = await freshSchema();
  const a = await startWorker({ hold: hold.workflow }, { name: 'A', leaseMs }, log);
  const run = await a.engine.start('hold', {}, { id: 'hold-1' });
  await until('A claims hold-1', async () => (await leaseOf(pool, 'hold-1')).token === 1, 5000);
  return { log, hold, pool, a, run };
}

/** Make `pool` fail every query and connection, as a pool whose server is down does; returns the undo. */
function cutOff(pool: pg.Pool): () => void {
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432 (the test cut this worker off)'), { code: 'ECONNREFUSED' });
  const patched = pool as unknown as Record<'query' | 'connect', unknown>;
  patched.query = () => Promise.reject(refused());
  patched.connect = () => Promise.reject(refused());
  return () => {
    delete patched.query;
    delete patched.connect;
  };
}

describe('renewLease, against the database clock', () => {
  /** A workflow in the log, claimed by worker A for `leaseMs`: fencing token 1. */
  async function claimed(pool: pg.Pool, leaseMs: number) {
    const engine = createEngine({ db: pool, workflows: { noop: async () => null } });
    await engine.start('noop', {}, { id: 'wf-1' });
    const [claim] = await claimWorkflows(pool, { worker: 'A', limit: 1, leaseMs });
    expect(claim).toMatchObject({ id: 'wf-1', fencingToken: 1 });
    return { workflowId: 'wf-1', fencingToken: 1 };
  }

  it('renews a lease that still holds: it then runs out the new length after now(), not later', async () => {
    const pool = await freshSchema();
    const fence = await claimed(pool, 1000);
    expect(await renewLease(pool, fence, 5000)).toBe(true);
    const renewed = await leaseOf(pool, 'wf-1');
    expect(renewed).toMatchObject({ token: 1, owner: 'A', status: 'running' });
    expect(renewed.msLeft).toBeGreaterThan(4500);
    expect(renewed.msLeft).toBeLessThanOrEqual(5000);
    // now() + lease, not the old expiry + lease: a lease never grows past one length from now.
    expect(await renewLease(pool, fence, 2000)).toBe(true);
    const again = await leaseOf(pool, 'wf-1');
    expect(again.msLeft).toBeGreaterThan(1500);
    expect(again.msLeft).toBeLessThanOrEqual(2000);
  });

  it('refuses to renew a lease that has expired, even though nobody has claimed the workflow since', async () => {
    const pool = await freshSchema();
    const fence = await claimed(pool, 300);
    expect(await renewLease(pool, fence, 300)).toBe(true); // still holds: renewed, for 300 ms from now
    await sleep(450);
    const expired = await leaseOf(pool, 'wf-1');
    expect(expired.msLeft).toBeLessThan(0);
    // From the moment it expired any worker could have claimed it: too late to renew.
    expect(await renewLease(pool, fence, 5000)).toBe(false);
    expect(await leaseOf(pool, 'wf-1')).toEqual({ ...expired, msLeft: expect.any(Number) }); // untouched
    const [next] = await claimWorkflows(pool, { worker: 'B', limit: 1, leaseMs: 5000 });
    expect(next).toMatchObject({ id: 'wf-1', fencingToken: 2 });
  });

  it("refuses to renew under a fencing token that is no longer the workflow's, leaving the new holder's lease alone, or once the workflow has finished", async () => {
    const pool = await freshSchema();
    const stale = await claimed(pool, 200);
    await sleep(300);
    const [next] = await claimWorkflows(pool, { worker: 'B', limit: 1, leaseMs: 10_000 });
    expect(next).toMatchObject({ id: 'wf-1', fencingToken: 2 });
    const held = await leaseOf(pool, 'wf-1');
    expect(await renewLease(pool, stale, 10_000)).toBe(false);
    expect((await leaseOf(pool, 'wf-1')).expiresAt).toBe(held.expiresAt);
    expect(await leaseOf(pool, 'wf-1')).toMatchObject({ token: 2, owner: 'B' });

    const current = { workflowId: 'wf-1', fencingToken: 2 };
    expect(await renewLease(pool, current, 10_000)).toBe(true);
    expect(await completeWorkflow(pool, current, 'done')).toBe(true);
    expect(await renewLease(pool, current, 10_000)).toBe(false); // completed: nothing left to hold
  });
});

describe('the heartbeat, in process', () => {
  it('a workflow that fits in its lease completes under its first claim', async () => {
    const log = runLog();
    const workflows: Workflows = {
      quick: async (ctx: Context) => {
        await ctx.step('one', async () => 1);
        return ctx.step('two', async () => 2);
      },
    };
    const pool = await freshSchema();
    const { engine } = await startWorker(workflows, { name: 'A', leaseMs: 1000 }, log);
    const run = await engine.start('quick', {}, { id: 'quick-1' });
    expect(await Promise.race([run.result({ signal: AbortSignal.timeout(10_000) }), log.failed])).toBe(2);
    expect(await leaseOf(pool, 'quick-1')).toMatchObject({ token: 1, owner: 'A', status: 'completed' });
    expect(await stepsOf(pool, 'quick-1')).toEqual([['one', 1], ['two', 1]]);
  });

  it('a step that runs three times as long as the lease completes under the first claim while another worker waits: the heartbeat keeps the lease', async () => {
    const log = runLog();
    const workflows: Workflows = {
      slow: async (ctx: Context) => {
        await ctx.step('work', async ({ signal }) => {
          await pause(3000, signal);
          return 'worked';
        });
        return ctx.step('finish', async () => 'done');
      },
    };
    const pool = await freshSchema();
    const a = await startWorker(workflows, { name: 'A', leaseMs: 1000 }, log);
    const run = await a.engine.start('slow', {}, { id: 'slow-1' });
    await until('A claims slow-1', async () => (await leaseOf(pool, 'slow-1')).token === 1, 5000);
    await startWorker(workflows, { name: 'B', leaseMs: 1000 }, log); // polls every 100 ms for a lease that runs out

    expect(await Promise.race([run.result({ signal: AbortSignal.timeout(15_000) }), log.failed])).toBe('done');
    expect(await leaseOf(pool, 'slow-1')).toMatchObject({ token: 1, owner: 'A', status: 'completed' });
    expect(await stepsOf(pool, 'slow-1')).toEqual([['work', 1], ['finish', 1]]);
    expect(log.events.map((e) => [e.workflowId, e.fencingToken, e.outcome])).toEqual([['slow-1', 1, 'completed']]);
  });

  it('heartbeats come every lease/3 to lease/2, at random, so that workers do not renew in lock-step', async () => {
    const leaseMs = 900;
    const { log, hold, pool, run } = await aHoldsAWorkflow(leaseMs);

    // 13 renewals in a row; each one's time is its new expiry minus the lease (the database's now()).
    let { expiresAt } = await leaseOf(pool, 'hold-1');
    const renewedAt: number[] = [];
    while (renewedAt.length < 13) {
      ({ expiresAt } = await Promise.race([nextRenewal(pool, 'hold-1', 1, expiresAt, 2 * leaseMs), log.failed]));
      renewedAt.push(expiresAt - leaseMs);
    }
    hold.release();
    expect(await Promise.race([run.result({ signal: AbortSignal.timeout(10_000) }), log.failed])).toBe('done');

    const intervals = renewedAt.slice(1).map((at, i) => Math.round(at - renewedAt[i]!));
    const [low, high] = [leaseMs / 3, leaseMs / 2];
    const said = `intervals between renewals (ms): ${intervals.join(', ')}; expected each within ${low}–${high}`;
    // A little room for timers and queries that run late on a busy machine; none for running early.
    expect(intervals.filter((ms) => ms < low - 50 || ms > high + 150), said).toEqual([]);
    const mean = intervals.reduce((sum, ms) => sum + ms, 0) / intervals.length;
    expect(mean, said).toBeGreaterThanOrEqual(low);
    expect(mean, said).toBeLessThanOrEqual(high + 30);
    // Drawn anew each time: a fixed interval (lock-step with every worker started with this one) spreads by a few ms at most.
    expect(Math.max(...intervals) - Math.min(...intervals), `${said}, at random: not all the same`).toBeGreaterThanOrEqual(45);
  });

  it('a renewal refused because the workflow was taken over stops the run at that heartbeat: its step is aborted and it writes nothing more', async () => {
    const leaseMs = 1500;
    const { log, hold, pool, a } = await aHoldsAWorkflow(leaseMs);
    let { expiresAt } = await leaseOf(pool, 'hold-1');
    for (let i = 0; i < 2; i++) ({ expiresAt } = await Promise.race([nextRenewal(pool, 'hold-1', 1, expiresAt, 2 * leaseMs), log.failed]));

    // Right after A's renewal, B takes hold-1 over — as if A's lease had run out unseen (a
    // clock that ran slow, an operator's hand). A's own clock says its lease is fine for
    // over a second more: only its next heartbeat can tell it otherwise.
    const { rows } = await pool.query<{ token: number }>(
      `UPDATE workflows SET fencing_token = fencing_token + 1, lease_owner = 'B', lease_expires_at = now() + interval '30 seconds'
        WHERE id = 'hold-1' RETURNING fencing_token AS token`,
    );
    const takenAt = performance.now();
    expect(rows).toEqual([{ token: 2 }]);

    await until('A to stop its step: B has taken its workflow over', () => hold.seen.abortedAt !== undefined, 2 * leaseMs);
    expect(hold.seen.abortedAt! - takenAt, 'A stopped only when its lease would have run out by its own clock, not at its next heartbeat').toBeLessThanOrEqual(leaseMs / 2 + 250);
    expect(hold.seen.reason).toBeInstanceOf(Error);
    await until('the run ends', () => log.events.length > 0, 5000);
    expect(log.events.map((e) => [e.workflowId, e.fencingToken, e.outcome])).toEqual([['hold-1', 1, 'lease-lost']]);
    expect(a.worker.held).toEqual([]); // its slot is free
    expect(hold.seen.afterRan).toBe(false);
    expect(await stepsOf(pool, 'hold-1')).toEqual([]);
    expect(await leaseOf(pool, 'hold-1')).toMatchObject({ token: 2, owner: 'B', status: 'running' });
  });

  it('when renewals cannot reach the database, the run is stopped before its lease runs out on the database clock', async () => {
    const leaseMs = 2000;
    const { log, hold, pool, a } = await aHoldsAWorkflow(leaseMs);
    const claim = await leaseOf(pool, 'hold-1');
    const renewal = await Promise.race([nextRenewal(pool, 'hold-1', 1, claim.expiresAt, 2 * leaseMs), log.failed]);

    // From here on A's database is gone: every query, every connection fails. Its lease
    // runs out at `renewal.expiresAt` — after notYetAt + leaseMs on this clock.
    const reconnect = cutOff(a.pool);
    try {
      await until('A to stop its step: no renewal has got through since, and its lease has run out', () => hold.seen.abortedAt !== undefined, 2 * leaseMs);
      expect(hold.seen.abortedAt! - renewal.notYetAt, 'A went on past its lease').toBeLessThan(leaseMs - 10);
      expect(await leaseOf(pool, 'hold-1')).toMatchObject({ token: 1, expiresAt: renewal.expiresAt }); // no renewal got through
    } finally {
      reconnect();
    }
    await until('the run ends', () => log.events.length > 0, 5000);
    expect(log.events.map((e) => [e.workflowId, e.fencingToken, e.outcome])).toEqual([['hold-1', 1, 'lease-lost']]);
    expect(hold.seen.afterRan).toBe(false);
    expect(await stepsOf(pool, 'hold-1')).toEqual([]);
  });
});

describe('the heartbeat, with real processes', () => {
  const output = (attempt: Attempt) => `${attempt.stdout}${attempt.stderr}`;

  /** A worker process of the implementation under test (the driver), lease 1 s, polling every 100 ms. */
  function workerProcess(name: string, env: Record<string, string>): ChildRun {
    const child = startChild({
      script: driver,
      args: ['worker'],
      env: { ...world!.env, FORCE_COLOR: '0', WORKER_NAME: name, LEASE_MS: '1000', POLL_MS: '100', ...env },
      timeoutMs: childTimeoutMs(),
    });
    children.push(child);
    return child;
  }

  /**
   * Worker A claims order-1 and starts packing (20 s); worker B starts and polls.
   * For over a lease, A's heartbeat must keep order-1 while B looks for work.
   */
  async function aPackingWhileBWaits(pool: pg.Pool): Promise<{ a: ChildRun; b: ChildRun }> {
    const a = workerProcess('A', { PACK_MS: '20000' });
    await a.waitForLine(/^worker A running/, 15_000);
    const engine = createEngine({ db: pool, workflows: { order: orderWorkflow({ packMs: 0 }) } });
    await engine.start('order', demoOrder('order-1'), { id: 'order-1' });
    await a.waitForLine(/^A: pack started: order-1/, 10_000);
    const b = workerProcess('B', { PACK_MS: '2500' });
    await b.waitForLine(/^worker B running/, 15_000);
    await sleep(1200);
    expect(await leaseOf(pool, 'order-1'), 'A lost order-1 while it was packing: its heartbeat did not keep the lease').toMatchObject({ token: 1, owner: 'A', status: 'running' });
    return { a, b };
  }

  crashTest('a worker frozen (SIGSTOP) in a long step is taken over once its lease runs out; woken (SIGCONT), it finds its lease lost, stops the step and writes nothing: every effect happens once', async () => {
    const { pool, world } = await freshWorld();
    const { a, b } = await aPackingWhileBWaits(pool);

    a.signal('SIGSTOP');
    // B waits out A's lease, claims order-1, replays the charge from the log, packs (2.5 s,
    // renewing its own lease), reserves the stock and sends the email.
    await until('B completes order-1', async () => (await leaseOf(pool, 'order-1')).status === 'completed', 20_000);
    expect(await leaseOf(pool, 'order-1')).toMatchObject({ token: 2, owner: 'B' });

    a.signal('SIGCONT');
    await a.waitForLine(/^A: pack stopped: order-1/, 10_000);
    await sleep(500); // whatever A would still do, it does now
    a.signal('SIGTERM');
    b.signal('SIGTERM');
    const [zombie, successor] = await Promise.all([a.done, b.done]);
    expect(zombie.exitCode, output(zombie)).toBe(0);
    expect(successor.exitCode, output(successor)).toBe(0);

    // A recorded the charge under token 1, before it froze; everything after is B's.
    expect(await stepsOf(pool, 'order-1')).toEqual([['charge_card', 1], ['pack', 2], ['reserve_inventory', 2], ['send_email', 2]]);
    const ledger = await world.ledger();
    expect(ledger.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    expect(ledger.emails.map((e) => e.idempotencyKey)).toEqual(['order-1:3']);
  });

  crashTest('a worker SIGKILLed in a long step renews nothing more: another worker takes the order over about one lease later, and every effect happens once', async () => {
    const { pool, world } = await freshWorld();
    const { a, b } = await aPackingWhileBWaits(pool);

    a.signal('SIGKILL');
    const killedAt = performance.now();
    const killed = await a.done;
    expect(killed.signal).toBe('SIGKILL');
    await until('B claims order-1', async () => (await leaseOf(pool, 'order-1')).token === 2, 10_000);
    // A's last renewal was at most lease/2 before the kill: its lease ran out within a lease.
    expect(performance.now() - killedAt, 'B took order-1 over long after A died: did A renew for more than a lease?').toBeLessThan(1000 + 1000);
    await until('B completes order-1', async () => (await leaseOf(pool, 'order-1')).status === 'completed', 20_000);

    b.signal('SIGTERM');
    const successor = await b.done;
    expect(successor.exitCode, output(successor)).toBe(0);
    expect(await leaseOf(pool, 'order-1')).toMatchObject({ token: 2, owner: 'B' });
    expect(await stepsOf(pool, 'order-1')).toEqual([['charge_card', 1], ['pack', 2], ['reserve_inventory', 2], ['send_email', 2]]);
    expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
  });
});
