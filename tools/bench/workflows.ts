/**
 * The workflows the benchmark runs on the production chapters' engines —
 * shared by the benchmark process and its worker processes (worker.ts), which
 * must register the same code under the same names.
 *
 * Typed against the little of a workflow's context they use, not against one
 * chapter: chapters 6 and 7 both run them (chapter.ts checks that they fit).
 */

/** What these workflows use of a chapter's `Context`. */
export interface StepContext {
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type BenchWorkflow = (ctx: StepContext) => Promise<unknown>;

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A workflow of `n` recorded steps that do nothing. */
function noSteps(n: number): BenchWorkflow {
  return async (ctx) => {
    for (let i = 0; i < n; i++) await ctx.step(`s${i}`, async () => i);
    return n;
  };
}

/** Steps in the long history that the resume measurement writes with SQL (see production.ts). */
export const LONG_STEPS = 10_000;

export const benchWorkflows = (role: 'worker' | 'victim' = 'worker') =>
  ({
    noop0: noSteps(0),
    noop3: noSteps(3),
    noop20: noSteps(20),
    /** Dispatch: the first step records when it ran (wall clock); the output is that time. */
    stamp: async (ctx) => ctx.step('stamp', async () => wallMs()),
    /**
     * Takeover: in a "victim" process the step never returns (the process is
     * killed -9 while it holds the workflow); anywhere else it records when it ran.
     */
    hold: async (ctx) =>
      ctx.step('hold', async () => {
        if (role === 'victim') await new Promise(() => {});
        return wallMs();
      }),
    /** History growth: LONG_STEPS steps, all of them already in the log when it is claimed. */
    long: noSteps(LONG_STEPS),
  }) satisfies Record<string, BenchWorkflow>;

export type BenchWorkflows = ReturnType<typeof benchWorkflows>;
