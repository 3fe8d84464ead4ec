/**
 * A worker: claims runnable workflows, runs up to `concurrency` of them at
 * once, keeps their leases alive, and lets go cleanly when told to stop.
 *
 *   claim loop   when a slot is free: claimWorkflows(free slots) → run each
 *                sleeps between claims until: a NOTIFY, enough slots free up
 *                after a full claim, the next waiting workflow's time comes
 *                (nextWakeUp; or a run of its own put one to wait), or the
 *                poll interval (the fallback that also finds expired leases:
 *                the takeover of a dead worker's work)
 *   local starts start() in this process hands a new workflow straight to a
 *                free slot, inserted already claimed (reserve → take); a run
 *                that starts children, or wakes a parent, wakes this worker too
 *   cancels      a NOTIFY on the cancel channel names a workflow this worker
 *                holds: its run's cancel signal aborts (a missed NOTIFY is
 *                caught by the next heartbeat, which returns the request)
 *   heartbeat    every lease/3 to lease/2, at random: renewLeases(every held
 *                lease), one UPDATE for all of them. A lease whose renewal is
 *                refused is lost: that run is aborted. If renewals fail
 *                outright (no database), each lease's own timer aborts its run
 *                shortly before it runs out.
 *   stop()       stop claiming; let the held runs finish for up to
 *                `shutdownGraceMs`, renewing their leases meanwhile; release
 *                what is left (lease_expires_at = now(): runnable at once).
 *   retention    if asked (options.retention): every everyMs, delete finished
 *                workflows past an age, a batch per statement (pruneFinished).
 *   schedules    the engine's schedules (schedules.ts), if it has any: at each
 *                tick, by the database clock, start the tick's workflow — once,
 *                whichever workers' schedulers try (the tick is its id).
 *
 * The database going away (a restart, a failover, a dropped connection) is
 * weather, not a bug: the worker never exits for it. Claims back off (up to
 * 5 s between tries) and the outage is told to the engine's logger once when
 * it starts and once when it ends (log.ts); runs whose leases cannot be renewed stop before they run out;
 * the LISTEN connection comes back on its own, and polling covers the gap.
 */
import os from 'node:os';
import type pg from 'pg';
import type { EngineCore } from './engine.ts';
import { DatabaseUnavailableError, StepAlreadyRecordedError, toError } from './errors.ts';
import { Lease, LeaseLostError } from './lease.ts';
import { explainMissingSchema, SchemaMissingError } from './migrate.ts';
import {
  claimWorkflows,
  deferWorkflow,
  explainLostLease,
  markTick,
  nextWakeUp,
  pruneFinished,
  scheduleState,
  isConnectionFailure,
  releaseLeases,
  renewLeases,
  WAKE_CHANNEL,
  CANCEL_CHANNEL,
  type Claim,
} from './queries.ts';
import { MAX_TIMER_MS } from './run.ts';
import { nextTick, ticksBetween } from './schedules.ts';
import type { LocalWorker } from './start.ts';

/** How long after the last wait its own runs started is due a drain still claims (see the claim loop). */
const DRAIN_MARGIN_MS = 100;

/** Options of a worker (`engine.createWorker(options)`). */
export interface WorkerOptions {
  /** Workflows run at once (default 8). The pool needs at least this many connections, plus three (plus one where the process also starts workflows). */
  concurrency?: number;
  /**
   * How long a claim lasts without renewal (default 30 000 ms). Renewed every
   * lease/3 to lease/2 (at random) while the run goes on. A crashed worker's workflows are taken over
   * this long after its last renewal, so shorter is a faster takeover — but a
   * worker that stalls longer than lease/2 (a blocked event loop, a long GC
   * pause) loses its leases and its runs stop.
   */
  leaseMs?: number;
  /** Look for runnable workflows at least this often (default 1000 ms, ±20 % jitter), NOTIFY or not. */
  pollMs?: number;
  /** On stop(), how long held runs may take to finish before their leases are released (default 10 000 ms). */
  shutdownGraceMs?: number;
  /** Stored as `lease_owner`, for people to read (default `<hostname>:<pid>`). */
  name?: string;
  /** LISTEN for NOTIFYs from `start()` to claim new work at once (default true); polling stays on either way. */
  listen?: boolean;
  /** Called when a run this worker started ends, however it ended. */
  onRunEnd?: (event: RunEndEvent) => void;
  /**
   * Delete finished (completed or failed) workflows and their steps once they
   * were last changed more than `olderThanMs` ago: checked every `everyMs`
   * (default 60 000, ±20 %), `batch` rows a statement (default 1000), rows
   * another session holds skipped. Off by default: deleting history is the
   * application's decision. `result()` of a pruned workflow says it is not in
   * the log. Every worker with it on prunes; their batches do not collide.
   */
  retention?: { olderThanMs: number; everyMs?: number; batch?: number };
  /** Run the engine's schedules here (default true; every worker may: a tick starts once whoever starts it). */
  schedules?: boolean;
  /**
   * A claimed workflow whose name this worker has no code for is put back,
   * still `running`, runnable again after this long ±20 % (default 10 000 ms):
   * during a rolling deploy a worker of the other version takes it meanwhile.
   * Logged once per workflow name.
   */
  unknownWorkflowDelayMs?: number;
}

/**
 * How one run on this worker ended. `completed` and `failed` are recorded in
 * the log; the others stopped the run with its end unrecorded — the workflow
 * stays `running`, and is claimed again and replayed:
 *
 * - `waiting`: the run put the workflow to wait in the database — a step's
 *   back-off before its next attempt (`retry`), a sleep, or an event (`event`:
 *   until it is sent, or its timeout) — until `dueInMs` from now, by the
 *   database clock (null: until an event is sent); any worker runs it then;
 * - `failed`: the workflow's code threw (a step that failed for good and was
 *   not caught, a result the log cannot record, non-determinism), or its
 *   attempts ran out; `error` is what was recorded as its error;
 * - `cancelled`: engine.cancel() was called and the run recorded the end
 *   (`WorkflowCancelledError`, with the reason);
 * - `lease-lost`: another run owns the workflow now (`LeaseLostError`);
 * - `database-unavailable`: the database failed under the run (a restart, a
 *   dropped connection; `DatabaseUnavailableError`): weather, not a bug, and
 *   not one of its `attempts`; its lease is given back for a prompt retry;
 * - `error`: anything else — an error from the engine's own queries that is
 *   not a connection failure (a permission, a constraint): look at it.
 *   Retried once its lease runs out.
 */
export type RunEndEvent = { workflowId: string; fencingToken: number } & (
  | { outcome: 'completed'; error?: undefined }
  | { outcome: 'waiting'; reason: 'retry' | 'sleep' | 'event'; dueInMs: number | null; error?: undefined }
  | { outcome: 'failed' | 'cancelled' | 'lease-lost' | 'database-unavailable' | 'error'; error: Error }
);

/** A running worker, from `engine.createWorker()`. */
export interface Worker {
  /** The name it claims under (`lease_owner`). */
  readonly name: string;
  /** The ids of the workflows it holds right now. */
  readonly held: string[];
  /** Start claiming and running workflows. Resolves once it is listening and has made its first claim. */
  start(): Promise<void>;
  /**
   * Stop claiming; let held runs finish for up to `graceMs` (default: the
   * worker's `shutdownGraceMs`); release the leases of those still running so
   * another worker takes them at once. Resolves when it is all done.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  /**
   * Run until a claim finds nothing runnable and nothing is held, then stop:
   * for batch jobs and tests. Workflows another live worker holds are its
   * business; a dead worker's come back once their lease runs out — a later
   * drain (or any running worker) takes them then. Rejects with a
   * `SchemaMissingError` on a database `migrate()` has not run on.
   */
  drain(): Promise<void>;
}

/** @internal Use `engine.createWorker()`. */
export function createWorker(core: EngineCore, options: WorkerOptions = {}): Worker {
  const concurrency = options.concurrency ?? 8;
  const leaseMs = options.leaseMs ?? 30_000;
  const pollMs = options.pollMs ?? 1000;
  const shutdownGraceMs = options.shutdownGraceMs ?? 10_000;
  const name = options.name ?? `${os.hostname()}:${process.pid}`;
  const unknownWorkflowDelayMs = options.unknownWorkflowDelayMs ?? 10_000;
  const retention = options.retention;
  if (retention && !(retention.olderThanMs >= 0 && (retention.everyMs ?? 60_000) >= 10 && Number.isInteger(retention.batch ?? 1000) && (retention.batch ?? 1000) >= 1)) {
    throw new RangeError(`retention: olderThanMs ≥ 0, everyMs ≥ 10 and a whole batch ≥ 1, got ${JSON.stringify(retention)}`);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a whole number ≥ 1, got ${concurrency}`);
  // A Node timer cannot wait longer than 2^31 − 1 ms: a longer lease or poll would fire its timers at once.
  if (!Number.isInteger(leaseMs) || leaseMs < 100 || leaseMs > MAX_TIMER_MS) throw new RangeError(`leaseMs must be a whole number from 100 to ${MAX_TIMER_MS}, got ${leaseMs}`);
  if (!(pollMs > 0 && pollMs <= MAX_TIMER_MS)) throw new RangeError(`pollMs must be a number of milliseconds from 1 to ${MAX_TIMER_MS}, got ${pollMs}`);
  const { db, say } = core;

  /** What this worker holds: one lease per workflow. */
  const held = new Map<string, { lease: Lease }>();
  /** Slots held for workflows start() is inserting for us right now. */
  let reserved = 0;
  /** start() found us full since our last claim: claim as soon as a slot frees up. */
  let missedLocalStart = false;
  /** Every run not yet settled — held, or abandoned after losing its lease — so stop() can wait for them. */
  const unsettled = new Set<Promise<void>>();
  let state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  let loop: Promise<void> = Promise.resolve();
  let stopped: Promise<void> | undefined;
  let listener: pg.PoolClient | undefined;
  let nextListenAt = 0;
  let lastClaimWasFull = false;
  let draining: (() => void) | undefined;
  /** Ends a drain with an error it cannot wait out (the engine's tables are missing). */
  let drainFailed: ((error: Error) => void) | undefined;
  let firstClaim: () => void = () => {};
  /** The latest time (performance.now()) a workflow this worker's runs put to wait is due: a drain waits for it. */
  let ownWaitsUntil = -Infinity;
  /** Workflow names met in a claim without code here: each is logged once. */
  const unknownNames = new Set<string>();

  // ── the database going away ───────────────────────────────────────────────

  /** Since when (Date.now()) the database has not been answering; undefined while it answers. */
  let outageSince: number | undefined;
  /** Consecutive failed claims: the back-off doubles with each, up to 5 s. */
  let failedClaims = 0;
  /** The engine's tables were missing (migrate not run) and this worker said so: it says it once. */
  let schemaMissingSaid = false;

  /** A failure reaching the database: the first of an outage is logged, the rest are the same news. */
  function databaseFailed(what: string, thrown: unknown): void {
    const error = toError(thrown);
    const missing = explainMissingSchema(error);
    if (missing instanceof SchemaMissingError) {
      // Every poll would say it again, until someone migrates: said once, then the back-off.
      const message = `worker ${name}: ${what} failed: ${missing.message}. ${missing.hint} (said once; retrying with back-off)`;
      if (!schemaMissingSaid) say('error', 'schema-missing', message, { worker: name, error: missing });
      schemaMissingSaid = true;
      return;
    }
    if (!isConnectionFailure(error)) {
      say('error', 'database-error', `worker ${name}: ${what} failed (${error.message})`, { worker: name, error });
      return;
    }
    if (outageSince !== undefined) return;
    outageSince = Date.now();
    say(
      'warn',
      'database-unavailable',
      `worker ${name}: the database is not answering (${error.message}); retrying with back-off, ` +
        'runs that cannot renew their leases stop before they run out',
      { worker: name, error },
    );
  }

  /**
   * Any answer ends the outage: a claim, a renewal, or a run that recorded its
   * end. (Runs may finish before the next claim or heartbeat: with claims backed
   * off to 5 s, waiting for one would leave the outage unreported as over.) The
   * claim loop, asleep in its back-off, is woken: work can be claimed again now.
   */
  function databaseAnswered(): void {
    if (outageSince === undefined) return;
    say('info', 'database-back', `worker ${name}: the database answers again (after ${((Date.now() - outageSince) / 1000).toFixed(1)} s)`, { worker: name });
    outageSince = undefined;
    if (failedClaims > 0) wake();
  }

  /**
   * An idle pooled connection the server ended is reported on the pool, and an
   * 'error' event nobody listens to would crash the process: the pool already
   * drops that connection, so hearing of it is all there is to do.
   */
  const onPoolError = (error: Error) => databaseFailed('an idle connection', error);

  /**
   * pg-pool hands a connection to a caller that waited for one with no
   * 'error' listener on it until the caller's code runs, a tick later. A
   * server's goodbye (pg_terminate_backend, a shutdown) that arrives in the
   * same read as the previous query's answer lands in that gap, unheard, and
   * would crash the process. Every connection the pool opens while this
   * worker runs gets a listener of its own: the caller's next query on it
   * fails anyway, which is how the caller hears of it.
   */
  const onNewConnection = (client: pg.PoolClient) => client.on('error', (error) => databaseFailed('a connection', error));

  // ── waking up ─────────────────────────────────────────────────────────────

  let wakeUp: (() => void) | undefined;
  /** A wake-up that came while the loop was busy claiming: the next sleep returns at once. */
  let woken = false;
  const wake = () => {
    if (wakeUp) wakeUp();
    else woken = true;
  };

  /** A NOTIFY: work started in another process (our own process's starts woke us directly), or a cancellation. */
  const onNotification = (message: pg.Notification) => {
    if (message.channel === CANCEL_CHANNEL) {
      held.get(message.payload ?? '')?.lease.cancel(null);
      return;
    }
    if (message.payload !== core.processTag) wake();
  };

  /**
   * When (performance.now()) the next waiting workflow we know of becomes
   * runnable: learnt from nextWakeUp after a claim, and from our own runs
   * that put a workflow to wait. The claim loop sleeps no longer than this.
   */
  let dueAt = Infinity;
  /** Move the sleeping claim loop's alarm earlier, if it sleeps past `at`. */
  let bringForward: ((at: number) => void) | undefined;

  /** A waiting workflow becomes runnable at `at` (performance.now()): be claiming then. */
  function wakeAt(at: number): void {
    dueAt = Math.min(dueAt, at);
    bringForward?.(at);
  }

  /** Sleep until woken, until `ms` has passed, or until the next waiting workflow is due, whichever comes first. */
  function sleep(ms: number): Promise<void> {
    if (woken) {
      woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let alarm = Math.min(performance.now() + ms, dueAt);
      let timer = setTimeout(done, alarm - performance.now());
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        bringForward = undefined;
        resolve();
      }
      wakeUp = done;
      bringForward = (at) => {
        if (at >= alarm) return;
        alarm = at;
        clearTimeout(timer);
        timer = setTimeout(done, Math.max(0, at - performance.now()));
      };
    });
  }

  /** The poll interval ±20 %: workers started together do not poll in lockstep. */
  const jittered = () => pollMs * (0.8 + Math.random() * 0.4);

  async function listen(): Promise<void> {
    if (options.listen === false || listener || Date.now() < nextListenAt) return;
    nextListenAt = Date.now() + 5000;
    let client: pg.PoolClient | undefined;
    try {
      client = await db.connect();
      const connection = client;
      // LISTEN pins a session: notifications go to this connection, and are
      // lost while it is down. Polling covers the gap; we reconnect later.
      connection.on('error', (error) => {
        if (listener !== connection) return; // already given back (stop), or never installed
        listener = undefined;
        connection.release(error);
        const message = `worker ${name}: lost its LISTEN connection (${error.message}); polling until it is back`;
        if (outageSince === undefined) say('warn', 'listen-lost', message, { worker: name, error });
      });
      connection.on('notification', onNotification);
      await connection.query(`LISTEN ${WAKE_CHANNEL}; LISTEN ${CANCEL_CHANNEL}`);
      listener = connection;
    } catch (thrown) {
      client?.release(toError(thrown));
      databaseFailed(`LISTEN (polling every ${pollMs} ms meanwhile)`, thrown);
    }
  }

  // ── claiming ───────────────────────────────────────────────────────────────

  async function claimLoop(): Promise<void> {
    while (state === 'running') {
      await listen();
      const free = concurrency - held.size - reserved;
      let claims: Claim[] = [];
      let failed = false;
      let schemaMissing: SchemaMissingError | undefined;
      if (free > 0) {
        woken = false;
        missedLocalStart = false;
        const sentAt = performance.now();
        dueAt = Infinity; // learnt again below, and from runs going to wait meanwhile
        try {
          claims = await claimWorkflows(db, { worker: name, limit: free, leaseMs });
          failedClaims = 0;
          databaseAnswered();
          // Slots left over: when does the next waiting workflow (a back-off, a
          // sleep, a lease running out) become runnable? Sleep until then at most.
          // Its figure is the database's, counted from its now(): a timer set from
          // it when the answer arrives cannot fire before the time has come.
          if (claims.length < free) {
            const dueInMs = await nextWakeUp(db, performance.now() - sentAt);
            if (dueInMs !== null) wakeAt(performance.now() + Math.max(0, dueInMs));
          }
        } catch (thrown) {
          failed = true;
          failedClaims++;
          databaseFailed('claim', thrown);
          const missing = explainMissingSchema(thrown);
          if (missing instanceof SchemaMissingError) schemaMissing = missing;
        }
        lastClaimWasFull = claims.length === free;
        for (const claim of claims) {
          if (core.names.includes(claim.name)) launch(claim, sentAt);
          else await defer(claim);
        }
      }
      firstClaim();
      // A drain (a batch job, a test) would wait for ever for a migrate nobody runs: it fails, saying so.
      // A started worker keeps polling, with its back-off: in a rolling deploy another process may migrate.
      if (drainFailed && schemaMissing) {
        drainFailed(schemaMissing);
        break;
      }
      // A drain also waits for the workflows its own runs put to wait (a back-off, a sleep): it finishes what it
      // started — until a claim a little after the last of them is due finds nothing. "A little": the due time is
      // the database's, the alarm this process's, and a Node timer may fire up to a millisecond early.
      // And not while a wake-up came during the claim (`woken`): a run of ours that ended meanwhile may have made
      // a workflow runnable after the claim looked — a child's end waking its parent, a send — and freed its slot
      // before the claim returned; without this the drain ended with the parent runnable and nobody to run it.
      const drainableAt = ownWaitsUntil + DRAIN_MARGIN_MS;
      if (draining && !failed && claims.length === 0 && held.size === 0 && reserved === 0 && performance.now() < drainableAt) wakeAt(drainableAt);
      else if (draining && !failed && !woken && claims.length === 0 && held.size === 0 && reserved === 0) {
        draining();
        break;
      }
      if (state !== 'running') break;
      // A full claim may have left more behind: go again as soon as a slot is free.
      if (!failed && lastClaimWasFull && held.size + reserved < concurrency) continue;
      await sleep(failed ? Math.min(5000, Math.max(pollMs, 100) * 2 ** (failedClaims - 1)) : jittered());
    }
  }

  /** A workflow this worker has no code for: back to the log, for later, and for another worker. */
  async function defer(claim: Claim): Promise<void> {
    const delayMs = unknownWorkflowDelayMs * (0.8 + Math.random() * 0.4);
    if (!unknownNames.has(claim.name)) {
      unknownNames.add(claim.name);
      say(
        'warn',
        'unknown-workflow',
        `worker ${name}: workflow ${claim.id} is a "${claim.name}" workflow, which this worker has no code for ` +
          `(it has: ${core.names.join(', ') || 'none'}); left running and deferred ~${unknownWorkflowDelayMs} ms for a worker that has ` +
          '(said once per name)',
        { worker: name, workflowId: claim.id, fencingToken: claim.fencingToken },
      );
    }
    try {
      await deferWorkflow(db, { workflowId: claim.id, fencingToken: claim.fencingToken }, delayMs);
    } catch (thrown) {
      // Its lease runs out on its own: deferred by one lease instead.
      databaseFailed(`deferring ${claim.id}`, thrown);
    }
  }

  function launch(claim: Claim, sentAt: number): void {
    const lease = new Lease(claim.id, claim.fencingToken, sentAt, leaseMs);
    const about = { worker: name, workflowId: claim.id, fencingToken: claim.fencingToken };
    say('debug', 'claimed', `worker ${name} claimed ${claim.id} (fencing token ${claim.fencingToken}, lease ${leaseMs} ms)`, about);
    const report = (event: RunEndEvent) => {
      try {
        options.onRunEnd?.(event);
      } catch (thrown) {
        say('error', 'on-run-end-threw', `worker ${name}: onRunEnd threw (${toError(thrown).message})`, { ...about, error: toError(thrown) });
      }
    };
    const run = core.execute(claim, lease).then(
      (ended) => {
        databaseAnswered(); // its end is recorded: the database answers
        report({ workflowId: claim.id, fencingToken: claim.fencingToken, ...ended });
      },
      async (thrown: unknown) => {
        const error = toError(thrown);
        if (error instanceof LeaseLostError) {
          say('warn', 'lease-lost', error.message, { ...about, error });
          report({ workflowId: claim.id, fencingToken: claim.fencingToken, outcome: 'lease-lost', error });
        } else if (error instanceof StepAlreadyRecordedError) {
          say('warn', 'run-stopped', `${error.message}; the lease is given back and the next claim replays the log`, { ...about, error });
          await releaseLeases(db, [lease]).catch(() => {});
          report({ workflowId: claim.id, fencingToken: claim.fencingToken, outcome: 'error', error });
        } else if (error instanceof DatabaseUnavailableError) {
          say('warn', 'run-stopped', error.message, { ...about, error });
          // Back to the queue now rather than after the lease (if the database answers; else the lease runs out).
          await releaseLeases(db, [lease]).catch(() => {});
          report({ workflowId: claim.id, fencingToken: claim.fencingToken, outcome: 'database-unavailable', error });
        } else {
          say('error', 'run-error', `workflow ${claim.id}: ${error.name}: ${error.message} (left running; retried once its lease runs out)`, { ...about, error });
          report({ workflowId: claim.id, fencingToken: claim.fencingToken, outcome: 'error', error });
        }
      },
    );
    unsettled.add(run);
    void run.finally(() => unsettled.delete(run));
    // The slot is free when the run ends — or when its lease is lost, even if
    // its code is still stuck in a step that ignores the abort signal: the
    // workflow belongs to someone else now, and nothing the abandoned code
    // does later can be recorded.
    const free = () => {
      lease.dispose();
      if (held.get(claim.id)?.lease !== lease) return;
      held.delete(claim.id);
      // More may be waiting (the last claim filled every slot; a local start
      // found us full; draining): claim again — but, while other runs go on,
      // only once a quarter of the slots are free. At concurrency 8 a claim
      // then takes two workflows instead of one: half the claims, each an
      // UPDATE and a commit. A poll or a NOTIFY still claims any free slot.
      const freeSlots = concurrency - held.size - reserved;
      const enough = held.size === 0 || missedLocalStart || freeSlots >= Math.max(1, Math.floor(concurrency / 4));
      if ((lastClaimWasFull || missedLocalStart || draining) && enough) wake();
    };
    void run.then(free);
    // A run that goes to wait says so as it frees its slot — before it returns: be claiming when the wait is due
    // (whichever worker is free then runs it, this one included), and a drain waits for it.
    lease.onFinished((waitMs) => {
      if (waitMs !== undefined && waitMs !== null) {
        const at = performance.now() + waitMs;
        ownWaitsUntil = Math.max(ownWaitsUntil, at);
        wakeAt(at);
      }
      free();
    });
    lease.signal.addEventListener('abort', free, { once: true });
    held.set(claim.id, { lease });
  }

  // ── workflows started in this process ──────────────────────────────────────

  /**
   * What start() in this process sees of us: it reserves a slot before its
   * INSERT, then hands the workflow over (claimed for us in that INSERT) or
   * gives the slot back (the id was in the log already, or the INSERT failed).
   */
  const local: LocalWorker = {
    name,
    leaseMs,
    names: core.names,
    reserve(purpose = 'start') {
      if (state !== 'running' || held.size + reserved >= concurrency) {
        if (purpose === 'start') missedLocalStart = true;
        return false;
      }
      reserved++;
      return true;
    },
    take(claim, sentAt) {
      launch(claim, sentAt);
      unreserve();
    },
    unreserve,
    wake,
  };
  /** stop() waiting for the starts in flight to hand over their workflows. */
  let reservationsSettled: (() => void) | undefined;
  function unreserve(): void {
    reserved--;
    if (reserved === 0) reservationsSettled?.();
  }

  // ── heartbeats ─────────────────────────────────────────────────────────────

  /** The heartbeat's pending timer: stop() clears it. */
  let heartbeat: NodeJS.Timeout | undefined;

  /**
   * The wait before the next heartbeat: at random between lease/3 and lease/2,
   * drawn anew each time. Workers started together (a deploy, a restart after
   * an outage) would otherwise renew in lock-step for ever, all at the same
   * instant. And at most lease/2: a renewal that is lost or late still leaves
   * time for the next one before the lease runs out.
   */
  function nextHeartbeatMs(): number {
    return leaseMs / 3 + Math.random() * (leaseMs / 2 - leaseMs / 3);
  }

  /**
   * The heartbeat loop, from start() until the worker has stopped — through
   * stop()'s grace period too, while the held runs finish. The next beat is
   * scheduled before this one's renewals are sent, so a renewal that hangs
   * (the database not answering) does not hold up the beats after it.
   */
  function startHeartbeat(): void {
    const beat = () => {
      if (state === 'stopped') return;
      heartbeat = setTimeout(beat, nextHeartbeatMs());
      void renew();
    };
    heartbeat = setTimeout(beat, nextHeartbeatMs());
  }

  /** A renewal on its way: one at a time, however long the database takes to answer. */
  let renewing = false;

  /**
   * One heartbeat: renew every lease held here in ONE statement (renewLeases).
   * Chapter 6 sends a statement per lease; at concurrency 8 that is 8
   * connections and 8 commits a beat, where this is one of each.
   */
  async function renew(): Promise<void> {
    if (renewing || held.size === 0) return;
    renewing = true;
    const leases = [...held.values()].map(({ lease }) => lease).filter((lease) => !lease.lost);
    // Before the query: the database's now(), from which the new expiry counts,
    // comes after this — so a deadline counted from here errs on the early side.
    const sentAt = performance.now();
    try {
      const rows = await renewLeases(db, leases, leaseMs);
      const renewed = new Map(rows.map((row) => [row.id, row.cancelReason]));
      databaseAnswered();
      for (const lease of leases) {
        if (renewed.has(lease.workflowId)) {
          lease.renewed(sentAt);
          const cancelReason = renewed.get(lease.workflowId);
          if (cancelReason != null) lease.cancel(cancelReason); // a cancellation whose NOTIFY this worker missed
        }
        else if (held.get(lease.workflowId)?.lease === lease) {
          // Refused: expired, taken over, or finished meanwhile. Only a run still
          // held here needs stopping (one that just completed is not lost).
          const reason = await explainLostLease(db, lease).catch(() => 'its renewal was refused');
          if (held.get(lease.workflowId)?.lease === lease) lease.lose(`renewal refused: ${reason}`);
        }
      }
    } catch (thrown) {
      // No answer, no renewal: the deadlines stay where they were, and each lease's
      // own timer stops its run before the lease runs out if this keeps failing.
      databaseFailed(`renewing ${leases.length} lease(s)`, thrown);
    } finally {
      renewing = false;
    }
  }

  // ── retention ─────────────────────────────────────────────────────────────

  let pruning: NodeJS.Timeout | undefined;
  /** The prune in flight, if any: stop() waits for it before the pool may close. */
  let pruned: Promise<void> = Promise.resolve();

  function startRetention(): void {
    if (!retention) return;
    const everyMs = retention.everyMs ?? 60_000;
    const batch = retention.batch ?? 1000;
    const tick = () => {
      pruned = (async () => {
        let deleted = 0;
        try {
          // Batch after batch until a short one: each a statement of its own, its locks held as long as one DELETE.
          for (;;) {
            const ids = await pruneFinished(db, retention.olderThanMs, ['completed', 'failed', 'cancelled'], batch);
            deleted += ids.length;
            if (ids.length < batch || state !== 'running') break;
          }
          if (deleted > 0) say('info', 'pruned', `worker ${name} deleted ${deleted} finished workflow(s) older than ${retention.olderThanMs} ms, with their steps`, { worker: name });
        } catch (thrown) {
          databaseFailed('pruning finished workflows', thrown);
        }
      })();
      void pruned.then(() => {
        if (state === 'running') pruning = setTimeout(tick, everyMs * (0.8 + Math.random() * 0.4));
      });
    };
    pruning = setTimeout(tick, everyMs * (0.8 + Math.random() * 0.4));
  }

  // ── schedules ─────────────────────────────────────────────────────────────

  let scheduling: NodeJS.Timeout | undefined;
  /** The scheduler's pass in flight, if any: stop() waits for it. */
  let scheduled: Promise<void> = Promise.resolve();

  /**
   * One pass: read the database's clock and each schedule's last tick; start
   * what is due (by the schedule's policy for missed ticks); then sleep until
   * the next tick by that clock — at most a minute, to look at the clock again.
   */
  async function schedulePass(): Promise<number> {
    const { now, lastTicks } = await scheduleState(db, core.schedules.map((s) => s.name));
    let nextInMs = 60_000;
    for (const schedule of core.schedules) {
      const due = ticksBetween(schedule.cron, lastTicks.get(schedule.name) ?? now, now, 100);
      const started = schedule.missed === 'catch-up' ? due : due.filter((tick) => now.getTime() - tick.getTime() <= schedule.graceMs);
      if (started.length < due.length) {
        const message = `schedule ${schedule.name}: skipped ${due.length - started.length} tick(s) missed while no scheduler ran (missed: 'skip'), the last at ${due[due.length - started.length - 1]!.toISOString()}`;
        say('warn', 'ticks-skipped', message, { worker: name });
      }
      for (const tick of started) await core.startTick(schedule, tick);
      if (due.length > 0) await markTick(db, schedule.name, due[due.length - 1]!);
      const next = nextTick(schedule.cron, due.length === 100 ? due[99]! : now);
      if (next) nextInMs = Math.min(nextInMs, next.getTime() - now.getTime());
    }
    return nextInMs;
  }

  function startSchedules(): void {
    if (core.schedules.length === 0 || options.schedules === false) return;
    const tick = () => {
      scheduled = schedulePass().then(
        (nextInMs) => {
          // +1 ms: the figure is counted from the database's now(), read before this timer was set — it cannot fire early by that clock.
          if (state === 'running') scheduling = setTimeout(tick, Math.max(1, nextInMs + 1));
        },
        (thrown: unknown) => {
          databaseFailed('the schedules', thrown);
          if (state === 'running') scheduling = setTimeout(tick, Math.max(1000, pollMs));
        },
      );
    };
    tick();
  }

  // ── starting and stopping ──────────────────────────────────────────────────

  async function start(): Promise<void> {
    if (state !== 'new') throw new Error(`worker ${name} was already started`);
    state = 'running';
    core.localWorkers.add(local);
    db.on('error', onPoolError);
    db.on('connect', onNewConnection);
    startHeartbeat();
    startRetention();
    startSchedules();
    const claimed = new Promise<void>((resolve) => (firstClaim = resolve));
    loop = claimLoop();
    await claimed;
  }

  function stop({ graceMs = shutdownGraceMs }: { graceMs?: number } = {}): Promise<void> {
    stopped ??= (async () => {
      if (state === 'new') {
        state = 'stopped';
        return;
      }
      state = 'stopping';
      core.localWorkers.delete(local);
      wake();
      await loop; // an in-flight claim finishes; what it claimed is held, and handled below
      // So does a start() inserting a workflow claimed for us: it is then held too.
      if (reserved > 0) await new Promise<void>((resolve) => (reservationsSettled = resolve));
      if (unsettled.size > 0) {
        const message = `worker ${name} stopping: no new claims; finishing ${held.size} held workflow(s) (up to ${graceMs} ms)`;
        if (held.size > 0) say('info', 'stopping', message, { worker: name });
        // Abandoned runs too: their last (refused) write should meet an open pool, not one being closed.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all([...unsettled]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
        clearTimeout(timer);
      }
      const left = [...held.values()].map((h) => h.lease);
      if (left.length > 0) {
        for (const lease of left) lease.lose('released: the worker is shutting down');
        try {
          const released = await releaseLeases(db, left);
          say('info', 'leases-released', `worker ${name} released ${released.length} lease(s): ${released.join(', ')}`, { worker: name });
        } catch (thrown) {
          const error = toError(thrown);
          say('warn', 'release-failed', `worker ${name}: could not release its leases (${error.message}); they run out on their own`, { worker: name, error });
        }
      }
      clearTimeout(heartbeat);
      clearTimeout(pruning);
      clearTimeout(scheduling);
      await pruned;
      await scheduled;
      if (listener) {
        const connection = listener;
        listener = undefined;
        // Not back to the pool: a LISTENing session would keep receiving notifications.
        connection.release(true);
      }
      db.off('error', onPoolError);
      db.off('connect', onNewConnection);
      state = 'stopped';
    })();
    return stopped;
  }

  async function drain(): Promise<void> {
    const drained = new Promise<void>((resolve, reject) => {
      draining = resolve;
      drainFailed = reject;
    });
    if (state === 'new') await start();
    try {
      await drained;
    } finally {
      await stop();
    }
  }

  return {
    name,
    get held() {
      return [...held.keys()];
    },
    start,
    stop,
    drain,
  };
}
