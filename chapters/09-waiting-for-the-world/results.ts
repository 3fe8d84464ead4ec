/**
 * Waiting for results: `result(id)` for a workflow that runs on whichever
 * worker, in whichever process.
 *
 * All of a process's waiters share one query every `resultPollMs`, however
 * many there are; a run that ends in this process answers its waiters at
 * once, without the query. New here: a workflow started in this process and
 * handed to a local worker (start.ts) will be answered that way, so its
 * waiter does not ask the database at once but only after a poll interval —
 * one round trip fewer for every start → result of a local run. The first
 * query is still immediate for everything else: a workflow finished long ago,
 * or elsewhere, must not wait a poll interval for nothing.
 */
import type pg from 'pg';
import { checkWorkflowId, EngineError, toError, WorkflowFailedError, WorkflowCancelledError } from './errors.ts';
import { decodeFromLog } from './json.ts';
import { explainMissingSchema, SchemaMissingError } from './migrate.ts';
import { workflowOutcomes, type WorkflowStatus } from './queries.ts';
import type { ResultOptions } from './types.ts';

/** How a workflow ended, as its waiters are told: status, output, error. */
export type Finished = { status: WorkflowStatus; output: unknown; error: string | null };

/** The results of one engine: what start.ts, run.ts and the caller use. */
export interface Results {
  /** See {@link Engine.result}. */
  result(id: string, options?: ResultOptions): Promise<unknown>;
  /** A run in this process recorded its end (or could not ask): answer whoever waits for `id`. */
  settleWaiters(id: string, outcome: Finished | Error): void;
  /** start() handed `id` to a worker of this process: its end will come through settleWaiters. */
  startedHere(id: string): void;
}

export function createResults(db: pg.Pool, resultPollMs: number): Results {
  const waiting = new Map<string, Set<(finished: Finished | Error) => void>>();
  let polling = false;

  /**
   * Workflows started here and handed to a local worker, with when
   * (performance.now()). Their end settles their waiters in-process, so
   * result() need not ask the database at once: it waits a poll interval
   * first (a round trip saved per start → result). Older entries are stale.
   */
  const startedHere = new Map<string, number>();

  function startedHereRecently(id: string): boolean {
    const at = startedHere.get(id);
    return at !== undefined && performance.now() - at < resultPollMs;
  }

  async function result(id: string, options: ResultOptions = {}): Promise<unknown> {
    const { signal } = options;
    signal?.throwIfAborted();
    checkWorkflowId(id); // no such id can be in the log, and PostgreSQL would refuse a NUL in the query
    const finished = await new Promise<Finished>((resolve, reject) => {
      let listeners = waiting.get(id);
      if (!listeners) waiting.set(id, (listeners = new Set()));
      const onAbort = () => settle(signal?.reason);
      const settle = (outcome: Finished | Error) => {
        listeners.delete(settle);
        if (listeners.size === 0 && waiting.get(id) === listeners) waiting.delete(id);
        signal?.removeEventListener('abort', onAbort);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      listeners.add(settle);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (!polling) void pollResults();
    });
    if (finished.status === 'cancelled') throw new WorkflowCancelledError(id, finished.error);
    if (finished.status === 'failed') {
      throw new WorkflowFailedError(`workflow ${id} failed: ${finished.error}`, 'Its record stays in the log; start it under a new id to run it again.');
    }
    return finished.output;
  }

  function settleWaiters(id: string, outcome: Finished | Error): void {
    startedHere.delete(id);
    for (const settle of [...(waiting.get(id) ?? [])]) settle(outcome);
  }

  /** Forget starts older than a poll interval (the map is in insertion order: oldest first). */
  function pruneStartedHere(): void {
    const now = performance.now();
    for (const [id, at] of startedHere) {
      if (now - at < resultPollMs) break;
      startedHere.delete(id);
    }
  }

  async function pollResults(): Promise<void> {
    polling = true;
    try {
      // Ask at once — the workflow may have finished long ago, elsewhere —
      // unless every waiter's workflow is about to run here.
      let first = [...waiting.keys()].some((id) => !startedHereRecently(id));
      while (waiting.size > 0) {
        if (!first) await new Promise((resolve) => setTimeout(resolve, resultPollMs));
        first = false;
        pruneStartedHere();
        if (waiting.size === 0) break; // all answered in-process while we slept
        const ids = [...waiting.keys()];
        let rows;
        try {
          rows = await workflowOutcomes(db, ids);
        } catch (thrown) {
          const missing = explainMissingSchema(thrown);
          const error =
            missing instanceof SchemaMissingError
              ? missing
              : new EngineError(`could not read the results of ${ids.length} workflow(s): ${toError(thrown).message}`, 'Is the database reachable? Ask for the result again.', { cause: thrown });
          for (const id of ids) settleWaiters(id, error);
          return;
        }
        const found = new Set(rows.map((row) => row.id));
        for (const row of rows) if (row.status !== 'running') settleWaiters(row.id, { ...row, output: decodeFromLog(row.output) });
        for (const id of ids) {
          if (!found.has(id)) settleWaiters(id, new EngineError(`workflow ${id} is not in the log`, 'Start it first: start(name, input, { id }).'));
        }
      }
    } finally {
      polling = false;
    }
  }

  return {
    result,
    settleWaiters,
    startedHere: (id) => void startedHere.set(id, performance.now()),
  };
}
