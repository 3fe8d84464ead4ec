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
 *   after:   start(…) only writes the workflow into the log (claimed at once
 *            for this process's worker if it has room). Workers CLAIM
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
import { assertJsonSafe, UnserializableResultError } from '../../shared/json.ts';
import { trace } from '../../shared/narrate.ts';
import { createBatcher } from './batcher.ts';
import { Lease, LeaseLostError } from './lease.ts';
import {
  admitWorkflow,
  completeWorkflow,
  completeWorkflows,
  explainLostLease,
  explainRefusal,
  failWorkflow,
  fenceTransaction,
  workflowOutcomes,
  getWorkflow,
  inTransaction,
  isConnectionFailure,
  loadSteps,
  notifyWorkers,
  recordStep,
  recordSteps,
  workflowStatuses,
  type Admission,
  type Refusal,
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

/** The workflow failed on every attempt; its error is in the log. */
export class WorkflowFailedError extends CourseError {}

/** The largest step result, workflow input or output the engine records by default: 1 MiB of JSON. */
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024;

/**
 * A step result, workflow output or workflow input is larger, as JSON, than
 * the engine's `maxRecordBytes`. Nothing was recorded. A kind of
 * {@link UnserializableResultError}: the engine treats it the same way (a
 * step's result is not retried in-process, the workflow stays running).
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
   * The database. Run `migrate(db)` on it first. Its pool needs a
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
   * for its output with `result()`. If a worker of this process has a free
   * slot, the workflow is written already claimed by it and starts at once
   * (no claim, no NOTIFY). From the moment this resolves, a crash cannot
   * lose the workflow.
   *
   * The id is the workflow's idempotency key. An id already in the log with
   * the same name and input is that run: nothing is written (`created: false`),
   * and `result()` gives its output. With another name or input it is a
   * {@link WorkflowIdConflictError}; an unregistered name is an {@link UnknownWorkflowError}.
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
  /** This process's running workers: start() hands new workflows straight to one with a free slot. */
  localWorkers: Set<LocalWorker>;
  /** This process's NOTIFY payload: a worker ignores the NOTIFYs its own process sent. */
  processTag: string;
}

/**
 * A worker as start() in its own process sees it.
 * @internal
 */
export interface LocalWorker {
  /** Its lease_owner name. */
  name: string;
  leaseMs: number;
  /** Hold a slot for a workflow being started here; false when it has none free (or is stopping). */
  reserve(): boolean;
  /** start() inserted the workflow already claimed for this worker (token 1): run it in the reserved slot. */
  take(claim: Claim, sentAt: number): void;
  /** start() did not insert it (the id was in the log already, or the INSERT failed): the slot is free again. */
  unreserve(): void;
  /** Work was started here that no worker of this process took: claim when a slot frees up. */
  wake(): void;
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

  /** Refuse what JSON cannot carry, or what is too large to record: before anything is written. */
  function assertRecordable(value: unknown, where: string): void {
    assertJsonSafe(value, where);
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > maxRecordBytes) throw new RecordTooLargeError(where, bytes, maxRecordBytes);
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

  /** This process's running workers. */
  const localWorkers = new Set<LocalWorker>();
  const processTag = randomUUID();

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

  /** See {@link Engine.start}. */
  async function start<N extends keyof W & string>(name: N, input: InputOf<W[N]>, options: StartOptions = {}): Promise<RunHandle<OutputOf<W[N]>>> {
    const id = options.id ?? randomUUID();
    lookUp(name, id); // a typo in the name fails here, before it reaches the log
    assertRecordable(input, `the input of workflow ${id}`);
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
      admission = await admitWorkflow(db, { id, name, input }, {
        claimFor: local && { worker: local.name, leaseMs: local.leaseMs },
        notify: notify ? processTag : undefined,
      });
    } catch (thrown) {
      local?.unreserve();
      throw thrown;
    }
    const { created, row, sameName, sameInput, differentFields } = admission;
    if (local && created) {
      startedHere.set(id, performance.now());
      local.take({ id, name, input, fencingToken: row.fencingToken }, sentAt);
    } else {
      local?.unreserve();
      if (created) wakeWorkers(notify);
    }
    if (!sameName || !sameInput) {
      const differs = [...(sameName ? [] : ['name' as const]), ...(sameInput ? [] : ['input' as const])];
      throw new WorkflowIdConflictError(id, differs, { name: row.name, input: row.input }, { name, input }, sameInput ? null : differentFields);
    }
    return { id, created, result: (resultOptions) => result(id, resultOptions) as Promise<OutputOf<W[N]>> };
  }

  /** When the last NOTIFY went out (performance.now()), and whether one is due at the end of its window. */
  let lastNotifyAt = -Infinity;
  let trailingNotify = false;
  const NOTIFY_WINDOW_MS = 5;

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
      sendNotify();
    }, Math.max(0, NOTIFY_WINDOW_MS - (performance.now() - lastNotifyAt))).unref();
  }

  function sendNotify(): void {
    lastNotifyAt = performance.now();
    notifyWorkers(db, processTag).catch(() => {});
  }

  // ── results ──────────────────────────────────────────────────────────────

  type Finished = { status: WorkflowStatus; output: unknown; error: string | null };
  const waiting = new Map<string, Set<(finished: Finished | Error) => void>>();
  let polling = false;

  /** See {@link Engine.result}. */
  async function result(id: string, options: ResultOptions = {}): Promise<unknown> {
    const { signal } = options;
    signal?.throwIfAborted();
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
          const error = new CourseError(`could not read the results of ${ids.length} workflow(s): ${toError(thrown).message}`, 'Is the database reachable? Ask for the result again.', { cause: thrown });
          for (const id of ids) settleWaiters(id, error);
          return;
        }
        const found = new Set(rows.map((row) => row.id));
        for (const row of rows) if (row.status !== 'running') settleWaiters(row.id, row);
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
  async function lost(lease: Lease, cause?: unknown, known?: string): Promise<LeaseLostError> {
    const reason = known ?? (await explainLostLease(db, fenceOf(lease)).catch(() => 'refused by the fence'));
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
   * Plain steps' records and completions are each ONE fenced statement, sent
   * outside BEGIN … COMMIT: PostgreSQL runs it as a transaction of its own, so
   * the fence, the row lock it takes and the write commit together — one round
   * trip where BEGIN, the write and COMMIT took three. (Measured: a step's
   * overhead went from 2.3× a bare INSERT's commit to about 1.1×.) Runs that
   * write at the same moment share the statement (batcher.ts).
   */
  const stepRecords = createBatcher(async (steps: Array<Omit<StepRow, 'recordedAt'>>) => {
    // One alone (a lone workflow, every time): the single-row statement, cheaper than unnest() of one.
    if (steps.length === 1) return [await recordStepAlone(steps[0]!)];
    const written = await recordSteps(db, steps);
    return steps.map((step) => written.has(`${step.workflowId}:${step.seq}`));
  });
  const completions = createBatcher(async (done: Array<Fence & { output: unknown }>) => {
    if (done.length === 1) return [await completeWorkflow(db, done[0]!, done[0]!.output)];
    const completed = await completeWorkflows(db, done);
    return done.map((d) => completed.has(d.workflowId));
  });

  /** recordStep outside a transaction; a duplicate position is a refusal here too, as in recordSteps (ON CONFLICT DO NOTHING). */
  async function recordStepAlone(step: Omit<StepRow, 'recordedAt'>): Promise<boolean> {
    try {
      return await recordStep(db, step);
    } catch (thrown) {
      if ((thrown as { code?: string }).code === '23505') return false; // unique_violation on (workflow_id, seq)
      throw thrown;
    }
  }

  /** Send one fenced write; true when written, false when its fence refused it. */
  async function fenced(lease: Lease, write: () => Promise<boolean>): Promise<boolean> {
    try {
      return await write();
    } catch (thrown) {
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
        //    Not on its first claim (token 1): no run before this one could have recorded anything.
        const recorded =
          claim.fencingToken === 1 && attempt === 1 ? [] : await loadSteps(db, claim.id).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
        if (recorded.length > 0) trace.info(`workflow ${claim.id}: ${recorded.length} step(s) in the log, replaying (fencing token ${claim.fencingToken})`);
        // 2. Run the code from the top. Recorded steps come back from the log;
        //    the rest run for real and are recorded (see `contextFor`).
        const replay = contextFor(claim.id, recorded, lease);
        const output = await workflow(replay.ctx, claim.input);
        replay.checkAllRecordedStepsWereCalled();
        // 3. Record the end — fenced like a step, and like a step one statement.
        assertRecordable(output, `the output of workflow ${claim.id}`);
        if (!(await fenced(lease, () => completions.write({ ...fence, output })))) throw await lost(lease);
        crashPoint('after-record:complete');
        lease.finished();
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
        // Leave the workflow `running`: its lease runs out and a worker tries
        // again then (a lease's worth of back-off), e.g. once the code is fixed.
        if (error instanceof NonDeterminismError || error instanceof UnserializableResultError) throw error;
        if (attempt >= attempts) {
          const failed = await failWorkflow(db, fence, error.message).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
          if (!failed) throw await lost(lease, error);
          lease.finished();
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
     * Write a `transaction` step's record inside its transaction `tx`, fenced:
     * only if this run's token is still the workflow's and its lease holds.
     * Until COMMIT, neither the record nor the business writes exist for
     * anyone. False: the fence refused.
     */
    async function record(tx: pg.PoolClient, seq: number, name: string, result: unknown): Promise<boolean> {
      try {
        return await recordStep(tx, { workflowId, seq, name, output: result, fencingToken: lease.fencingToken });
      } catch (thrown) {
        // 23505 unique_violation on (workflow_id, seq).
        if ((thrown as { code?: string }).code === '23505') throw new StepAlreadyRecordedError(workflowId, seq, name, { cause: thrown });
        throw thrown;
      }
    }

    /**
     * A plain step's record was refused, and the statement cannot say why: its
     * fence, or (never under leases) a position already recorded. Ask the log.
     * Still held: the position was taken — StepAlreadyRecordedError, a failed
     * attempt, whose replay finds the row. Anything else is a lost lease, and
     * so is an answer that could not be read: the safe side. A lost lease
     * stops the run without spending an attempt (had it held after all, it
     * runs out, and the next claim replays the log), while a wrong
     * StepAlreadyRecordedError would run the step's code again under a lease
     * that is gone, once per remaining attempt.
     */
    async function refusedRecord(seq: number, name: string): Promise<Error> {
      let refusal: Refusal;
      try {
        refusal = await explainRefusal(db, fenceOf(lease));
      } catch (thrown) {
        return lost(lease, thrown, `refused by the fence (why could not be read: ${toError(thrown).message})`);
      }
      if (refusal.kind === 'held') return new StepAlreadyRecordedError(workflowId, seq, name);
      return lost(lease, undefined, refusal.reason);
    }

    function assertStepRecordable(seq: number, name: string, result: unknown): void {
      assertRecordable(result, `the result of workflow ${workflowId}, step #${seq} ${name}`);
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
        trace.ran(name, result);
        // The effect happened outside the database: the log does not know yet.
        // A crash here runs fn again, with the same key. A freeze here past the
        // lease: another worker runs fn again (same key), and this record is refused.
        crashPoint(`after-effect:${name}`);
        assertStepRecordable(seq, name, result);
        // One statement, so there is no "during" to crash in: it committed, or it never happened.
        const step = { workflowId, seq, name, output: result, fencingToken: lease.fencingToken };
        if (!(await fenced(lease, () => stepRecords.write(step)))) throw await refusedRecord(seq, name);
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
          trace.ran(name, result);
          // The stock is updated — but only inside this transaction. A crash
          // here rolls it back; so does a refused record below.
          crashPoint(`after-effect:${name}`);
          assertStepRecordable(seq, name, result);
          if (!(await record(tx, seq, name, result))) throw new Refused();
          // Written, not committed: a crash here rolls back the record AND the stock update.
          crashPoint(`during-record:${name}`);
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
    const known = await workflowStatuses(db, ids);
    return Object.fromEntries(ids.map((id) => [id, known.get(id) ?? 'missing']));
  }

  async function inspect(id: string): Promise<WorkflowInfo | undefined> {
    const [row, steps]: [WorkflowRow | undefined, StepRow[]] = await Promise.all([getWorkflow(db, id), loadSteps(db, id)]);
    if (!row) return undefined;
    return { ...row, steps: steps.map(({ workflowId: _id, ...step }) => step) };
  }

  const core: EngineCore = { db, names: Object.keys(workflows), execute, localWorkers, processTag };

  return {
    start,
    result,
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
//   heartbeats                    one UPDATE per worker per lease/2, all its leases at once
// So a 3-step workflow started where a worker has room costs 5 commits and 5
// round trips: start, three steps, completion — each a single statement, the
// smallest a durable step can be (npm run bench: a step ≈ one bare INSERT's commit).
// Crash anywhere: committed rows survive, uncommitted ones never existed.
// Freeze anywhere: after the lease, another worker takes over; the frozen run's
// next write is refused by its fence, and it stops.
