/**
 * The engine's public types: what a workflow sees (`Context`, `StepInfo`), what
 * a caller passes and gets back (`EngineOptions`, `StartOptions`, `RunHandle`,
 * `WorkflowInfo`), and the `Engine` itself. No code: the code that gives them
 * meaning is engine.ts (createEngine), start.ts, results.ts and run.ts.
 */
import type pg from 'pg';
import type { Logger } from './log.ts';
import type { ScheduleOptions } from './schedules.ts';
import type { WorkflowStatus } from './queries.ts';
import type { ChildWorkflowError } from './errors.ts';
import type { Worker, WorkerOptions } from './worker.ts';

/**
 * What the engine tells a step's code about the step it is running. The same
 * values on every replay of that step: in another attempt, another process,
 * after any number of crashes — except `fencingToken` and `signal`, which
 * belong to this run.
 */
export interface StepInfo {
  /** The workflow this step belongs to. */
  workflowId: string;
  /** The step's position in the workflow: 0, 1, 2, … */
  seq: number;
  /** The name the workflow gave the step. */
  name: string;
  /** Which attempt of the step this is: 1, then 2, 3, … as its retry policy tries it again. */
  attempt: number;
  /**
   * `<workflowId>:<seq>`, e.g. `a1b2:0` for the first step of workflow
   * `a1b2` — see {@link stepKey}. Send it as the `Idempotency-Key` of the
   * step's call to the outside world.
   */
  idempotencyKey: string;
  /**
   * The fencing token of the run executing this step: larger for every later
   * claim of the workflow. A downstream system that accepts fencing tokens
   * (refusing a write with a smaller token than one it has seen for the key)
   * can stop a zombie run that the engine's own fence cannot reach: its call
   * from outside the database. The one field that differs between attempts.
   */
  fencingToken: number;
  /**
   * Aborted when this run loses its lease, or when the step overruns its
   * `timeoutMs` (the reason is then a {@link StepTimeoutError}). Pass it to
   * what the step waits on (`fetch(url, { signal })`) so a step that can no
   * longer be recorded stops at once instead of finishing for nothing.
   */
  signal: AbortSignal;
}

/**
 * How a failing step is tried again. Attempt n+1 starts after a back-off of
 * `min(maxDelayMs, initialDelayMs × backoffFactor^(n−1))`, jittered down to as
 * little as half of it (so that steps which failed together do not retry
 * together); the wait is in the database, not in the worker — the workflow
 * holds no slot and no connection meanwhile, and a crash loses nothing.
 * Each failed attempt is recorded with its error (`engine.inspect`).
 */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 3; 1: never retried). */
  maxAttempts?: number;
  /** The back-off before the second attempt (default 1000 ms). */
  initialDelayMs?: number;
  /** Each back-off is this times the one before (default 2). */
  backoffFactor?: number;
  /** No back-off is longer than this (default 60 000 ms). */
  maxDelayMs?: number;
  /**
   * Errors another attempt cannot fix (a declined card, a validation error):
   * the step fails at once. Error classes (`instanceof`), or a predicate.
   */
  nonRetryable?: Array<abstract new (...args: never[]) => Error> | ((error: Error) => boolean);
}

/** Options of one {@link Context.step} or {@link Context.transaction}. */
export interface StepOptions {
  /**
   * Give up on the step after this many milliseconds (default: the engine's
   * `stepTimeoutMs`; none if neither is set). Its `signal` aborts and the
   * attempt fails with a {@link StepTimeoutError} — retried like any thrown
   * error — even if its code ignores the signal and never returns: the run
   * goes on without it, and nothing it returns later is recorded.
   */
  timeoutMs?: number;
  /** How this step is retried (default: the engine's `retry`). */
  retry?: RetryPolicy;
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
   *
   * If `fn` throws (or overruns `timeoutMs`), the failed attempt is recorded
   * and the step is tried again after a back-off, by its retry policy (see
   * {@link RetryPolicy}); the workflow waits in the database meanwhile. When
   * its attempts run out, or its error is not retryable, the call throws a
   * {@link StepFailedError} — and so does every replay of it, the same.
   */
  step<T>(name: string, fn: (info: StepInfo) => Promise<T>, options?: StepOptions): Promise<T>;
  /**
   * A step whose effect is SQL on `tx`: the writes and the record commit as
   * one — and only while this run holds the workflow's lease. Await nothing
   * but SQL on `tx` in it: a transaction left idle as long as a lease is ended
   * by PostgreSQL (see inTransaction in queries.ts).
   */
  transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>, options?: Pick<StepOptions, 'retry'>): Promise<T>;
  /**
   * Wait `ms` milliseconds — durably. The end of the sleep is recorded (by the
   * database's clock) and the workflow released until then: it holds no
   * worker slot and no connection while it sleeps, survives any crash, and is
   * run again — by whichever worker is up — once the database's clock passes
   * that time. Never earlier, whatever the workers' own clocks say. A
   * negative, non-finite or unrepresentable `ms` is a RangeError, at the call.
   */
  sleep(ms: number): Promise<void>;
  /** Wait until `date` — durably, as {@link Context.sleep}. A date in the past does not wait. */
  sleepUntil(date: Date): Promise<void>;
  /**
   * Wait for the event `name`, sent to this workflow by {@link Engine.send} —
   * from anywhere: another process, an HTTP handler — and return its
   * payload; or `undefined` once `timeoutMs` has passed (database clock).
   * While it waits the workflow holds no worker slot and no connection. An
   * event sent before the workflow waits is kept and taken here; each event
   * is taken by one wait, oldest first; how the wait ended is recorded, so a
   * replay takes the same branch every time.
   *
   * Waits started together — before the code next waits on anything else, as
   * `Promise.all` over waits (or over children's `result()`) does — are
   * looked at together and park the workflow ONCE, until every one of them
   * has its event or a timeout passes: 1,000 children ending wake their
   * parent once. So race waits against each other only with timeouts; for
   * "whichever comes first", send one event whose payload says which.
   * Names starting with `durable:` are the engine's (a RangeError).
   */
  waitForEvent<T = unknown>(name: string, options?: { timeoutMs?: number }): Promise<T | undefined>;
  /**
   * Start the workflow `name` as a child of this one, and return its handle.
   * Its id is this workflow's id, a slash and the call's position in the log
   * (`order-1/3`): a replay finds the same child, and never starts a second.
   * Children started together (`Promise.all`, a loop without awaits between)
   * are started in one transaction. `await handle.result()` waits for the
   * child's end holding no worker slot — a worker of concurrency 1 runs a
   * parent and its child in turn — and returns its output, or throws a
   * {@link ChildWorkflowError} if it failed or was cancelled. Cancelling this
   * workflow cancels its children. A child this workflow never waits for runs
   * on after it ends.
   */
  startChild<Output = unknown, Input = unknown>(name: string, input: Input, options?: ChildOptions): Promise<ChildHandle<Output>>;
  /**
   * True once engine.cancel() has been called on this workflow and this run
   * has heard of it. From then on every step, sleep and wait throws a
   * {@link WorkflowCancelledError} (and the running step's `signal` aborts)
   * — except inside {@link Context.nonCancellable} — and however the code
   * ends, the workflow ends `cancelled`.
   */
  readonly cancelled: boolean;
  /**
   * Run `fn` so that a cancellation stops nothing in it: its steps start and
   * are recorded, their signals abort only for a lost lease or the deadline.
   * For compensation — the saga's undo — in a `catch` or `finally`:
   *
   * ```ts
   * try { await ctx.step('ship', ship); }
   * catch (error) { await ctx.nonCancellable(() => ctx.step('refund', refund)); throw error; }
   * ```
   */
  nonCancellable<T>(fn: () => Promise<T>): Promise<T>;
}

/** How a child is started: as {@link StartOptions}, without the id (the engine derives it). */
export type ChildOptions = Pick<StartOptions, 'maxAttempts' | 'timeoutMs'>;

/** A child workflow, as its parent sees it. */
export interface ChildHandle<Output> {
  /** `<parent's id>/<position>`. */
  id: string;
  /** Wait for its end (durably: the parent parks) — its output, or a {@link ChildWorkflowError}. Called again, the same promise. */
  result(): Promise<Output>;
}

/** A workflow: durable code that calls `ctx.step` and `ctx.transaction` for everything with an effect. */
export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/** Every workflow a process can run, by name (`any`: one registry holds workflows of many input and output types). */
export type Workflows = Record<string, Workflow<any, any>>;
/** The input type of a workflow. */
export type InputOf<W> = W extends Workflow<infer I, unknown> ? I : never;
/** The output type of a workflow. */
export type OutputOf<W> = W extends Workflow<never, infer O> ? O : never;

/** How to start a workflow. */
export interface StartOptions {
  /**
   * The workflow's id, chosen by the caller — and its idempotency key: one id,
   * one run. Use an id that names the business operation (`invoice-2041`), so a
   * retried request carries the same one. Default: a random UUID (no
   * idempotency: every call is a new run).
   */
  id?: string;
  /**
   * Claims in a row that may end with no word from their run — the worker
   * killed, frozen past its lease — before the workflow is failed instead of
   * run again (default: the engine's `maxAttempts`). A claim whose run
   * recorded a step does not count: a workflow that makes progress is not
   * the one killing its workers.
   */
  maxAttempts?: number;
  /**
   * Fail the workflow with a {@link WorkflowTimeoutError} if it has not
   * finished this many milliseconds after start() — counted on the database
   * clock, whatever it is doing then: a running step's `signal` aborts and
   * no further step starts; a sleep or a back-off is cut short. Default: none.
   * (With no worker up at the deadline, the first one to claim it fails it.)
   */
  timeoutMs?: number;
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
  /** A step, a sleep (its output is `{ until }`, the time it ends), how a wait for an event ended (`{ payload, key }` or `{ timedOut: true }`), or a child started (`{ id }`). */
  kind: 'step' | 'sleep' | 'event' | 'child';
  /** Its recorded result: what replays return. */
  output: unknown;
  /** A step that failed for good: its error, and how many attempts it made. Null when it returned. */
  error: { name: string; message: string; attempts: number } | null;
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
  /** running (unfinished: runnable, held or waiting), completed, failed, or cancelled. */
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
  /** Claims in a row with no word from their runs; past `maxAttempts` the workflow is failed. */
  attempts: number;
  maxAttempts: number;
  /** Milliseconds to its deadline (start's `timeoutMs`) by the database clock, negative once past; null: none. */
  deadlineInMs: number | null;
  /** The workflow that started it with ctx.startChild; null for one started by start(). */
  parentId: string | null;
  /** Nobody holds it and it may not run before `until`: a step's back-off, or a sleep. Null otherwise. */
  waiting: { reason: 'retry' | 'sleep'; until: Date } | { reason: 'event'; events: string[]; until: Date | null } | null;
  /** Its recorded steps, in order. */
  steps: StepRecord[];
  /** Every failed attempt of its steps, in order: the error, and when the next attempt may start (null: none). */
  failures: Array<{ seq: number; name: string; attempt: number; error: { name: string; message: string }; fencingToken: number; retryAt: Date | null; failedAt: Date }>;
}

/** Options of {@link createEngine}. */
export interface EngineOptions<W extends Workflows> {
  /**
   * The database. Run `migrate(db)` on it first (until then every call is a
   * `SchemaMissingError`). A pool made from a connection string that is not
   * a `postgres://` URL is refused here (`InvalidConnectionStringError`). Its pool needs a
   * connection per concurrently executing workflow, plus three per worker
   * (LISTEN; claims and heartbeats; result polling), plus one if this process
   * also calls `start()`.
   */
  db: pg.Pool;
  /** Every workflow this process can run or start, by the name the log stores. */
  workflows: W;
  /** The default {@link StartOptions.maxAttempts}: claims in a row with no word from their run before the workflow is failed (default 5). */
  maxAttempts?: number;
  /** The default retry policy of every step (see {@link RetryPolicy}; default 3 attempts, 1 s, ×2, at most 60 s). */
  retry?: RetryPolicy;
  /** How often `result()` looks for finished workflows it waits on; all waiters share one query (default 100 ms). */
  resultPollMs?: number;
  /** The default `timeoutMs` of every `ctx.step` (default: none, a step may take as long as it takes). */
  stepTimeoutMs?: number;
  /**
   * The largest step result, workflow input or output recorded, in bytes of
   * JSON (default 1 MiB); larger is a {@link RecordTooLargeError}.
   */
  maxRecordBytes?: number;
  /**
   * Where the engine's log entries go: each is data (time, level, event,
   * workflow id, message, error), see {@link LogEntry}. Default: nowhere — a
   * library does not print; the application decides.
   */
  log?: Logger;
  /**
   * For crash tests: called with the name of each point where a crash matters,
   * e.g. `after-effect:charge_card` (the step's effect happened, its record is
   * not written). A test kills the process there, for real (the course's
   * shared/crash/failpoints.ts does, when its environment asks). Default:
   * nothing. Names: `before-step:<step>`, `after-effect:<step>`,
   * `during-record:<step>` (transaction steps: written, not committed),
   * `after-record:<step>`, and `after-record:complete`.
   */
  crashPoint?: (name: string) => void;
  /**
   * Workflows started on a schedule, by schedule name: at every tick of its
   * `cron` (UTC, database clock), once per tick however many workers run
   * schedulers — the tick's time is the workflow's id, `<name>@<ISO time>`.
   * Ticks missed while no scheduler ran are skipped or caught up, as each
   * schedule says. Checked here: a bad expression is a {@link ScheduleError}.
   */
  schedules?: Record<string, ScheduleOptions>;
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
  /**
   * Send workflow `workflowId` the event `name` with `payload` (JSON, not
   * `undefined`), to be taken by its `ctx.waitForEvent(name)` — now if it
   * waits for it (it is woken), or whenever it comes to wait. `key` is the
   * send's idempotency key (default: a random UUID): the same key again is
   * the same event, kept once (`delivered: false`). Safe against the race
   * that loses wake-ups: see queries.ts. A workflow not in the log is a
   * {@link NoSuchWorkflowError}; one already finished, a {@link WorkflowNotRunningError}
   * — unless this key was sent to it before it finished (a webhook
   * redelivered): that is `delivered: false`, as for a running one.
   * `woke`: the event ended the last wait the workflow was parked in — it
   * runs again now, handed to a worker of this process with a free slot if
   * there is one (no claim), else to the first worker a NOTIFY reaches.
   */
  send(workflowId: string, name: string, payload: unknown, options?: { key?: string }): Promise<{ delivered: boolean; woke: boolean }>;
  /**
   * Cancel workflow `id`: its running step's `signal` aborts, no further step
   * starts (outside `ctx.nonCancellable`), and it ends `cancelled`, with
   * `reason` as its error; a workflow that sleeps or waits is woken to end.
   * Its children still running are cancelled with it.
   * Once: a second call is `already`; a finished workflow, `finished` (nothing
   * changes). A workflow not in the log is a {@link NoSuchWorkflowError}.
   *
   * A request, as in Temporal: `requested` means asked, not done. The run
   * holding the workflow hears of it by a NOTIFY (milliseconds) or at its next
   * heartbeat (a worker whose LISTEN connection is being re-made); a run that
   * records its end before it hears completes, and `result()` says so.
   */
  cancel(id: string, options?: { reason?: string }): Promise<{ outcome: 'requested' | 'already' | 'finished'; status: WorkflowStatus }>;
  /** A workflow's row, lease and recorded steps; undefined when the id is not in the log. */
  inspect(id: string): Promise<WorkflowInfo | undefined>;
  /**
   * A worker for this engine's workflows: it claims runnable ones, runs up to
   * `concurrency` at once under leases, renews them, and takes over those
   * whose worker died. Call `start()` on it. See {@link WorkerOptions}.
   */
  createWorker(options?: WorkerOptions): Worker;
}
