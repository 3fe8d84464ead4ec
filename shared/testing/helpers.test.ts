/** The test helpers themselves: each one can fail, so the tests built on them can. */
import { describe, expect, it } from 'vitest';
import type { Attempt } from '../crash/runner.ts';
import { rejectionOf } from './errors.ts';
import { countMatches, printed, stepsRan, stepsReplayed, stripColour } from './output.ts';
import { until } from './waiting.ts';
import { countedWorkflow, type StepContext } from './workflows.ts';

const attempt = (stdout: string, stderr = '') => ({ stdout, stderr }) as Attempt;

describe('output', () => {
  it('printed() is stdout then stderr without colours; stepsRan/stepsReplayed count the engine lines', () => {
    const run = attempt('\x1b[32m▶ ran\x1b[39m a\n↺ replayed b\n▶ ran c\n', '\x1b[31merror\x1b[39m\n');
    expect(stripColour('\x1b[1;32mok\x1b[0m')).toBe('ok');
    expect(printed(run)).toBe('▶ ran a\n↺ replayed b\n▶ ran c\nerror\n');
    expect(printed(undefined)).toBe('');
    expect([stepsRan(run), stepsReplayed(run)]).toEqual([2, 1]);
    expect(countMatches('claimed order-1, claimed order-2', /claimed order-/)).toBe(2);
    expect(countMatches('nothing', /claimed/)).toBe(0);
  });
});

describe('errors and waiting', () => {
  it('rejectionOf() gives what a promise rejected with, and fails when it resolved', async () => {
    const error = new Error('boom');
    expect(await rejectionOf(Promise.reject(error))).toBe(error);
    await expect(rejectionOf(Promise.resolve('fine'))).rejects.toThrow('expected a rejection');
  });

  it('until() returns once its check is true, and times out naming what it waited for', async () => {
    let calls = 0;
    await until('the third call', () => ++calls === 3, { everyMs: 1 });
    expect(calls).toBe(3);
    await expect(until('never', () => false, { timeoutMs: 30, everyMs: 5 })).rejects.toThrow('timed out after 30 ms waiting for: never');
  });
});

describe('countedWorkflow', () => {
  it('counts the steps that run, not those a context replays; tags them with the workflow id when asked', async () => {
    const replaying = (recorded: Record<string, unknown>): StepContext => ({
      workflowId: 'wf-1',
      step: async <T>(name: string, fn: () => Promise<T>) => (name in recorded ? (recorded[name] as T) : fn()),
    });
    const plain = countedWorkflow();
    expect(await plain.workflow(replaying({}), { n: 1 })).toBe('result 20');
    expect(plain.runs).toEqual(['a', 'b', 'c']);
    const tagged = countedWorkflow({ withWorkflowId: true });
    expect(await tagged.workflow(replaying({ a: 2 }), { n: 1 })).toBe('result 20');
    expect(tagged.runs).toEqual(['wf-1:b', 'wf-1:c']);
  });
});
