/**
 * Exercise 1's tests: a step that failed for good is recorded, and replays as
 * the same failure. In process — chapter 1's log lives in memory, so there is
 * no crash for it to survive; the retry loop is what replays the workflow.
 *
 * The import below names the exercise's starter so the type checker knows the
 * API; the grading config swaps it for the implementation under test (the
 * learner's exercises/, a submission, or the reference answer). Points:
 * exercises/01-failed-steps/points.json.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PermanentError, runWorkflow, type Context } from '../../../exercises/01-failed-steps/engine.ts';

/** The log is one Map per process: every test uses workflow ids of its own. */
const newId = (what: string) => `${what}-${randomBytes(3).toString('hex')}`;

beforeEach(() => {
  vi.spyOn(console, 'log').mockImplementation(() => {}); // the engine's ▶ ran / ↺ replayed lines
});
afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * The order workflow when cards can be declined: charge, and if the card is
 * declined, send an apology instead of the receipt. The card provider
 * declines the first charge and would accept a second one; the mail service
 * is down for the first `mailFailures` calls.
 */
function declinedOrder(runs: { charge: number; mail: number }, mailFailures = 1) {
  return async (ctx: Context): Promise<string> => {
    try {
      await ctx.step('charge_card', async () => {
        runs.charge++;
        if (runs.charge === 1) throw new PermanentError('card declined');
        return { id: `ch_${runs.charge}` };
      });
    } catch (error) {
      if (!(error instanceof PermanentError)) throw error;
      await ctx.step('send_apology', async () => {
        runs.mail++;
        if (runs.mail <= mailFailures) throw new Error('mail service unavailable');
        return { id: `msg_${runs.mail}` };
      });
      return `declined: ${error.message}`;
    }
    return 'charged';
  };
}

describe('a step that fails for good', () => {
  it('is recorded: when the workflow is retried, the step does not run again', async () => {
    const runs = { charge: 0, mail: 0 };
    await runWorkflow(newId('order'), declinedOrder(runs), null);
    expect(runs.charge).toBe(1);
  });

  it('replays as the same failure, so the retried workflow takes the same path as the first time', async () => {
    const runs = { charge: 0, mail: 0 };
    const outcome = await runWorkflow(newId('order'), declinedOrder(runs), null);
    // Not 'charged': the apology went out for a declined card, and the replay must agree with it.
    expect(outcome).toBe('declined: card declined');
    expect(runs.mail).toBe(2); // the apology failed once and was retried, as any ordinary error
  });

  it('replays as a new PermanentError rebuilt from the recorded message, not the object that was thrown', async () => {
    const thrown: unknown[] = [];
    let runs = 0;
    const original = new PermanentError('card declined');
    await runWorkflow(
      newId('order'),
      async (ctx) => {
        try {
          await ctx.step('charge_card', async () => {
            runs++;
            throw original;
          });
        } catch (error) {
          thrown.push(error);
        }
        // Fail once with an ordinary error, so the workflow is replayed.
        if (thrown.length === 1) throw new Error('something else went wrong');
        return 'done';
      },
      null,
    );
    expect(runs).toBe(1);
    expect(thrown).toHaveLength(2);
    const [first, replayed] = thrown;
    expect(first).toBe(original);
    expect(replayed).toBeInstanceOf(PermanentError);
    expect((replayed as Error).message).toBe('card declined');
    // A log in a file or a table (chapter 2 on) cannot hold the object itself: record plain data.
    expect(replayed).not.toBe(original);
  });

  it('ends the workflow at once when the workflow does not catch it: no retries', async () => {
    let attempts = 0;
    let runs = 0;
    const run = runWorkflow(
      newId('order'),
      async (ctx) => {
        attempts++;
        return ctx.step('charge_card', async () => {
          runs++;
          throw new PermanentError('card declined');
        });
      },
      null,
      { attempts: 3 },
    );
    await expect(run).rejects.toThrow(PermanentError);
    await expect(run).rejects.toThrow('card declined');
    expect(runs).toBe(1);
    expect(attempts).toBe(1); // a retry could only replay the same failure
  });
});

describe('what chapter 1 already did, and must still do', () => {
  it('an ordinary error is not recorded: the retry runs the step again, and its success is recorded', async () => {
    const runs = { a: 0, b: 0 };
    const output = await runWorkflow(
      newId('retry'),
      async (ctx) => {
        const a = await ctx.step('a', async () => ++runs.a);
        const b = await ctx.step('b', async () => {
          runs.b++;
          if (runs.b === 1) throw new Error('mail service unavailable');
          return runs.b;
        });
        return `${a}/${b}`;
      },
      null,
    );
    expect(output).toBe('1/2');
    expect(runs).toEqual({ a: 1, b: 2 });
  });

  it('a step that finished replays its recorded result instead of running again', async () => {
    const id = newId('replay');
    let runs = 0;
    const workflow = async (ctx: Context) => ctx.step('charge_card', async () => ({ id: `ch_${++runs}` }));
    expect(await runWorkflow(id, workflow, null)).toEqual({ id: 'ch_1' });
    expect(await runWorkflow(id, workflow, null)).toEqual({ id: 'ch_1' });
    expect(runs).toBe(1);
  });
});
