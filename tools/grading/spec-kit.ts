/**
 * What the exercise specs (specs/*.spec.ts) use beyond vitest itself.
 *
 * `crashTest` is `it` for a test that kills real processes: under
 * `npm run grade -- --repeats N` it must pass N times in a row to pass at all,
 * so one lucky interleaving does not earn the points (MIT 6.5840's graders
 * run such tests many times for the same reason). Each repetition must set up
 * its own world — a fresh schema, a fresh folder — which every crash test here does.
 */
import { it } from 'vitest';
import { crashTestTimeoutMs, gradingRepeats } from './impl.ts';

export { childTimeoutMs, gradingDatabaseUrl, importImpl, implRoot, scratchSchema, type ScratchSchema } from './impl.ts';

/** A test with real crashes: repeated GRADE_REPEATS times, each repetition under the crash-test time limit. */
export function crashTest(name: string, body: () => Promise<void>): void {
  it(name, { repeats: gradingRepeats() - 1, timeout: crashTestTimeoutMs() }, body);
}

/** How each run on a worker ended, in order: pass `onRunEnd` to the worker (any chapter's RunEndEvent). */
export function runLog<E extends { workflowId: string; outcome: string }>() {
  const events: E[] = [];
  return {
    events,
    onRunEnd: (event: E) => void events.push(event),
    /** The outcomes of `id`'s runs, in order. */
    outcomes: (id: string) => events.filter((e) => e.workflowId === id).map((e) => e.outcome),
  };
}
