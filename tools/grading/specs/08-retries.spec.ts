/**
 * Exercise 8's tests: retries and attempts. backoffMs grows by its factor up
 * to its cap and is jittered between half of it and all of it; a failed
 * attempt is recorded and either waits out its back-off in the database
 * (holding no worker) or — its attempts spent, or its error not retryable,
 * by class or by predicate — fails the step for good with a StepFailedError
 * that every replay throws the same; the claim counts attempts, starting
 * again at 1 after a run that recorded a step, and the claim past
 * maxAttempts fails the workflow instead of running it. With real worker
 * processes: a workflow whose step SIGKILLs its process is failed after
 * maxAttempts of them.
 *
 * Each test gets a fresh schema of the run's database. Back-offs are short
 * (50 ms to 3 s) so the whole file runs in about half a minute. The engine,
 * the worker and the migrations are chapter 8's own; the exercise's files
 * are imported through exercises/ for the type checker, and the grading
 * config swaps them for the implementation under test — in chapter 8's
 * engine too, which runs the run.ts and the queries under test. Points:
 * exercises/08-retries/points.json.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startChild, type Attempt, type ChildRun } from '../../../shared/crash/runner.ts';
import { createEngine, migrate, StepFailedError, WorkflowFailedError, type Context, type Engine, type RunEndEvent, type Worker, type WorkerOptions, type Workflows } from '../../../chapters/08-failures-and-time/index.ts';
import { backoffMs } from '../../../exercises/08-retries/run.ts';
import { claimWorkflows } from '../../../exercises/08-retries/queries.ts';
import { sleep, until } from '../../../shared/testing/waiting.ts';
import { childTimeoutMs, crashTest, runLog, scratchSchema, type ScratchSchema } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/08-retries.ts';

let schema: ScratchSchema | undefined;
const pools: pg.Pool[] = [];
const workers: Worker[] = [];
const children: ChildRun[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    child.signal('SIGKILL'); // a test that failed half-way may leave one running
    await child.done.catch(() => {});
  }
  await Promise.all(workers.splice(0).map((worker) => worker.stop({ graceMs: 0 }).catch(() => {})));
  await Promise.all(pools.splice(0).map((pool) => pool.end().catch(() => {})));
  await schema?.drop();
  schema = undefined;
});

/** A fresh schema with the engine's tables, and a pool on it (closed after the test). */
async function freshSchema(): Promise<pg.Pool> {
  schema = await scratchSchema('ex08');
  const pool = new pg.Pool({ connectionString: schema.url, max: 12 });
  pool.on('error', () => {});
  pools.push(pool);
  await migrate(pool);
  return pool;
}


/** An engine on `pool`, and a started worker of it (stopped after the test). */
async function startWorker<W extends Workflows>(pool: pg.Pool, workflows: W, options: WorkerOptions = {}) {
  const log = runLog<RunEndEvent>();
  const engine: Engine<W> = createEngine({ db: pool, workflows });
  const worker = engine.createWorker({ concurrency: 2, leaseMs: 5000, pollMs: 200, ...options, onRunEnd: log.onRunEnd });
  workers.push(worker);
  await worker.start();
  return { engine, worker, log };
}


/** A provider that fails with `error(n)` at its calls n = 1, 2, … up to `failures`, then answers. */
function flaky(failures: number, error: (call: number) => Error = () => Object.assign(new Error('provider unavailable (503)'), { name: 'ServiceError' })) {
  const calls: Array<{ attempt: number; at: number }> = [];
  const thrown: Error[] = [];
  return {
    calls,
    thrown,
    async call(attempt: number): Promise<string> {
      calls.push({ attempt, at: performance.now() });
      if (calls.length <= failures) {
        const e = error(calls.length);
        thrown.push(e);
        throw e;
      }
      return `ok after ${calls.length}`;
    },
  };
}

/** Wait for a run's result, at most `ms`. */
const within = (ms: number) => ({ signal: AbortSignal.timeout(ms) });

/** The promise's rejection (or a failure if it fulfilled). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    const value = await promise;
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (thrown) {
    return thrown;
  }
}

describe('backoffMs: exponential, capped, then jittered between half of it and all of it', () => {
  const doubling = { initialDelayMs: 1000, backoffFactor: 2, maxDelayMs: 5000 };
  const tripling = { initialDelayMs: 200, backoffFactor: 3, maxDelayMs: 10_000 };

  it('with random 1 it is the whole delay: initialDelayMs, times backoffFactor at each further attempt, never more than maxDelayMs', () => {
    expect([1, 2, 3, 4, 5].map((attempt) => backoffMs(doubling, attempt, 1))).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffMs(tripling, attempt, 1))).toEqual([200, 600, 1800, 5400, 10_000, 10_000]);
    expect([1, 2, 3].map((attempt) => backoffMs({ initialDelayMs: 300, backoffFactor: 1, maxDelayMs: 300 }, attempt, 1))).toEqual([300, 300, 300]);
    expect(backoffMs(doubling, 100, 1), 'attempt 100: still the cap').toBe(5000);
  });

  it('with random 0 it is half of that — the floor the jitter never goes below — under the cap too', () => {
    expect([1, 2, 3, 4, 5].map((attempt) => backoffMs(doubling, attempt, 0))).toEqual([500, 1000, 2000, 2500, 2500]);
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffMs(tripling, attempt, 0))).toEqual([100, 300, 900, 2700, 5000, 5000]);
    expect(backoffMs({ initialDelayMs: 0, backoffFactor: 2, maxDelayMs: 0 }, 3, 0.5)).toBe(0);
  });

  it('for any random in [0, 1) it lies between that floor and the whole delay and spreads over the range; left out, it is drawn at each call', () => {
    for (let attempt = 1; attempt <= 6; attempt++) {
      const whole = Math.min(5000, 1000 * 2 ** (attempt - 1));
      const values = Array.from({ length: 200 }, (_, i) => backoffMs(doubling, attempt, i / 200));
      const said = `attempt ${attempt}: expected each between ${whole / 2} and ${whole}, got ${Math.min(...values)}…${Math.max(...values)}`;
      expect(values.filter((ms) => !(ms >= whole / 2 - 1 && ms <= whole + 1)), said).toEqual([]);
      expect(Math.max(...values) - Math.min(...values), `${said}: spread over the range`).toBeGreaterThanOrEqual(0.9 * (whole / 2));
    }
    const drawn = Array.from({ length: 200 }, () => backoffMs(doubling, 3));
    expect(drawn.filter((ms) => !(ms >= 1999 && ms <= 4001)), 'attempt 3 with its own random: between 2000 and 4000').toEqual([]);
    expect(new Set(drawn).size, 'attempt 3 with its own random: not the same every time').toBeGreaterThan(20);
    expect(Math.min(...drawn)).toBeLessThan(2500);
    expect(Math.max(...drawn)).toBeGreaterThan(3500);
  });
});

describe('a failing step, retried by its policy', () => {
  it('a step that succeeds at its first attempt is recorded once: no failed attempt, no wait', async () => {
    const pool = await freshSchema();
    const { engine, log } = await startWorker(pool, { once: async (ctx: Context) => ctx.step('charge', async ({ attempt }) => `charged at attempt ${attempt}`) });
    expect(await (await engine.start('once', {}, { id: 'once-1' })).result(within(10_000))).toBe('charged at attempt 1');
    const info = await engine.inspect('once-1');
    expect(info?.steps.map(({ name, output, error }) => ({ name, output, error }))).toEqual([{ name: 'charge', output: 'charged at attempt 1', error: null }]);
    expect(info?.failures).toEqual([]);
    expect(log.outcomes('once-1')).toEqual(['completed']);
  });

  it('a flaky step is retried after each back-off, waited out in the database: every failed attempt is recorded with its error and the time of the next, and the result is recorded once', async () => {
    const pool = await freshSchema();
    const provider = flaky(2);
    const retry = { maxAttempts: 5, initialDelayMs: 200, backoffFactor: 2, maxDelayMs: 5000 };
    const { engine, log } = await startWorker(pool, { charge: async (ctx: Context) => ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry }) });
    const run = await engine.start('charge', {}, { id: 'flaky-1' });
    expect(await run.result(within(15_000))).toBe('ok after 3');
    expect(provider.calls.map((c) => c.attempt), 'the attempt each call was told it is').toEqual([1, 2, 3]);
    // Waited: each retry came at least the jitter's floor after the attempt before it (half of 200 ms, half of 400 ms).
    expect(provider.calls[1]!.at - provider.calls[0]!.at, 'the wait before attempt 2').toBeGreaterThanOrEqual(95);
    expect(provider.calls[2]!.at - provider.calls[1]!.at, 'the wait before attempt 3').toBeGreaterThanOrEqual(195);
    // Each run that failed an attempt went to wait; the third completed.
    expect(log.outcomes('flaky-1')).toEqual(['waiting', 'waiting', 'completed']);

    const info = (await engine.inspect('flaky-1'))!;
    expect(info).toMatchObject({ status: 'completed', waiting: null });
    expect(info.steps.map(({ name, output, error }) => ({ name, output, error }))).toEqual([{ name: 'charge', output: 'ok after 3', error: null }]);
    expect(info.failures.map(({ seq, name, attempt, error }) => ({ seq, name, attempt, error }))).toEqual([
      { seq: 0, name: 'charge', attempt: 1, error: { name: 'ServiceError', message: 'provider unavailable (503)' } },
      { seq: 0, name: 'charge', attempt: 2, error: { name: 'ServiceError', message: 'provider unavailable (503)' } },
    ]);
    // The back-off each failure was given: its retry time less the time it was recorded (one statement, one now()).
    const delays = info.failures.map((f) => (f.retryAt ? f.retryAt.getTime() - f.failedAt.getTime() : null));
    const said = `the back-offs the failures were given (ms): ${delays.join(', ')}; expected backoffMs of attempt 1 (100–200) and of attempt 2 (200–400)`;
    expect(delays[0], said).toBeGreaterThanOrEqual(99);
    expect(delays[0], said).toBeLessThanOrEqual(201);
    expect(delays[1], said).toBeGreaterThanOrEqual(199);
    expect(delays[1], said).toBeLessThanOrEqual(401);
  });

  it('while a step waits out its back-off nobody holds its workflow: a worker with one slot runs other workflows meanwhile', async () => {
    const pool = await freshSchema();
    const provider = flaky(1);
    const retry = { initialDelayMs: 3000, backoffFactor: 1, maxDelayMs: 3000 }; // 1.5 to 3 s
    const { engine, worker, log } = await startWorker(
      pool,
      {
        charge: async (ctx: Context) => ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry }),
        quick: async (ctx: Context) => ctx.step('noop', async () => 'done'),
      },
      { concurrency: 1, pollMs: 10_000 },
    );
    const run = await engine.start('charge', {}, { id: 'wait-1' });
    await until('the first attempt of wait-1 to fail, and its run to end', () => log.outcomes('wait-1').length > 0, { timeoutMs: 10_000, everyMs: 10 });
    expect(log.outcomes('wait-1'), 'the run that failed the first attempt').toEqual(['waiting']);
    expect(await engine.inspect('wait-1'), 'waiting out the back-off: running, held by nobody').toMatchObject({ status: 'running', leaseOwner: null, waiting: { reason: 'retry' } });
    expect(worker.held, "the worker's one slot").toEqual([]);
    const other = await engine.start('quick', {}, { id: 'wait-1-other' });
    expect(await other.result(within(5000))).toBe('done');
    expect(provider.calls.length, 'the other workflow ran before the retry, in the slot the waiting one does not hold').toBe(1);
    expect(await run.result(within(15_000))).toBe('ok after 2');
    expect(log.outcomes('wait-1')).toEqual(['waiting', 'completed']);
  });

  it('a step whose attempts run out fails for good: its last attempt and its entry are recorded, and the workflow catches a StepFailedError with the last error as its cause', async () => {
    const pool = await freshSchema();
    class ProviderDown extends Error {
      override name = 'ProviderDown';
    }
    const provider = flaky(Infinity, (call) => new ProviderDown(`down (call ${call})`));
    const caught: StepFailedError[] = [];
    const retry = { maxAttempts: 3, initialDelayMs: 50, backoffFactor: 1, maxDelayMs: 50 };
    const { engine, log } = await startWorker(pool, {
      charge: async (ctx: Context) => {
        try {
          return await ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry });
        } catch (error) {
          // (A retry's wait also ends the run by throwing through this code: let that, and anything else, pass.)
          if (!(error instanceof StepFailedError)) throw error;
          caught.push(error);
          return 'gave up';
        }
      },
    });
    expect(await (await engine.start('charge', {}, { id: 'out-1' })).result(within(15_000))).toBe('gave up');
    expect(provider.calls.map((c) => c.attempt)).toEqual([1, 2, 3]);
    expect(log.outcomes('out-1')).toEqual(['waiting', 'waiting', 'completed']);
    expect(caught).toHaveLength(1);
    const failure = caught[0]!;
    expect({ ...failure, message: failure.message }).toMatchObject({
      workflowId: 'out-1',
      seq: 0,
      stepName: 'charge',
      attempts: 3,
      errorName: 'ProviderDown',
      errorMessage: 'down (call 3)',
      message: 'workflow out-1 step #0 charge failed after 3 attempts: ProviderDown: down (call 3)',
    });
    expect(failure.cause, 'its cause: the error the last attempt threw, itself').toBe(provider.thrown[2]);

    const info = (await engine.inspect('out-1'))!;
    expect(info.steps.map(({ name, output, error }) => ({ name, output, error }))).toEqual([{ name: 'charge', output: null, error: { name: 'ProviderDown', message: 'down (call 3)', attempts: 3 } }]);
    expect(info.failures.map((f) => [f.attempt, f.error.message, f.retryAt === null ? 'no next attempt' : 'retried'])).toEqual([
      [1, 'down (call 1)', 'retried'],
      [2, 'down (call 2)', 'retried'],
      [3, 'down (call 3)', 'no next attempt'],
    ]);
  });

  it('a StepFailedError is replayed as it was: the next run of the workflow gets the same error from the log, and the step runs no attempt again', async () => {
    const pool = await freshSchema();
    const provider = flaky(Infinity);
    const seen: StepFailedError[] = [];
    const refunds: string[] = [];
    const { engine, log } = await startWorker(pool, {
      refund: async (ctx: Context) => {
        try {
          await ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry: { maxAttempts: 2, initialDelayMs: 50, backoffFactor: 1, maxDelayMs: 50 } });
          return 'charged';
        } catch (error) {
          if (!(error instanceof StepFailedError)) throw error;
          seen.push(error);
          await ctx.step('refund', async () => void refunds.push('refunded'));
          await ctx.sleep(50); // ends this run: the next one replays the log from the top
          return 'refunded';
        }
      },
    });
    expect(await (await engine.start('refund', {}, { id: 'replay-1' })).result(within(15_000))).toBe('refunded');
    expect(log.outcomes('replay-1')).toEqual(['waiting', 'waiting', 'completed']); // a retry, the sleep, the replay
    expect(provider.calls.map((c) => c.attempt), 'no attempt after the step failed for good').toEqual([1, 2]);
    expect(refunds).toEqual(['refunded']);
    expect(seen, 'the StepFailedError, in the run that failed the step and in the replay').toHaveLength(2);
    const fields = (e: StepFailedError) => ({ class: e.constructor.name, name: e.name, message: e.message, workflowId: e.workflowId, seq: e.seq, stepName: e.stepName, attempts: e.attempts, errorName: e.errorName, errorMessage: e.errorMessage });
    expect(fields(seen[1]!)).toEqual(fields(seen[0]!));
    expect(fields(seen[0]!)).toMatchObject({ attempts: 2, errorName: 'ServiceError', message: 'workflow replay-1 step #0 charge failed after 2 attempts: ServiceError: provider unavailable (503)' });
  });

  it('an error of a class the policy lists as non-retryable fails the step at that attempt — a subclass of one too — while other errors are retried', async () => {
    const pool = await freshSchema();
    class CardDeclined extends Error {
      override name = 'CardDeclined';
    }
    class CardExpired extends CardDeclined {
      override name = 'CardExpired';
    }
    const provider = flaky(Infinity, (call) => (call === 1 ? Object.assign(new Error('provider unavailable (503)'), { name: 'ServiceError' }) : new CardExpired('card expired')));
    const retry = { maxAttempts: 5, initialDelayMs: 50, backoffFactor: 1, maxDelayMs: 50, nonRetryable: [RangeError, CardDeclined] };
    const { engine } = await startWorker(pool, { charge: async (ctx: Context) => ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry }) });
    const failed = await rejectionOf((await engine.start('charge', {}, { id: 'class-1' })).result(within(15_000)));
    expect(failed).toBeInstanceOf(WorkflowFailedError);
    expect((failed as Error).message).toContain('workflow class-1 step #0 charge failed after 2 attempts: CardExpired: card expired');
    expect(provider.calls.map((c) => c.attempt), 'attempt 1 (a ServiceError) retried; attempt 2 (a CardExpired, which is a CardDeclined) not').toEqual([1, 2]);
    const info = (await engine.inspect('class-1'))!;
    expect(info.failures.map((f) => [f.attempt, f.error.name, f.retryAt === null ? 'no next attempt' : 'retried'])).toEqual([
      [1, 'ServiceError', 'retried'],
      [2, 'CardExpired', 'no next attempt'],
    ]);
    expect(info.steps[0]).toMatchObject({ name: 'charge', output: null, error: { name: 'CardExpired', message: 'card expired', attempts: 2 } });
  });

  it("an error the policy's predicate calls non-retryable fails the step at that attempt, while one it does not is retried", async () => {
    const pool = await freshSchema();
    const answered = (message: string, retryable: boolean) => Object.assign(new Error(message), { name: 'ServiceError', retryable });
    const provider = flaky(Infinity, (call) => (call === 1 ? answered('too many requests (429)', true) : answered('bad request (400)', false)));
    const asked: string[] = [];
    const retry = {
      maxAttempts: 5,
      initialDelayMs: 50,
      backoffFactor: 1,
      maxDelayMs: 50,
      nonRetryable: (error: Error) => {
        asked.push(error.message);
        return (error as { retryable?: boolean }).retryable === false;
      },
    };
    const { engine } = await startWorker(pool, { charge: async (ctx: Context) => ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry }) });
    const failed = await rejectionOf((await engine.start('charge', {}, { id: 'predicate-1' })).result(within(15_000)));
    expect(failed).toBeInstanceOf(WorkflowFailedError);
    expect((failed as Error).message).toContain('workflow predicate-1 step #0 charge failed after 2 attempts: ServiceError: bad request (400)');
    expect(provider.calls.map((c) => c.attempt)).toEqual([1, 2]);
    expect(asked, 'the predicate was asked about each error the step threw').toEqual(['too many requests (429)', 'bad request (400)']);
    const info = (await engine.inspect('predicate-1'))!;
    expect(info.failures.map((f) => [f.attempt, f.error.message, f.retryAt === null ? 'no next attempt' : 'retried'])).toEqual([
      [1, 'too many requests (429)', 'retried'],
      [2, 'bad request (400)', 'no next attempt'],
    ]);
  });

  it("a failed attempt of a run that has lost its lease schedules no retry and records nothing: the run ends lease-lost, the new holder's lease untouched", async () => {
    const pool = await freshSchema();
    let fail: () => void = () => {};
    const failing = new Promise<void>((resolve) => (fail = resolve));
    let started = false;
    // A lease of 30 s: no heartbeat comes in this test to tell the run it lost the lease first.
    const { engine, log } = await startWorker(
      pool,
      {
        charge: async (ctx: Context) =>
          ctx.step('charge', async () => {
            started = true;
            await failing;
            throw Object.assign(new Error('provider unavailable (503)'), { name: 'ServiceError' });
          }),
      },
      { leaseMs: 30_000 },
    );
    await engine.start('charge', {}, { id: 'fenced-1' });
    await until('the step of fenced-1 to start', () => started, { timeoutMs: 10_000, everyMs: 10 });
    // Another worker takes fenced-1 over under the run's feet (as after a freeze past the lease).
    const takeover = await pool.query<{ token: number; expires: string }>(
      `UPDATE workflows SET fencing_token = fencing_token + 1, lease_owner = 'B', lease_expires_at = now() + interval '30 seconds'
        WHERE id = 'fenced-1' RETURNING fencing_token AS token, lease_expires_at::text AS expires`,
    );
    expect(takeover.rows[0]?.token).toBe(2);
    fail(); // now the step's attempt fails
    await until('the run of fenced-1 to end', () => log.outcomes('fenced-1').length > 0, { timeoutMs: 10_000, everyMs: 10 });
    expect(log.outcomes('fenced-1'), 'its retry was refused by the fence: the lease is lost').toEqual(['lease-lost']);
    const { rows } = await pool.query(`SELECT fencing_token AS token, lease_owner AS owner, status, lease_expires_at::text AS expires FROM workflows WHERE id = 'fenced-1'`);
    expect(rows[0], "B's lease, as B took it").toEqual({ token: 2, owner: 'B', status: 'running', expires: takeover.rows[0]!.expires });
    const info = (await engine.inspect('fenced-1'))!;
    expect(info.failures, 'no failed attempt recorded by the run that lost the lease').toEqual([]);
    expect(info.steps).toEqual([]);
  });
});

describe('attempts are counted by the claim', () => {
  /** Claim every runnable workflow for a worker that dies at once (a lease of 1 ms): `id`'s claim. */
  async function deadClaim(pool: pg.Pool, id: string) {
    await sleep(5); // the last 1 ms lease has run out
    const claim = (await claimWorkflows(pool, { worker: 'dies', limit: 10, leaseMs: 1 })).find((c) => c.id === id);
    if (!claim) throw new Error(`${id} was not claimed`);
    return claim;
  }

  it('each claim whose run reported nothing counts one more attempt; the claim after a run that recorded a step counts 1 again', async () => {
    const pool = await freshSchema();
    const engine = createEngine({ db: pool, workflows: { w: async () => null } });
    await engine.start('w', {}, { id: 'count-1' }); // no worker here: in the log, not claimed yet
    /** The step at `seq`, recorded by the run of the claim with `token` (as that run would have). */
    const recorded = (seq: number, token: number) =>
      pool.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('count-1', $1, 'step', '1', $2)`, [seq, token]);

    const seen: Array<[number, number]> = [];
    const claim = async () => {
      const { fencingToken, attempts } = await deadClaim(pool, 'count-1');
      seen.push([fencingToken, attempts]);
    };
    await claim(); // 1: its run records a step…
    await recorded(0, 1);
    await claim(); // …so this claim counts from 1 again
    await claim();
    await claim(); // its run records a step
    await recorded(1, 4);
    await claim();
    await claim();
    expect(seen, '[fencing token, attempts] of each claim: the runs of claims 1 and 4 recorded a step').toEqual([
      [1, 1],
      [2, 1],
      [3, 2],
      [4, 3],
      [5, 1],
      [6, 2],
    ]);
    expect(await engine.inspect('count-1')).toMatchObject({ fencingToken: 6, attempts: 2 });
  });

  it('the claim past maxAttempts fails the workflow instead of running it — not one step runs — while the claim that is attempt maxAttempts still runs', async () => {
    const pool = await freshSchema();
    const ran: string[] = [];
    const workflows = { w: async (ctx: Context) => ctx.step('once', async () => (ran.push(ctx.workflowId), 'ran')) };
    const engine = createEngine({ db: pool, workflows });
    await engine.start('w', {}, { id: 'poison-1', maxAttempts: 2 });
    await engine.start('w', {}, { id: 'last-chance-1', maxAttempts: 3 });
    for (let i = 0; i < 2; i++) {
      await deadClaim(pool, 'poison-1'); // claims both
    }
    // The next claim is the third of each: past poison-1's maxAttempts, and last-chance-1's last.
    const { worker, log } = await startWorker(pool, workflows);
    await until('both runs to end', () => log.events.length >= 2, { timeoutMs: 10_000, everyMs: 10 });
    expect(ran, 'which workflows ran their step').toEqual(['last-chance-1']);
    expect(log.outcomes('poison-1')).toEqual(['failed']);
    expect(log.outcomes('last-chance-1')).toEqual(['completed']);
    const failed = await rejectionOf(engine.result('poison-1', within(5000)));
    expect(failed).toBeInstanceOf(WorkflowFailedError);
    expect((failed as Error).message).toContain('workflow poison-1 was claimed 2 times in a row and no run of it recorded a step or reported back');
    expect(await engine.inspect('poison-1')).toMatchObject({ status: 'failed', attempts: 3, maxAttempts: 2, steps: [] });
    expect(await engine.result('last-chance-1', within(5000))).toBe('ran');
    expect(worker.held).toEqual([]);
  });
});

describe('a poison workflow, with real processes', () => {
  const output = (attempt: Attempt) => `${attempt.stdout}${attempt.stderr}`;

  /** A worker process of the implementation under test (the driver), lease 1 s, polling every 100 ms. */
  function workerProcess(name: string): ChildRun {
    const child = startChild({
      script: driver,
      args: ['worker'],
      env: { DATABASE_URL: schema!.url, FORCE_COLOR: '0', WORKER_NAME: name, LEASE_MS: '1000', POLL_MS: '100' },
      timeoutMs: childTimeoutMs(),
    });
    children.push(child);
    return child;
  }

  crashTest('a workflow whose step SIGKILLs the worker process running it, restarted each time, is failed by the claim after maxAttempts: three kills, then it never runs again, and the worker that failed it stays up', async () => {
    const pool = await freshSchema();
    const engine = createEngine({ db: pool, workflows: { poison: async () => null } }); // to start it: the driver has the code
    await engine.start('poison', {}, { id: 'poison-1', maxAttempts: 3 });
    const status = async () => (await engine.inspect('poison-1'))?.status;

    // A supervisor: start a worker; when it dies, start the next — until the workflow is failed (or five have died).
    const killed: Attempt[] = [];
    let survivor: ChildRun | undefined;
    while (!survivor && killed.length < 5) {
      const child = workerProcess(`W${killed.length + 1}`);
      let ended: Attempt | undefined;
      void child.done.then((attempt) => (ended = attempt));
      await until(`W${killed.length + 1} to die, or poison-1 to be failed`, async () => ended !== undefined || (await status()) === 'failed', { timeoutMs: 20_000, everyMs: 10 });
      if (ended) {
        expect(ended.signal, `W${killed.length + 1} was to be killed by the poison step; it ended otherwise:\n${output(ended)}`).toBe('SIGKILL');
        expect(ended.stdout).toContain('poison step started: poison-1');
        killed.push(ended);
      } else {
        survivor = child;
      }
    }
    expect(survivor, `poison-1 was never failed: it killed ${killed.length} worker processes, one after another`).toBeDefined();
    expect(killed, 'worker processes the poison step killed').toHaveLength(3);
    const info = (await engine.inspect('poison-1'))!;
    expect(info).toMatchObject({ status: 'failed', attempts: 4, maxAttempts: 3, steps: [] });
    expect(info.error).toContain('workflow poison-1 was claimed 3 times in a row and no run of it recorded a step or reported back');

    await sleep(500); // the survivor claims again meanwhile: nothing is left to run
    survivor!.signal('SIGTERM');
    const last = await survivor!.done;
    expect(last.exitCode, output(last)).toBe(0);
    expect(last.stdout, 'the worker that failed poison-1').toContain('poison-1 failed');
    expect(last.stdout).not.toContain('poison step started');
  });
});
