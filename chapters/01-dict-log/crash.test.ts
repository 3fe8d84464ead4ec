import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { runScenario } from '../../shared/scenarios.ts';

const adminUrl = inject('adminDatabaseUrl');

describe('chapter 1 fixes', () => {
  it('a step fails once and is retried in the same process: charged exactly once', async () => {
    const here = await runScenario('01-dict-log', 'retry-after-error', { adminUrl });
    expect(here.verdict).toBe('exactly-once');
    // The same scenario on chapter 0's engine: the retry charged the card again.
    const before = await runScenario('00-naive', 'retry-after-error', { adminUrl });
    expect(before.verdict).toBe('charged-twice');
  });
});

describe('still broken in chapter 1', () => {
  it('crash after the charge is recorded: the Map dies with the process, charged twice', async () => {
    const outcome = await runScenario('01-dict-log', 'crash-after-charge-recorded', { adminUrl });
    expect(outcome.runs[0]?.attempts[0]?.crashedAt).toBe('after-record:charge_card@1');
    expect(outcome.verdict).toBe('charged-twice');
  });
});
