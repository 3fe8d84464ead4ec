/**
 * Chapter 8 under real kills and wrong clocks: every kill is a SIGKILL of a
 * real worker process, every verdict read from the world's ledger and the log.
 * Each failure this chapter fixes is shown on chapter 7 first, where it is real.
 */
import path from 'node:path';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { runUntilDone, startChild } from '../../shared/crash/runner.ts';
import { projectRoot } from '../../shared/db/server.ts';
import { runScenario } from '../../shared/scenarios.ts';
import { withPool } from '../../shared/testing/database.ts';
import { noColourEnv, printed } from '../../shared/testing/output.ts';
import { startWorker } from '../../shared/testing/processes.ts';
import { until } from '../../shared/testing/waiting.ts';
import { withWorld } from '../../shared/testing/world.ts';
import { demoOrder } from '../../shared/world/services.ts';
import type { World } from '../../shared/world/world.ts';
import { createEngine, migrate, type WorkflowInfo } from './index.ts';
import { orderWorkflow } from './workflow.ts';

const chapter = '08-failures-and-time';
const main = `chapters/${chapter}/main.ts`;
const adminUrl = inject('adminDatabaseUrl');

/** What the log says about `id`, read in this (the test's) process. */
function inspect(world: World, id: string): Promise<WorkflowInfo | undefined> {
  return withPool(world.databaseUrl, async (db: pg.Pool) => {
    await migrate(db);
    return createEngine({ db, workflows: { order: orderWorkflow() } }).inspect(id);
  });
}

/** The sleep's end and the step after it, from the log: the sleep's end, when the next step was recorded, and when the sleep was. */
function sleepOf(info: WorkflowInfo) {
  const i = info.steps.findIndex((s) => s.kind === 'sleep');
  const until = Date.parse((info.steps[i]!.output as { until: string }).until);
  return { until, sleptAt: info.steps[i]!.recordedAt.getTime(), nextAt: info.steps[i + 1]!.recordedAt.getTime() };
}

describe('what chapter 7 gets wrong about failure, fixed', () => {
  it('a poison workflow — every run kills its process — loops for ever on chapter 7; here it fails after maxAttempts, charging nothing', async () => {
    const [here, before] = await Promise.all([runScenario(chapter, 'poison-workflow', { adminUrl }), runScenario('07-fast-path', 'poison-workflow', { adminUrl })]);
    expect(before.verdict, before.detail).toBe('loops');
    expect(before.runs[0]!.crashes).toBe(8);
    expect(here.verdict, here.detail).toBe('stopped');
    // Five claims killed their processes; the sixth failed the workflow instead of running it.
    expect(here.runs[0]!.crashes).toBe(5);
    expect(here.detail).toContain('workflow order-1 was claimed 5 times in a row and no run of it recorded a step or reported back');
    expect(here.ledger?.byOrder('order-1')).toMatchObject({ charges: 0, stockDecrements: 0, emails: 0 });
  });

  it('a poison workflow on two workers at once, each restarted when it dies: it still fails after maxAttempts, and then both stay up', async () => {
    await withWorld('ch08_poison_two', async (world) => {
      const env = { ...world.env, ...noColourEnv, LEASE_MS: '1000', POLL_MS: '100', CRASH_AT: 'before-step:charge_card' };
      // maxAttempts is the workflow's own, stored with it when it is started.
      await withPool(world.databaseUrl, async (db) => {
        await migrate(db);
        await createEngine({ db, workflows: { order: orderWorkflow() } }).start('order', demoOrder('order-1'), { id: 'order-1', maxAttempts: 3 });
      });
      // Two supervisors, each restarting its worker whenever it dies, until the workflow is failed.
      let kills = 0;
      let failed = false;
      const supervise = async (name: string) => {
        const survivors: Array<{ worker: ReturnType<typeof startWorker>; running: Promise<unknown> }> = [];
        while (!failed) {
          const worker = startWorker(main, name, env);
          // Listened for from the start: a line printed before anyone waits for it is not seen.
          const running = worker.waitForLine(/running \(concurrency/).catch(() => undefined);
          const ended = await Promise.race([worker.done, until(`order-1 failed`, async () => (await inspect(world, 'order-1'))?.status === 'failed', { timeoutMs: 60_000, everyMs: 200 }).then(() => undefined)]);
          if (ended?.signal === 'SIGKILL') {
            kills++;
            continue;
          }
          failed = true;
          survivors.push({ worker, running });
        }
        for (const { worker, running } of survivors) {
          await running; // a worker still starting up has no SIGTERM handler yet
          worker.signal('SIGTERM');
          const done = await worker.done;
          expect(done.exitCode, `${done.signal} ${done.stderr}`).toBe(0); // alive until told to stop
        }
      };
      await Promise.all([supervise('A'), supervise('B')]);
      const info = await inspect(world, 'order-1');
      expect(info).toMatchObject({ status: 'failed', attempts: 4, maxAttempts: 3 });
      expect(kills).toBe(3);
      expect((await world.ledger()).byOrder('order-1').charges).toBe(0);
    });
  });

  it('a payment provider down for four calls: chapter 7 retries at once and gives up; here the back-offs ride it out, charged once', async () => {
    const [here, before] = await Promise.all([runScenario(chapter, 'provider-outage', { adminUrl }), runScenario('07-fast-path', 'provider-outage', { adminUrl })]);
    expect(before.verdict, before.detail).toBe('gave-up');
    expect(here.verdict, here.detail).toBe('exactly-once');
    const log = printed(here.runs[0]!.attempts[0]);
    expect(log.match(/step #0 charge_card attempt \d of 5 failed \(ServiceError: payments service answered 503/g)).toHaveLength(4);
  });
});

describe('a back-off survives a kill', () => {
  it('a worker killed right after it scheduled a retry: the next process runs the next attempt when it is due, and the order is charged once', async () => {
    await withWorld('ch08_kill_backoff', async (world) => {
      await world.failNext('payments', 1);
      const run = await runUntilDone({ script: main, args: ['start', 'order-1'], env: { ...world.env, ...noColourEnv }, faults: ['after-retry-scheduled:charge_card'], timeoutMs: 30_000 });
      expect(run.attempts.map((a) => a.crashedAt ?? a.exitCode)).toEqual(['after-retry-scheduled:charge_card@1', 0]);
      const info = (await inspect(world, 'order-1'))!;
      // The failed attempt was recorded by the killed process (token 1); the second attempt ran at or after its retry time.
      expect(info.failures.map((f) => [f.attempt, f.fencingToken])).toEqual([[1, 1]]);
      expect(info.steps[0]!.recordedAt.getTime()).toBeGreaterThanOrEqual(info.failures[0]!.retryAt!.getTime());
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });
});

describe('durable sleep under kills and wrong clocks', () => {
  it('a worker killed while its workflow sleeps: another wakes it when the sleep ends, not before, and the order completes once', async () => {
    const outcome = await runScenario(chapter, 'kill-while-sleeping', { adminUrl });
    expect(outcome.verdict, outcome.detail).toBe('exactly-once');
    expect(outcome.runs[0]!.attempts.map((a) => a.crashedAt ?? a.exitCode)).toEqual(['after-sleep-recorded@1', 0]);
  });

  it('workers whose clocks are an hour ahead and an hour behind: the sleep ends on the database clock, neither early nor an hour late', async () => {
    for (const offsetMs of [3_600_000, -3_600_000]) {
      await withWorld(`ch08_clock_${offsetMs > 0 ? 'ahead' : 'behind'}`, async (world) => {
        const env = {
          ...world.env,
          ...noColourEnv,
          COOLING_OFF_MS: '1500',
          CLOCK_OFFSET_MS: String(offsetMs),
          NODE_OPTIONS: `--import ${path.join(projectRoot, 'chapters', chapter, 'fixtures', 'clock-offset.mjs')}`,
        };
        const started = performance.now();
        const run = await startChild({ script: main, args: ['start', 'order-1'], env, timeoutMs: 30_000 }).done;
        expect(run.exitCode, run.stderr).toBe(0);
        expect(performance.now() - started).toBeLessThan(20_000); // not an hour
        expect(printed(run)).toMatch(/sleeps until/);
        const { until, sleptAt, nextAt } = sleepOf((await inspect(world, 'order-1'))!);
        expect(until - sleptAt).toBeGreaterThanOrEqual(1499);
        expect(nextAt).toBeGreaterThanOrEqual(until);
        expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      });
    }
  });
});
