/**
 * Chapter 1 — a log in a Map.
 *
 * The failure it fixes: in chapter 0 a retry after an error ran the whole
 * workflow again, so a failed email charged the card a second time.
 *
 *   before:  retry = run every step again
 *   after:   each step's result goes into a log *before* we move on;
 *            a retry replays the workflow, and a step already in the log
 *            returns its recorded result instead of running again
 *
 * That is the whole idea of durable execution. What this chapter gets wrong
 * is *where* the log lives: in this process's memory. Kill the process and
 * the log dies with it (chapter 2 moves it to a file).
 */
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { toError } from '../../shared/errors.ts';
import { trace } from '../../shared/narrate.ts';

export interface Context {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/** The log: workflow id → (step name → result). It lives exactly as long as this process. */
const log = new Map<string, Map<string, unknown>>();

function stepsOf(workflowId: string): Map<string, unknown> {
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
      // 1. Already done? Then its result is in the log: return it, run nothing.
      if (steps.has(name)) {
        const recorded = steps.get(name) as T;
        trace.replayed(name, recorded);
        return recorded;
      }
      // 2. Not done: run it for real.
      crashPoint(`before-step:${name}`);
      const result = await fn();
      trace.ran(name, result);
      crashPoint(`after-effect:${name}`);
      // 3. Record the result before moving on to the next step.
      steps.set(name, result);
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
      if (attempt >= attempts) throw error;
      trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
    }
  }
}

// The whole path:  run(workflow) → step: in the log? replay : run, record → … → done.
// Retry after an error: replays. Crash: the Map is gone, and we start over.
