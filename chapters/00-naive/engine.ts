/**
 * Chapter 0 — the naive version: no log at all.
 *
 * The failure it shows: a workflow is just a function. If the process dies
 * after the card was charged, the only thing we can do on restart is run the
 * function again from the top — and the customer is charged twice.
 *
 *   before:  (nothing — this is where we start)
 *   after:   run(workflow) = call it; on error, call it again
 *
 * We still wrap each step in `step(name, fn)`. It does nothing yet except mark
 * the places where later chapters will remember results — and where the
 * crash harness can kill us.
 */
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { toError } from '../../shared/errors.ts';
import { trace } from '../../shared/narrate.ts';

/** What a workflow sees: for now, only `step`. */
export interface Context {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/** A step is just a call. Nothing is written down anywhere. */
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  crashPoint(`before-step:${name}`);
  const result = await fn();
  trace.ran(name, result);
  // The effect has happened (the card is charged) and nobody wrote that down.
  crashPoint(`after-effect:${name}`);
  return result;
}

/**
 * Run a workflow. If it throws, run it again from the top — the way a job
 * queue retries a failed job. Every retry repeats every step.
 */
export async function runWorkflow<Input, Output>(
  workflowId: string,
  workflow: Workflow<Input, Output>,
  input: Input,
  { attempts = 3 } = {},
): Promise<Output> {
  const ctx: Context = { workflowId, step };
  for (let attempt = 1; ; attempt++) {
    try {
      return await workflow(ctx, input);
    } catch (thrown) {
      const error = toError(thrown);
      if (attempt >= attempts) throw error;
      trace.info(`attempt ${attempt} failed (${error.message}); running the workflow again from the top`);
    }
  }
}

// The whole path:  run(workflow) → step → step → step → done.
// Crash anywhere, and the restart starts over at the first step.
