/**
 * Exercise 9: chapter 9's run, with both of its halves of the lost wake-up
 * taken out. A wait neither takes an event nor parks (TODO 2, in contextFor:
 * "waits and children, gathered"), and a child's end records the child's
 * end but sends its parent nothing (TODO 1's other place, in endChild).
 *
 * YOUR PART: TODO 2 and endChild's TODO 1 here; TODO 1 in events.ts (send);
 * TODO 3 in queries.ts (deliverEvent). README.md says more;
 * `npm run hint 9` helps. The engine, the worker and everything else are
 * chapter 9's own, imported from chapters/09-waiting-for-the-world/; under
 * test, chapter 9's engine runs this run.ts, these queries and this send.
 *
 * The run of one claimed workflow, top to bottom: read the log, run the code
 * (what the log has comes back from it, the rest runs and is recorded), then
 * record the end — or put the workflow to wait. Every write is fenced with
 * the run's token (stillHeld() in queries.ts), as in chapter 6, in as few
 * statements as chapter 7 made them: a plain step's record and the
 * completion are one statement each, shared by runs writing at once
 * (batcher.ts); a transaction step keeps BEGIN … COMMIT and its
 * `during-record` crash point. Chapter 8 made it one run per claim: a failing
 * step waits out its back-off in the database, a sleep likewise — one fenced
 * release (`goToWait`) — and the claim counts attempts.
 *
 * New in chapter 9, a run can wait for the world:
 *
 *   ctx.waitForEvent   the workflow's row locked FIRST, then the look (the
 *                      lost wake-up: "events" in queries.ts). An event found,
 *                      or a timeout passed, is recorded as the wait's end; none
 *                      yet: the workflow parks, holding no slot, and the run ends.
 *                      The send that comes later records the wait's end itself
 *                      (events.ts): the next run replays it, as any step.
 *   ctx.startChild     the child's row and this log's entry, in one fenced
 *                      transaction. handle.result() is a wait for the event
 *                      the child's end sends its parent (`endChild`).
 *   gathered           waits and child starts the code makes in one turn go to
 *                      the database together: Promise.all over 1,000 children
 *                      is one transaction to start them, one to look for their
 *                      ends, and one park — the parent resumes once.
 *   cancellation       heard by the worker (NOTIFY, or a renewal's answer):
 *                      the running step's signal aborts, no step starts
 *                      outside ctx.nonCancellable, and the end is `cancelled`.
 *
 * A run ends one of four ways: completed, failed, cancelled (each recorded,
 * and sent to the parent if it is a child), or waiting (a back-off, a sleep,
 * events). engine.ts makes one runner per engine; worker.ts calls `execute`
 * for each claim, and start.ts's local handover is a claim like any other.
 */
import type { Span } from '@opentelemetry/api';
import type pg from 'pg';
import { createBatcher } from '../../chapters/09-waiting-for-the-world/batcher.ts';
import {
  AttemptsExhaustedError,
  ChildIdTakenError,
  ChildWorkflowError,
  checkWorkflowId,
  DatabaseUnavailableError,
  NonDeterminismError,
  StepAlreadyRecordedError,
  StepFailedError,
  StepTimeoutError,
  toError,
  WorkflowCancelledError,
  WorkflowTimeoutError,
} from '../../chapters/09-waiting-for-the-world/errors.ts';
import { decodeFromLog } from '../../chapters/09-waiting-for-the-world/json.ts';
import { Lease, LeaseLostError } from '../../chapters/09-waiting-for-the-world/lease.ts';
import {
  completeWorkflow,
  completeWorkflows,
  explainLostLease,
  explainRefusal,
  failWorkflow,
  fenceTransaction,
  inTransaction,
  isConnectionFailure,
  loadLog,
  recordStep,
  recordStepFailure,
  cancelWorkflow,
  recordSteps,
  suspendForRetry,
  suspendForSleep,
  suspendUntil,
  lockForWait,
  takeEvents,
  recordWaitsEnded,
  parkForEvents,
  startChildren,
  childEndEvent,
  lockForSend,
  deliverEvent,
  type ChildEnd,
  type Claim,
  type EntryKind,
  type Fence,
  type Log,
  type Refusal,
  type StepRecord,
  type StepRow,
} from './queries.ts';
import type { Say } from '../../chapters/09-waiting-for-the-world/log.ts';
import type { Finished } from '../../chapters/09-waiting-for-the-world/results.ts';
import { ATTRIBUTES, endSpan, inStepSpan, startRunSpan, withSpan } from '../../chapters/09-waiting-for-the-world/tracing.ts';
import type { ChildHandle, ChildOptions, Context, RetryPolicy, StepInfo, StepOptions, Workflow } from '../../chapters/09-waiting-for-the-world/types.ts';

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

/** A fence refused this run's token inside a transaction (internal: becomes a LeaseLostError once rolled back). */
class Refused extends Error {}

/** A transaction step's own code threw (internal: told apart from the engine's statements in the same transaction). */
class AttemptThrew extends Error {
  constructor(readonly thrown: unknown) {
    super('the step threw');
  }
}

/** How a wait ended, as its log entry says: the event (its payload as recorded, and its key), or its timeout. */
type WaitEnd = { payload: unknown; key: string } | { timedOut: true };

/** What a wait's log entry says: the event's payload, or undefined for a timeout. */
function eventOf<T>(ended: WaitEnd): T | undefined {
  return 'timedOut' in ended ? undefined : (decodeFromLog(ended.payload) as T);
}

/** An event's name: 1–200 characters, not blank, not starting with `durable:` (the engine's own: a child's end). */
export function checkEventName(name: unknown): void {
  if (typeof name !== 'string' || name.trim() === '' || name.length > 200) throw new RangeError(`an event name is 1–200 characters, not blank; got ${JSON.stringify(name)}`);
  if (name.startsWith('durable:')) throw new RangeError(`event names starting with "durable:" are the engine's own (a child's end is sent as one); got ${JSON.stringify(name)}`);
}

/** A child's id: its parent's, a slash, and the position of ctx.startChild in the parent's log — the same on every replay. */
export function childId(parentId: string, seq: number): string {
  return `${parentId}/${seq}`;
}

/** The longest a Node timer can wait (2^31 − 1 ms, 24.8 days): a longer setTimeout fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The longest sleep: to JavaScript's last date (year 275760), which PostgreSQL's timestamps also reach. */
const LATEST_DATE_MS = 8.64e15;

/** A sleep's duration, or a RangeError at the call: nothing is written for a duration that makes no sense. */
function checkSleep(ms: number): void {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new RangeError(`sleep needs a finite number of milliseconds ≥ 0, got ${String(ms)}`);
  if (Date.now() + ms > LATEST_DATE_MS) throw new RangeError(`sleep of ${ms} ms ends after the latest date a timestamp can hold (year 275760)`);
}

/**
 * The run has put its workflow to wait (a step's back-off, a sleep) and must
 * end now (internal). Thrown out of the ctx call that did it, through the
 * workflow's code — which may catch it: so the run remembers it was told to
 * wait (`waiting` in contextFor) and ends waiting whatever the code does next.
 */
class GoneToWait extends Error {}

/** The engine's default retry policy of a step: 3 attempts, 1 s, ×2, at most 60 s (the DBOS and Temporal defaults, within a factor). */
export const DEFAULT_RETRY = { maxAttempts: 3, initialDelayMs: 1000, backoffFactor: 2, maxDelayMs: 60_000 } as const;

/** A retry policy with every field filled in, checked: a policy that makes no sense is a RangeError where it was given. */
export function resolveRetryPolicy(policy: RetryPolicy | undefined, defaults: Required<Omit<RetryPolicy, 'nonRetryable'>> & Pick<RetryPolicy, 'nonRetryable'>) {
  const resolved = { ...defaults, ...policy };
  const { maxAttempts, initialDelayMs, backoffFactor, maxDelayMs } = resolved;
  const problem =
    !Number.isInteger(maxAttempts) || maxAttempts < 1 ? `maxAttempts must be a whole number ≥ 1, got ${maxAttempts}`
    : !Number.isFinite(initialDelayMs) || initialDelayMs < 0 ? `initialDelayMs must be a finite number of milliseconds ≥ 0, got ${initialDelayMs}`
    : !Number.isFinite(backoffFactor) || backoffFactor < 1 ? `backoffFactor must be a finite number ≥ 1, got ${backoffFactor}`
    : !Number.isFinite(maxDelayMs) || maxDelayMs < initialDelayMs ? `maxDelayMs must be a finite number ≥ initialDelayMs (${initialDelayMs}), got ${maxDelayMs}`
    : undefined;
  if (problem) throw new RangeError(`retry policy: ${problem}`);
  return resolved;
}

/**
 * The back-off after failed attempt `attempt` (1, 2, …): the exponential
 * delay, capped, then jittered to between half of it and all of it. Without
 * the jitter, every step that failed in one outage retries at the same
 * instants and meets the provider together again; with all of it ("full
 * jitter") a retry may come at once. Half keeps a floor a person can reason
 * about ("at least 500 ms after the first failure") and spreads the rest.
 */
export function backoffMs(policy: { initialDelayMs: number; backoffFactor: number; maxDelayMs: number }, attempt: number, random = Math.random()): number {
  const exponential = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.backoffFactor ** (attempt - 1));
  return Math.round(exponential / 2 + (random * exponential) / 2);
}

/** What a run needs from the engine (engine.ts). */
export interface RunParts {
  db: pg.Pool;
  /** The engine's default retry policy of a step, resolved. */
  retry: ReturnType<typeof resolveRetryPolicy>;
  /** The default `timeoutMs` of every `ctx.step`. */
  stepTimeoutMs: number | undefined;
  /** The code registered under a name, or an UnknownWorkflowError. */
  lookUp(name: string, workflowId: string): Workflow<unknown, unknown>;
  /** The value as the log records it; or a refusal of what JSON cannot carry, or what is too large to record: before anything is written. */
  toRecordable(value: unknown, where: string): unknown;
  /** Answer this process's waiters for a workflow whose end this run recorded (results.ts). */
  settleWaiters(id: string, outcome: Finished): void;
  /** Where log entries go (log.ts): nowhere unless the application gave a logger. */
  say: Say;
  /** The crash-test hook (EngineOptions.crashPoint): a no-op unless a test injects one. */
  crashPoint(name: string): void;
  /** This process's NOTIFY payload (its own workers are woken in memory instead). */
  processTag: string;
  /** Tell this process's workers there is work to claim: children started, a parent woken. */
  wakeLocal(): void;
  /** The engine's default StartOptions.maxAttempts: a child's too. */
  maxAttempts: number;
}

/**
 * How a run ended: its end recorded (completed, or failed with the error
 * recorded as the workflow's), or its workflow put to wait in the database —
 * for a step's retry or a sleep — runnable again in `dueInMs` (database clock).
 */
export type RunOutcome =
  | { outcome: 'completed' }
  | { outcome: 'failed'; error: Error }
  | { outcome: 'cancelled'; error: WorkflowCancelledError }
  | { outcome: 'waiting'; reason: WaitReason; dueInMs: number | null };

/** Why a workflow waits: a step's back-off, a sleep, or an event (whose wait may have no end: `dueInMs` null). */
export type WaitReason = 'retry' | 'sleep' | 'event';

/** `execute(claim, lease)`: run a claimed workflow. One per engine, shared by all its workers. */
export function createRunner({ db, retry, stepTimeoutMs, lookUp, toRecordable, settleWaiters, say, crashPoint, processTag, wakeLocal, maxAttempts }: RunParts) {
  /**
   * Runs the engine itself failed under — its connection dropped, its log
   * written behind its back — by their lease: such a run is over, whatever
   * its code does with the error it was handed. Code may catch it: a parent
   * that settles its children (Promise.allSettled) would count a dropped
   * connection as their failure, return, and be recorded completed before
   * its children ended (found by the torture run). So the error is kept here,
   * every later ctx call throws it, and the run ends with it however the code
   * ends — given back to be claimed and replayed, as any run that lost the database.
   */
  const stoppedRuns = new WeakMap<Lease, Error>();

  /**
   * Plain steps' records and completions are each ONE fenced statement, sent
   * outside BEGIN … COMMIT: PostgreSQL runs it as a transaction of its own, so
   * the fence, the row lock it takes and the write commit together — one round
   * trip where BEGIN, the write and COMMIT took three. Measured when each part
   * came in: a step went from 2.26× a bare INSERT's commit to 1.32×, and to
   * 1.11× once a lone write took the single-row statement (below).
   *
   * Runs that write at the same moment share the statement (batcher.ts): while
   * one is in flight, the records other runs finish meanwhile wait, then go
   * out together, one multi-row statement and one commit. At concurrency 8
   * that made 2.4 commits a workflow instead of 5 (1.6 with claims of two,
   * worker.ts). A write that goes out alone (a lone workflow, every time)
   * takes the single-row statement, which PostgreSQL runs ~0.15 ms faster than
   * a join on unnest() of one row — a quarter of a bare INSERT. Never send a
   * lone write through the unnest() form to keep one code path: that quarter
   * is paid on every step of every workflow that runs alone.
   */
  const stepRecords = createBatcher(async (steps: StepRecord[]) => {
    if (steps.length === 1) return [await recordStepAlone(steps[0]!)];
    const written = await recordSteps(db, steps);
    return steps.map((step) => written.has(`${step.workflowId}:${step.seq}`));
  });
  const completions = createBatcher(async (done: Array<Fence & { output: unknown }>) => {
    if (done.length === 1) return [await completeWorkflow(db, done[0]!, done[0]!.output)];
    const completed = await completeWorkflows(db, done);
    return done.map((d) => completed.has(d.workflowId));
  });

  /**
   * Run a workflow this process has claimed, under `lease`: replay what the
   * log has, run the rest, record the end — or put the workflow to wait, when
   * a step must be retried later or the code sleeps. Every write is fenced
   * with the lease's token. Throws {@link LeaseLostError} the moment a fence
   * refuses it (or the worker finds it could not renew); nothing after that is written.
   *
   * One attempt per claim. Chapter 7 re-ran a failing workflow up to
   * `attempts` times here, in memory, at once: a count no crash survived, and
   * no back-off. Now a failing step is retried by its policy, after a back-off
   * spent in the database (ctx.step below), and the claim counts attempts
   * (claimWorkflows): what the workflow's own code throws is its answer.
   */
  async function execute(claim: Claim, lease: Lease): Promise<RunOutcome> {
    const workflow = lookUp(claim.name, claim.id);
    const fence = fenceOf(lease);
    const span = startRunSpan(claim, claim.attempts);
    let run: ReturnType<typeof contextFor> | undefined;
    const deadline = deadlineOf(claim);
    // Cancelled before this claim (cancel() woke it if it waited): the code meets it at its first new step.
    if (claim.cancelReason != null) lease.cancel(claim.cancelReason);
    try {
      lease.check();
      // 0. Cancelled, and out of attempts or past its deadline: it may not run
      //    again, not even to hear the cancel — but its end is what was asked
      //    for, `cancelled`. (Its compensations, being its code, do not run.)
      if (claim.cancelReason != null && (claim.attempts > claim.maxAttempts || (claim.deadlineInMs !== null && claim.deadlineInMs <= 0))) {
        return await cancelled(claim, lease, span);
      }
      //    Claimed more times in a row than it may be with no word from a run:
      //    every worker that ran it died or froze. Fail it; never run it again.
      if (claim.attempts > claim.maxAttempts) {
        const error = new AttemptsExhaustedError(
          `workflow ${claim.id} was claimed ${claim.attempts - 1} times in a row and no run of it recorded a step or reported back: ` +
            'each worker running it died or froze before its lease ran out. Failed instead of taking down another worker.',
          'Look at what the workflow does after its last recorded step (durable show): a step that exhausts memory, crashes a native module, ' +
            'or calls process.exit. Fix it, then `durable retry` the workflow.',
        );
        endSpan(span, error);
        return await fail(claim, lease, error);
      }
      // Past its deadline (it waited through it, or no worker was up then): fail it, run nothing.
      if (claim.deadlineInMs !== null && claim.deadlineInMs <= 0) {
        const error = new WorkflowTimeoutError(claim.id);
        endSpan(span, error);
        return await fail(claim, lease, error);
      }
      // 1. Read what the log knows about this workflow: every recorded step and
      //    every failed attempt, in one query. Not on its first claim (token 1):
      //    no run before this one could have recorded anything (migration 003
      //    makes that true of logs adopted from chapters 3–5 too).
      const log = claim.fencingToken === 1 ? { steps: [], failures: [] } : await loadLog(db, claim.id).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
      for (const step of log.steps) step.output = decodeFromLog(step.output);
      if (log.steps.length > 0) {
        const message = `workflow ${claim.id}: ${log.steps.length} step(s) in the log, replaying (fencing token ${claim.fencingToken})`;
        say('info', 'replaying', message, { workflowId: claim.id, fencingToken: claim.fencingToken });
      }
      // 2. Run the code from the top. Recorded steps come back from the log;
      //    the rest run for real and are recorded (see `contextFor`).
      run = contextFor(claim, log, lease, span, deadline.signal);
      const replay = run;
      // The code, or its deadline, whichever comes first: a step that ignores its aborted signal cannot hold the workflow past it.
      const output = await withSpan(span, () => Promise.race([workflow(replay.ctx, decodeFromLog(claim.input)), deadline.reached]));
      // The code may have caught the GoneToWait its ctx call threw, and returned: it still waits.
      if (run.waiting) return wentToWait(span, run.waiting);
      // …or the engine's own failure (stoppedRuns): the run is over, whatever the code made of it.
      const stopped = stoppedRuns.get(lease);
      if (stopped) throw stopped;
      // Cancelled while it ran: however the code ended — it may have caught the cancellation and compensated — the end is `cancelled`.
      if (lease.cancelSignal.aborted) return await cancelled(claim, lease, span);
      run.checkAllRecordedStepsWereCalled();
      // 3. Record the end — fenced like a step, and like a step one statement.
      const recordable = toRecordable(output, `the output of workflow ${claim.id}`);
      if (claim.parentId) await endChild(claim, lease, { status: 'completed', output: recordable });
      else if (!(await writeFenced(lease, () => completions.write({ ...fence, output: recordable })))) throw await lost(lease);
      crashPoint('after-record:complete');
      // The slot frees before the waiters hear: a caller that starts its next
      // workflow the moment result() returns finds the local worker free.
      lease.finished();
      settleWaiters(claim.id, { status: 'completed', output, error: null });
      endSpan(span);
      return { outcome: 'completed' };
    } catch (thrown) {
      // Put to wait: whatever else was thrown after that (a parallel step's
      // refused record, the code's own error after catching) belongs to a run that is over.
      if (run?.waiting) return wentToWait(span, run.waiting);
      // Past the deadline, whatever was thrown (a step aborted by it): the workflow timed out.
      // The engine failed under the run (stoppedRuns): that, not what the code threw after catching it.
      const error = deadline.signal.aborted ? (deadline.signal.reason as Error) : (stoppedRuns.get(lease) ?? toError(thrown));
      endSpan(span, error);
      if (error instanceof LeaseLostError) throw error;
      // An aborted fetch, a connection PostgreSQL ended: symptoms of the lease being gone.
      if (lease.lost) throw lease.lost;
      if (error instanceof DatabaseUnavailableError) throw error;
      // Its log changed under it (a position written behind the engine's back):
      // not the code's error. The run stops and its lease is given back; the
      // next claim loads the log and replays what is there now.
      if (error instanceof StepAlreadyRecordedError) throw error;
      if (lease.cancelSignal.aborted) return await cancelled(claim, lease, span);
      // The workflow's code threw: a step that failed for good and was not
      // caught (StepFailedError), a result the log cannot record,
      // non-determinism, a bug. Its steps already had their retries; another
      // run of the code would meet the same error (it replays the same log),
      // so the workflow fails now, once.
      return await fail(claim, lease, error);
    } finally {
      deadline.clear();
    }
  }

  /**
   * The run's deadline, by the database clock at the claim: when it comes,
   * `signal` aborts (every step's signal follows it) and `reached` rejects
   * with a WorkflowTimeoutError, ending the run, which fails the workflow.
   */
  function deadlineOf(claim: Claim) {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const reached = new Promise<never>((_, reject) => {
      // Past a timer's reach (24.8 days: Node fires a longer setTimeout at once) no run of one claim lasts;
      // the claim after it checks the deadline again.
      if (claim.deadlineInMs === null || claim.deadlineInMs > MAX_TIMER_MS) return;
      timer = setTimeout(() => {
        const error = new WorkflowTimeoutError(claim.id);
        controller.abort(error);
        reject(error);
      }, Math.max(0, claim.deadlineInMs));
    });
    reached.catch(() => {}); // raced, never awaited alone
    return { signal: controller.signal, reached, clear: () => clearTimeout(timer) };
  }

  /** Record that the workflow was cancelled (fenced), and answer its waiters. */
  async function cancelled(claim: Claim, lease: Lease, span: Span): Promise<RunOutcome> {
    const reason = claim.parentId
      ? await endChild(claim, lease, { status: 'cancelled', error: null })
      : await cancelWorkflow(db, fenceOf(lease)).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
    if (reason === undefined) throw await lost(lease);
    const error = new WorkflowCancelledError(claim.id, reason);
    endSpan(span, error);
    lease.finished();
    settleWaiters(claim.id, { status: 'cancelled', output: null, error: reason });
    say('info', 'workflow-cancelled', error.message, { workflowId: claim.id, fencingToken: claim.fencingToken });
    return { outcome: 'cancelled', error };
  }

  /** Record that the workflow failed with `error` (fenced), and answer its waiters. */
  async function fail(claim: Claim, lease: Lease, error: Error): Promise<RunOutcome> {
    if (claim.parentId) await endChild(claim, lease, { status: 'failed', error: error.message });
    else if (!(await failWorkflow(db, fenceOf(lease), error.message).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown))))) throw await lost(lease, error);
    lease.finished();
    settleWaiters(claim.id, { status: 'failed', output: null, error: error.message });
    say('warn', 'workflow-failed', `workflow ${claim.id} failed: ${error.message}`, { workflowId: claim.id, fencingToken: claim.fencingToken, error });
    return { outcome: 'failed', error };
  }

  /**
   * Record a child's end and send it to its parent, in one transaction: the
   * PARENT's row locked first — the order cancel() locks a parent and its
   * children in; the other order could deadlock with it — then the child's
   * fenced end, then the event (key `end`: once), which ends the parent's
   * wait for it if it is parked (deliverEvent) and wakes it if that was its
   * last. A parent no longer running gets no event. A
   * cancelled child's payload carries the cancel's reason, returned here.
   *
   * Never fold this into one statement (a CTE that locks the parent, ends the
   * child, inserts, wakes): a statement's snapshot is taken when it starts,
   * BEFORE it waits for the parent's lock, so its look at `waits` would miss
   * the waits of a parent that parked while it waited — the lost wake-up
   * again. The lock must be a statement of its own; each look after it sees
   * what was committed before the lock was granted.
   */
  async function endChild(claim: Claim, lease: Lease, end: ChildEnd): Promise<string | null> {
    const parentId = claim.parentId!;
    const fence = fenceOf(lease);
    const sent = await inLease(lease, async (tx) => {
      // TODO 1 (its other place: a child's end is a send to its parent). FIRST,
      // before this transaction touches the child's own row (the fenced end
      // below locks it), lock the PARENT's row: lockForSend(tx, parentId) —
      // the sender's lock, which also says whether the parent is still
      // running (null: it was pruned). cancel() locks a parent and then its
      // children; taking them the other way round could deadlock with it.
      let payload = end;
      if (end.status === 'completed') {
        if (!(await completeWorkflow(tx, fence, end.output))) throw new Refused();
      } else if (end.status === 'failed') {
        if (!(await failWorkflow(tx, fence, end.error ?? ''))) throw new Refused();
      } else {
        const reason = await cancelWorkflow(tx, fence);
        if (reason === undefined) throw new Refused();
        payload = { status: 'cancelled', error: reason };
      }
      const name = childEndEvent(claim.id);
      // TODO 1: then send the parent the event `name`, with the key 'end' and
      // `payload` — only if the parent is still running (one that ended waits
      // for nothing): the same statement as send()'s, deliverEvent, with
      // `{ notify: processTag }` and no claimFor (a child's end hands its
      // parent to no worker: the NOTIFY and wakeLocal() do). It ends the
      // parent's wait for this child if the parent is parked, and wakes it if
      // that was its last missing wait. `woke` says whether it woke it:
      // wakeLocal(), below, then tells this process's workers.
      void name;
      const woke = false;
      return { woke, reason: 'error' in payload ? payload.error : null };
    });
    if (sent.woke) wakeLocal();
    return sent.reason;
  }

  function wentToWait(span: Span, waiting: { reason: WaitReason; dueInMs: number | null }): RunOutcome {
    span.setAttribute('workflow.waiting', waiting.reason);
    endSpan(span);
    return { outcome: 'waiting', ...waiting };
  }

  /** The `Context` for one run of one workflow, replaying `log`, writing under `lease`. */
  function contextFor(claim: Claim, log: Log, lease: Lease, span: Span, deadline: AbortSignal) {
    const workflowId = claim.id;
    /** Aborted when the lease is lost or the deadline passes: what a step run in ctx.nonCancellable is handed. */
    const uncancellable = AbortSignal.any([lease.signal, deadline]);
    /** …and when the workflow is cancelled: what every other step is handed. */
    const signal = AbortSignal.any([uncancellable, lease.cancelSignal]);
    /** How many ctx.nonCancellable() calls are running: inside one, a cancellation stops nothing. */
    let shielded = 0;
    const isCancelled = () => lease.cancelSignal.aborted && shielded === 0;
    const cancelledError = () => lease.cancelSignal.reason as WorkflowCancelledError;
    // By position, not by array index: steps run in parallel may be recorded out of order.
    const entries = new Map(log.steps.map((step) => [step.seq, step]));
    /** Failed attempts so far, by position: the next attempt of a step is this + 1. */
    const failedAttempts = new Map<number, number>();
    for (const failure of log.failures) failedAttempts.set(failure.seq, Math.max(failedAttempts.get(failure.seq) ?? 0, failure.attempt));
    let nextSeq = 0;
    /** Set once this run has put the workflow to wait: the run is over, whatever its code does next. */
    let waiting: { reason: WaitReason; dueInMs: number | null } | undefined;

    /**
     * The workflow is released until `dueInMs` from now (a statement in
     * queries.ts did it, fenced): this run is over. Its slot frees now, and
     * no new step may start; the GoneToWait thrown unwinds the code.
     */
    function goToWait(reason: WaitReason, dueInMs: number | null): GoneToWait {
      waiting ??= { reason, dueInMs };
      lease.finished(dueInMs);
      return new GoneToWait(`workflow ${workflowId} waits (${reason}) ${dueInMs} ms`);
    }

    /** Before anything new starts: the lease must hold, and the run must not have gone to wait. */
    function mayStart(): void {
      if (waiting) throw new GoneToWait(`workflow ${workflowId} is waiting`);
      const stopped = stoppedRuns.get(lease);
      if (stopped) throw stopped; // the engine failed under this run: nothing more starts in it
      if (deadline.aborted) throw deadline.reason as Error;
      if (isCancelled()) throw cancelledError(); // no step starts after a cancellation, outside nonCancellable
      lease.check(); // a run that knows it lost the lease starts no new effect
    }

    /** What the step at `seq` is told about itself: where it is, which attempt, its key, this run's signal. */
    function infoFor(seq: number, name: string, attempt: number): StepInfo {
      return { workflowId, seq, name, attempt, idempotencyKey: stepKey(workflowId, seq), fencingToken: lease.fencingToken, signal: shielded > 0 ? uncancellable : signal };
    }

    /**
     * Run a step's code, for at most `timeoutMs`: then abort its signal and
     * fail, whether or not the code listens — a hung call must not hold the
     * workflow (and its lease) for as long as it hangs.
     */
    async function withTimeout<T>(info: StepInfo, timeoutMs: number | undefined, fn: (info: StepInfo) => Promise<T>): Promise<T> {
      if (timeoutMs === undefined || timeoutMs > MAX_TIMER_MS) return fn(info); // longer than a timer can wait: none
      const timedOut = new AbortController();
      const limited = { ...info, signal: AbortSignal.any([info.signal, timedOut.signal]) };
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new StepTimeoutError(workflowId, info.seq, info.name, timeoutMs);
          timedOut.abort(error);
          reject(error);
        }, timeoutMs);
      });
      try {
        return await Promise.race([fn(limited), timeout]);
      } finally {
        clearTimeout(timer);
      }
    }

    /** Recorded at this position? Then it must be the same kind of entry with the same name: return it. */
    function replay(seq: number, name: string, kind: EntryKind): StepRow | undefined {
      const entry = entries.get(seq);
      if (entry && entry.kind !== kind) {
        // The same name, another kind: say which is which (a sleep's name is always "sleep").
        const what = (k: EntryKind, n: string) => (k === 'sleep' ? 'a sleep' : `step "${n}"`);
        throw new NonDeterminismError(workflowId, seq, what(entry.kind, entry.name), what(kind, name));
      }
      if (entry && entry.name !== name) throw new NonDeterminismError(workflowId, seq, entry.name, name);
      if (entry) {
        span.addEvent('step replayed', { [ATTRIBUTES.stepSeq]: seq, [ATTRIBUTES.stepName]: name });
        const fields = { workflowId, fencingToken: lease.fencingToken, step: { seq, name }, output: entry.output };
        say('debug', 'step-replayed', `workflow ${workflowId}: step #${seq} ${name} replayed from the log`, fields);
      }
      return entry;
    }

    /** A recorded step's outcome, as the code first met it: its result, or the same StepFailedError. */
    function replayed<T>(entry: StepRow): T {
      if (entry.error) throw new StepFailedError(workflowId, entry.seq, entry.name, entry.error.attempts, entry.error.name, entry.error.message);
      return entry.output as T;
    }

    /** The step's code returned: said at `debug`, and not yet recorded (a zombie's record may still be refused). */
    function ran(seq: number, name: string, output: unknown): void {
      const fields = { workflowId, fencingToken: lease.fencingToken, step: { seq, name }, output };
      say('debug', 'step-ran', `workflow ${workflowId}: step #${seq} ${name} ran; recording its result`, fields);
    }

    /** The step's record is durable: the one line that says a step is done for good. */
    function sayRecorded(seq: number, name: string): void {
      say('debug', 'step-recorded', `workflow ${workflowId}: step #${seq} ${name} recorded`, { workflowId, fencingToken: lease.fencingToken, step: { seq, name } });
    }

    function toStepRecordable(seq: number, name: string, result: unknown): unknown {
      return toRecordable(result, `the result of workflow ${workflowId}, step #${seq} ${name}`);
    }

    /**
     * The attempt `info.attempt` of a step threw `thrown`. Not the step's
     * fault — the lease went (its signal aborted what it waited on), or, in a
     * transaction step, the database connection failed — and it is thrown on
     * as that. Otherwise it is a failed attempt: recorded, and either the
     * workflow goes to wait out the back-off (its policy allows another
     * attempt and the error is retryable), or the step fails for good and
     * its StepFailedError is thrown to the code — the same one every replay throws.
     */
    async function attemptFailed(info: StepInfo, thrown: unknown, policy: ReturnType<typeof resolveRetryPolicy>): Promise<never> {
      if (lease.lost) throw lease.lost;
      if (deadline.aborted) throw deadline.reason as Error; // not the step's failure: the workflow's time is up
      if (isCancelled()) throw cancelledError(); // nor after a cancellation: stop, do not retry
      const error = toError(thrown);
      if (error instanceof LeaseLostError || error instanceof DatabaseUnavailableError || error instanceof GoneToWait) throw error;
      const { seq, name, attempt } = info;
      const recorded = { name: error.name, message: error.message };
      const about = { workflowId, fencingToken: lease.fencingToken, step: { seq, name, attempt }, error };
      const retryable = typeof policy.nonRetryable === 'function' ? !policy.nonRetryable(error) : !(policy.nonRetryable ?? []).some((type) => error instanceof type);
      if (attempt < policy.maxAttempts && retryable) {
        const delayMs = backoffMs(policy, attempt);
        const dueInMs = await writeFenced(lease, () => suspendForRetry(db, { ...fenceOf(lease), seq, attempt, name, error: recorded, delayMs }));
        if (dueInMs === null) throw await lost(lease, error);
        const message = `workflow ${workflowId}: step #${seq} ${name} attempt ${attempt} of ${policy.maxAttempts} failed (${error.name}: ${error.message}); retrying in ${dueInMs} ms — the workflow waits in the database`;
        say('warn', 'retry-scheduled', message, { ...about, dueInMs });
        crashPoint(`after-retry-scheduled:${name}`);
        throw goToWait('retry', dueInMs);
      }
      if (!(await writeFenced(lease, () => recordStepFailure(db, { ...fenceOf(lease), seq, attempt, name, error: recorded })))) throw await lost(lease, error);
      const failure = new StepFailedError(workflowId, seq, name, attempt, error.name, error.message, { cause: error });
      say('warn', 'step-failed', failure.message, about);
      throw failure;
    }

    /** A sleep at the next position: until `until`, or for `ms` by the database clock. */
    async function sleep(name: string, wake: { until: Date } | { ms: number }): Promise<void> {
      const seq = nextSeq++;
      const entry = replay(seq, name, 'sleep');
      if (entry) {
        // Over when the database's clock at this claim has passed its end. Not
        // this worker's clock: a worker an hour ahead would wake every sleep an hour early.
        const until = new Date((entry.output as { until: string }).until);
        if (claim.claimedAt === undefined || until.getTime() <= claim.claimedAt) return;
        mayStart();
        const dueInMs = await writeFenced(lease, () => suspendUntil(db, fenceOf(lease), until));
        if (dueInMs === null) throw await lost(lease);
        throw goToWait('sleep', dueInMs);
      }
      mayStart();
      const slept = await writeFenced(lease, () => suspendForSleep(db, { ...fenceOf(lease), seq, name, ...wake }));
      if (slept === null) throw await lost(lease);
      if (!slept.released) return; // already over (a date in the past, a sleep of 0): recorded, and on we go
      say('info', 'sleeping', `workflow ${workflowId}: sleeps until ${slept.until.toISOString()} (${slept.dueInMs} ms), holding no worker`, {
        workflowId,
        fencingToken: lease.fencingToken,
        step: { seq, name },
        dueInMs: slept.dueInMs,
      });
      crashPoint('after-sleep-recorded');
      throw goToWait('sleep', slept.dueInMs);
    }

    /**
     * Write a `transaction` step's record inside its transaction `tx`, fenced:
     * only if this run's token is still the workflow's and its lease holds.
     * Until COMMIT, neither the record nor the business writes exist for
     * anyone. False: the fence refused.
     */
    async function record(tx: pg.PoolClient, seq: number, name: string, recordable: unknown): Promise<boolean> {
      try {
        return await recordStep(tx, { workflowId, seq, name, output: recordable, fencingToken: lease.fencingToken });
      } catch (thrown) {
        // 23505 unique_violation on (workflow_id, seq).
        if ((thrown as { code?: string }).code === '23505') throw stop(lease, new StepAlreadyRecordedError(workflowId, seq, name, { cause: thrown }));
        throw thrown;
      }
    }

    /**
     * A plain step's record was refused, and the statement cannot say why: its
     * fence, or (never under leases) a position already recorded. Ask the log.
     * Still held: the position was taken — StepAlreadyRecordedError: the run
     * stops, and the next claim replays the log as it is now.
     * Anything else is a lost lease, and so is an answer that could not be
     * read: the safe side. A lost lease stops the run (had it held after all,
     * it runs out, and the next claim replays the log).
     */
    async function refusedRecord(seq: number, name: string): Promise<Error> {
      let refusal: Refusal;
      try {
        refusal = await explainRefusal(db, fenceOf(lease));
      } catch (thrown) {
        return lost(lease, thrown, `refused by the fence (why could not be read: ${toError(thrown).message})`);
      }
      if (refusal.kind === 'held') return stop(lease, new StepAlreadyRecordedError(workflowId, seq, name));
      return lost(lease, undefined, refusal.reason);
    }

    // ── waits and children, gathered ─────────────────────────────────────────
    //
    // Waits (and child starts) the code makes in one turn — before it next
    // waits on I/O: `Promise.all(handles.map((h) => h.result()))`, a loop with
    // no await between its calls — go to the database together, at the end of
    // the turn (setImmediate: after every promise reaction has run). 1,000
    // children: one transaction starts them, one looks for their ends; the
    // parent parks once, and wakes once, when the last of them has ended.
    // One by one, the parent would park on the first, wake when it ends,
    // replay, park on the second: 1,000 wake-ups, each replaying a longer log.

    /** Calls waiting for the end of this turn, and what each resolves with. */
    type Gathered<Item, Result> = { items: Array<Item & { resolve(result: Result): void; reject(thrown: unknown): void }>; flush(items: Item[]): Promise<Result[]> };

    /** Add `item` to this turn's batch; the first of a turn schedules the flush. */
    function gather<Item, Result>(batch: Gathered<Item, Result>, item: Item): Promise<Result> {
      return new Promise<Result>((resolve, reject) => {
        batch.items.push({ ...item, resolve, reject });
        if (batch.items.length > 1) return;
        setImmediate(() => {
          const items = batch.items;
          batch.items = [];
          // The run may have gone to wait, lost its lease or been cancelled since the calls were made.
          Promise.resolve()
            .then(() => (mayStart(), batch.flush(items)))
            .then(
              (results) => items.forEach((item, i) => item.resolve(results[i]!)),
              (thrown: unknown) => items.forEach((item) => item.reject(thrown)),
            );
        });
      });
    }

    type Wait = { seq: number; name: string; timeoutMs: number | null };

    /** A wait at the next position for the event `name`: how it ended, from the log, or from this turn's look. */
    function waitFor(name: string, timeoutMs: number | null): Promise<WaitEnd> {
      const seq = nextSeq++;
      const entry = replay(seq, name, 'event');
      if (entry) return Promise.resolve(entry.output as WaitEnd);
      mayStart();
      return gather(waits, { seq, name, timeoutMs });
    }

    /**
     * This turn's waits, in ONE transaction: the row's lock FIRST, then the
     * look — see "events" in queries.ts for the race this closes. Each wait
     * takes an event, or ends by its timeout (on the row, by the database
     * clock): recorded. If any is left, the workflow parks for all that are
     * left — still holding the lock, so no send slips in between — and this
     * run is over: every wait of the turn throws GoneToWait (those that ended
     * are in the log, and the next run replays them).
     */
    /**
     * What the flush's transaction answers: how each wait that ended ended, by
     * its position (`ended`); and, when some are left, those it parked for
     * (`left`) and how long until the soonest timeout, as parkForEvents said
     * (`dueInMs`; null: none).
     */
    type Looked = { ended: Map<number, WaitEnd>; left?: undefined } | { ended: Map<number, WaitEnd>; left: Wait[]; dueInMs: number | null };

    const waits: Gathered<Wait, WaitEnd> = {
      items: [],
      async flush(batch) {
        const looked = await inLease<Looked>(lease, async (tx) => {
          // TODO 2: the waiter's half of the protocol, in this ONE transaction
          // (`tx`: inLease commits when this returns and rolls back if it throws).
          //
          // 1. Lock the workflow's row FIRST: lockForWait(tx, fenceOf(lease)).
          //    It is fenced. null: this run no longer holds the workflow (it
          //    froze past its lease and was taken over) and must take
          //    nothing — `throw new Refused()`: inLease rolls back and ends
          //    the run as lease-lost. Otherwise it answers the waits the
          //    workflow is already parked in (each one's position and
          //    timeout, `until`) and the database's clock now (`nowMs`).
          // 2. Only then look: takeEvents(tx, workflowId, batch) — each wait
          //    that finds an event takes the oldest untaken one of its name.
          // 3. Each wait of `batch` has now ended — with the event it took, or
          //    with `{ timedOut: true }` if the row has a timeout for it that
          //    has passed by `nowMs` — or is left. Record those that ended, in
          //    this same transaction: recordWaitsEnded (one entry each, at the
          //    wait's position, its WaitEnd as the output).
          // 4. None left: return { ended }. Otherwise park for ALL that are
          //    left, at once, still under the lock: parkForEvents(tx,
          //    fenceOf(lease), left); return { ended, left, dueInMs } with what it
          //    answers. The code below then ends the run (goToWait).
          //
          // Why the lock comes before the look, and what is lost otherwise:
          // README.md, and "events" in queries.ts.
          void tx;
          throw new Error(`TODO 2: a wait neither takes its event nor parks yet (the waits' flush in exercises/09-lost-wake-up/run.ts): ${batch.map((w) => `"${w.name}"`).join(', ')}`);
        });
        if (looked.left) {
          const names = looked.left.map((wait) => `"${wait.name}"`);
          const shown = names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ');
          const until = looked.dueInMs === null ? 'its events come' : `its events come, or ${looked.dueInMs} ms pass`;
          say('info', 'waiting-for-event', `workflow ${workflowId}: waits for ${shown} until ${until}, holding no worker`, {
            workflowId,
            fencingToken: lease.fencingToken,
            step: { seq: looked.left[0]!.seq, name: looked.left[0]!.name },
            dueInMs: looked.dueInMs ?? undefined,
          });
          crashPoint(`after-park:${looked.left[0]!.name}`);
          throw goToWait('event', looked.dueInMs);
        }
        const timedOut = batch.filter((wait) => 'timedOut' in looked.ended.get(wait.seq)!).length;
        const first = batch[0]!;
        const message =
          batch.length === 1 ? `workflow ${workflowId}: wait #${first.seq} for "${first.name}" ${timedOut ? 'timed out' : 'got its event'}`
          : `workflow ${workflowId}: ${batch.length} waits (#${first.seq} …) ended: ${batch.length - timedOut} got their events, ${timedOut} timed out`;
        say('debug', 'event-received', message, { workflowId, fencingToken: lease.fencingToken, step: { seq: first.seq, name: first.name } });
        return batch.map((wait) => looked.ended.get(wait.seq)!);
      },
    };

    type ChildStart = { seq: number; id: string; name: string; input: unknown; maxAttempts: number; timeoutMs: number | null };

    /**
     * This turn's children, started in ONE transaction of this run: fenced,
     * the children's rows (runnable at once, a NOTIFY at COMMIT) and their
     * entries in this log commit together — a crash before COMMIT leaves
     * neither, after it both, and a replay finds the entries and starts nothing.
     */
    const childStarts: Gathered<ChildStart, void> = {
      items: [],
      async flush(batch) {
        await inLease(lease, async (tx) => {
          if (!(await fenceTransaction(tx, fenceOf(lease)))) throw new Refused();
          const taken = await startChildren(tx, fenceOf(lease), batch, processTag);
          if (taken.length > 0) throw new ChildIdTakenError(workflowId, taken);
        });
        crashPoint('after-children-started');
        wakeLocal();
        const shown = batch.length === 1 ? `child ${batch[0]!.id}` : `${batch.length} children (${batch[0]!.id} …)`;
        say('info', 'children-started', `workflow ${workflowId}: started ${shown}`, { workflowId, fencingToken: lease.fencingToken, step: { seq: batch[0]!.seq, name: batch[0]!.name } });
        return batch.map(() => undefined);
      },
    };

    /** A child's handle: its id, and its end — awaited once, however often `result()` is called (each call would be a wait of its own). */
    function handleOf<Output>(id: string): ChildHandle<Output> {
      let ended: Promise<Output> | undefined;
      return {
        id,
        result() {
          ended ??= (async () => {
            const end = eventOf<ChildEnd>(await waitFor(childEndEvent(id), null))!;
            if (end.status === 'completed') return decodeFromLog(end.output) as Output;
            throw new ChildWorkflowError(id, end.status, end.error);
          })();
          return ended;
        },
      };
    }

    const ctx: Context = {
      workflowId,
      signal,
      async step<T>(name: string, fn: (info: StepInfo) => Promise<T>, options: StepOptions = {}): Promise<T> {
        // Each call takes the next position, synchronously, in the order the code makes the calls.
        const seq = nextSeq++;
        const policy = options.retry ? resolveRetryPolicy(options.retry, retry) : retry;
        const entry = replay(seq, name, 'step');
        if (entry) return replayed<T>(entry);
        mayStart();
        const info = infoFor(seq, name, (failedAttempts.get(seq) ?? 0) + 1);
        // Its own span from here to its record (tracing.ts): what ran, for how long, and how it ended —
        // a failed attempt's span ends with the step's own error; what follows (a retry, a failure) is the run's.
        let failed: { thrown: unknown } | undefined;
        return inStepSpan({ workflowId, fencingToken: lease.fencingToken, seq, name, kind: 'step', attempt: info.attempt }, async () => {
          crashPoint(`before-step:${name}`);
          let result: T;
          try {
            result = await withTimeout(info, options.timeoutMs ?? stepTimeoutMs, fn);
          } catch (thrown) {
            failed = { thrown };
            throw thrown;
          }
          // The engine's check first, then the log entry: what a logger can print never decides what happens.
          const recordable = toStepRecordable(seq, name, result);
          ran(seq, name, result);
          // The effect happened outside the database: the log does not know yet.
          // A crash here runs fn again, with the same key. A freeze here past the
          // lease: another worker runs fn again (same key), and this record is refused.
          crashPoint(`after-effect:${name}`);
          // One statement, so there is no "during" to crash in: it committed, or it never happened.
          const step = { workflowId, seq, name, output: recordable, fencingToken: lease.fencingToken };
          if (!(await writeFenced(lease, () => stepRecords.write(step)))) throw await refusedRecord(seq, name);
          sayRecorded(seq, name);
          crashPoint(`after-record:${name}`);
          return result;
        }).catch((thrown: unknown) => (failed && thrown === failed.thrown ? attemptFailed(info, thrown, policy) : Promise.reject(thrown)));
      },

      async transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>, options: Pick<StepOptions, 'retry'> = {}): Promise<T> {
        const seq = nextSeq++;
        const policy = options.retry ? resolveRetryPolicy(options.retry, retry) : retry;
        const entry = replay(seq, name, 'step');
        if (entry) return replayed<T>(entry);
        mayStart();
        const info = infoFor(seq, name, (failedAttempts.get(seq) ?? 0) + 1);
        let failed: { thrown: unknown } | undefined;
        return inStepSpan({ workflowId, fencingToken: lease.fencingToken, seq, name, kind: 'transaction', attempt: info.attempt }, async () => {
          crashPoint(`before-step:${name}`);
          // One transaction for the fence, the step's writes AND its record. The
          // fence comes first and locks the workflow row: from here to COMMIT no
          // other worker can claim it, so these writes cannot race a takeover.
          // (Not batched: its writes are the step's own, on its own connection.)
          let result: T;
          try {
            result = await inLease(lease, async (tx) => {
              if (!(await fenceTransaction(tx, fenceOf(lease)))) throw new Refused();
              let result: T;
              try {
                result = await fn(tx, info);
              } catch (thrown) {
                throw new AttemptThrew(thrown);
              }
              const recordable = toStepRecordable(seq, name, result);
              ran(seq, name, result);
              // The step's writes are made — but only inside this transaction. A
              // crash here rolls them back; so does a refused record below.
              crashPoint(`after-effect:${name}`);
              if (!(await record(tx, seq, name, recordable))) throw new Refused();
              // Written, not committed: a crash here rolls back the record AND the step's writes.
              crashPoint(`during-record:${name}`);
              return result;
            });
          } catch (thrown) {
            // The step's own code threw, and everything it wrote rolled back: a failed attempt —
            // unless what failed was the connection under it: the database, not the step.
            if (thrown instanceof AttemptThrew) {
              if (isConnectionFailure(thrown.thrown)) throw unavailable(lease, thrown.thrown);
              failed = { thrown: thrown.thrown };
              throw thrown.thrown;
            }
            throw thrown;
          }
          // Committed: the writes and the record exist together, for good.
          sayRecorded(seq, name);
          crashPoint(`after-record:${name}`);
          return result;
        }).catch((thrown: unknown) => (failed && thrown === failed.thrown ? attemptFailed(info, thrown, policy) : Promise.reject(thrown)));
      },

      async sleep(ms: number): Promise<void> {
        checkSleep(ms);
        return sleep('sleep', { ms });
      },

      async waitForEvent<T>(name: string, options: { timeoutMs?: number } = {}): Promise<T | undefined> {
        checkEventName(name);
        const timeoutMs = options.timeoutMs ?? null;
        if (timeoutMs !== null) checkSleep(timeoutMs);
        return eventOf<T>(await waitFor(name, timeoutMs));
      },

      async startChild<Output, Input>(name: string, input: Input, options: ChildOptions = {}): Promise<ChildHandle<Output>> {
        const seq = nextSeq++;
        const entry = replay(seq, name, 'child');
        if (entry) return handleOf<Output>((entry.output as { id: string }).id);
        mayStart();
        const id = childId(workflowId, seq);
        checkWorkflowId(id);
        lookUp(name, id); // a name no code is registered under fails the parent here, before anything is written
        const childMaxAttempts = options.maxAttempts ?? maxAttempts;
        if (!Number.isInteger(childMaxAttempts) || childMaxAttempts < 1) throw new RangeError(`maxAttempts must be a whole number ≥ 1, got ${childMaxAttempts}`);
        const timeoutMs = options.timeoutMs ?? null;
        if (timeoutMs !== null && !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new RangeError(`timeoutMs must be a finite number of milliseconds > 0, got ${String(timeoutMs)}`);
        const recordable = toRecordable(input, `the input of child workflow ${id}`);
        await gather(childStarts, { seq, id, name, input: recordable, maxAttempts: childMaxAttempts, timeoutMs });
        return handleOf<Output>(id);
      },

      async nonCancellable<T>(fn: () => Promise<T>): Promise<T> {
        shielded++;
        try {
          return await fn();
        } finally {
          shielded--;
        }
      },

      get cancelled() {
        return lease.cancelSignal.aborted;
      },

      async sleepUntil(date: Date): Promise<void> {
        if (!(date instanceof Date) || !Number.isFinite(date.getTime())) throw new RangeError(`sleepUntil needs a valid Date, got ${String(date)}`);
        return sleep('sleep', { until: date });
      },
    };
    return {
      ctx,
      get waiting() {
        return waiting;
      },
      /** The code returned, but the log has steps at positions it never reached: it changed too. */
      checkAllRecordedStepsWereCalled() {
        const skipped = log.steps.find((step) => step.seq >= nextSeq);
        if (skipped) throw new NonDeterminismError(workflowId, skipped.seq, skipped.name, undefined);
      },
    };
  }

  // ── the writes, and what their failures mean ───────────────────────────────

  /** Send one fenced write; what it returns (false or null: its fence refused it). A connection failure is the database being unavailable. */
  async function writeFenced<T>(lease: Lease, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (thrown) {
      throw unavailable(lease, thrown);
    }
  }

  /**
   * recordStep sent alone. A position already recorded fails it with
   * unique_violation; here that is a refusal, as recordSteps' ON CONFLICT DO
   * NOTHING makes it in a shared statement — one run's duplicate must not fail
   * the records of the runs it shares a statement with. refusedRecord tells the two apart.
   */
  async function recordStepAlone(step: StepRecord): Promise<boolean> {
    try {
      return await recordStep(db, step);
    } catch (thrown) {
      if ((thrown as { code?: string }).code === '23505') return false; // unique_violation on (workflow_id, seq)
      throw thrown;
    }
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
   * A fence refused this run's token: stop the run, and say why — as the
   * database tells it ("taken over by …"), even if our own timer had already
   * given the lease up ("not renewed in time"), which is then the cause.
   * `known`: the reason, when the caller has already asked.
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
    return stop(
      lease,
      new DatabaseUnavailableError(
        `workflow ${lease.workflowId}: the database connection failed (${toError(thrown).message}); this run stopped, and the workflow is claimed again`,
        'Nothing to do if it passes: what was committed stays, the rest is replayed. If it keeps happening, check the database and the network.',
        { cause: thrown },
      ),
    );
  }

  /** The engine failed under the run holding `lease`: remember it (stoppedRuns), and return the error to throw. */
  function stop<E extends Error>(lease: Lease, error: E): E {
    if (!stoppedRuns.has(lease)) stoppedRuns.set(lease, error);
    return error;
  }

  return execute;
}
