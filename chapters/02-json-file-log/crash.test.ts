/**
 * Chapter 2 under real crashes: every kill is a SIGKILL of a real child
 * process (shared/crash/runner.ts), every verdict is read from the world's
 * ledger — the payment provider, the mailbox and the stock table — not from
 * the engine's own log.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, inject, it, vi } from 'vitest';
import { runUntilDone, startChild } from '../../shared/crash/runner.ts';
import { UnserializableResultError } from '../../shared/json.ts';
import { runScenario } from '../../shared/scenarios.ts';
import { withWorld } from '../../shared/testing/world.ts';
import { exactlyOnce } from '../../shared/world/ledger.ts';
import { openLog, runWorkflow } from './engine.ts';

const chapter = '02-json-file-log';
const main = `chapters/${chapter}/main.ts`;
const adminUrl = inject('adminDatabaseUrl');

describe('chapter 2 fixes', () => {
  it('crash after the charge is recorded: charged exactly once', async () => {
    const [here, chapterOne] = await Promise.all([
      runScenario(chapter, 'crash-after-charge-recorded', { adminUrl }),
      runScenario('01-dict-log', 'crash-after-charge-recorded', { adminUrl }),
    ]);
    expect(here.runs[0]?.attempts[0]?.crashedAt).toBe('after-record:charge_card@1');
    expect(here.verdict, here.detail).toBe('exactly-once');
    // The same crash, one chapter earlier: the log was in memory and died with the process.
    expect(chapterOne.verdict, chapterOne.detail).toBe('charged-twice');
  });

  it('a crash half-way through writing the log leaves the old log whole', async () => {
    const outcome = await runScenario(chapter, 'crash-while-recording', { adminUrl });
    expect(outcome.runs[0]?.attempts[0]?.crashedAt).toBe('during-record:complete@1');
    expect(outcome.verdict, outcome.detail).toBe('exactly-once');
  });

  it('with the naive writer, a crash half-way through writing tears the log, and the next start refuses to run', async () => {
    await withWorld('ch02_naive', async (world) => {
      const logFile = path.join(world.dir, 'workflow-log.json');
      const run = await runUntilDone({
        script: main,
        args: ['start', 'order-1'],
        env: { ...world.env, LOG_WRITER: 'naive' },
        faults: ['during-record:charge_card'],
        timeoutMs: 30_000,
      });
      expect(run.attempts[0]?.crashedAt).toBe('during-record:charge_card@1');
      // Half the new log on disk, none of the old: not JSON any more.
      const torn = fs.readFileSync(logFile, 'utf8');
      expect(torn.length).toBeGreaterThan(0);
      expect(() => JSON.parse(torn)).toThrow();
      // The restart stops with the clear error instead of starting fresh…
      expect(run.finished).toBe(false);
      expect(run.attempts).toHaveLength(2);
      expect(run.error).toContain(`CorruptLogError: The workflow log ${logFile} is corrupt`);
      expect(run.error).toContain('We refuse to start with an empty log');
      // …so the card was charged once (by the process that died), not again.
      expect((await world.ledger()).byOrder('order-1').charges).toBe(1);
    });
  });

  it('a corrupt log is a clear error, never a silent fresh start', async () => {
    await withWorld('ch02_corrupt', async (world) => {
      const logFile = path.join(world.dir, 'workflow-log.json');
      const garbage = '{"version":1,"workflows":{"order-1":{"status":"completed","steps":{"charge_card":{"id":"ch_';
      fs.writeFileSync(logFile, garbage);
      for (const command of ['start', 'status']) {
        const attempt = await startChild({ script: main, args: [command, 'order-1'], env: world.env, timeoutMs: 30_000 }).done;
        expect(attempt.exitCode, attempt.stdout).toBe(1);
        expect(attempt.stdout).not.toContain('STATUS');
        expect(attempt.stderr).toContain(`CorruptLogError: The workflow log ${logFile} is corrupt: it is not valid JSON`);
        expect(attempt.stderr).toContain('→ Look at the file: restore it from a copy');
        expect(attempt.stderr).not.toMatch(/^\s+at /m); // a message, not a stack trace
      }
      expect(fs.readFileSync(logFile, 'utf8')).toBe(garbage); // nobody "repaired" it by starting over
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 0, stockDecrements: 0, emails: 0 });
    });
  });

  it('a step result JSON cannot carry is refused, naming the workflow and step, and nothing is recorded', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ch02-unsafe-'));
    const file = path.join(dir, 'workflow-log.json');
    try {
      let runs = 0;
      const run = runWorkflow(await openLog(file), 'order-9', async (ctx) => {
        await ctx.step('charge_card', async () => ({ id: 'ch_1' }));
        return ctx.step('reserve_inventory', async () => ({ at: new Date(0), run: ++runs }));
      }, null);
      await expect(run).rejects.toThrow(UnserializableResultError);
      await expect(run).rejects.toThrow(/^workflow order-9, step reserve_inventory returned a value JSON cannot record faithfully: \$\.at is a Date/);
      expect(runs).toBe(1); // not retried: a retry would repeat the effect and fail the same way
      const onDisk = JSON.parse(fs.readFileSync(file, 'utf8'));
      expect(onDisk.workflows['order-9']).toEqual({ status: 'running', steps: { charge_card: { id: 'ch_1' } } });
    } finally {
      vi.restoreAllMocks();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('still broken in chapter 2', () => {
  it('crash after the charge, before its record: charged twice', async () => {
    const outcome = await runScenario(chapter, 'crash-after-charge-before-record', { adminUrl });
    expect(outcome.runs[0]?.attempts[0]?.crashedAt).toBe('after-effect:charge_card@1');
    expect(outcome.verdict, outcome.detail).toBe('charged-twice');
  });

  it("two processes on one log file lose each other's records", async () => {
    // Each process read the file once and rewrites all of it from its own
    // memory after every step: the last writer erases the other's records.
    const outcome = await runScenario(chapter, 'two-processes-one-log', { adminUrl });
    const [runA, runB, restart] = outcome.runs;
    expect([runA?.finished, runB?.finished, restart?.finished], outcome.detail).toEqual([true, true, true]);
    expect(outcome.verdict, outcome.detail).toBe('lost');
    // The forgotten workflows ran again on restart: their effects happened twice.
    const doubled = outcome.ledger!.orders.filter((o) => !exactlyOnce(o));
    expect(doubled.length).toBeGreaterThan(0);
  });
});
