/**
 * Chapter 9 — waiting for the world: chapter 8's engine, whose workflows can
 * wait for an event someone else sends.
 *
 * The failure it fixes: a workflow can wait for time, and for nothing else.
 * "Ship once the payment provider's webhook says the charge settled" could
 * only be a loop of sleeps polling for it, or a step that holds its worker
 * and its lease for as long as the webhook takes — and the well-known ways to
 * build the wait lose the event: sent before the workflow waits, it is
 * dropped (openworkflow's signals); sent while the workflow looks and finds
 * nothing, it lands between the look and the park, and wakes nobody.
 *
 *   before:  wait for a webhook      sleep and poll, or hold a slot; an early event is lost
 *   after:   ctx.waitForEvent(name)  an event is a row (once per key), kept until a wait takes it;
 *            engine.send(id, name)   the waiter parks (a release, as a sleep's) holding nothing;
 *                                    waiter and sender lock the workflow's row FIRST, then look —
 *                                    so the race that loses wake-ups cannot happen (queries.ts)
 *
 * Everything chapter 8 guarantees stays: the same fence (the wait's lock is
 * fenced: a zombie cannot take an event), the same release and wake-up on
 * the database clock, the same one statement per durable fact on the path of
 * a workflow that does not wait.
 *
 * Cancellation: engine.cancel(id) notes the request on the row (and on its
 * children's), wakes the workflow if it waits, and tells the worker holding
 * it (a NOTIFY, and every renewal's answer): the running step's signal
 * aborts, no further step starts outside ctx.nonCancellable (the saga's
 * compensation), and the run records `cancelled` however its code ends.
 *
 * Child workflows: ctx.startChild starts one (its id derived from the
 * parent's and the position), handle.result() waits for the event its end
 * sends the parent. Waits made together park the workflow once (run.ts).
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
 *   queries.ts has all the SQL; migrate.ts the schema (003: first claims read no log;
 *   004: attempts, failed attempts, sleeps, deadlines, schedules; 005: events);
 *   schedules.ts the cron; events.ts engine.send();
 *   log.ts, tracing.ts and json.ts: what it says (to the application's logger),
 *   its OpenTelemetry spans, and what the log can record — the package needs
 *   nothing from the course; cli.ts is its operator command line, `durable`.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { checkWorkflowId, DEFAULT_MAX_RECORD_BYTES, NoSuchWorkflowError, RecordTooLargeError, UnknownWorkflowError } from './errors.ts';
import { decodeFromLog, encodeForLog } from './json.ts';
import type { Lease } from './lease.ts';
import { createSay, type Say } from './log.ts';
import { checkPoolConnectionString, explainMissingSchema } from './migrate.ts';
import { getWorkflow, loadLog, requestCancel, waitingOf, workflowStatuses, type Claim, type Log, type WorkflowRow, type WorkflowStatus } from './queries.ts';
import { createResults } from './results.ts';
import { createRunner, DEFAULT_RETRY, resolveRetryPolicy, type RunOutcome } from './run.ts';
import { createSend } from './events.ts';
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
  const wakeLocal = () => {
    for (const worker of localWorkers) worker.wake();
  };
  const execute = createRunner({ db, retry: retryPolicy, stepTimeoutMs, lookUp, toRecordable, settleWaiters: results.settleWaiters, say, crashPoint, processTag, wakeLocal, maxAttempts });

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
    send: createSend({ db, toRecordable, localWorkers, processTag, crashPoint }),
    async cancel(id, { reason = 'cancelled' } = {}) {
      checkWorkflowId(id);
      if (typeof reason !== 'string' || reason.length > 10_000) throw new RangeError('a cancellation reason is a string of at most 10,000 characters');
      const found = await requestCancel(db, id, reason).catch((thrown: unknown) => Promise.reject(explainMissingSchema(thrown)));
      if (!found) throw new NoSuchWorkflowError(`workflow ${id} is not in the log: nothing to cancel`, 'Check the id.');
      if (found.outcome === 'requested') for (const worker of localWorkers) worker.wake();
      return found;
    },
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
// New in chapter 8, only when it happens:
//   a failed attempt, retried     the failure recorded + the workflow released: ONE fenced statement; the run ends
//   ctx.sleep(ms)                 the sleep recorded + the workflow released: ONE fenced statement; the run ends
//   after either                  a claim (when it is due: nextWakeUp sets an idle worker's alarm), the log
//                                 and failed attempts in one query, the replay, and on
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
