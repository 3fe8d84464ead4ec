/**
 * Chapter 8's engine in one process: retries spent waiting in the database,
 * steps that fail for good, durable sleeps, attempts counted by the claim —
 * and the bad input each of them can be given. (Real crashes, real kills and
 * a worker with a wrong clock are in crash.test.ts.)
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { rejectionOf } from '../../shared/testing/errors.ts';
import { sleep, until } from '../../shared/testing/waiting.ts';
import { createEngine, listMigrations, migrate, StepFailedError, WorkflowFailedError, WorkflowTimeoutError, type Context, type RunEndEvent } from './index.ts';
import { backoffMs, DEFAULT_RETRY } from './run.ts';
import { claimWorkflows, retryWorkflow } from './queries.ts';

let test: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  test = await freshPool('ch08_engine', { max: 20 });
  db = test.db;
  await migrate(db);
});
afterAll(async () => {
  await test?.drop();
});

/** A provider that fails its first `failures` calls with `error`, then answers. */
function flaky(failures: number, error: () => Error = () => Object.assign(new Error('provider unavailable (503)'), { name: 'ServiceError' })) {
  const calls: Array<{ attempt: number; at: number }> = [];
  return {
    calls,
    async call(attempt: number): Promise<string> {
      calls.push({ attempt, at: performance.now() });
      if (calls.length <= failures) throw error();
      return `ok after ${calls.length}`;
    },
  };
}

/** The database's clock, in epoch ms. */
async function databaseNow(): Promise<number> {
  const result = await db.query<{ now: number }>(`SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS now`);
  return result.rows[0]!.now;
}

describe('the schema', () => {
  it('migration 004 adds attempts, failed attempts and sleeps to the log', () => {
    expect(listMigrations()).toEqual(['001_log.sql', '002_leases.sql', '003_first_claim.sql', '004_failures_and_time.sql']);
  });
});

describe('a failing step is retried after a back-off spent in the database', () => {
  it('each failed attempt is recorded with its error; while it waits the workflow holds no worker slot; the third attempt succeeds and is recorded once', async () => {
    const provider = flaky(2);
    const ends: RunEndEvent[] = [];
    const engine = createEngine({
      db,
      workflows: {
        charge: async (ctx: Context) => ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry: { initialDelayMs: 300, backoffFactor: 1 } }),
        quick: async (ctx: Context) => ctx.step('noop', async () => 'done'),
      },
    });
    const worker = engine.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 5000, onRunEnd: (event) => ends.push(event) });
    await worker.start();
    try {
      const run = await engine.start('charge', {}, { id: 'retry-1' });
      await until('the first attempt failed', () => ends.length >= 1, { timeoutMs: 5000, everyMs: 10 });
      // Waiting out its back-off: nobody holds it, and the worker's one slot is free for other work.
      const waiting = await engine.inspect('retry-1');
      expect(waiting).toMatchObject({ status: 'running', leaseOwner: null, waiting: { reason: 'retry' } });
      expect(worker.held).toEqual([]);
      const other = await engine.start('quick', {}, { id: 'retry-1-other' });
      expect(await other.result()).toBe('done');

      expect(await run.result()).toBe('ok after 3');
      expect(provider.calls.map((c) => c.attempt)).toEqual([1, 2, 3]);
      // Each back-off was at least half of 300 ms (the jitter's floor): waited, not retried at once.
      expect(provider.calls[1]!.at - provider.calls[0]!.at).toBeGreaterThanOrEqual(150);
      expect(provider.calls[2]!.at - provider.calls[1]!.at).toBeGreaterThanOrEqual(150);
      expect(ends.filter((e) => e.workflowId === 'retry-1').map((e) => e.outcome)).toEqual(['waiting', 'waiting', 'completed']);

      const info = await engine.inspect('retry-1');
      expect(info?.steps.map(({ name, output, error }) => ({ name, output, error }))).toEqual([{ name: 'charge', output: 'ok after 3', error: null }]);
      expect(info?.failures.map(({ seq, attempt, error, retryAt }) => ({ seq, attempt, error, retryAt: retryAt instanceof Date }))).toEqual([
        { seq: 0, attempt: 1, error: { name: 'ServiceError', message: 'provider unavailable (503)' }, retryAt: true },
        { seq: 0, attempt: 2, error: { name: 'ServiceError', message: 'provider unavailable (503)' }, retryAt: true },
      ]);
      // Each attempt after a wait is a new claim: a new fencing token, and no attempt counted against the workflow.
      expect(info?.failures.map((f) => f.fencingToken)).toEqual([1, 3]);
      expect(info).toMatchObject({ status: 'completed', attempts: 1, waiting: null });
    } finally {
      await worker.stop();
    }
  });

  it('the back-off doubles up to its cap, and its jitter keeps each between half and all of it', () => {
    const policy = { initialDelayMs: 1000, backoffFactor: 2, maxDelayMs: 5000 };
    expect([1, 2, 3, 4, 5].map((attempt) => backoffMs(policy, attempt, 1))).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect([1, 2, 3, 4, 5].map((attempt) => backoffMs(policy, attempt, 0))).toEqual([500, 1000, 2000, 2500, 2500]);
    expect(DEFAULT_RETRY).toEqual({ maxAttempts: 3, initialDelayMs: 1000, backoffFactor: 2, maxDelayMs: 60_000 });
  });

  it('a step whose attempts run out throws StepFailedError to the workflow, which compensates; a replay throws the very same error and runs no attempt again', async () => {
    const provider = flaky(Infinity);
    const seen: string[] = [];
    const compensations: string[] = [];
    const engine = createEngine({
      db,
      workflows: {
        refund: async (ctx: Context) => {
          try {
            await ctx.step('charge', ({ attempt }) => provider.call(attempt), { retry: { maxAttempts: 2, initialDelayMs: 50 } });
            return 'charged';
          } catch (error) {
            if (!(error instanceof StepFailedError)) throw error as Error;
            seen.push(`${error.name} ${error.errorName} ${error.attempts}: ${error.message}`);
            await ctx.step('release_hold', async () => compensations.push('released'));
            // A sleep ends this run; the next claim replays the whole log: the failure comes back from it.
            await ctx.sleep(50);
            return 'compensated';
          }
        },
      },
    });
    await engine.start('refund', {}, { id: 'fail-1' });
    await engine.createWorker({ leaseMs: 5000, pollMs: 50 }).drain();
    expect(await engine.result('fail-1')).toBe('compensated');
    expect(provider.calls.map((c) => c.attempt)).toEqual([1, 2]);
    expect(compensations).toEqual(['released']);
    expect(seen).toEqual([
      'StepFailedError ServiceError 2: workflow fail-1 step #0 charge failed after 2 attempts: ServiceError: provider unavailable (503)',
      'StepFailedError ServiceError 2: workflow fail-1 step #0 charge failed after 2 attempts: ServiceError: provider unavailable (503)',
    ]);
    const info = await engine.inspect('fail-1');
    expect(info?.steps[0]).toMatchObject({ name: 'charge', output: null, error: { name: 'ServiceError', message: 'provider unavailable (503)', attempts: 2 } });
    expect(info?.failures.map((f) => [f.attempt, f.retryAt === null])).toEqual([
      [1, false],
      [2, true], // the last: no next attempt
    ]);
  });

  it('an error the policy calls non-retryable fails the step at once — by class or by predicate; uncaught, it fails the workflow with that message', async () => {
    class CardDeclined extends Error {}
    let calls = 0;
    const engine = createEngine({
      db,
      workflows: {
        byClass: async (ctx: Context) =>
          ctx.step('charge', async () => {
            calls++;
            throw new CardDeclined('card declined');
          }, { retry: { nonRetryable: [CardDeclined] } }),
        byPredicate: async (ctx: Context) =>
          ctx.step('charge', async () => Promise.reject(Object.assign(new Error('bad request (400)'), { retryable: false })), {
            retry: { nonRetryable: (error) => (error as { retryable?: boolean }).retryable === false },
          }),
      },
    });
    await engine.start('byClass', {}, { id: 'nonretry-1' });
    await engine.start('byPredicate', {}, { id: 'nonretry-2' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(calls).toBe(1);
    const first = await rejectionOf(engine.result('nonretry-1'));
    expect(first).toBeInstanceOf(WorkflowFailedError);
    expect((first as Error).message).toContain('workflow nonretry-1 step #0 charge failed after 1 attempt: Error: card declined');
    expect((await engine.inspect('nonretry-2'))?.failures).toHaveLength(1);
  });

  it('a thrown error that is not a step’s fails the workflow at once: no attempt is repeated in memory (chapter 7 ran it three times)', async () => {
    let runs = 0;
    const engine = createEngine({
      db,
      workflows: {
        buggy: async () => {
          runs++;
          throw new TypeError('x is not a function');
        },
      },
    });
    await engine.start('buggy', {}, { id: 'bug-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(runs).toBe(1);
    await expect(engine.result('bug-1')).rejects.toThrow('x is not a function');
  });
});

describe('durable sleep', () => {
  it('a sleeping workflow holds no slot; it wakes when the database clock passes its end, never before, and a one-slot worker runs other work meanwhile', async () => {
    const order: string[] = [];
    const engine = createEngine({
      db,
      workflows: {
        nap: async (ctx: Context) => {
          await ctx.step('before', async () => order.push('nap: before'));
          await ctx.sleep(600);
          return ctx.step('after', async () => (order.push('nap: after'), databaseNow()));
        },
        quick: async (ctx: Context) => ctx.step('noop', async () => void order.push('quick')),
      },
    });
    const worker = engine.createWorker({ concurrency: 1, leaseMs: 5000, pollMs: 10_000 });
    await worker.start();
    try {
      await engine.start('nap', {}, { id: 'nap-1' });
      await until('nap-1 sleeps', async () => (await engine.inspect('nap-1'))?.waiting?.reason === 'sleep', { timeoutMs: 5000, everyMs: 10 });
      await (await engine.start('quick', {}, { id: 'nap-1-other' })).result();
      const wokeAt = (await engine.result('nap-1')) as number;
      const info = await engine.inspect('nap-1');
      const sleepEntry = info!.steps[1]!;
      expect(sleepEntry).toMatchObject({ kind: 'sleep', name: 'sleep' });
      const sleptUntil = Date.parse((sleepEntry.output as { until: string }).until);
      // Never early, by the database's clock; and woken by the worker's own timer — its poll is 10 s.
      expect(wokeAt).toBeGreaterThanOrEqual(sleptUntil);
      expect(wokeAt - sleptUntil).toBeLessThan(5000);
      expect(sleptUntil - sleepEntry.recordedAt.getTime()).toBeGreaterThanOrEqual(599);
      expect(order).toEqual(['nap: before', 'quick', 'nap: after']);
    } finally {
      await worker.stop();
    }
  });

  it('a sleep of a year: the workflow waits, and inspect, durable list and the claim read it (its time left is past an int’s 2^31 − 1 ms)', async () => {
    const engine = createEngine({ db, workflows: { yearly: async (ctx: Context) => ctx.sleep(365 * 24 * 3600 * 1000) } });
    await engine.start('yearly', {}, { id: 'nap-year' });
    const worker = engine.createWorker({ leaseMs: 5000 });
    await worker.start();
    try {
      await until('nap-year sleeps', async () => (await engine.inspect('nap-year'))?.waiting?.reason === 'sleep', { timeoutMs: 5000, everyMs: 10 });
      const info = await engine.inspect('nap-year');
      expect(info!.leaseMsLeft).toBeGreaterThan(364 * 24 * 3600 * 1000);
      expect(worker.held).toEqual([]);
    } finally {
      await worker.stop();
    }
  });

  it('no worker runs when the sleep ends: the first worker to start runs it at once; sleepUntil a past date does not wait', async () => {
    const engine = createEngine({
      db,
      workflows: {
        nap: async (ctx: Context) => {
          await ctx.sleep(300);
          await ctx.sleepUntil(new Date(Date.now() - 60_000));
          return ctx.step('after', async () => 'awake');
        },
      },
    });
    await engine.start('nap', {}, { id: 'nap-2' });
    await engine.createWorker({ leaseMs: 5000 }).drain(); // runs it to its sleep, and waits it out
    expect(await engine.result('nap-2')).toBe('awake');

    // Now with no worker at the end of the sleep: a worker stops while the workflow sleeps.
    await engine.start('nap', {}, { id: 'nap-3' });
    const first = engine.createWorker({ leaseMs: 5000 });
    await first.start();
    await until('nap-3 sleeps', async () => (await engine.inspect('nap-3'))?.waiting?.reason === 'sleep', { timeoutMs: 5000, everyMs: 10 });
    await first.stop();
    await sleep(500); // past its end, with no worker anywhere
    expect((await engine.inspect('nap-3'))?.status).toBe('running');
    const second = engine.createWorker({ leaseMs: 5000, pollMs: 10_000 });
    const startedAt = performance.now();
    await second.start(); // its first claim finds it runnable
    try {
      expect(await engine.result('nap-3')).toBe('awake');
      expect(performance.now() - startedAt).toBeLessThan(2000);
    } finally {
      await second.stop();
    }
    const steps = (await engine.inspect('nap-3'))!.steps;
    expect(steps.map((s) => s.kind)).toEqual(['sleep', 'sleep', 'step']);
  });

  it('a sleep replayed where the code now calls a step of the same name is non-determinism, not the same thing', async () => {
    let changed = false;
    const engine = createEngine({
      db,
      workflows: {
        edited: async (ctx: Context) => {
          if (changed) await ctx.step('sleep', async () => 1);
          else await ctx.sleep(100);
          return 'done';
        },
      },
    });
    await engine.start('edited', {}, { id: 'nap-4' });
    const worker = engine.createWorker({ leaseMs: 5000 });
    await worker.start();
    await until('nap-4 sleeps', async () => (await engine.inspect('nap-4'))?.waiting?.reason === 'sleep', { timeoutMs: 5000, everyMs: 10 });
    changed = true;
    try {
      await expect(engine.result('nap-4')).rejects.toThrow('workflow nap-4 step #0: the log says a sleep, the code now calls step "sleep"');
    } finally {
      await worker.stop();
    }
  });
});

describe('attempts are counted by the claim', () => {
  it('a claim whose run reported nothing counts; one after a recorded step starts again at 1; past maxAttempts the run fails the workflow instead of running it', async () => {
    let ran = 0;
    const engine = createEngine({ db, maxAttempts: 2, workflows: { never: async (ctx: Context) => ctx.step('once', async () => ++ran) } });
    await engine.start('never', {}, { id: 'poison-1' });
    // Three claims by a "worker" that dies every time: claimWorkflows alone, no run, leases of 1 ms.
    for (const expected of [1, 2, 3]) {
      await sleep(5);
      const [claim] = (await claimWorkflows(db, { worker: 'dies', limit: 10, leaseMs: 1 })).filter((c) => c.id === 'poison-1');
      expect(claim).toMatchObject({ attempts: expected, maxAttempts: 2 });
    }
    await sleep(5);
    const ends: RunEndEvent[] = [];
    await engine.createWorker({ leaseMs: 5000, onRunEnd: (e) => ends.push(e) }).drain();
    expect(ran).toBe(0); // the fourth claim did not run it
    expect(ends[0]).toMatchObject({ outcome: 'failed' });
    await expect(engine.result('poison-1')).rejects.toThrow('workflow poison-1 was claimed 3 times in a row and no run of it recorded a step or reported back');
    expect(await engine.inspect('poison-1')).toMatchObject({ status: 'failed', attempts: 4 });
  });

  it('maxAttempts is per workflow (start option, stored with it), and a graceful release gives its claim back', async () => {
    const engine = createEngine({ db, workflows: { slow: async (ctx: Context) => ctx.step('wait', ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve))) } });
    await engine.start('slow', {}, { id: 'release-1' });
    await engine.start('slow', {}, { id: 'release-2', maxAttempts: 9 });
    const worker = engine.createWorker({ leaseMs: 5000 });
    await worker.start();
    await until('both held', () => worker.held.length === 2, { timeoutMs: 5000, everyMs: 10 });
    expect(await engine.inspect('release-1')).toMatchObject({ attempts: 1, maxAttempts: 5 });
    await worker.stop({ graceMs: 0 });
    expect(await engine.inspect('release-1')).toMatchObject({ attempts: 0 });
    expect(await engine.inspect('release-2')).toMatchObject({ attempts: 0, maxAttempts: 9 });
  });
});

describe('deadlines', () => {
  it('a workflow past its timeoutMs is failed: its running step’s signal aborts with WorkflowTimeoutError, even a step that ignores it cannot hold it, and no further step starts', async () => {
    const reasons: unknown[] = [];
    let after = 0;
    const engine = createEngine({
      db,
      workflows: {
        hangs: async (ctx: Context) => {
          await ctx.step('hang', ({ signal }) => {
            signal.addEventListener('abort', () => reasons.push(signal.reason));
            return new Promise(() => {}); // ignores its signal, never returns
          });
          await ctx.step('after', async () => ++after);
        },
      },
    });
    const startedAt = performance.now();
    await engine.start('hangs', {}, { id: 'deadline-1', timeoutMs: 300 });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(performance.now() - startedAt).toBeLessThan(3000);
    await expect(engine.result('deadline-1')).rejects.toThrow("workflow deadline-1 passed its deadline (start's timeoutMs): failed");
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toBeInstanceOf(WorkflowTimeoutError);
    expect(after).toBe(0);
  });

  it('a deadline past a timer’s reach (30 days) does not fire at once: Node runs a setTimeout longer than 2^31 − 1 ms immediately', async () => {
    const engine = createEngine({ db, workflows: { quick: async (ctx: Context) => ctx.step('s', async () => 'done', { timeoutMs: 30 * 24 * 3600 * 1000 }) } });
    await engine.start('quick', {}, { id: 'deadline-far', timeoutMs: 30 * 24 * 3600 * 1000 });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('deadline-far')).toBe('done');
    expect(() => engine.createWorker({ leaseMs: 2 ** 31 })).toThrow('leaseMs must be a whole number from 100 to 2147483647');
    expect(() => engine.createWorker({ pollMs: 2 ** 31 })).toThrow('pollMs must be a number of milliseconds from 1 to 2147483647');
  });

  it('a deadline cuts a sleep short: the workflow is claimed and failed when its deadline comes, not when the sleep would have ended', async () => {
    const engine = createEngine({ db, workflows: { long: async (ctx: Context) => ctx.sleep(60_000) } });
    const startedAt = performance.now();
    await engine.start('long', {}, { id: 'deadline-2', timeoutMs: 400 });
    const worker = engine.createWorker({ leaseMs: 5000, pollMs: 10_000 });
    await worker.start();
    try {
      await expect(engine.result('deadline-2')).rejects.toThrow('passed its deadline');
      expect(performance.now() - startedAt).toBeLessThan(5000);
    } finally {
      await worker.stop();
    }
    expect((await engine.inspect('deadline-2'))?.deadlineInMs).toBeLessThanOrEqual(0);
  });
});

describe('a log changed behind the engine’s back', () => {
  it('a first claim (which reads no log) that meets a position already written stops, gives its lease back, and the next claim replays it: the workflow completes, not failed', async () => {
    const ran: string[] = [];
    const ends: RunEndEvent[] = [];
    const engine = createEngine({
      db,
      workflows: { imported: async (ctx: Context) => [await ctx.step('a', async () => (ran.push('a'), 'a ran')), await ctx.step('b', async () => (ran.push('b'), 'b ran'))] },
    });
    await engine.start('imported', {}, { id: 'behind-1' });
    // Written by another program: the first claim (token 1) skips loading the log, and meets it when it records.
    await db.query(`INSERT INTO steps (workflow_id, seq, name, output) VALUES ('behind-1', 0, 'a', '"imported"')`);
    await engine.createWorker({ leaseMs: 5000, onRunEnd: (e) => ends.push(e) }).drain();
    expect(await engine.result('behind-1')).toEqual(['imported', 'b ran']);
    expect(ends.map((e) => [e.outcome, e.error?.name])).toEqual([
      ['error', 'StepAlreadyRecordedError'],
      ['completed', undefined],
    ]);
    expect(ran).toEqual(['a', 'b']); // a ran once, on the first claim, and its record was refused
  });
});

describe('an operator’s retry (durable retry)', () => {
  it('a workflow failed by its deadline, retried, runs again without it: the step the deadline aborted was no failed attempt, and the recorded step does not run again', async () => {
    let slow = true;
    const calls: string[] = [];
    const engine = createEngine({
      db,
      workflows: {
        late: async (ctx: Context) => {
          await ctx.step('first', async () => void calls.push('first'));
          return ctx.step('second', ({ signal, attempt }) => {
            calls.push(`second #${attempt}`);
            return slow ? new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))) : Promise.resolve('done');
          }, { retry: { maxAttempts: 1 } });
        },
      },
    });
    await engine.start('late', {}, { id: 'retried-1', timeoutMs: 300 });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.result('retried-1')).rejects.toThrow('passed its deadline');
    slow = false;
    expect(await retryWorkflow(db, 'retried-1')).toBe(true);
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('retried-1')).toBe('done');
    expect(calls).toEqual(['first', 'second #1', 'second #1']); // the deadline's abort was not a failed attempt
    expect(await engine.inspect('retried-1')).toMatchObject({ deadlineInMs: null, attempts: 1 });
  });
});

describe('bad input is a clear error at the call, and nothing is written', () => {
  it('a retry policy that makes no sense is refused where it is given: the engine’s at createEngine, a step’s at the step (failing that run, writing no attempt)', async () => {
    const workflows = { w: async () => 1 };
    expect(() => createEngine({ db, workflows, retry: { maxAttempts: 0 } })).toThrow('retry policy: maxAttempts must be a whole number ≥ 1, got 0');
    expect(() => createEngine({ db, workflows, retry: { initialDelayMs: 1000, maxDelayMs: 10 } })).toThrow('maxDelayMs must be a finite number ≥ initialDelayMs (1000), got 10');
    expect(() => createEngine({ db, workflows, retry: { initialDelayMs: -1 } })).toThrow('initialDelayMs must be a finite number of milliseconds ≥ 0, got -1');
    expect(() => createEngine({ db, workflows, retry: { backoffFactor: Number.NaN } })).toThrow('backoffFactor must be a finite number ≥ 1, got NaN');
    expect(() => createEngine({ db, workflows, maxAttempts: 0 })).toThrow('maxAttempts must be a whole number ≥ 1, got 0');
    const engine = createEngine({ db, workflows: { bad: async (ctx: Context) => ctx.step('s', async () => 1, { retry: { maxAttempts: 1.5 } }) } });
    await expect(engine.start('bad', {}, { id: 'bad-0', maxAttempts: -1 })).rejects.toThrow('maxAttempts must be a whole number ≥ 1, got -1');
    for (const timeoutMs of [0, -5, Number.NaN, Number.POSITIVE_INFINITY, 1e20]) {
      await expect(engine.start('bad', {}, { id: 'bad-0', timeoutMs })).rejects.toThrow(/^timeoutMs must be a finite number of milliseconds > 0/);
    }
    expect(await engine.inspect('bad-0')).toBeUndefined();
    await engine.start('bad', {}, { id: 'bad-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    await expect(engine.result('bad-1')).rejects.toThrow('retry policy: maxAttempts must be a whole number ≥ 1, got 1.5');
    expect(await engine.inspect('bad-1')).toMatchObject({ steps: [], failures: [] });
  });

  it('a sleep of a negative, non-finite or unrepresentable duration, or until a date that is not one, is a RangeError at the call: nothing is recorded', async () => {
    const attempts: unknown[] = [-1, Number.NaN, Number.POSITIVE_INFINITY, 1e16, '5'];
    const errors: string[] = [];
    const engine = createEngine({
      db,
      workflows: {
        badSleep: async (ctx: Context) => {
          for (const ms of attempts) {
            try {
              await ctx.sleep(ms as number);
            } catch (error) {
              errors.push(`${(error as Error).name}: ${(error as Error).message}`);
            }
          }
          try {
            await ctx.sleepUntil(new Date('not a date'));
          } catch (error) {
            errors.push(`${(error as Error).name}: ${(error as Error).message}`);
          }
          return 'survived';
        },
      },
    });
    await engine.start('badSleep', {}, { id: 'bad-sleep-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('bad-sleep-1')).toBe('survived');
    expect(errors).toEqual([
      'RangeError: sleep needs a finite number of milliseconds ≥ 0, got -1',
      'RangeError: sleep needs a finite number of milliseconds ≥ 0, got NaN',
      'RangeError: sleep needs a finite number of milliseconds ≥ 0, got Infinity',
      'RangeError: sleep of 10000000000000000 ms ends after the latest date a timestamp can hold (year 275760)',
      'RangeError: sleep needs a finite number of milliseconds ≥ 0, got 5',
      'RangeError: sleepUntil needs a valid Date, got Invalid Date',
    ]);
    expect((await engine.inspect('bad-sleep-1'))?.steps).toEqual([]);
  });
});
