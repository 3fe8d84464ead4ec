/**
 * A lease as one worker process sees it: which workflow, which fencing token,
 * and until when it may go on working — by its own monotonic clock, kept on
 * the safe side of the database's.
 *
 * The database is the authority: every write is fenced there (queries.ts). The
 * local copy exists so a worker can stop *before* its lease runs out when it
 * cannot renew it, instead of finding out at its next write.
 */
import { EngineError, WorkflowCancelledError } from './errors.ts';

/**
 * This worker no longer holds the workflow's lease: it expired, another worker
 * claimed the workflow (a newer fencing token), or the worker released it on
 * shutdown. The run stops; nothing it had not committed was written, and the
 * workflow's new holder carries on from the log.
 */
export class LeaseLostError extends EngineError {
  constructor(
    /** The workflow this run no longer owns. */
    readonly workflowId: string,
    /** The token this run was claimed with, now stale. */
    readonly fencingToken: number,
    /** Why, in words: "taken over by worker-2 (fencing token 3)", "expired 120 ms ago", … */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      `workflow ${workflowId}: lease lost (fencing token ${fencingToken}): ${reason}. This run stopped and wrote nothing more.`,
      'Nothing to do: the workflow is (or will be) run by whoever holds its lease now. If it happens often, the lease is too short for ' +
        'how long this worker goes without renewing it (a blocked event loop, a long GC pause): raise leaseMs.',
      options,
    );
  }
}

/** One claim of one workflow, held by this process. */
export class Lease {
  private readonly controller = new AbortController();
  private deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private lostWith: LeaseLostError | undefined;

  constructor(
    readonly workflowId: string,
    readonly fencingToken: number,
    /** performance.now() when the claim was SENT: the database's now() came after it. */
    sentAt: number,
    /** The lease length this run was claimed for. */
    readonly leaseMs: number,
  ) {
    this.deadline = sentAt + leaseMs;
    this.arm();
  }

  private readonly cancelController = new AbortController();

  /**
   * cancel() was called on the workflow (heard by a NOTIFY or a renewal):
   * abort the cancellation's signal. `reason` null: heard without one (a
   * NOTIFY); the run reads it from the log when it records the end.
   */
  cancel(reason: string | null): void {
    if (!this.cancelController.signal.aborted) this.cancelController.abort(new WorkflowCancelledError(this.workflowId, reason));
  }

  /** Aborted when the workflow is cancelled. */
  get cancelSignal(): AbortSignal {
    return this.cancelController.signal;
  }

  /** Aborted when the lease is lost: hand it to whatever a step waits on (fetch, a query). */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get lost(): LeaseLostError | undefined {
    return this.lostWith;
  }

  /**
   * The database renewed the lease with a statement sent at `sentAt`. Its new
   * expiry is `now() + lease` on the database clock, and that now() came
   * after `sentAt`: counting from `sentAt` on our own clock errs on the early side.
   */
  renewed(sentAt: number): void {
    if (this.lostWith) return;
    this.deadline = Math.max(this.deadline, sentAt + this.leaseMs);
    this.arm();
  }

  /** Give the lease up: abort the run's signal. The first reason sticks. */
  lose(reason: string, cause?: unknown): LeaseLostError {
    if (!this.lostWith) {
      this.lostWith = new LeaseLostError(this.workflowId, this.fencingToken, reason, { cause });
      clearTimeout(this.timer);
      this.controller.abort(this.lostWith);
    }
    return this.lostWith;
  }

  /**
   * Throw unless the lease still holds, by our own clock. Called before each
   * step's code runs: a worker that knows it lost the lease starts no new effect.
   * (A process frozen past its deadline finds out here, even before its timer fires.)
   */
  check(): void {
    if (!this.lostWith && performance.now() >= this.deadline - this.margin()) this.expire();
    if (this.lostWith) throw this.lostWith;
  }

  /** The run is over: no timer may fire for it any more. */
  dispose(): void {
    clearTimeout(this.timer);
  }

  private finishedListeners: Array<(waitMs?: number | null) => void> = [];

  /** Call `listener` once the run's end is recorded, or its workflow put to wait (the worker frees its slot then). */
  onFinished(listener: (waitMs?: number | null) => void): void {
    this.finishedListeners.push(listener);
  }

  /**
   * The run's end is recorded — or, with `waitMs`, the workflow was put to wait
   * for that long (null: until an event): the workflow is no longer this lease's
   * business. Said before anyone awaiting the result hears of it, so a caller
   * that starts the next workflow at once finds the slot already free.
   */
  finished(waitMs?: number | null): void {
    for (const listener of this.finishedListeners.splice(0)) listener(waitMs);
  }

  /**
   * Stop a little before the deadline, not at it: the run must stop working
   * while its lease still holds, so its last writes cannot race the takeover.
   */
  private margin(): number {
    return Math.min(this.leaseMs / 10, 1000);
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.expire(), Math.max(0, this.deadline - this.margin() - performance.now()));
    this.timer.unref();
  }

  private expire(): void {
    this.lose(`not renewed in time: its ${this.leaseMs} ms lease runs out and this worker could not renew it`);
  }
}
