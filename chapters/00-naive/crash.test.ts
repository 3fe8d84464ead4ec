import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { runScenario } from '../../shared/scenarios.ts';

const adminUrl = inject('adminDatabaseUrl');

describe('chapter 0 without crashes', () => {
  it('a run that is never interrupted charges, reserves and emails exactly once', async () => {
    const outcome = await runScenario('00-naive', 'crash-after-charge-recorded', { adminUrl });
    // Chapter 0 records nothing, so this crash point never fires: an uninterrupted run.
    expect(outcome.verdict).toBe('not-applicable');
    expect(outcome.runs[0]?.crashes).toBe(0);
    expect(outcome.ledger?.byOrder('order-1')).toMatchObject({ charges: 1, stockDecrements: 1, emails: 1 });
  });
});

describe('still broken in chapter 0', () => {
  it('crash after the charge, restart: charged twice', async () => {
    const outcome = await runScenario('00-naive', 'crash-after-charge-before-record', { adminUrl });
    expect(outcome.runs[0]?.attempts[0]?.crashedAt).toBe('after-effect:charge_card@1');
    expect(outcome.verdict).toBe('charged-twice');
  });

  it('a step fails once and the workflow is retried: charged twice', async () => {
    const outcome = await runScenario('00-naive', 'retry-after-error', { adminUrl });
    expect(outcome.verdict).toBe('charged-twice');
  });
});
