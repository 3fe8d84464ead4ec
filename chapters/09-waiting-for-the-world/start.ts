/**
 * Starting a workflow, and getting it to a worker: `start()` and dispatch.
 *
 * Chapter 6's start() wrote the workflow, runnable, and then told the workers:
 * this process's in memory, the others with a NOTIFY sent 5 ms later. The
 * worker then claimed it (a second commit), loaded its empty log, and ran it:
 * p50 4.28 ms from start() to the first step in the same process, 11.08 ms
 * in another (measured when this changed; `npm run bench` measures both
 * chapters now). Here:
 *
 *   a worker of this process has a free slot   the INSERT writes the workflow
 *       already CLAIMED for it (fencing token 1, a lease) and hands it over in
 *       memory: no claim, no NOTIFY, one commit (p50 2.19 ms);
 *   otherwise                                  the INSERT writes it runnable,
 *       and the first start of each 5 ms window carries the NOTIFY in that
 *       same INSERT; the starts after it in the window share one NOTIFY at its
 *       end (p50 3.5–4.5 ms to a worker in another process).
 *
 * A workflow claimed in its INSERT is a claim like any other: if this process
 * dies right after, the lease runs out and any worker takes it over.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { checkWorkflowId, WorkflowIdConflictError } from './errors.ts';
import { decodeFromLog } from './json.ts';
import { explainMissingSchema } from './migrate.ts';
import { admitWorkflow, notifyWorkers, type Admission, type Claim } from './queries.ts';
import type { Results } from './results.ts';
import type { Engine, InputOf, OutputOf, RunHandle, StartOptions, Workflow, Workflows } from './types.ts';

/**
 * A worker as start() in its own process sees it.
 * @internal
 */
export interface LocalWorker {
  /** Its lease_owner name. */
  name: string;
  leaseMs: number;
  /** The workflows it has code for: a send hands over only those (events.ts). */
  names: string[];
  /**
   * Hold a slot for a workflow being started here (or woken by a send here,
   * `for: 'send'`); false when it has none free (or is stopping). A start
   * that finds it full has it claim as soon as a slot frees; a send wakes
   * the workers itself when it woke something.
   */
  reserve(purpose?: 'start' | 'send'): boolean;
  /** start() inserted the workflow already claimed for this worker (token 1), or a send claimed it: run it in the reserved slot. */
  take(claim: Claim, sentAt: number): void;
  /** Nothing to take (the id was in the log already, the send woke nothing, the statement failed): the slot is free again. */
  unreserve(): void;
  /** Work was started here that no worker of this process took: claim when a slot frees up. */
  wake(): void;
}

/** What start() needs from the engine (engine.ts). */
export interface StartParts {
  db: pg.Pool;
  /** The code registered under a name, or an UnknownWorkflowError. */
  lookUp(name: string, workflowId: string): Workflow<unknown, unknown>;
  /** The value as the log records it; or a refusal of what JSON cannot carry, or what is too large to record. */
  toRecordable(value: unknown, where: string): unknown;
  results: Results;
  /** This process's running workers. */
  localWorkers: Set<LocalWorker>;
  /** This process's NOTIFY payload: its own workers ignore the NOTIFYs it sent (they were woken in memory). */
  processTag: string;
  /** The engine's default StartOptions.maxAttempts. */
  maxAttempts: number;
}

/** The longest workflow timeout: about a hundred years, far inside what a timestamp holds. */
const MAX_TIMEOUT_MS = 100 * 365.25 * 24 * 3600 * 1000;

/** How long one NOTIFY covers: the starts of a 5 ms window share it. */
const NOTIFY_WINDOW_MS = 5;

export function createStart<W extends Workflows>({ db, lookUp, toRecordable, results, localWorkers, processTag, maxAttempts: defaultMaxAttempts }: StartParts): Engine<W>['start'] {
  /** When the last NOTIFY went out (performance.now()), and whether one is due at the end of its window. */
  let lastNotifyAt = -Infinity;
  let trailingNotify = false;

  /** See {@link Engine.start}. */
  async function start<N extends keyof W & string>(name: N, input: InputOf<W[N]>, options: StartOptions = {}): Promise<RunHandle<OutputOf<W[N]>>> {
    const id = options.id ?? randomUUID();
    checkWorkflowId(id);
    lookUp(name, id); // a typo in the name fails here, before it reaches the log
    const maxAttempts = options.maxAttempts ?? defaultMaxAttempts;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a whole number ≥ 1, got ${maxAttempts}`);
    const { timeoutMs } = options;
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
      throw new RangeError(`timeoutMs must be a finite number of milliseconds > 0 (at most ${MAX_TIMEOUT_MS}, ~100 years), got ${String(timeoutMs)}`);
    }
    const recordable = toRecordable(input, `the input of workflow ${id}`);
    // A worker of this process with a free slot? Then the INSERT claims the
    // workflow for it (token 1, a lease), and it runs here at once: no claim,
    // no NOTIFY, one commit fewer — the dispatch DBOS does by running a
    // workflow in the process that starts it. If this process dies now, the
    // lease runs out and any worker takes the workflow over, as after any claim.
    const local = [...localWorkers].find((worker) => worker.reserve());
    // Otherwise other processes' workers must hear of it: see wakeWorkers.
    const notify = local ? false : leadingNotify();
    const sentAt = performance.now();
    let admission: Admission;
    try {
      admission = await admitWorkflow(db, { id, name, input: recordable, maxAttempts, timeoutMs }, {
        claimFor: local && { worker: local.name, leaseMs: local.leaseMs },
        notify: notify ? processTag : undefined,
      });
    } catch (thrown) {
      local?.unreserve();
      throw explainMissingSchema(thrown);
    }
    const { created, row, sameName, sameInput, differentFields } = admission;
    if (local && created) {
      results.startedHere(id);
      local.take({ id, name, input, fencingToken: row.fencingToken, attempts: row.attempts, maxAttempts: row.maxAttempts, deadlineInMs: row.deadlineInMs }, sentAt);
    } else {
      local?.unreserve();
      if (created) wakeWorkers(notify);
    }
    if (!sameName || !sameInput) {
      const differs = [...(sameName ? [] : ['name' as const]), ...(sameInput ? [] : ['input' as const])];
      throw new WorkflowIdConflictError(id, differs, { name: row.name, input: decodeFromLog(row.input) }, { name, input }, sameInput ? null : differentFields);
    }
    return { id, created, result: (resultOptions) => results.result(id, resultOptions) as Promise<OutputOf<W[N]>> };
  }

  /**
   * Should this start's INSERT carry the NOTIFY itself? Yes for the first
   * start of a 5 ms window: the workers elsewhere hear of it the moment it
   * commits, with no second statement. Not for every start: a transaction
   * that NOTIFYs takes a database-wide lock at COMMIT, so NOTIFY in every
   * start would queue all starts behind one another (graphile-worker's and
   * Oban's lesson). At most one per window pays that, whatever the start rate.
   */
  function leadingNotify(): boolean {
    if (trailingNotify || performance.now() - lastNotifyAt < NOTIFY_WINDOW_MS) return false;
    lastNotifyAt = performance.now();
    return true;
  }

  /**
   * A workflow was started here and no local worker had a slot for it: tell
   * this process's workers (they claim when a slot frees up), and — unless
   * its INSERT carried a NOTIFY — the other processes', with one NOTIFY at the
   * end of the window for everything started in it: a burst of 1,000 starts
   * costs a few NOTIFYs, not 1,000. Fire and forget: a lost one only costs a
   * poll interval.
   */
  function wakeWorkers(notified: boolean): void {
    for (const worker of localWorkers) worker.wake();
    if (notified || trailingNotify) return;
    trailingNotify = true;
    setTimeout(() => {
      trailingNotify = false;
      lastNotifyAt = performance.now();
      notifyWorkers(db, processTag).catch(() => {});
    }, Math.max(0, NOTIFY_WINDOW_MS - (performance.now() - lastNotifyAt))).unref();
  }

  return start;
}
