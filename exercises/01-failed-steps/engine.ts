/**
 * Exercise 1 — a step that failed for good is a result too.
 *
 * This is chapter 1's engine. It records what a step *returned*; a step that
 * *threw* leaves no trace, so a replay runs it again — and if it succeeds this
 * time, the workflow takes another path than the first time (the customer got
 * the "payment declined" email, and then was charged after all).
 *
 * Your job (README.md says more; `npm run hint 1` helps):
 *   - TODO 1: when a step fails with a PermanentError, record the failure in
 *             the log — as plain data, its message — and rethrow it;
 *   - TODO 2: when a replayed step finds a recorded failure, throw a new
 *             PermanentError with the recorded message instead of running it;
 *   - TODO 3: a PermanentError that escapes the workflow ends it: no retry.
 *
 * Check your work: `npm run exercise 1`.
 */
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { toError } from '../../shared/errors.ts';
import { trace } from '../../shared/narrate.ts';

export interface Context {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/**
 * A failure that retrying will not fix: a declined card, an unknown customer.
 * A step throws it to say "record this as my outcome".
 */
export class PermanentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

/**
 * What the log keeps for one step: its result, or how it failed. Plain data —
 * a message, not the Error object — because from chapter 2 on the log is a
 * file or a table, and an Error object does not survive JSON.
 */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: { message: string } };

/** The log: workflow id → (step name → outcome). It lives exactly as long as this process. */
const log = new Map<string, Map<string, Outcome>>();

function stepsOf(workflowId: string): Map<string, Outcome> {
  let steps = log.get(workflowId);
  if (!steps) {
    steps = new Map();
    log.set(workflowId, steps);
  }
  return steps;
}

function contextFor(workflowId: string): Context {
  const steps = stepsOf(workflowId);
  return {
    workflowId,
    async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
      // 1. Already done? Then its outcome is in the log: replay it, run nothing.
      const recorded = steps.get(name);
      if (recorded) {
        // TODO 2: a recorded failure (recorded.ok === false) must be thrown
        //         again as a new PermanentError, without running fn.
        const { value } = recorded as { ok: true; value: unknown };
        trace.replayed(name, value);
        return value as T;
      }
      // 2. Not done: run it for real.
      crashPoint(`before-step:${name}`);
      // TODO 1: if fn() throws a PermanentError, record { ok: false, … } for
      //         this step before the error leaves this function.
      const result = await fn();
      trace.ran(name, result);
      crashPoint(`after-effect:${name}`);
      // 3. Record the result before moving on to the next step.
      steps.set(name, { ok: true, value: result });
      crashPoint(`after-record:${name}`);
      return result;
    },
  };
}

/**
 * Run a workflow; if it throws, replay it. Finished steps come back from the
 * log, so only the step that failed (and those after it) run again.
 */
export async function runWorkflow<Input, Output>(
  workflowId: string,
  workflow: Workflow<Input, Output>,
  input: Input,
  { attempts = 3 } = {},
): Promise<Output> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await workflow(contextFor(workflowId), input);
    } catch (thrown) {
      const error = toError(thrown);
      // TODO 3: a PermanentError would only replay as the same failure: do not retry it.
      if (attempt >= attempts) throw error;
      trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
    }
  }
}
