/**
 * Chapter 5 under real crashes: every kill is a SIGKILL of a real child
 * process; every verdict is read from the world's ledger — and, to see that a
 * replay got the *original* charge back, from the charge ids the processes
 * printed.
 */
import { describe, expect, inject, it } from 'vitest';
import { runUntilDone, startChild, type Attempt } from '../../shared/crash/runner.ts';
import { runScenario } from '../../shared/scenarios.ts';
import { noColourEnv, printed } from '../../shared/testing/output.ts';
import { withWorld } from '../../shared/testing/world.ts';

const chapter = '05-idempotency-keys';
const main = `chapters/${chapter}/main.ts`;
const adminUrl = inject('adminDatabaseUrl');

/**
 * The ids a process got back from a step's call, from its `▶ ran` lines:
 *   ▶ ran      charge_card        → {"id":"ch_3f2a…","orderId":"order-1",…}
 */
const ranIds = (attempt: Attempt | undefined, step: string) =>
  [...printed(attempt).matchAll(new RegExp(`▶ ran\\s+${step}\\s+→ \\{"id":"(\\w+)"`, 'g'))].map((m) => m[1]);

describe('chapter 5 fixes', () => {
  it('crash after the charge, before its record: charged exactly once', async () => {
    const [here, before] = await Promise.all([
      runScenario(chapter, 'crash-after-charge-before-record', { adminUrl }),
      runScenario('04-transactions', 'crash-after-charge-before-record', { adminUrl }),
    ]);
    const [killed, restarted] = here.runs[0]?.attempts ?? [];
    expect(killed?.crashedAt).toBe('after-effect:charge_card@1');
    expect(here.verdict, here.detail).toBe('exactly-once');
    // Both processes called the provider with key order-1:0; the second got the first charge back.
    const [firstId] = ranIds(killed, 'charge_card');
    expect(firstId).toMatch(/^ch_/);
    expect(ranIds(restarted, 'charge_card')).toEqual([firstId]);
    expect(here.ledger?.charges.map((c) => [c.id, c.idempotencyKey])).toEqual([[firstId, 'order-1:0']]);
    // The same crash on chapter 4's engine, which sends no key: a second charge.
    expect(before.verdict, before.detail).toBe('charged-twice');
  });

  it('two processes run the same workflow: every effect happens exactly once', async () => {
    const [here, before] = await Promise.all([
      runScenario(chapter, 'two-executors-one-workflow', { adminUrl }),
      runScenario('04-transactions', 'two-executors-one-workflow', { adminUrl }),
    ]);
    expect(here.verdict, here.detail).toBe('exactly-once');
    // A sent the email and froze before recording it; B sent it again, under the same key,
    // and the mailbox answered with A's message.
    const [a, b] = here.runs.map((run) => run.attempts[0]);
    const [emailId] = ranIds(a, 'send_email');
    expect(emailId).toMatch(/^msg_/);
    expect(ranIds(b, 'send_email')).toEqual([emailId]);
    expect(here.ledger?.emails.map((e) => [e.id, e.idempotencyKey])).toEqual([[emailId, 'order-1:2']]);
    // Chapter 4: the stock was safe (one transaction), but both processes sent the email.
    expect(before.verdict, before.detail).toBe('emailed-twice');
  });

  it('crash after the email, before its record: one email, the same one', async () => {
    await withWorld('ch05_email', async (world) => {
      const run = await runUntilDone({ script: main, args: ['start', 'order-1'], env: { ...world.env, ...noColourEnv }, faults: ['after-effect:send_email'], timeoutMs: 30_000 });
      const [killed, restarted] = run.attempts;
      expect(killed?.crashedAt).toBe('after-effect:send_email@1');
      expect(run.finished, run.error).toBe(true);
      const [emailId] = ranIds(killed, 'send_email');
      expect(ranIds(restarted, 'send_email')).toEqual([emailId]);
      const ledger = await world.ledger();
      expect(ledger.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      expect(ledger.emails.map((e) => [e.id, e.idempotencyKey])).toEqual([[emailId, 'order-1:2']]);
    });
  });

  it('an order id started again in a new process is the same run; with another amount it is refused', async () => {
    await withWorld('ch05_same_id', async (world) => {
      const start = (...args: string[]) => startChild({ script: main, args: ['start', 'order-1', ...args], env: { ...world.env, ...noColourEnv }, timeoutMs: 30_000 }).done;
      const first = await start();
      const second = await start();
      expect(first.exitCode, first.stderr).toBe(0);
      expect(second.exitCode, second.stderr).toBe(0);
      // The same receipt (as JSON: jsonb keeps keys in its own order, so the recorded one may list them differently).
      const receipt = (a: Attempt) => JSON.parse(/workflow order-1 completed: (.*)/.exec(a.stdout)?.[1] ?? 'null') as unknown;
      expect(receipt(first)).toMatchObject({ chargeId: expect.stringMatching(/^ch_/) });
      expect(receipt(second)).toEqual(receipt(first));
      expect(second.stdout).toContain('workflow order-1 is already in the log: this start is the same run, not a new one');
      expect(second.stdout).not.toContain('▶ ran');

      const other = await start('--amount', '9900');
      expect(other.exitCode).toBe(1);
      expect(other.stderr).toContain(
        'WorkflowIdConflictError: workflow id order-1 is already in the log for another run: its input differs in amountCents (the log has 4200, this call passed 9900)',
      );
      expect((await world.ledger()).byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
    });
  });
});

describe('still broken in chapter 5', () => {
  it('two processes recovering at once both execute the same workflow: keys save the effects, but the work runs twice', async () => {
    await withWorld('ch05_two_recovers', async (world) => {
      const env = { ...world.env, ...noColourEnv };
      // order-1 is in the log, unfinished: its first process died before doing anything.
      const first = await startChild({ script: main, args: ['start', 'order-1'], env, fault: 'before-step:charge_card', timeoutMs: 30_000 }).done;
      expect(first.crashedAt).toBe('before-step:charge_card@1');

      // Two processes start up and recover. A charges, then stalls before recording the charge
      // (a pause point: a GC pause, a slow disk, a network hiccup). B cannot tell a slow
      // process from a dead one: it finds order-1 unfinished and runs it, from the top.
      const a = startChild({ script: main, args: ['recover'], env: { ...env, PAUSE_AT: 'after-effect:charge_card' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      const b = await startChild({ script: main, args: ['recover'], env, timeoutMs: 30_000 }).done;
      a.signal('SIGCONT');
      const aDone = await a.done;
      expect(aDone.exitCode, aDone.stderr).toBe(0);
      expect(b.exitCode, b.stderr).toBe(0);

      // The work ran twice: both processes ran charge_card's code and called the provider...
      const [chargeA] = ranIds(aDone, 'charge_card');
      expect(chargeA).toMatch(/^ch_/);
      expect(ranIds(b, 'charge_card')).toEqual([chargeA]); // ...which answered B with A's charge.
      // A found out only when the primary key refused its record.
      expect(printed(aDone)).toContain('step #0 charge_card was recorded by another process first');
      // The effects did not: one charge, one stock decrement, one email.
      const ledger = await world.ledger();
      expect(ledger.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
      expect(ledger.charges.map((c) => c.idempotencyKey)).toEqual(['order-1:0']);
    });
  });
});
