/**
 * The workflows the benchmark runs on the production chapters' engines —
 * shared by the benchmark process and its worker processes (worker.ts), which
 * must register the same code under the same names.
 *
 * Typed against the little of a workflow's context they use, not against one
 * chapter: chapters 6, 7 and 8 all run them (chapter.ts checks that they fit).
 * The workflows that sleep (timeWorkflows) need a chapter with ctx.sleep (8 on).
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

/** What a workflow that sleeps uses of a chapter's `Context` (chapter 8 on). */
export interface SleepContext extends StepContext {
  sleep(ms: number): Promise<void>;
}

/** The input of `nap`: how long it sleeps. */
export interface NapInput {
  ms: number;
}

/**
 * The workflows of the wakeup and sleeping suites, beside the others:
 *
 *   nap   sleeps `input.ms` (durably: the log's sleep entry records its end,
 *         `until`, on the database clock), then one step that returns the
 *         database's clock_timestamp() in epoch ms — when the step after the
 *         sleep ran, on the same clock as `until`, so no clock skew between
 *         this process and the server enters the wake-up's lateness.
 *
 * `dbClockMs` reads the database's clock; the engine's own pool will do.
 */
export const timeWorkflows = (dbClockMs: () => Promise<number>) => ({
  ...benchWorkflows(),
  nap: async (ctx: SleepContext, input: NapInput) => {
    await ctx.sleep(input.ms);
    return ctx.step('woke', dbClockMs);
  },
});

export type TimeWorkflows = ReturnType<typeof timeWorkflows>;
