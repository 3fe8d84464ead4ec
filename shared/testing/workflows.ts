/** Workflows for engine tests, written against what every chapter's context has (chapters 3 on). */

/** The part of a chapter's workflow context these workflows use: its id, and steps. */
export interface StepContext {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * A three-step workflow (a, b, c) that counts how often each step's code really
 * runs: `runs` gets 'a', 'b', 'c' as they run ('wf-1:a'… with `withWorkflowId`,
 * for tests that run several workflows). Input `{ n }` gives `result ${(n + 1) * 10}`.
 */
export function countedWorkflow({ withWorkflowId = false } = {}) {
  const runs: string[] = [];
  const ran = (ctx: StepContext, step: string) => runs.push(withWorkflowId ? `${ctx.workflowId}:${step}` : step);
  const workflow = async (ctx: StepContext, { n }: { n: number; note?: string }): Promise<string> => {
    const a = await ctx.step('a', async () => (ran(ctx, 'a'), n + 1));
    const b = await ctx.step('b', async () => (ran(ctx, 'b'), a * 10));
    return ctx.step('c', async () => (ran(ctx, 'c'), `result ${b}`));
  };
  return { runs, workflow };
}
