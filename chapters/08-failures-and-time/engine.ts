/**
 * Chapter 7 — the fast path: chapter 6's engine, with every durable fact
 * written in as few statements as it takes.
 *
 * The failure it fixes: cost. Chapter 6 is correct — one live run per
 * workflow, and a fence in every write — but it wraps each write in more
 * statements than the write needs. A workflow of three plain steps took 15
 * round trips and 6 commits, plus a NOTIFY; measured by `npm run bench` when
 * this chapter's changes were made: 17.6 round trips and 6.9 commits, 155
 * such workflows a second one after another, 426 with eight at once, a step
 * 2.26× a bare INSERT's commit, and 4.28 ms from start() to the first step.
 *
 *   before:  start()     INSERT; then NOTIFY, 5 ms later                      2 round trips, 2 commits
 *            the claim   UPDATE … FOR UPDATE SKIP LOCKED                      1, 1
 *            the log     SELECT … FROM steps                                  1
 *            each step   BEGIN + SET LOCAL; fenced INSERT; COMMIT             3, 1
 *            the end     BEGIN + SET LOCAL; fenced UPDATE; COMMIT             3, 1
 *   after:   start()     INSERT, already claimed for this process's worker    1, 1
 *            each step   the fenced INSERT, alone                             1, 1
 *            the end     the fenced UPDATE, alone                             1, 1
 *
 * Five round trips and five commits: one statement per durable fact (the
 * workflow, each step, the end), 273 workflows a second one after another, a
 * step 1.11× a bare INSERT's commit. With many runs at once, their records
 * share one statement (batcher.ts) and claims take two or more (worker.ts):
 * 1.6 commits a workflow at concurrency 8, 857–934 workflows a second.
 *
 * Nothing chapter 6 guarantees changes: the same claim, the same lease on the
 * database clock, the same fence (stillHeld() in queries.ts) in every write,
 * the same takeover. A statement sent alone is a transaction of its own, so a
 * fenced write alone is as atomic as it was between BEGIN and COMMIT; what
 * disappears is the `during-record` crash window of a plain step and of the
 * completion, which had nothing in it but a write not yet committed.
 *
 * The engine, by role:
 *   engine.ts    createEngine: options, the registry of workflows, the parts wired together
 *   types.ts     the public types: Context, StepInfo, EngineOptions, Engine, …
 *   errors.ts    the errors a caller can meet
 *   start.ts     start(), and dispatch: to a local worker in the INSERT, or by NOTIFY
 *   results.ts   result(): every waiter of a process shares one query
 *   run.ts       the run of one claimed workflow, top to bottom: replay, steps, fences
 *   batcher.ts   write-combining: runs that write at once share a statement
 *   worker.ts claims and renews; lease.ts is a lease as a worker sees it;
 *   queries.ts has all the SQL; migrate.ts the schema (003: first claims read no log);
 *   log.ts, tracing.ts and json.ts: what it says (to the application's logger),
 *   its OpenTelemetry spans, and what the log can record — the package needs
 *   nothing from the course; cli.ts is its operator command line, `durable`.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { checkWorkflowId, DEFAULT_MAX_RECORD_BYTES, RecordTooLargeError, UnknownWorkflowError } from './errors.ts';
import { decodeFromLog, encodeForLog } from './json.ts';
import type { Lease } from './lease.ts';
import { createSay, type Say } from './log.ts';
import { checkPoolConnectionString, explainMissingSchema } from './migrate.ts';
import { getWorkflow, loadLog, waitingOf, workflowStatuses, type Claim, type Log, type WorkflowRow, type WorkflowStatus } from './queries.ts';
import { createResults } from './results.ts';
import { createRunner, DEFAULT_RETRY, resolveRetryPolicy, type RunOutcome } from './run.ts';
import { createStart, type LocalWorker } from './start.ts';
import type { Engine, EngineOptions, Workflow, WorkflowInfo, Workflows } from './types.ts';
import { checkSchedules, tickId, type Schedule } from './schedules.ts';
import { createWorker } from './worker.ts';

/**
 * What a worker needs from the engine: the database, the names it has code for (it defers the rest),
 * how to run a claimed workflow, and this process's starts, which hand it work directly.
 * @internal
 */
export interface EngineCore {
  db: pg.Pool;
  names: string[];
  execute(claim: Claim, lease: Lease): Promise<RunOutcome>;
  /** This process's running workers: start() hands new workflows straight to one with a free slot. */
  localWorkers: Set<LocalWorker>;
  /** This process's NOTIFY payload: a worker ignores the NOTIFYs its own process sent. */
  processTag: string;
  /** Where the worker's log entries go (log.ts). */
  say: Say;
  /** The engine's schedules, checked (schedules.ts). */
  schedules: Schedule[];
  /** Start the workflow of `schedule`'s tick — once: the tick is its id. */
  startTick(schedule: Schedule, tick: Date): Promise<void>;
}

/**
 * Create the engine: the registry of workflows, and everything done with them.
 *
 * ```ts
 * const engine = createEngine({ db, workflows: { signup: signupWorkflow } });
 * const worker = engine.createWorker({ concurrency: 8 });
 * await worker.start();
 * const run = await engine.start('signup', { userId }, { id: `signup:${userId}` });
 * const account = await run.result();
 * ```
 */
export function createEngine<W extends Workflows>({
  db,
  workflows,
  maxAttempts = 5,
  retry,
  resultPollMs = 100,
  stepTimeoutMs,
  maxRecordBytes = DEFAULT_MAX_RECORD_BYTES,
  log,
  crashPoint = () => {},
  schedules = {},
}: EngineOptions<W>): Engine<W> {
  if (stepTimeoutMs !== undefined && !(stepTimeoutMs > 0)) throw new RangeError(`stepTimeoutMs must be a positive number of milliseconds, got ${stepTimeoutMs}`);
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a whole number ≥ 1, got ${maxAttempts}`);
  // A policy that makes no sense fails here, not at the first step that fails.
  const retryPolicy = resolveRetryPolicy(retry, DEFAULT_RETRY);
  if (!(maxRecordBytes > 0)) throw new RangeError(`maxRecordBytes must be a positive number of bytes, got ${maxRecordBytes}`);

  // A pool made from a connection string that is not a PostgreSQL URL fails here, not at its first query.
  checkPoolConnectionString(db);

  /**
   * The value as the log records it (`undefined` as its tag, see encodeForLog
   * in json.ts) — or a refusal of what JSON cannot carry, or what is too
   * large to record: before anything is written.
   */
  function toRecordable(value: unknown, where: string): unknown {
    const encoded = encodeForLog(value, where);
    const bytes = Buffer.byteLength(JSON.stringify(encoded));
    if (bytes > maxRecordBytes) throw new RecordTooLargeError(where, bytes, maxRecordBytes);
    return encoded;
  }

  /** The code registered under `name`, or a clear error. */
  function lookUp(name: string, workflowId: string): Workflow<unknown, unknown> {
    // Object.hasOwn, not `workflows[name]`: a workflow named "toString" must not find Object.prototype.toString.
    const workflow = Object.hasOwn(workflows, name) ? workflows[name] : undefined;
    if (!workflow) {
      const known = Object.keys(workflows).join(', ') || '(none)';
      throw new UnknownWorkflowError(
        `workflow ${workflowId} is a "${name}" workflow, and this process has no workflow registered under that name.`,
        `Registered here: ${known}. Register it with createEngine({ workflows: { ${name}: … } }), or check the spelling.`,
      );
    }
    return workflow as Workflow<unknown, unknown>;
  }

  /** This process's running workers, and the tag its NOTIFYs carry. */
  const localWorkers = new Set<LocalWorker>();
  const processTag = randomUUID();

  const results = createResults(db, resultPollMs);
  const start = createStart<W>({ db, lookUp, toRecordable, results, localWorkers, processTag, maxAttempts });
  const say = createSay(log);
  const execute = createRunner({ db, retry: retryPolicy, stepTimeoutMs, lookUp, toRecordable, settleWaiters: results.settleWaiters, say, crashPoint });

  // ── looking at the log ─────────────────────────────────────────────────────

  async function status(ids: string[]): Promise<Record<string, WorkflowStatus | 'missing'>> {
    for (const id of ids) checkWorkflowId(id);
    const known = await workflowStatuses(db, ids).catch((thrown: unknown) => Promise.reject(explainMissingSchema(thrown)));
    return Object.fromEntries(ids.map((id) => [id, known.get(id) ?? 'missing']));
  }

  async function inspect(id: string): Promise<WorkflowInfo | undefined> {
    checkWorkflowId(id);
    const [row, log]: [WorkflowRow | undefined, Log] = await Promise.all([getWorkflow(db, id), loadLog(db, id)]).catch((thrown: unknown) =>
      Promise.reject(explainMissingSchema(thrown)),
    );
    if (!row) return undefined;
    const steps = log.steps.map(({ workflowId: _id, ...step }) => ({ ...step, output: decodeFromLog(step.output) }));
    return { ...row, input: decodeFromLog(row.input), output: decodeFromLog(row.output), waiting: waitingOf(row, log), steps, failures: log.failures };
  }

  const checkedSchedules = checkSchedules(schedules, Object.keys(workflows));
  async function startTick(schedule: Schedule, tick: Date): Promise<void> {
    const scheduledAt = tick.toISOString();
    await start(schedule.workflow as keyof W & string, schedule.input({ scheduledAt }) as never, { id: tickId(schedule.name, tick) });
  }

  const core: EngineCore = { db, names: Object.keys(workflows), execute, localWorkers, processTag, say, schedules: checkedSchedules, startTick };

  return {
    start,
    result: results.result,
    status,
    inspect,
    createWorker: (options = {}) => createWorker(core, options),
  };
}

// The whole path of one workflow:
//   start(name, input, { id })    INSERT … ON CONFLICT DO NOTHING                      1 round trip, 1 commit
//                                 — with a local worker free: inserted CLAIMED for it (token 1), runs at once
//                                 — otherwise runnable, and the window's first INSERT carries the NOTIFY
//   a worker's claim              WITH … FOR UPDATE SKIP LOCKED UPDATE … RETURNING     1 per batch (none after a local start)
//   load its steps                SELECT … FROM steps                                 1 (none on token 1: a first run)
//   each step:                    run it → the fenced INSERT, alone                   1, 1 commit
//                                 (or in one multi-row INSERT with other runs' records: batcher.ts)
//   each transaction step:        BEGIN; fence; the step's SQL; fenced INSERT; COMMIT 4 + its SQL, 1 commit
//   complete:                     the fenced UPDATE, alone                            1, 1 commit
//                                 (or in one multi-row UPDATE with other runs' completions)
//   heartbeats                    one UPDATE per worker every lease/3 to lease/2, all its leases at once
// So a 3-step workflow started where a worker has room costs 5 commits and 5
// round trips: start, three steps, completion — each a single statement, the
// smallest a durable step can be (npm run bench: a step ≈ 1.1 bare INSERT commits).
// Where more would have to come from, and why the course stops here:
//   - the last step's record and the completion in one statement: a step does
//     not know it is the last; holding its record back until the next durable
//     write would save a commit and break "recorded before the code moves on";
//   - a transaction step in fewer round trips (its fence folded into its
//     record): the fence must come FIRST, so no takeover can race its SQL.
// Crash anywhere: committed rows survive, uncommitted ones never existed.
// Freeze anywhere: after the lease, another worker takes over; the frozen run's
// next write is refused by its fence, and it stops.
