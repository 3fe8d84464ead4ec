/**
 * Chapter 6 — leasing workers: one live run per workflow, and a stale one
 * cannot write.
 *
 * The failure it fixes: in chapter 5, two processes recovering at once both
 * ran the same workflow. Idempotency keys kept the charge and the email
 * single, but the work ran twice — every step's code, in both processes — and
 * code that is not idempotent (a call without a key, a provider that ignores
 * keys) did its effect twice. Nothing said who owned a workflow.
 *
 *   before:  start(…) runs the workflow in the caller's process; recover() runs
 *            every unfinished one — in every process that calls it
 *   after:   start(…) only writes the workflow into the log. Workers CLAIM
 *            runnable workflows (one query, FOR UPDATE SKIP LOCKED); a claim is a
 *            LEASE that runs out on the database clock, and a new FENCING TOKEN.
 *            The holder renews the lease while it works (heartbeats). Every write
 *            of its run — step record, transaction step, completion — checks in
 *            its own transaction that the token is still the workflow's and the
 *            lease has not expired, or writes nothing (LeaseLostError).
 *
 * A worker that dies stops renewing; its leases run out, and any other worker's
 * next claim takes those workflows over, replaying their logs. A worker that is
 * frozen (SIGSTOP, a long GC pause) past its lease and then wakes up is a
 * zombie: its token is stale, so every write it tries is refused, and its
 * business writes in a transaction step roll back with the refused record.
 *
 * This file is the run of one claimed workflow: replay, steps, fences.
 * worker.ts claims and renews; lease.ts is a lease as a worker sees it;
 * queries.ts has all the SQL; migrate.ts the schema.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { CourseError, DatabaseUnavailableError, toError } from '../../shared/errors.ts';
import { decodeFromLog, encodeForLog, UnserializableResultError } from '../../shared/json.ts';
import { trace } from '../../shared/narrate.ts';
import { Lease, LeaseLostError } from './lease.ts';
import { checkPoolConnectionString, explainMissingSchema, SchemaMissingError } from './migrate.ts';
import {
  admitWorkflow,
  completeWorkflow,
  explainLostLease,
  failWorkflow,
  fenceTransaction,
  workflowOutcomes,
  getWorkflow,
  inTransaction,
  isConnectionFailure,
  loadSteps,
  notifyWorkers,
  recordStep,
  workflowStatuses,
  type Claim,
  type Fence,
  type StepRow,
  type WorkflowRow,
  type WorkflowStatus,
} from './queries.ts';
import { createWorker, type Worker, type WorkerOptions } from './worker.ts';

export { LeaseLostError } from './lease.ts';

/**
 * What the engine tells a step's code about the step it is running. The same
 * values on every replay of that step: in another attempt, another process,
 * after any number of crashes — except `signal`, which belongs to this run.
 */
export interface StepInfo {
  /** The workflow this step belongs to. */
  workflowId: string;
  /** The step's position in the workflow: 0, 1, 2, … */
  seq: number;
  /** The name the workflow gave the step. */
  name: string;
  /**
   * `<workflowId>:<seq>`, e.g. `order-1:0` — see {@link stepKey}. Send it as
   * the `Idempotency-Key` of the step's call to the outside world.
   */
  idempotencyKey: string;
  /**
   * Aborted when this run loses its lease, or when the step overruns its
   * `timeoutMs` (the reason is then a {@link StepTimeoutError}). Pass it to
   * what the step waits on (`fetch(url, { signal })`) so a step that can no
   * longer be recorded stops at once instead of finishing for nothing.
   */
  signal: AbortSignal;
}

/** Options of one {@link Context.step}. */
export interface StepOptions {
  /**
   * Give up on the step after this many milliseconds (default: the engine's
   * `stepTimeoutMs`; none if neither is set). Its `signal` aborts and the step
   * fails with a {@link StepTimeoutError} — one of the workflow's `attempts`,
   * like any thrown error — even if its code ignores the signal and never
   * returns: the run goes on without it, and nothing it returns later is recorded.
   */
  timeoutMs?: number;
}

/** What a workflow sees: `step` and `transaction`, and the run's abort signal. */
export interface Context {
  /** This workflow's id. */
  workflowId: string;
  /** Aborted when this run loses its lease (see {@link StepInfo.signal}). */
  signal: AbortSignal;
  /**
   * A step whose effect is outside the database (an HTTP call): run, then
   * record. A crash in between runs `fn` again, with the same `idempotencyKey`.
   *
   * What it returns is recorded as JSON and replayed as it was: plain data, or
   * `undefined` (a step that returns nothing; the log stores the tag
   * `{"$undefined": true}`). Anything else JSON cannot carry faithfully — a
   * `Date`, a `Map`, `NaN`, a `BigInt`, a function, a cycle — or larger than
   * `maxRecordBytes` is not recorded: the workflow fails at once with that
   * `UnserializableResultError` (or `RecordTooLargeError`) as its error, and
   * the step's effect is not repeated. Return a `Date` as `toISOString()`.
   */
  step<T>(name: string, fn: (info: StepInfo) => Promise<T>, options?: StepOptions): Promise<T>;
  /**
   * A step whose effect is SQL on `tx`: the writes and the record commit as
   * one — and only while this run holds the workflow's lease. Await nothing
   * but SQL on `tx` in it: a transaction left idle as long as a lease is ended
   * by PostgreSQL (see inTransaction in queries.ts).
   */
  transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>): Promise<T>;
}

/**
 * The idempotency key of the step at position `seq` of workflow `workflowId`.
 *
 * - Unique across workflows: workflow ids are unique (the primary key of
 *   `workflows`), and within one workflow each position is one step. The
 *   position goes last and is digits only, so even ids with colons in them
 *   cannot collide: `a:1` + 0 → `a:1:0`, which `a` can never produce.
 * - Stable across replays: a step's position is what the log is keyed by,
 *   and replay checks that the same step sits at the same position.
 *
 * Not in it: the step name (the position already pins it down), the attempt
 * number (a retry must look like the same request), the time or a random id
 * (a restart must send the same key).
 */
export function stepKey(workflowId: string, seq: number): string {
  return `${workflowId}:${seq}`;
}

/** A workflow: durable code that calls `ctx.step` and `ctx.transaction` for everything with an effect. */
export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/** Every workflow a process can run, by name (`any`: one registry holds workflows of many input and output types). */
export type Workflows = Record<string, Workflow<any, any>>;
/** The input type of a workflow. */
export type InputOf<W> = W extends Workflow<infer I, unknown> ? I : never;
/** The output type of a workflow. */
export type OutputOf<W> = W extends Workflow<never, infer O> ? O : never;

/** The log names a workflow this process has no code for. */
export class UnknownWorkflowError extends CourseError {}

/**
 * `start(name, input, { id })` with an id the log already holds, but under
 * another workflow name or with another input. The id names one run; this call
 * describes a different one. Nothing was written.
 */
export class WorkflowIdConflictError extends CourseError {
  constructor(
    /** The id both runs claim. */
    readonly workflowId: string,
    /** What differs: 'name', 'input', or both. */
    readonly differs: ReadonlyArray<'name' | 'input'>,
    /** The run the log has under this id: its workflow name and input. */
    readonly recorded: { name: string; input: unknown },
    /** What this call passed. */
    readonly passed: { name: string; input: unknown },
    /** For object inputs: the top-level fields whose values differ (computed in SQL). */
    readonly fields: readonly string[] | null,
  ) {
    const parts: string[] = [];
    if (differs.includes('name')) {
      parts.push(`its workflow name differs (the log has "${recorded.name}", this call passed "${passed.name}")`);
    }
    if (differs.includes('input')) {
      const field = (input: unknown, key: string) => {
        const value = input !== null && typeof input === 'object' ? (input as Record<string, unknown>)[key] : undefined;
        return value === undefined ? 'nothing' : brief(value);
      };
      parts.push(
        fields && fields.length > 0
          ? `its input differs in ${fields.map((key) => `${key} (the log has ${field(recorded.input, key)}, this call passed ${field(passed.input, key)})`).join(', ')}`
          : `its input differs (the log has ${brief(recorded.input)}, this call passed ${brief(passed.input)})`,
      );
    }
    super(
      `workflow id ${workflowId} is already in the log for another run: ${parts.join('; and ')}`,
      'A workflow id names one run: start it again with the same name and input to get that run and its result, or use a new id for a new run.',
    );
  }
}

/** A value as short JSON, for messages. */
function brief(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/**
 * On replay, the code called a different step at some position than the one
 * the log recorded there: the workflow's code changed while it was running.
 * Going on would hand one step's recorded result to another step.
 */
export class NonDeterminismError extends CourseError {
  constructor(
    /** The workflow whose replay stopped. */
    readonly workflowId: string,
    /** The position where code and log disagree. */
    readonly seq: number,
    /** The step name the log has at that position. */
    readonly recorded: string,
    /** The step the code calls now; undefined when the code returned without calling one. */
    readonly called: string | undefined,
  ) {
    super(
      `workflow ${workflowId} step #${seq}: the log says ${recorded}, ` +
        (called === undefined ? 'the code now returns without calling it' : `the code now calls ${called}`),
      'The workflow code changed while this workflow was running. Finish running workflows with the code they started with ' +
        '(or give the new code a new workflow name) before you reorder, add or remove steps.',
    );
  }
}

/**
 * The log already has a record at this step's position, though this run holds
 * the lease and loaded the log after claiming. Under leases that means
 * something wrote to `steps` behind the engine's back. This run's writes were
 * rolled back.
 */
export class StepAlreadyRecordedError extends CourseError {
  constructor(workflowId: string, seq: number, name: string, options?: { cause?: unknown }) {
    super(
      `workflow ${workflowId} step #${seq} ${name} was recorded by another process first; this attempt's writes were rolled back`,
      'Only the engine may write to the steps table, and only under a lease: look for another program writing to it.',
      options,
    );
  }
}

/** The largest workflow id `start()` accepts, in bytes of UTF-8 (PostgreSQL's index refuses rows over about 2.7 kB). */
export const MAX_WORKFLOW_ID_BYTES = 1024;

/** `start()` was given an id that cannot name a run: empty, blank, too long, or with a NUL character. Nothing was written. */
export class InvalidWorkflowIdError extends CourseError {}

/** Throw {@link InvalidWorkflowIdError} unless `id` can be a workflow's id. */
function checkWorkflowId(id: string): void {
  const shown = brief(id);
  const hint = 'Use an id that names the business operation, e.g. order-1: not blank, no NUL character, at most 1024 bytes.';
  if (typeof id !== 'string') throw new InvalidWorkflowIdError(`workflow id ${shown} is a ${typeof id}, not a string`, hint);
  if (id.trim() === '') throw new InvalidWorkflowIdError(`workflow id ${shown} is empty or only whitespace: it would name no run`, hint);
  if (id.includes('\u0000')) throw new InvalidWorkflowIdError(`workflow id ${shown} contains a NUL character (\\u0000), which PostgreSQL cannot store`, hint);
  const bytes = Buffer.byteLength(id);
  if (bytes > MAX_WORKFLOW_ID_BYTES) throw new InvalidWorkflowIdError(`workflow id ${shown} is ${bytes} bytes, over the ${MAX_WORKFLOW_ID_BYTES}-byte limit`, hint);
}

/** The workflow failed on every attempt; its error is in the log. */
export class WorkflowFailedError extends CourseError {}

/** The largest step result, workflow input or output the engine records by default: 1 MiB of JSON. */
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024;

/**
 * A step result, workflow output or workflow input is larger, as JSON, than
 * the engine's `maxRecordBytes`. Nothing was recorded. A kind of
 * {@link UnserializableResultError}: the engine treats it the same way (a
 * step result or output fails its workflow at once, an input is refused by `start()`).
 */
export class RecordTooLargeError extends UnserializableResultError {
  constructor(
    /** What was too large: `workflow order-1, step #0 charge_card`, … */
    readonly where: string,
    /** Its size as JSON, in bytes. */
    readonly bytes: number,
    /** The limit it exceeds. */
    readonly limitBytes: number,
  ) {
    super(
      `${where} is ${bytes} bytes of JSON, over the ${limitBytes}-byte limit of what the log records. Nothing was recorded.`,
      'Keep large data out of the log: store it elsewhere (a table, object storage) and return its key; or raise maxRecordBytes in createEngine.',
    );
  }
}

/**
 * A step ran longer than its `timeoutMs`. Its signal was aborted; whatever it
 * returns later is ignored. Counted as one of the workflow's attempts.
 */
export class StepTimeoutError extends CourseError {
  constructor(
    /** The workflow whose step timed out. */
    readonly workflowId: string,
    /** The step's position. */
    readonly seq: number,
    /** The step's name. */
    readonly stepName: string,
    /** The timeout it overran. */
    readonly timeoutMs: number,
  ) {
    super(
      `workflow ${workflowId} step #${seq} ${stepName} did not return within ${timeoutMs} ms; its signal was aborted`,
      'Make the step pass its signal to what it waits on, and give it a timeout long enough for the slowest answer you accept.',
    );
  }
}

/** A fence refused this run's token inside a transaction (internal: becomes a LeaseLostError once rolled back). */
class Refused extends Error {}

/** How to start a workflow. */
export interface StartOptions {
  /**
   * The workflow's id, chosen by the caller — and its idempotency key: one id,
   * one run. Use an id that names the business operation (`order-1`), so a
   * retried request carries the same one. Default: a random UUID (no
   * idempotency: every call is a new run).
   */
  id?: string;
}

/** What `start` gives back: the run's id, and a way to wait for its result. */
export interface RunHandle<Output> {
  /** The workflow id. */
  id: string;
  /** True when this call wrote the workflow into the log; false when the id was already there (the same run). */
  created: boolean;
  /** Wait for the run to finish, on whichever worker runs it. See {@link Engine.result}. */
  result(options?: ResultOptions): Promise<Output>;
}

/** Options of {@link Engine.result}. */
export interface ResultOptions {
  /** Stop waiting when this signal aborts (the promise rejects with its reason). The run goes on. */
  signal?: AbortSignal;
}

/** One recorded step, as {@link Engine.inspect} shows it. */
export interface StepRecord {
  /** Its position in the workflow: 0, 1, 2, … */
  seq: number;
  /** The step's name. */
  name: string;
  /** Its recorded result: what replays return. */
  output: unknown;
  /** The fencing token of the run that recorded it: which claim did the work. */
  fencingToken: number;
  /** When it was recorded, by the database's clock. */
  recordedAt: Date;
}

/** A workflow as the log has it now: its row, its lease, and its recorded steps. */
export interface WorkflowInfo {
  /** The workflow id. */
  id: string;
  /** The registered workflow it runs. */
  name: string;
  /** What it was started with. */
  input: unknown;
  /** running (unfinished: runnable or held), completed, or failed. */
  status: WorkflowStatus;
  /** The return value, once completed. */
  output: unknown;
  /** Why it failed, once failed. */
  error: string | null;
  /** How many times it has been claimed; the latest claim's token. 0: never claimed yet. */
  fencingToken: number;
  /** The worker that claimed it last; null if none has. */
  leaseOwner: string | null;
  /** Milliseconds left on its lease (database clock); 0 when nobody holds it. */
  leaseMsLeft: number;
  /** Its recorded steps, in order. */
  steps: StepRecord[];
}

/** Options of {@link createEngine}. */
export interface EngineOptions<W extends Workflows> {
  /**
   * The database. Run `migrate(db)` on it first (until then every call is a
   * `SchemaMissingError`). A pool made from a connection string that is not
   * a `postgres://` URL is refused here (`InvalidConnectionStringError`). Its pool needs a
   * connection per concurrently executing workflow, plus three per worker
   * (LISTEN; claims and heartbeats; result polling).
   */
  db: pg.Pool;
  /** Every workflow this process can run or start, by the name the log stores. */
  workflows: W;
  /** In-process attempts of a run before the workflow is marked failed (default 3). */
  attempts?: number;
  /** How often `result()` looks for finished workflows it waits on; all waiters share one query (default 100 ms). */
  resultPollMs?: number;
  /** The default `timeoutMs` of every `ctx.step` (default: none, a step may take as long as it takes). */
  stepTimeoutMs?: number;
  /**
   * The largest step result, workflow input or output recorded, in bytes of
   * JSON (default 1 MiB); larger is a {@link RecordTooLargeError}.
   */
  maxRecordBytes?: number;
}

/** The engine: start workflows, wait for them, look at them, and run workers. Made by {@link createEngine}. */
export interface Engine<W extends Workflows> {
  /**
   * Start a workflow — once per id: write it into the log, runnable, and
   * return. A worker (this process's or another's) claims and runs it; wait
   * for its output with `result()`. From the moment this resolves, a crash
   * cannot lose the workflow.
   *
   * The id is the workflow's idempotency key. An id already in the log with
   * the same name and input is that run: nothing is written (`created: false`),
   * and `result()` gives its output. With another name or input it is a
   * {@link WorkflowIdConflictError}; an unregistered name is an {@link UnknownWorkflowError}.
   * An id that is empty, blank, over 1024 bytes or holds a NUL character is an
   * `InvalidWorkflowIdError`, and an input that cannot be recorded (see
   * `Context.step`) an `UnserializableResultError`: nothing is written.
   */
  start<N extends keyof W & string>(name: N, input: InputOf<W[N]>, options?: StartOptions): Promise<RunHandle<OutputOf<W[N]>>>;
  /**
   * Wait for workflow `id` to finish and return its output — whichever worker,
   * in whichever process, runs it. Rejects with {@link WorkflowFailedError} if
   * it failed. All of a process's waiters share one query every
   * `resultPollMs`, and a run finished in this process answers its waiters at once.
   */
  result(id: string, options?: ResultOptions): Promise<unknown>;
  /** What the log says about each id: its status, or 'missing' when it has no row. */
  status(ids: string[]): Promise<Record<string, WorkflowStatus | 'missing'>>;
  /** A workflow's row, lease and recorded steps; undefined when the id is not in the log. */
  inspect(id: string): Promise<WorkflowInfo | undefined>;
  /**
   * A worker for this engine's workflows: it claims runnable ones, runs up to
   * `concurrency` at once under leases, renews them, and takes over those
   * whose worker died. Call `start()` on it. See {@link WorkerOptions}.
   */
  createWorker(options?: WorkerOptions): Worker;
}

/**
 * What a worker needs from the engine: the database, the names it has code for (it defers the rest),
 * how to run a claimed workflow, and a way to be woken when work is started here.
 * @internal
 */
export interface EngineCore {
  db: pg.Pool;
  names: string[];
  execute(claim: Claim, lease: Lease): Promise<'completed' | 'failed'>;
  wakeUps: Set<() => void>;
}

/**
 * Create the engine: the registry of workflows, and everything done with them.
 *
 * ```ts
 * const engine = createEngine({ db, workflows: { order: orderWorkflow() } });
 * const run = await engine.start('order', order, { id: order.orderId });
 * const worker = engine.createWorker({ concurrency: 8 });
 * await worker.start();
 * const receipt = await run.result();
 * ```
 */
export function createEngine<W extends Workflows>({
  db,
  workflows,
  attempts = 3,
  resultPollMs = 100,
  stepTimeoutMs,
  maxRecordBytes = DEFAULT_MAX_RECORD_BYTES,
}: EngineOptions<W>): Engine<W> {
  if (stepTimeoutMs !== undefined && !(stepTimeoutMs > 0)) throw new RangeError(`stepTimeoutMs must be a positive number of milliseconds, got ${stepTimeoutMs}`);
  if (!(maxRecordBytes > 0)) throw new RangeError(`maxRecordBytes must be a positive number of bytes, got ${maxRecordBytes}`);
  // A pool made from a connection string that is not a PostgreSQL URL fails here, not at its first query.
  checkPoolConnectionString(db);

  /**
   * The value as the log records it (`undefined` as its tag, see encodeForLog
   * in shared/json.ts) — or a refusal of what JSON cannot carry, or what is too
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

  /** Wake functions of this process's running workers. */
  const wakeUps = new Set<() => void>();

  /** See {@link Engine.start}. */
  async function start<N extends keyof W & string>(name: N, input: InputOf<W[N]>, options: StartOptions = {}): Promise<RunHandle<OutputOf<W[N]>>> {
    const id = options.id ?? randomUUID();
    checkWorkflowId(id);
    lookUp(name, id); // a typo in the name fails here, before it reaches the log
    const recordable = toRecordable(input, `the input of workflow ${id}`);
    const { created, row, sameName, sameInput, differentFields } = await admitWorkflow(db, { id, name, input: recordable }).catch((thrown: unknown) =>
      Promise.reject(explainMissingSchema(thrown)),
    );
    if (!sameName || !sameInput) {
      const differs = [...(sameName ? [] : ['name' as const]), ...(sameInput ? [] : ['input' as const])];
      throw new WorkflowIdConflictError(id, differs, { name: row.name, input: decodeFromLog(row.input) }, { name, input }, sameInput ? null : differentFields);
    }
    if (created) wakeWorkers();
    return { id, created, result: (resultOptions) => result(id, resultOptions) as Promise<OutputOf<W[N]>> };
  }

  let notifyPending = false;
  /**
   * Tell workers there is work: this process's at once, the others through
   * NOTIFY. Not in start()'s own statement: a transaction that NOTIFYs takes a
   * database-wide lock at COMMIT, so NOTIFY in every start would queue all
   * starts behind one another. One NOTIFY per few milliseconds, on the side,
   * fire and forget; a lost one only costs a poll interval.
   */
  function wakeWorkers(): void {
    for (const wake of wakeUps) wake();
    if (notifyPending) return;
    notifyPending = true;
    setTimeout(() => {
      notifyPending = false;
      notifyWorkers(db).catch(() => {});
    }, 5).unref();
  }

  // ── results ──────────────────────────────────────────────────────────────

  type Finished = { status: WorkflowStatus; output: unknown; error: string | null };
  const waiting = new Map<string, Set<(finished: Finished | Error) => void>>();
  let polling = false;

  /** See {@link Engine.result}. */
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
    if (finished.status === 'failed') {
      throw new WorkflowFailedError(`workflow ${id} failed: ${finished.error}`, 'Its record stays in the log; start it under a new id to run it again.');
    }
    return finished.output;
  }

  function settleWaiters(id: string, outcome: Finished | Error): void {
    for (const settle of [...(waiting.get(id) ?? [])]) settle(outcome);
  }

  async function pollResults(): Promise<void> {
    polling = true;
    try {
      let first = true;
      while (waiting.size > 0) {
        if (!first) await new Promise((resolve) => setTimeout(resolve, resultPollMs));
        first = false;
        const ids = [...waiting.keys()];
        let rows;
        try {
          rows = await workflowOutcomes(db, ids);
        } catch (thrown) {
          const missing = explainMissingSchema(thrown);
          const error =
            missing instanceof SchemaMissingError
              ? missing
              : new CourseError(`could not read the results of ${ids.length} workflow(s): ${toError(thrown).message}`, 'Is the database reachable? Ask for the result again.', { cause: thrown });
          for (const id of ids) settleWaiters(id, error);
          return;
        }
        const found = new Set(rows.map((row) => row.id));
        for (const row of rows) if (row.status !== 'running') settleWaiters(row.id, { ...row, output: decodeFromLog(row.output) });
        for (const id of ids) {
          if (!found.has(id)) settleWaiters(id, new CourseError(`workflow ${id} is not in the log`, 'Start it first: start(name, input, { id }).'));
        }
      }
    } finally {
      polling = false;
    }
  }

  // ── running a claimed workflow ─────────────────────────────────────────────

  /**
   * A fence refused this run's token: stop the run, and say why — as the
   * database tells it ("taken over by …"), even if our own timer had already
   * given the lease up ("not renewed in time"), which is then the cause.
   */
  async function lost(lease: Lease, cause?: unknown): Promise<LeaseLostError> {
    const reason = await explainLostLease(db, fenceOf(lease)).catch(() => 'refused by the fence');
    const local = lease.lose(reason, cause);
    return local.reason === reason ? local : new LeaseLostError(lease.workflowId, lease.fencingToken, reason, { cause: cause ?? local });
  }

  function fenceOf(lease: Lease): Fence {
    return { workflowId: lease.workflowId, fencingToken: lease.fencingToken };
  }

  /**
   * A transaction of this run: BEGIN … COMMIT on one pooled connection, ended
   * by PostgreSQL if it sits idle as long as a lease. A fence that refuses
   * inside it throws `Refused`; the transaction rolls back, and only then —
   * its connection back in the pool — do we ask why. (Asking from inside would
   * need a second connection while holding the first: with every connection
   * held that way, the pool would wait on itself for ever.)
   */
  async function inLease<T>(lease: Lease, body: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(db, body, { idleTimeoutMs: lease.leaseMs });
    } catch (thrown) {
      if (thrown instanceof Refused) throw await lost(lease);
      throw unavailable(lease, thrown);
    }
  }

  /**
   * Our own connection failed (the server restarting, a dropped connection):
   * not the workflow's fault, so not one of its `attempts`. The run stops and
   * the worker gives the lease back; the workflow is claimed again and replayed.
   */
  function unavailable(lease: Lease, thrown: unknown): unknown {
    if (!isConnectionFailure(thrown)) return thrown;
    // A process frozen past its lease hears of its connection being ended (the
    // idle-in-transaction timeout, one lease long) before its lease timer has
    // had a chance to fire: that is the lease lost, not the database gone.
    try {
      lease.check();
    } catch (lost) {
      return lost;
    }
    return new DatabaseUnavailableError(
      `workflow ${lease.workflowId}: the database connection failed (${toError(thrown).message}); this run stopped, and the workflow is claimed again`,
      'Nothing to do if it passes: what was committed stays, the rest is replayed. If it keeps happening, check the database and the network.',
      { cause: thrown },
    );
  }

  /**
   * Run a workflow this process has claimed, under `lease`: replay what the
   * log has, run the rest, record the end. Every write is fenced with the
   * lease's token. Throws {@link LeaseLostError} the moment a fence refuses it
   * (or the worker finds it could not renew); nothing after that is written.
   */
  async function execute(claim: Claim, lease: Lease): Promise<'completed' | 'failed'> {
    const workflow = lookUp(claim.name, claim.id);
    const fence = fenceOf(lease);
    for (let attempt = 1; ; attempt++) {
      try {
        lease.check();
        // 1. Read what the log knows about this workflow: every recorded step, in one query.
        const recorded = await loadSteps(db, claim.id).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
        for (const step of recorded) step.output = decodeFromLog(step.output);
        if (recorded.length > 0) trace.info(`workflow ${claim.id}: ${recorded.length} step(s) in the log, replaying (fencing token ${claim.fencingToken})`);
        // 2. Run the code from the top. Recorded steps come back from the log;
        //    the rest run for real and are recorded (see `contextFor`).
        const replay = contextFor(claim.id, recorded, lease);
        const output = await workflow(replay.ctx, decodeFromLog(claim.input));
        replay.checkAllRecordedStepsWereCalled();
        // 3. Record the end — fenced like a step.
        const recordable = toRecordable(output, `the output of workflow ${claim.id}`);
        await inLease(lease, async (tx) => {
          if (!(await completeWorkflow(tx, fence, recordable))) throw new Refused();
          crashPoint('during-record:complete');
        });
        crashPoint('after-record:complete');
        settleWaiters(claim.id, { status: 'completed', output, error: null });
        return 'completed';
      } catch (thrown) {
        const error = toError(thrown);
        if (error instanceof LeaseLostError) throw error;
        // An aborted fetch, a connection PostgreSQL ended: symptoms of the lease being gone.
        if (lease.lost) throw lease.lost;
        if (error instanceof DatabaseUnavailableError) throw error;
        // A bug in the code, not a hiccup in the world: another attempt would
        // meet it again (and, for a refused result, repeat the step's effect).
        // So it is the last attempt: the workflow fails now, once, with that
        // message — never a replay of its effects every lease.
        const final = error instanceof NonDeterminismError || error instanceof UnserializableResultError;
        if (final || attempt >= attempts) {
          const failed = await failWorkflow(db, fence, error.message).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
          if (!failed) throw await lost(lease, error);
          settleWaiters(claim.id, { status: 'failed', output: null, error: error.message });
          trace.failed(`workflow ${claim.id}`, error);
          return 'failed';
        }
        trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
      }
    }
  }

  /** The `Context` for one run of one workflow, replaying `recorded`, writing under `lease`. */
  function contextFor(workflowId: string, recorded: StepRow[], lease: Lease) {
    // By position, not by array index: steps run in parallel may be recorded out of order.
    const log = new Map(recorded.map((step) => [step.seq, step]));
    let nextSeq = 0;

    /** What the step at `seq` is told about itself: where it is, its key, this run's signal. */
    function infoFor(seq: number, name: string): StepInfo {
      return { workflowId, seq, name, idempotencyKey: stepKey(workflowId, seq), signal: lease.signal };
    }

    /**
     * Run a step's code, for at most `timeoutMs`: then abort its signal and
     * fail, whether or not the code listens — a hung call must not hold the
     * workflow (and its lease) for as long as it hangs.
     */
    async function withTimeout<T>(seq: number, name: string, timeoutMs: number | undefined, fn: (info: StepInfo) => Promise<T>): Promise<T> {
      if (timeoutMs === undefined) return fn(infoFor(seq, name));
      const timedOut = new AbortController();
      const info = { ...infoFor(seq, name), signal: AbortSignal.any([lease.signal, timedOut.signal]) };
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new StepTimeoutError(workflowId, seq, name, timeoutMs);
          timedOut.abort(error);
          reject(error);
        }, timeoutMs);
      });
      try {
        return await Promise.race([fn(info), timeout]);
      } finally {
        clearTimeout(timer);
      }
    }

    /** Recorded at this position? Then it must be the same step: return its entry. */
    function replay(seq: number, name: string): StepRow | undefined {
      const entry = log.get(seq);
      if (entry && entry.name !== name) throw new NonDeterminismError(workflowId, seq, entry.name, name);
      if (entry) trace.replayed(name, entry.output);
      return entry;
    }

    /**
     * Write the step's record inside `tx`, fenced: only if this run's token is
     * still the workflow's and its lease holds. Until COMMIT, neither the
     * record nor (for `transaction` steps) the business writes exist for anyone.
     */
    async function record(tx: pg.PoolClient, seq: number, name: string, recordable: unknown): Promise<void> {
      let written: boolean;
      try {
        written = await recordStep(tx, { workflowId, seq, name, output: recordable, fencingToken: lease.fencingToken });
      } catch (thrown) {
        // 23505 unique_violation on (workflow_id, seq).
        if ((thrown as { code?: string }).code === '23505') throw new StepAlreadyRecordedError(workflowId, seq, name, { cause: thrown });
        throw thrown;
      }
      if (!written) throw new Refused();
      crashPoint(`during-record:${name}`);
    }

    const ctx: Context = {
      workflowId,
      signal: lease.signal,
      async step<T>(name: string, fn: (info: StepInfo) => Promise<T>, options: StepOptions = {}): Promise<T> {
        // Each call takes the next position, synchronously, in the order the code makes the calls.
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        lease.check(); // a run that knows it lost the lease starts no new effect
        crashPoint(`before-step:${name}`);
        const result = await withTimeout(seq, name, options.timeoutMs ?? stepTimeoutMs, fn);
        // The engine's check first, then the trace line: what a log line can print never decides what happens.
        const recordable = toRecordable(result, `the result of workflow ${workflowId}, step #${seq} ${name}`);
        trace.ran(name, result);
        // The effect happened outside the database: the log does not know yet.
        // A crash here runs fn again, with the same key. A freeze here past the
        // lease: another worker runs fn again (same key), and this record is refused.
        crashPoint(`after-effect:${name}`);
        await inLease(lease, (tx) => record(tx, seq, name, recordable));
        crashPoint(`after-record:${name}`);
        return result;
      },

      async transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>): Promise<T> {
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        lease.check();
        crashPoint(`before-step:${name}`);
        // One transaction for the fence, the step's writes AND its record. The
        // fence comes first and locks the workflow row: from here to COMMIT no
        // other worker can claim it, so these writes cannot race a takeover.
        const result = await inLease(lease, async (tx) => {
          if (!(await fenceTransaction(tx, fenceOf(lease)))) throw new Refused();
          const result = await fn(tx, infoFor(seq, name));
          const recordable = toRecordable(result, `the result of workflow ${workflowId}, step #${seq} ${name}`);
          trace.ran(name, result);
          // The stock is updated — but only inside this transaction. A crash
          // here rolls it back; so does a refused record below.
          crashPoint(`after-effect:${name}`);
          await record(tx, seq, name, recordable);
          return result;
        });
        // Committed: the writes and the record exist together, for good.
        crashPoint(`after-record:${name}`);
        return result;
      },
    };
    return {
      ctx,
      /** The code returned, but the log has steps at positions it never reached: it changed too. */
      checkAllRecordedStepsWereCalled() {
        const skipped = recorded.find((step) => step.seq >= nextSeq);
        if (skipped) throw new NonDeterminismError(workflowId, skipped.seq, skipped.name, undefined);
      },
    };
  }

  // ── looking at the log ─────────────────────────────────────────────────────

  async function status(ids: string[]): Promise<Record<string, WorkflowStatus | 'missing'>> {
    for (const id of ids) checkWorkflowId(id);
    const known = await workflowStatuses(db, ids).catch((thrown: unknown) => Promise.reject(explainMissingSchema(thrown)));
    return Object.fromEntries(ids.map((id) => [id, known.get(id) ?? 'missing']));
  }

  async function inspect(id: string): Promise<WorkflowInfo | undefined> {
    checkWorkflowId(id);
    const [row, steps]: [WorkflowRow | undefined, StepRow[]] = await Promise.all([getWorkflow(db, id), loadSteps(db, id)]).catch((thrown: unknown) =>
      Promise.reject(explainMissingSchema(thrown)),
    );
    if (!row) return undefined;
    return {
      ...row,
      input: decodeFromLog(row.input),
      output: decodeFromLog(row.output),
      steps: steps.map(({ workflowId: _id, ...step }) => ({ ...step, output: decodeFromLog(step.output) })),
    };
  }

  const core: EngineCore = { db, names: Object.keys(workflows), execute, wakeUps };

  return {
    start,
    result,
    status,
    inspect,
    createWorker: (options = {}) => createWorker(core, options),
  };
}

// The whole path of one workflow:
//   start(name, input, { id })    INSERT … ON CONFLICT DO NOTHING (runnable at once)   1 round trip, 1 commit
//   a worker's claim              WITH … FOR UPDATE SKIP LOCKED UPDATE … RETURNING     1 per batch of claims
//   load its steps                SELECT … FROM steps                                 1
//   each step:                    run it → BEGIN; fenced INSERT step; COMMIT          3, 1 commit
//   each transaction step:        BEGIN; fence; the step's SQL; fenced INSERT; COMMIT 4 + its SQL, 1 commit
//   complete:                     BEGIN; fenced UPDATE status; COMMIT                 3, 1 commit
//   heartbeats                    one UPDATE per held lease every lease/3 to lease/2
// So the order workflow (2 steps, 1 transaction step) costs 6 commits and
// about 17 round trips. Where to cut, for throughput, once it is measured:
//   - a step's record as ONE autocommit statement (the fenced INSERT alone) —
//     1 round trip instead of 3; the crash point "during-record" then has no
//     window to sit in, which is why the course keeps BEGIN/COMMIT;
//   - skip loadSteps on a first claim (fencing token 1 cannot have steps), or
//     fold it into the claim — but the claim's snapshot predates its row locks,
//     so a step committed by a previous holder in between would be missed (the
//     primary key would then refuse our duplicate record: safe, but a retry);
//   - the completion in the last step's transaction (one commit fewer);
//   - claim in batches (when half the slots are free, not at every free slot).
// Crash anywhere: committed rows survive, uncommitted ones never existed.
// Freeze anywhere: after the lease, another worker takes over; the frozen run's
// next write is refused by its fence, and it stops.
