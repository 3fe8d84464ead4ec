/**
 * Exercise 1 (reference answer) — a step that failed for good is a result too.
 *
 * Chapter 1's engine, plus one idea: when a step fails with a
 * `PermanentError` (a declined card: trying again will not help), that
 * failure goes into the log like a result. On replay the step throws the
 * same failure again instead of running, so the workflow takes the same path
 * it took the first time — even if the step would succeed now.
 *
 *   chapter 1:  log = step name → result;  a failed step is not in the log,
 *               so a replay runs it again (and it may now succeed: another path)
 *   here:       log = step name → { ok: true, value } | { ok: false, error }
 *               a permanent failure is recorded, and replays as the same error
 *
 * Ordinary errors (the mail service is down) are still not recorded: the
 * in-process retry replays the workflow and the step runs again, as in
 * chapter 1. A permanent failure the workflow does not catch ends it at once.
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
        if (!recorded.ok) {
          // A new error built from the record, as a file or a table would have to.
          const error = new PermanentError(recorded.error.message);
          trace.failed(name, error);
          throw error;
        }
        trace.replayed(name, recorded.value);
        return recorded.value as T;
      }
      // 2. Not done: run it for real.
      crashPoint(`before-step:${name}`);
      let result: T;
      try {
        result = await fn();
      } catch (thrown) {
        const error = toError(thrown);
        // A permanent failure is this step's outcome: record it before we go on,
        // exactly as we record a result. Anything else is bad luck, left for a retry.
        if (error instanceof PermanentError) {
          trace.failed(name, error);
          steps.set(name, { ok: false, error: { message: error.message } });
          crashPoint(`after-record:${name}`);
        }
        throw error;
      }
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
 * log, so only the step that failed (and those after it) run again. A
 * permanent failure would only replay as the same failure: it is not retried.
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
      if (error instanceof PermanentError || attempt >= attempts) throw error;
      trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
    }
  }
}
