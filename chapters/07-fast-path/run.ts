/**
 * The run of one claimed workflow, top to bottom: read the log, run the code
 * (recorded steps come back from the log, the rest run and are recorded),
 * record the end. Every write is fenced with the run's token, exactly as in
 * chapter 6 (stillHeld() in queries.ts). What changed is how many statements
 * carry those writes:
 *
 *   a plain step's record    chapter 6: BEGIN + SET LOCAL; fenced INSERT; COMMIT   3 round trips
 *                            here:      the fenced INSERT, alone                   1
 *   the completion           chapter 6: BEGIN + SET LOCAL; fenced UPDATE; COMMIT   3
 *                            here:      the fenced UPDATE, alone                   1
 *   the log, first claim     chapter 6: SELECT … FROM steps                        1
 *                            here:      nothing: token 1 has no run before it      0
 *   a transaction step       unchanged: BEGIN + SET LOCAL; fence; its SQL; fenced INSERT; COMMIT
 *   runs writing at once     share one multi-row fenced statement (batcher.ts)
 *
 * A statement sent alone is a transaction of its own: its fence, the row lock
 * the fence takes and its write commit together, or none of them happened. So
 * a plain step's record and the completion have no `during-record` crash
 * point any more; a transaction step keeps one (its writes and its record
 * sit uncommitted between the record and COMMIT).
 *
 * engine.ts makes one runner per engine; worker.ts calls `execute` for each
 * claim, and start.ts's local handover is a claim like any other.
 */
import type { Span } from '@opentelemetry/api';
import type pg from 'pg';
import { createBatcher } from './batcher.ts';
import { DatabaseUnavailableError, NonDeterminismError, StepAlreadyRecordedError, StepTimeoutError, toError, UnserializableResultError } from './errors.ts';
import { decodeFromLog } from './json.ts';
import { Lease, LeaseLostError } from './lease.ts';
import {
  completeWorkflow,
  completeWorkflows,
  explainLostLease,
  explainRefusal,
  failWorkflow,
  fenceTransaction,
  inTransaction,
  isConnectionFailure,
  loadSteps,
  recordStep,
  recordSteps,
  type Claim,
  type Fence,
  type Refusal,
  type StepRow,
} from './queries.ts';
import type { Say } from './log.ts';
import type { Finished } from './results.ts';
import { ATTRIBUTES, endSpan, inStepSpan, startRunSpan, withSpan } from './tracing.ts';
import type { Context, StepInfo, StepOptions, Workflow } from './types.ts';

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

/** What a run needs from the engine (engine.ts). */
export interface RunParts {
  db: pg.Pool;
  /** In-process attempts of a run before the workflow is marked failed. */
  attempts: number;
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
}

/** How a run ended and was recorded: completed, or failed with the error recorded as the workflow's. */
export type RunOutcome = { outcome: 'completed' } | { outcome: 'failed'; error: Error };

/** `execute(claim, lease)`: run a claimed workflow. One per engine, shared by all its workers. */
export function createRunner({ db, attempts, stepTimeoutMs, lookUp, toRecordable, settleWaiters, say, crashPoint }: RunParts) {
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
  const stepRecords = createBatcher(async (steps: Array<Omit<StepRow, 'recordedAt'>>) => {
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
   * log has, run the rest, record the end. Every write is fenced with the
   * lease's token. Throws {@link LeaseLostError} the moment a fence refuses it
   * (or the worker finds it could not renew); nothing after that is written.
   */
  async function execute(claim: Claim, lease: Lease): Promise<RunOutcome> {
    const workflow = lookUp(claim.name, claim.id);
    const fence = fenceOf(lease);
    for (let attempt = 1; ; attempt++) {
      const span = startRunSpan(claim, attempt);
      try {
        lease.check();
        // 1. Read what the log knows about this workflow: every recorded step, in one query.
        //    Not on its first claim (token 1): no run before this one could have
        //    recorded anything (migration 003 makes that true of logs adopted
        //    from chapters 3–5 too). A second attempt reads it: the first may have written.
        const recorded =
          claim.fencingToken === 1 && attempt === 1 ? [] : await loadSteps(db, claim.id).catch((thrown: unknown) => Promise.reject(unavailable(lease, thrown)));
        for (const step of recorded) step.output = decodeFromLog(step.output);
        if (recorded.length > 0) {
          const message = `workflow ${claim.id}: ${recorded.length} step(s) in the log, replaying (fencing token ${claim.fencingToken})`;
          say('info', 'replaying', message, { workflowId: claim.id, fencingToken: claim.fencingToken });
        }
        // 2. Run the code from the top. Recorded steps come back from the log;
        //    the rest run for real and are recorded (see `contextFor`).
        const replay = contextFor(claim.id, recorded, lease, span);
        const output = await withSpan(span, () => workflow(replay.ctx, decodeFromLog(claim.input)));
        replay.checkAllRecordedStepsWereCalled();
        // 3. Record the end — fenced like a step, and like a step one statement.
        const recordable = toRecordable(output, `the output of workflow ${claim.id}`);
        if (!(await fenced(lease, () => completions.write({ ...fence, output: recordable })))) throw await lost(lease);
        crashPoint('after-record:complete');
        // The slot frees before the waiters hear: a caller that starts its next
        // workflow the moment result() returns finds the local worker free.
        lease.finished();
        settleWaiters(claim.id, { status: 'completed', output, error: null });
        endSpan(span);
        return { outcome: 'completed' };
      } catch (thrown) {
        const error = toError(thrown);
        endSpan(span, error);
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
          lease.finished();
          settleWaiters(claim.id, { status: 'failed', output: null, error: error.message });
          say('warn', 'workflow-failed', `workflow ${claim.id} failed: ${error.message}`, { workflowId: claim.id, fencingToken: claim.fencingToken, error });
          return { outcome: 'failed', error };
        }
        const message = `workflow ${claim.id}: attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`;
        say('warn', 'attempt-failed', message, { workflowId: claim.id, fencingToken: claim.fencingToken, error });
      }
    }
  }

  /** The `Context` for one run of one workflow, replaying `recorded`, writing under `lease`. */
  function contextFor(workflowId: string, recorded: StepRow[], lease: Lease, span: Span) {
    // By position, not by array index: steps run in parallel may be recorded out of order.
    const log = new Map(recorded.map((step) => [step.seq, step]));
    let nextSeq = 0;

    /** What the step at `seq` is told about itself: where it is, its key, this run's signal. */
    function infoFor(seq: number, name: string): StepInfo {
      return { workflowId, seq, name, idempotencyKey: stepKey(workflowId, seq), fencingToken: lease.fencingToken, signal: lease.signal };
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
      if (entry) {
        span.addEvent('step replayed', { [ATTRIBUTES.stepSeq]: seq, [ATTRIBUTES.stepName]: name });
        const fields = { workflowId, fencingToken: lease.fencingToken, step: { seq, name }, output: entry.output };
        say('debug', 'step-replayed', `workflow ${workflowId}: step #${seq} ${name} replayed from the log`, fields);
      }
      return entry;
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

    const ctx: Context = {
      workflowId,
      signal: lease.signal,
      async step<T>(name: string, fn: (info: StepInfo) => Promise<T>, options: StepOptions = {}): Promise<T> {
        // Each call takes the next position, synchronously, in the order the code makes the calls.
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        // Its own span from here to its record (tracing.ts): what ran, for how long, and how it ended.
        return inStepSpan({ workflowId, fencingToken: lease.fencingToken, seq, name, kind: 'step' }, async () => {
          lease.check(); // a run that knows it lost the lease starts no new effect
          crashPoint(`before-step:${name}`);
          const result = await withTimeout(seq, name, options.timeoutMs ?? stepTimeoutMs, fn);
          // The engine's check first, then the log entry: what a logger can print never decides what happens.
          const recordable = toStepRecordable(seq, name, result);
          ran(seq, name, result);
          // The effect happened outside the database: the log does not know yet.
          // A crash here runs fn again, with the same key. A freeze here past the
          // lease: another worker runs fn again (same key), and this record is refused.
          crashPoint(`after-effect:${name}`);
          // One statement, so there is no "during" to crash in: it committed, or it never happened.
          const step = { workflowId, seq, name, output: recordable, fencingToken: lease.fencingToken };
          if (!(await fenced(lease, () => stepRecords.write(step)))) throw await refusedRecord(seq, name);
          sayRecorded(seq, name);
          crashPoint(`after-record:${name}`);
          return result;
        });
      },

      async transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>): Promise<T> {
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        return inStepSpan({ workflowId, fencingToken: lease.fencingToken, seq, name, kind: 'transaction' }, async () => {
          lease.check();
          crashPoint(`before-step:${name}`);
          // One transaction for the fence, the step's writes AND its record. The
          // fence comes first and locks the workflow row: from here to COMMIT no
          // other worker can claim it, so these writes cannot race a takeover.
          // (Not batched: its writes are the step's own, on its own connection.)
          const result = await inLease(lease, async (tx) => {
            if (!(await fenceTransaction(tx, fenceOf(lease)))) throw new Refused();
            const result = await fn(tx, infoFor(seq, name));
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
          // Committed: the writes and the record exist together, for good.
          sayRecorded(seq, name);
          crashPoint(`after-record:${name}`);
          return result;
        });
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

  // ── the writes, and what their failures mean ───────────────────────────────

  /** Send one fenced write; true when written, false when its fence refused it. */
  async function fenced(lease: Lease, write: () => Promise<boolean>): Promise<boolean> {
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
  async function recordStepAlone(step: Omit<StepRow, 'recordedAt'>): Promise<boolean> {
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
    return new DatabaseUnavailableError(
      `workflow ${lease.workflowId}: the database connection failed (${toError(thrown).message}); this run stopped, and the workflow is claimed again`,
      'Nothing to do if it passes: what was committed stays, the rest is replayed. If it keeps happening, check the database and the network.',
      { cause: thrown },
    );
  }

  return execute;
}
