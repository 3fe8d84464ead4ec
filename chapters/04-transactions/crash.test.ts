/**
 * Chapter 4 under real crashes: every kill is a SIGKILL of a real child
 * process; every verdict is read from the world's ledger.
 */
import { describe, expect, inject, it } from 'vitest';
import { runUntilDone } from '../../shared/crash/runner.ts';
import { runScenario } from '../../shared/scenarios.ts';
import { printed } from '../../shared/testing/output.ts';
import { withWorld } from '../../shared/testing/world.ts';

const chapter = '04-transactions';
const adminUrl = inject('adminDatabaseUrl');

describe('chapter 4 fixes', () => {
  it('crash after the stock update, before its record: stock decremented exactly once', async () => {
    const [here, before] = await Promise.all([
      runScenario(chapter, 'crash-after-reserve-before-record', { adminUrl }),
      runScenario('03-postgres-log', 'crash-after-reserve-before-record', { adminUrl }),
    ]);
    expect(here.runs[0]?.attempts[0]?.crashedAt).toBe('after-effect:reserve_inventory@1');
    expect(here.verdict, here.detail).toBe('exactly-once');
    // The same crash on chapter 3's engine: the UPDATE had committed on its own.
    expect(before.verdict, before.detail).toBe('stock-twice');
  });

  it('crash after the stock update and its record commit: the step is never run again', async () => {
    await withWorld('ch04_after_commit', async (world) => {
      const run = await runUntilDone({
        script: `chapters/${chapter}/main.ts`,
        args: ['start', 'order-1'],
        env: world.env,
        faults: ['after-record:reserve_inventory'],
      });
      expect(run.finished).toBe(true);
      expect(run.attempts[0]?.crashedAt).toBe('after-record:reserve_inventory@1');
      expect(run.attempts[1]?.stdout).toMatch(/replayed reserve_inventory/);
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });

  it("two processes race on the same step: the loser's stock update rolls back with its record", async () => {
    const [here, before] = await Promise.all([
      runScenario(chapter, 'race-on-the-stock-step', { adminUrl }),
      runScenario('03-postgres-log', 'race-on-the-stock-step', { adminUrl }),
    ]);
    const effects = here.ledger!.byOrder('order-1');
    expect(effects.stockDecrements, here.detail).toBe(1);
    expect(effects.charges).toBe(1);
    // The loser saw the primary key refuse its record, and replayed instead.
    const output = here.runs.flatMap((r) => r.attempts).map(printed).join('');
    expect(output).toContain('was recorded by another process first');
    // Chapter 3 committed each process's UPDATE on its own.
    expect(before.verdict, before.detail).toBe('stock-twice');
  });
});

describe('still broken in chapter 4', () => {
  it('crash after the charge, before its record: charged twice (an HTTP call cannot join a transaction)', async () => {
    const outcome = await runScenario(chapter, 'crash-after-charge-before-record', { adminUrl });
    expect(outcome.verdict, outcome.detail).toBe('charged-twice');
  });

  it('two processes run the same workflow: the email, sent outside the database, goes out twice', async () => {
    const outcome = await runScenario(chapter, 'two-executors-one-workflow', { adminUrl });
    expect(outcome.verdict, outcome.detail).toBe('emailed-twice');
  });
});
