/**
 * One torture round: many orders, several real worker processes of the last
 * chapter's engine (chapter 9), and a seeded schedule of faults — workers
 * SIGKILLed at crash points or at random moments, workers frozen past their
 * lease and thawed (zombies), the PostgreSQL server itself killed -9 and
 * restarted on the same data, connections dropped; since chapter 8, the
 * payment provider or the mailbox down for a few calls (the steps' retries
 * back off, waiting in the database), the worker whose run put a workflow to
 * wait (a back-off, the order's cooling-off sleep, its wait for an event)
 * killed while it waits, and poison workflows that SIGKILL every worker that
 * claims them; and since chapter 9, events and cancellations. Every order
 * waits for its payment's "settled" webhook after the charge
 * (AWAIT_SETTLEMENT=1): the round sends each order its one event, under one
 * key, at a random moment — before its wait, during it — and the `event`
 * faults send it from short-lived sender processes (`main.ts send`) timed
 * against the workers' deaths and freezes, kill senders right after their
 * event commits (or at a random moment), and send the same key again. The
 * `cancel` faults cancel orders while they run, sleep, back off, wait for
 * their event, or while the worker holding them is frozen. When the faults
 * stop, the workers get time to recover, and the outcome is checked against
 * invariants (invariants.ts). The idea is Jepsen's and FoundationDB's: many
 * randomized faults and a checker, not a handful of hand-picked kill points.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { mulberry32 } from '../../shared/crash/failpoints.ts';
import { startChild, type Attempt, type ChildRun } from '../../shared/crash/runner.ts';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { projectRoot, type PostgresServer } from '../../shared/db/server.ts';
import { toError } from '../../shared/errors.ts';
import type { ServiceName } from '../../shared/world/protocol.ts';
import { PAUSE_MARKER } from '../../shared/crash/failpoints.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { startWorld } from '../../shared/world/world.ts';
import { checkInvariants, installWatches, SETTLED, settledKey, type CancelRecord, type Disruptions, type Invariant, type Observed, type SendRecord } from './invariants.ts';

export const ENGINE = 'chapters/09-waiting-for-the-world';
type EngineModule = typeof import('../../chapters/09-waiting-for-the-world/index.ts');
type WorkflowModule = typeof import('../../chapters/09-waiting-for-the-world/workflow.ts');

export type FaultKind = 'crash-point' | 'kill-worker' | 'zombie' | 'kill-postgres' | 'drop-connections' | 'provider-outage' | 'kill-waiting' | 'poison' | 'event' | 'cancel';
export const FAULT_KINDS: FaultKind[] = ['crash-point', 'kill-worker', 'zombie', 'kill-postgres', 'drop-connections', 'provider-outage', 'kill-waiting', 'poison', 'event', 'cancel'];

/**
 * The engine's durability points a worker can be armed to die at. A plain
 * step's record and the completion are one statement each, so they have no
 * `during-record` point (it commits or it never happened); a `transaction`
 * step has one. A kill while such a statement is in flight is what the
 * kill-worker faults, at random moments, are for. Chapter 8 adds the moment
 * after a failed attempt is recorded and the workflow released for its
 * back-off, and the moment after a sleep is recorded and the workflow
 * released until it ends: the run is over, the workflow waits in the
 * database, and the process that put it there dies. Chapter 9 adds the two
 * moments of a wait for an event: inside the waiter's transaction, the row
 * locked and no event found, before the park (the transaction dies with the
 * process: nothing parked, the next claim looks again), and after the park
 * has committed.
 */
const CRASH_POINTS = [
  'before-step:charge_card',
  'after-effect:charge_card',
  'after-record:charge_card',
  'after-retry-scheduled:charge_card',
  'before-step:reserve_inventory',
  'after-effect:reserve_inventory',
  'during-record:reserve_inventory',
  'after-record:reserve_inventory',
  'before-park:settled',
  'after-park:settled',
  'after-sleep-recorded',
  'after-effect:send_email',
  'after-record:send_email',
  'after-retry-scheduled:send_email',
  'after-record:complete',
];

/**
 * The order workflow's retry policy for its HTTP steps (`retry` in
 * chapters/09-waiting-for-the-world/workflow.ts): five attempts. An outage is
 * sized so that no order can run out of them, whichever orders its 503s hit:
 * a new outage replaces what is left of the last one (the world's counter is
 * set, not added to), so from then on an order can fail no more attempts of
 * the step than it has recorded, plus one in flight (a run that got its 503
 * and has not recorded it yet; a zombie's record would be fenced off), plus
 * the new outage's. The outage is kept to what leaves the worst order short
 * of the fifth: an order that fails for a step's retries is a violation.
 */
const ORDER_STEP_ATTEMPTS = 5;

/**
 * Each order's event is sent by the round itself within this long of its
 * start, at a random moment (unless an `event` fault has sent it first):
 * sometimes before its wait begins, mostly while it waits, so that the
 * faults meet orders parked for their event. The order's wait times out
 * after a minute (workflow.ts), far beyond any round's last send.
 */
const SEND_WITHIN_MS = 6000;

/** The orders of each batch: child workflows of one parent, started together, waited for together (chapter 9's batchWorkflow). */
const BATCH_SIZE = 3;

/** The steps each service's outage fails, for the trace. */
const STEP_OF: Record<ServiceName, string> = { payments: 'charge_card', mail: 'send_email' };

export interface FaultEvent {
  atMs: number;
  /** When, on this machine's clock (ISO): to set beside the claim watch's times and the workers' logs. */
  at: string;
  kind: FaultKind;
  detail: string;
}

export interface RoundOptions {
  seed: number;
  orders: number;
  workers: number;
  faults: number;
  leaseMs: number;
  adminUrl: string;
  /** The server, so kill-postgres can kill and restart it (only an embedded one). */
  server: PostgresServer;
  log?: (line: string) => void;
  /** Latency of every payment/mail call (default 10 ms), so the faults land on work in flight. */
  latencyMs?: number;
  /** The order's cooling-off sleep before its email (default 400 ms), so kills land while orders sleep. */
  coolingOffMs?: number;
  /** How long recovery may take after the last fault before a workflow counts as stuck. */
  recoveryTimeoutMs?: number;
}

export interface RoundResult {
  seed: number;
  orders: number;
  faults: FaultEvent[];
  skipped: string[];
  invariants: Invariant[];
  /** What the checker saw: sleeps and back-offs checked, orders failed (and explained), poison workflows, worker deaths. */
  observed: Observed & { workerDeaths: Record<string, number> };
  /**
   * For a violation: the log of each worker process it names (a claim no
   * fault explains, a step recorded after a cancel), every line stamped with
   * this machine's clock; the claim watch's history, the steps, events,
   * cancels and sends of the workflows concerned — saved with the trace.
   */
  evidence?: {
    logs: Record<string, string[]>;
    claims: Array<Record<string, unknown>>;
    steps: Array<Record<string, unknown>>;
    events: Array<Record<string, unknown>>;
    cancels: Array<Record<string, unknown>>;
    sends: Array<Record<string, unknown>>;
    disruptions: Record<string, unknown>;
  };
  /** Worker exits the harness did not cause (a crash loop after a database restart, say), nor a crash point or a poison. */
  unexpectedExits: string[];
  durationMs: number;
}

interface WorkerSlot {
  name: string;
  /** Processes started in this slot so far: each gets its own name, `w1.3`, which the claims record as their owner. */
  generation: number;
  child: ChildRun | undefined;
  /** The current process's name (its lease_owner). */
  process: string;
  paused: boolean;
  /** Stops the supervisor from respawning it (end of round). */
  retired: boolean;
}

/** How a worker process ended, as the harness saw it. */
interface Death {
  process: string;
  atMs: number;
  attempt: Attempt;
}

export async function runRound(options: RoundOptions): Promise<RoundResult> {
  const { seed, orders, leaseMs, adminUrl, server } = options;
  const coolingOffMs = options.coolingOffMs ?? 400;
  const log = options.log ?? (() => {});
  const random = mulberry32(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const started = Date.now();
  const faults: FaultEvent[] = [];
  const skipped: string[] = [];
  const unexpectedExits: string[] = [];
  /** When each process died or was frozen, and when the database went away (epoch ms): what may explain an order that failed. */
  const disruptions: Disruptions = { workers: new Map(), database: [] };
  const deaths: Death[] = [];
  /** Each worker process's output, by name, each line stamped with the time it arrived. */
  const logs = new Map<string, string[]>();
  let progress = '';
  const note = (kind: FaultKind, detail: string) => {
    faults.push({ atMs: Date.now() - started, at: new Date().toISOString(), kind, detail });
    log(`  ${String(Date.now() - started).padStart(6)} ms  ${kind.padEnd(16)} ${detail}${progress}`);
  };

  const databaseUrl = await createDatabase(adminUrl, `torture_${seed}`);
  // The orders started one by one, and the batches: parents whose orders are child workflows (ctx.startChild), ids `<batch>/<position>`.
  const topIds = [...Array(orders)].map((_, i) => `order-${seed}-${i + 1}`);
  const batches = [...Array(Math.max(1, Math.round(orders / 16)))].map((_, k) => {
    const id = `batch-${seed}-${k + 1}`;
    return { id, children: [...Array(BATCH_SIZE)].map((_, i) => `${id}/${i}`) };
  });
  /** Every order: those started alone, and the batches' children — all waiting for their event, all checked alike. */
  const ids = [...topIds, ...batches.flatMap((b) => b.children)];
  const world = await startWorld({ databaseUrl, products: [{ sku: 'widget', onHand: ids.length * 2 }] });
  // A little latency in the outside world keeps work in flight while the faults land.
  await world.setLatency(options.latencyMs ?? 10);
  const db = new pg.Pool({ connectionString: databaseUrl, max: 4, connectionTimeoutMillis: 5000 });
  // The server may be killed under us: a dropped idle connection must not crash the harness.
  db.on('error', () => {});
  // The round's own sends, on a pool of their own: a send waits for the row's lock while a frozen worker holds it in its wait.
  const sendDb = new pg.Pool({ connectionString: databaseUrl, max: 6, connectionTimeoutMillis: 5000 });
  sendDb.on('error', () => {});
  const poisons: Array<{ id: string; maxAttempts: number }> = [];

  const engineModule = (await import(pathToFileURL(path.join(projectRoot, ENGINE, 'index.ts')).href)) as EngineModule;
  const workflowModule = (await import(pathToFileURL(path.join(projectRoot, ENGINE, 'workflow.ts')).href)) as WorkflowModule;
  await engineModule.migrate(db);
  await installWatches(db);
  // This process only starts, inspects, sends and cancels (it has no worker): the workers run. Orders get the engine's default maxAttempts (5).
  const workflows = { order: workflowModule.orderWorkflow({ coolingOffMs, awaitSettlement: true }), batch: workflowModule.batchWorkflow(), poison: workflowModule.poisonWorkflow() };
  const engine = engineModule.createEngine({ db, workflows });
  /** The webhook handler of the round's own sends: an engine of its own, no worker, as events.test.ts's "another process". */
  const sender = engineModule.createEngine({ db: sendDb, workflows: {} });
  /** The harness's own statements, retried while the server comes back from a kill. */
  const retrying = async <T>(what: () => Promise<T>): Promise<T> => {
    for (let tries = 1; ; tries++) {
      try {
        return await what();
      } catch (thrown) {
        if (tries >= 20 || !engineModule.isConnectionFailure(thrown)) throw thrown;
        await sleep(250);
      }
    }
  };

  // ── events: every order's one "settled" event, under one key ───────────
  const sends: SendRecord[] = [];
  /** Sends still in flight (the round's own, and sender processes): all settled before the checks. */
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(promise: Promise<T>): Promise<T> => {
    inFlight.add(promise);
    void promise.finally(() => inFlight.delete(promise)).catch(() => {});
    return promise;
  };
  /** How many sends of an order's key so far: each one's payload says which it was, so the checker can tell the kept one. */
  const sendCount = new Map<string, number>();
  const nextPayload = (id: string, via: SendRecord['via']) => {
    const n = (sendCount.get(id) ?? 0) + 1;
    sendCount.set(id, n);
    return { chargeId: `ch-${id}`, send: n, via };
  };
  /** The order's event has been delivered, or a send of it answered that the key was sent already. */
  const sentOnce = (id: string) => sends.some((s) => s.orderId === id && (s.outcome === 'delivered' || s.outcome === 'duplicate'));
  /** …or a sender of it is still on its way (its outcome unknown yet). */
  const sending = new Set<string>();
  /** A batch's child: send it its event once it is in the log (a child not started yet is NoSuchWorkflowError), unless it has been sent meanwhile. */
  const sendOnceStarted = (id: string, variant: string): Promise<void> =>
    track(
      (async () => {
        for (let tries = 0; tries < 50; tries++) {
          if (sentOnce(id) || sending.has(id)) return;
          const status = (await retrying(() => engine.status([id])).catch(() => ({}) as Record<string, string>))[id];
          if (status && status !== 'missing') return sendHere(id, variant);
          await sleep(200);
        }
      })(),
    );
  /** Send it from this process (the round's webhook handler): what it answered, recorded. */
  const sendHere = (id: string, variant: string): Promise<void> => {
    const payload = nextPayload(id, 'harness');
    const at = Date.now();
    return track(
      retrying(() => sender.send(id, SETTLED, payload, { key: settledKey(id) })).then(
        (sent) => void sends.push({ orderId: id, key: settledKey(id), payload, via: 'harness', variant, at, outcome: sent.delivered ? 'delivered' : 'duplicate', woke: sent.woke }),
        (thrown: unknown) => {
          const error = toError(thrown);
          const outcome = error.name === 'WorkflowNotRunningError' ? 'not-running' : 'failed';
          sends.push({ orderId: id, key: settledKey(id), payload, via: 'harness', variant, at, outcome, detail: error.message });
        },
      ),
    );
  };
  /**
   * Send it from a short-lived process of its own (`main.ts send`), as a
   * webhook handler in another service would — armed to SIGKILL itself right
   * after its event commits, or killed by us `killAfterMs` after it starts.
   * Resolves when the process has ended, with what it did.
   */
  const sendFromProcess = (id: string, variant: string, arm: { crashAt?: string; killAfterMs?: number } = {}): Promise<SendRecord> => {
    const payload = nextPayload(id, 'process');
    const at = Date.now();
    const env: Record<string, string> = { ...world.env, NO_COLOR: '1', COURSE_TRACE: '0' };
    if (arm.crashAt) env.CRASH_AT = arm.crashAt;
    sending.add(id);
    const child = startChild({
      script: `${ENGINE}/main.ts`,
      args: ['send', id, SETTLED, '--payload', JSON.stringify(payload), '--key', settledKey(id)],
      env,
      timeoutMs: 60_000,
      ...(arm.killAfterMs !== undefined ? { fault: { killAfterMs: arm.killAfterMs } } : {}),
    });
    return track(
      child.done.then((attempt) => {
        sending.delete(id);
        const answer = /SENT (\{.*\})/.exec(attempt.stdout);
        const sent = answer ? (JSON.parse(answer[1]!) as { delivered: boolean; woke: boolean }) : undefined;
        const record: SendRecord = {
          orderId: id,
          key: settledKey(id),
          payload,
          via: 'process',
          variant,
          at,
          outcome: sent ? (sent.delivered ? 'delivered' : 'duplicate') : attempt.signal === 'SIGKILL' ? 'killed' : /WorkflowNotRunningError|is (cancelled|completed|failed): nothing will wait/.test(attempt.stderr) ? 'not-running' : 'failed',
          ...(sent ? { woke: sent.woke } : {}),
          ...(attempt.crashedAt ? { detail: `SIGKILLed itself at ${attempt.crashedAt}` } : attempt.signal === 'SIGKILL' ? { detail: `SIGKILLed by the harness ${arm.killAfterMs} ms after it started` } : sent ? {} : { detail: lastLines(attempt.stderr).slice(-400) }),
        };
        sends.push(record);
        return record;
      }),
    );
  };

  // The orders arrive over the first three quarters of the faults, not all at
  // once: with a cooling-off sleep, a wait for an event and back-offs in every
  // order, the faults must keep meeting orders in every state — new, running,
  // waiting — rather than a log that finished in the first seconds.
  const waves = Math.max(1, Math.floor(options.faults * 0.75));
  const firstWave = options.faults === 0 ? topIds.length : Math.ceil(topIds.length / 4);
  const waveOf = (i: number) => (i < firstWave ? -1 : Math.floor(((i - firstWave) * waves) / Math.max(1, topIds.length - firstWave)));
  /** The batches start among the waves, the first with the first wave. */
  const batchWave = (k: number) => (options.faults === 0 ? -1 : Math.floor((k * waves) / batches.length) - (k === 0 ? 1 : 0));
  const startOrders = async (wave: number) => {
    for (const [k, batch] of batches.entries()) {
      if (batchWave(k) !== wave) continue;
      await retrying(() => engine.start('batch', { orders: batch.children.map((child) => demoOrder(child)) }, { id: batch.id }));
      // Each child's event once the batch has started it (its id is in the log only then).
      for (const child of batch.children) {
        const delay = between(0, SEND_WITHIN_MS);
        setTimeout(() => void sendOnceStarted(child, delay < 100 ? 'early' : 'timer'), delay);
      }
    }
    for (const [i, id] of topIds.entries()) {
      if (waveOf(i) !== wave) continue;
      await retrying(() => engine.start('order', demoOrder(id), { id }));
      // Its event, at a random moment: often before the order waits for it (its charge takes a round trip to the
      // provider), mostly while it waits — unless an `event` fault has sent it first.
      const delay = between(0, SEND_WITHIN_MS);
      setTimeout(() => {
        if (!sentOnce(id) && !sending.has(id)) void sendHere(id, delay < 100 ? 'early' : 'timer');
      }, delay);
    }
  };
  await startOrders(-1);

  // ── the workers, and a supervisor that restarts the dead ones ───────────
  const slots: WorkerSlot[] = [...Array(options.workers)].map((_, i) => ({ name: `w${i + 1}`, generation: 0, child: undefined, process: '', paused: false, retired: false }));
  const thaws: Promise<void>[] = [];
  /** Freeze a worker process (SIGSTOP), noted as a disruption, and thaw it (SIGCONT) `ms` later. */
  const freeze = (slot: WorkerSlot, ms: number) => {
    const child = slot.child!;
    slot.paused = true;
    child.signal('SIGSTOP');
    const frozen = { from: Date.now(), to: Infinity };
    disruptions.workers.get(slot.process)!.frozen.push(frozen);
    thaws.push(thawLater(slot, child, frozen, ms));
  };
  const thawLater = (slot: WorkerSlot, child: ChildRun, frozen: { from: number; to: number }, ms: number) =>
    sleep(ms).then(() => {
      child.signal('SIGCONT');
      frozen.to = Date.now();
      if (slot.child === child) slot.paused = false;
    });
  /** A worker armed with a pause point froze itself there: send its orders their events while it is frozen, then thaw it. */
  const onPaused = (slot: WorkerSlot, child: ChildRun, name: string, point: string) => {
    if (slot.child === child) slot.paused = true;
    const frozen = { from: Date.now(), to: Infinity };
    disruptions.workers.get(name)!.frozen.push(frozen);
    const ms = between(leaseMs * 1.5, leaseMs * 2.5);
    thaws.push(
      (async () => {
        // The orders it holds that still wait for their event: one of them is frozen inside its wait, holding its row's lock.
        const held = await retrying(() => heldWithoutEvent(db, ids, name)).catch(() => [] as string[]);
        const targets = held.filter((id) => !sentOnce(id) && !sending.has(id));
        for (const id of targets) void sendFromProcess(id, 'to a worker frozen in its wait');
        log(`  ${String(Date.now() - started).padStart(6)} ms  ${''.padEnd(16)} ${name} froze itself at ${point} for ${ms} ms; sender process(es) for ${targets.join(', ') || '(none of its orders lacked its event)'}`);
        await thawLater(slot, child, frozen, ms);
      })(),
    );
  };
  const spawn = (slot: WorkerSlot, arm: { crashAt?: string; pauseAt?: string } = {}) => {
    slot.generation++;
    const name = `${slot.name}.${slot.generation}`;
    const env: Record<string, string> = {
      ...world.env,
      LEASE_MS: String(leaseMs),
      POLL_MS: '100',
      CONCURRENCY: '4',
      WORKER_NAME: name,
      COOLING_OFF_MS: String(coolingOffMs),
      AWAIT_SETTLEMENT: '1',
      // The engine's log lines, kept (stamped) in memory: evidence, should a claim end with no fault to explain it.
      COURSE_TRACE: '1',
      NO_COLOR: '1',
    };
    if (arm.crashAt) env.CRASH_AT = arm.crashAt;
    if (arm.pauseAt) env.PAUSE_AT = arm.pauseAt;
    const lines: string[] = [];
    logs.set(name, lines);
    let child: ChildRun;
    const onLine = (line: string, stream: 'stdout' | 'stderr') => {
      lines.push(`${new Date().toISOString().slice(11, 23)} ${stream === 'stderr' ? '!' : ' '} ${line}`);
      if (line.startsWith(PAUSE_MARKER)) onPaused(slot, child, name, line.slice(PAUSE_MARKER.length).trim());
    };
    child = startChild({ script: `${ENGINE}/main.ts`, args: ['worker'], env, onLine });
    slot.child = child;
    slot.process = name;
    slot.paused = false;
    disruptions.workers.set(name, { frozen: [] });
    void child.done.then((attempt) => {
      if (attempt.signal === 'SIGKILL') {
        const killedBy = attempt.killedFromOutside ? 'the harness' : attempt.crashedAt ? `its crash point ${attempt.crashedAt}` : 'itself';
        Object.assign(disruptions.workers.get(name)!, { killedAt: Date.now(), killedBy });
      }
      deaths.push({ process: name, atMs: Date.now() - started, attempt });
      if (slot.child !== child) return;
      slot.child = undefined;
      // Only the harness stops workers (SIGKILL, SIGTERM): any exit of their own, even code 0, is one.
      if (attempt.signal === null && !slot.retired) {
        unexpectedExits.push(`${name} exited ${attempt.exitCode}: ${lastLines(attempt.stderr || attempt.stdout)}`);
      }
      // A dead worker is replaced, as a process supervisor would.
      if (!slot.retired) setTimeout(() => !slot.retired && !slot.child && spawn(slot), 50);
    });
  };
  for (const slot of slots) spawn(slot);
  /** Kill the slot's process and start it again, armed. */
  const restartArmed = async (slot: WorkerSlot, arm: { crashAt?: string; pauseAt?: string }) => {
    slot.retired = true;
    slot.child?.signal('SIGKILL');
    await slot.child?.done;
    slot.retired = false;
    spawn(slot, arm);
  };

  // ── cancellations ───────────────────────────────────────────────────────
  const cancels: CancelRecord[] = [];
  const cancelNow = async (id: string, state: string): Promise<CancelRecord> => {
    const at = Date.now();
    const reason = `torture: cancelled while ${state}`;
    try {
      const answer = await retrying(() => engine.cancel(id, { reason }));
      const record: CancelRecord = { id, state, at, outcome: answer.outcome, status: answer.status };
      cancels.push(record);
      return record;
    } catch (thrown) {
      const record: CancelRecord = { id, state, at, outcome: 'failed', detail: toError(thrown).message };
      cancels.push(record);
      return record;
    }
  };

  // ── the faults ──────────────────────────────────────────────────────────
  const kinds = FAULT_KINDS.filter((kind) => {
    if (kind === 'kill-postgres' && (!server.embedded || server.embedded.attached)) {
      skipped.push(
        server.embedded
          ? 'kill-postgres: the embedded server belongs to another course process, which this one must not kill'
          : 'kill-postgres: the database is DATABASE_URL’s server, which the course did not start and cannot restart',
      );
      return false;
    }
    return true;
  });
  // Every kind in turn, each block of kinds in a seeded order: a short round
  // still meets every kind, and the counts stay even.
  let block: FaultKind[] = [];
  const nextKind = (): FaultKind => {
    if (block.length === 0) block = shuffled(kinds, random);
    return block.pop()!;
  };
  /** Orders seen parked for their event while that event sat untaken: a lost wake-up (checked at every fault). */
  const stranded: string[] = [];
  /** Batches seen parked while every child of theirs had ended: a parent whose last child's end did not wake it. */
  const strandedBatches: string[] = [];
  /** Workflows seen waiting (asleep, backing off, parked) more than a lease after their cancel was written: nobody will wake them for it. */
  const cancelledButWaiting: string[] = [];
  /** Every workflow of the round, for the looks that concern them all. */
  const all = [...ids, ...batches.map((b) => b.id), ...poisons.map((p) => p.id)];
  for (let i = 0; i < options.faults; i++) {
    await sleep(between(80, Math.max(120, leaseMs / 2)));
    await startOrders(i).catch((thrown: unknown) => log(`  (starting wave ${i} failed: ${toError(thrown).message})`));
    progress = await describeProgress(db, ids).catch(() => '  [the database does not answer]');
    for (const sighting of await strandedEvents(db, ids).catch(() => [] as string[])) stranded.push(`${sighting} (seen at ${Date.now() - started} ms)`);
    for (const sighting of await strandedParents(db, batches.map((b) => b.id)).catch(() => [] as string[])) strandedBatches.push(`${sighting} (seen at ${Date.now() - started} ms)`);
    for (const sighting of await waitingAfterCancel(db, all, leaseMs).catch(() => [] as string[])) cancelledButWaiting.push(`${sighting} (seen at ${Date.now() - started} ms)`);
    const kind = nextKind();
    const live = slots.filter((s) => s.child && !s.paused);
    const alive = (name: string) => slots.find((s) => s.process === name && s.child && !s.paused);
    try {
      switch (kind) {
        case 'crash-point': {
          const slot = pick(slots);
          const point = `${pick(CRASH_POINTS)}@${between(1, 3)}`;
          await restartArmed(slot, { crashAt: point });
          note(kind, `${slot.name} restarted as ${slot.process}, armed to SIGKILL itself at ${point}`);
          break;
        }
        case 'kill-worker': {
          if (!live.length) continue;
          const slot = pick(live);
          slot.child?.signal('SIGKILL');
          note(kind, `SIGKILL ${slot.process}`);
          break;
        }
        case 'zombie': {
          if (!live.length) continue;
          const slot = pick(live);
          const ms = between(leaseMs * 1.5, leaseMs * 2.5);
          note(kind, `SIGSTOP ${slot.process} for ${ms} ms (lease ${leaseMs} ms), then SIGCONT`);
          freeze(slot, ms);
          break;
        }
        case 'kill-postgres': {
          const down = between(100, 600);
          disruptions.database.push({ at: Date.now(), what: 'PostgreSQL killed' });
          await server.embedded!.kill();
          note(kind, `kill -9 the PostgreSQL server, down for ${down} ms`);
          await sleep(down);
          await server.embedded!.restart();
          break;
        }
        case 'drop-connections': {
          disruptions.database.push({ at: Date.now(), what: 'connections dropped' });
          const { rowCount } = await retrying(() =>
            db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`),
          );
          note(kind, `pg_terminate_backend on ${rowCount ?? 0} of the workers' connection(s)`);
          break;
        }
        case 'provider-outage': {
          // How many more failures each service's step can take, for its worst order (see ORDER_STEP_ATTEMPTS); then 1 to 3 of them.
          const room = async (service: ServiceName) => ORDER_STEP_ATTEMPTS - 2 - (await retrying(() => mostFailedAttempts(db, ids, STEP_OF[service])));
          const rooms = { payments: await room('payments'), mail: await room('mail') };
          const service: ServiceName = rooms.payments === rooms.mail ? pick(['payments', 'mail'] as const) : rooms.payments > rooms.mail ? 'payments' : 'mail';
          const times = Math.min(rooms[service], between(1, 3));
          if (times <= 0) {
            note(kind, `(none: an order has failed ${ORDER_STEP_ATTEMPTS - 2} attempts of each step already; one more outage could exhaust its retries)`);
            break;
          }
          await world.failNext(service, times);
          // Then, for up to a second, look for a workflow the outage put to wait out a back-off, and kill the worker that put it there.
          let waiting: Awaited<ReturnType<typeof waitingWorkflows>> = [];
          for (let look = 0; look < 10 && !waiting.some((w) => w.reason === 'back-off' && alive(w.putBy)); look++) {
            await sleep(100);
            waiting = await retrying(() => waitingWorkflows(db));
          }
          const target = waiting.find((w) => w.reason === 'back-off' && alive(w.putBy));
          const slot = target && alive(target.putBy);
          slot?.child?.signal('SIGKILL');
          note(
            kind,
            `the ${service} service answers 503 to its next ${times} call(s): ${STEP_OF[service]} retries after a back-off` +
              (target && slot ? `; SIGKILL ${slot.process} while ${target.id} waits out its back-off (${target.leftMs} ms left), the worker that put it to wait` : ''),
          );
          break;
        }
        case 'kill-waiting': {
          // A workflow waiting in the database (a back-off preferred, else a
          // sleep or a wait for its event), and the worker whose run put it
          // there — the one whose timer would have woken it — killed while it waits.
          // Nothing waiting yet? Look again for up to a second: orders sleep before every email.
          let waiting = await retrying(() => waitingWorkflows(db));
          for (let look = 0; look < 10 && !waiting.some((w) => alive(w.putBy)); look++) {
            await sleep(100);
            waiting = await retrying(() => waitingWorkflows(db));
          }
          const now = slots.filter((s) => s.child && !s.paused);
          const target = waiting.find((w) => alive(w.putBy)) ?? waiting[0];
          const slot = target && (alive(target.putBy) ?? (now.length ? pick(now) : undefined));
          if (!target || !slot) {
            // Still nothing: have a worker die the moment its run next puts a workflow to sleep — timed by the engine, not by us.
            if (await retrying(() => allEnded(db, ids))) {
              if (!now.length) continue;
              const other = pick(now);
              other.child?.signal('SIGKILL');
              note('kill-worker', `SIGKILL ${other.process} (a kill-waiting, but nothing was waiting and every order had ended)`);
              break;
            }
            const armed = pick(slots);
            await restartArmed(armed, { crashAt: 'after-sleep-recorded@1' });
            note(kind, `nothing waiting for 1 s: ${armed.name} restarted as ${armed.process}, armed to SIGKILL itself once it has put a workflow to sleep`);
            break;
          }
          slot.child?.signal('SIGKILL');
          const whose = slot.process === target.putBy ? `the worker that put it to wait` : `(${target.putBy}, which put it to wait, is gone)`;
          const left = target.leftMs >= 86_400_000 ? 'no timeout' : `${target.leftMs} ms left`;
          note(kind, `SIGKILL ${slot.process} while ${target.id} waits for its ${target.reason} (${left}), ${whose}`);
          break;
        }
        case 'poison': {
          const poison = { id: `poison-${seed}-${poisons.length + 1}`, maxAttempts: between(1, 2) };
          await retrying(() => engine.start('poison', { size: 1 }, { id: poison.id, maxAttempts: poison.maxAttempts }));
          poisons.push(poison);
          note(kind, `start ${poison.id} (maxAttempts ${poison.maxAttempts}): its second step SIGKILLs whichever worker runs it`);
          break;
        }
        case 'event': {
          // An order's event from a sender process of its own, timed against the workers' faults.
          const states = await retrying(() => orderStates(db, ids));
          const unsent = (s: OrderState) => s.status === 'running' && !sentOnce(s.id) && !sending.has(s.id);
          const parked = states.filter((s) => unsent(s) && s.state === 'parked');
          const early = states.filter((s) => unsent(s) && !s.charged);
          const anyUnsent = states.filter(unsent);
          const sent = states.filter((s) => sentOnce(s.id));
          const variants = [
            ...(parked.length && live.length ? ['parked, worker killed', 'parked, worker frozen'] : []),
            ...(early.length ? ['before the wait'] : []),
            ...(anyUnsent.length ? ['sender killed after its commit', 'sender killed at random'] : []),
            ...(sent.length ? ['the same key again'] : []),
            'a worker armed to freeze in its wait',
          ];
          const variant = pick(variants);
          switch (variant) {
            case 'parked, worker killed': {
              // The worker that parked it preferred: its run is over, and the send's wake-up must reach another.
              const target = pick(parked);
              const slot = (target.putBy && alive(target.putBy)) || pick(live);
              slot.child?.signal('SIGKILL');
              void sendFromProcess(target.id, variant);
              note(kind, `${target.id} waits for its event: SIGKILL ${slot.process}${slot.process === target.putBy ? ' (which parked it)' : ''}, and a sender process sends it now`);
              break;
            }
            case 'parked, worker frozen': {
              const target = pick(parked);
              const slot = (target.putBy && alive(target.putBy)) || pick(live);
              const ms = between(leaseMs * 1.5, leaseMs * 2.5);
              freeze(slot, ms);
              void sendFromProcess(target.id, variant);
              note(kind, `${target.id} waits for its event: SIGSTOP ${slot.process} for ${ms} ms, and a sender process sends it now`);
              break;
            }
            case 'before the wait': {
              const target = pick(early);
              void sendFromProcess(target.id, variant);
              note(kind, `a sender process sends ${target.id} its event before it waits (${target.state === 'new' ? 'not yet claimed' : `${target.state}, its charge not yet recorded`})`);
              break;
            }
            case 'sender killed after its commit': {
              // The provider's webhook handler dies right after its event commits; the provider redelivers it (the same key) a moment later.
              const target = pick(anyUnsent);
              const again = between(200, 2000);
              void sendFromProcess(target.id, variant, { crashAt: 'after-event-sent@1' }).then(() =>
                sleep(again).then(() => sendFromProcess(target.id, 'redelivered after its sender was killed')),
              );
              note(kind, `a sender process for ${target.id} (${target.state}), armed to SIGKILL itself once its event commits; sent again ${again} ms after it dies`);
              break;
            }
            case 'sender killed at random': {
              // Killed while it loads, migrates, or sends: its event may or may not have committed. Redelivered, the same key.
              const target = pick(anyUnsent);
              const after = between(300, 1500);
              void sendFromProcess(target.id, variant, { killAfterMs: after }).then((record) =>
                record.outcome === 'killed' ? sleep(between(200, 1000)).then(() => sendFromProcess(target.id, 'redelivered after its sender was killed')) : undefined,
              );
              note(kind, `a sender process for ${target.id} (${target.state}), SIGKILLed ${after} ms after it starts (sent or not); sent again if it was killed`);
              break;
            }
            case 'the same key again': {
              const target = pick(sent);
              void sendFromProcess(target.id, variant);
              note(kind, `a sender process sends ${target.id} its event again, the same key, another payload (${target.state}): the same event, kept once`);
              break;
            }
            default: {
              // A worker that will freeze itself inside its next wait, holding the row's lock: the send then waits
              // for PostgreSQL to end that transaction at the lease, and another worker takes the event.
              const slot = pick(slots);
              await restartArmed(slot, { pauseAt: 'before-park:settled@1' });
              note(kind, `${slot.name} restarted as ${slot.process}, armed to freeze itself in its next wait (before-park:settled), holding the row; its orders are sent their events while it is frozen`);
            }
          }
          break;
        }
        case 'cancel': {
          // An order cancelled in whatever state the seed picks among those some order is in now.
          const states = (await retrying(() => orderStates(db, ids))).filter((s) => s.status === 'running' && !cancels.some((c) => c.id === s.id));
          const by = (state: OrderState['state']) => states.filter((s) => s.state === state);
          const heldLive = states.filter((s) => s.state === 'held' && s.owner && alive(s.owner));
          const runningBatches = (await retrying(() => engine.status(batches.map((b) => b.id))).catch(() => ({}) as Record<string, string>));
          const cancellable = batches.filter((b) => runningBatches[b.id] === 'running' && !cancels.some((c) => c.id === b.id));
          const variants = [
            ...(heldLive.length ? ['held', 'held, its worker frozen'] : []),
            ...(['parked', 'sleeping', 'backing-off', 'new', 'runnable'] as const).filter((state) => by(state).length),
            ...(cancellable.length ? ['a batch'] : []),
          ];
          if (!variants.length) {
            note(kind, '(none: no order is running)');
            break;
          }
          const variant = pick(variants);
          if (variant === 'a batch') {
            // Cancelling a parent cancels its children, and theirs (the request walks the tree).
            const batch = pick(cancellable);
            const answer = await cancelNow(batch.id, 'a batch (its children with it)');
            note(kind, `cancel ${batch.id}, a batch whose orders are its children: ${answer.outcome}${answer.detail ? ` (${answer.detail})` : ''}`);
            break;
          }
          if (variant === 'held, its worker frozen') {
            const target = pick(heldLive);
            const slot = alive(target.owner!)!;
            const ms = between(leaseMs * 1.5, leaseMs * 2.5);
            freeze(slot, ms);
            const answer = await cancelNow(target.id, 'held by a frozen worker');
            note(kind, `SIGSTOP ${slot.process}, which holds ${target.id}, for ${ms} ms; cancel ${target.id}: ${answer.outcome}`);
            break;
          }
          const target = pick(variant === 'held' ? heldLive : by(variant as OrderState['state']));
          const answer = await cancelNow(target.id, variant === 'held' ? `held by ${target.owner}` : variant);
          note(kind, `cancel ${target.id} while ${variant === 'held' ? `held by ${target.owner} (running)` : variant}: ${answer.outcome}${answer.detail ? ` (${answer.detail})` : ''}`);
          break;
        }
      }
    } catch (thrown) {
      note(kind, `(the fault itself failed: ${toError(thrown).message})`);
    }
  }
  // Every freeze thawed (a pause point may still fire later: awaited again below).
  await Promise.all(thaws);
  progress = '';

  // ── recovery: no more faults; every workflow must now end ──────────────
  // Orders whose event never got through (its senders killed before the commit, or the database away) are sent it now, as a provider retries a webhook.
  all.push(...poisons.map((p) => p.id).filter((id) => !all.includes(id)));
  const deadline = Date.now() + (options.recoveryTimeoutMs ?? Math.max(30_000, leaseMs * 10));
  let remaining = all.length;
  while (Date.now() < deadline) {
    try {
      const unsent = await db.query<{ id: string }>(
        `SELECT w.id FROM workflows w WHERE w.id = ANY($1) AND w.status = 'running' AND NOT EXISTS (SELECT 1 FROM events e WHERE e.workflow_id = w.id)`,
        [ids],
      );
      for (const { id } of unsent.rows) if (!sending.has(id)) await sendHere(id, 'recovery');
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id = ANY($1) AND status = 'running'`, [all]);
      remaining = rows[0]!.n;
      if (remaining === 0) break;
      for (const sighting of await strandedEvents(db, ids)) stranded.push(`${sighting} (seen at ${Date.now() - started} ms, in recovery)`);
      for (const sighting of await strandedParents(db, batches.map((b) => b.id))) strandedBatches.push(`${sighting} (seen at ${Date.now() - started} ms, in recovery)`);
      for (const sighting of await waitingAfterCancel(db, all, leaseMs)) cancelledButWaiting.push(`${sighting} (seen at ${Date.now() - started} ms, in recovery)`);
    } catch {
      // the server may still be coming back
    }
    await sleep(200);
  }
  log(`  recovery: ${remaining === 0 ? 'every workflow ended' : `${remaining} workflow(s) still running`} after ${Date.now() - started} ms`);

  // The round's sends and sender processes, all ended; any late freeze thawed (a stopped process cannot take SIGTERM).
  await Promise.all([...inFlight]);
  await Promise.all(thaws);
  for (const slot of slots) {
    slot.retired = true;
    slot.child?.signal('SIGTERM');
  }
  await Promise.all(slots.map((s) => s.child?.done));

  // Where each order still running waits (the engine's own answer): evidence for a stuck one.
  const parkedAtEnd = new Map<string, string>();
  for (const id of [...ids, ...batches.map((b) => b.id)]) {
    const info = await engine.inspect(id).catch(() => undefined);
    if (info?.status === 'running') parkedAtEnd.set(id, info.waiting ? `waits (${info.waiting.reason})` : info.leaseOwner ? `held by ${info.leaseOwner}` : 'runnable');
  }

  const { invariants, observed } = await checkInvariants({
    db,
    world,
    orders: ids,
    poisons,
    coolingOffMs,
    disruptions,
    awaitSettlement: true,
    leaseMs,
    sends,
    cancels,
    stranded,
    parkedAtEnd,
    parents: batches,
    strandedParents: strandedBatches,
    waitingAfterCancel: cancelledButWaiting,
  });
  // Every SIGKILL is accounted for: the harness's own, a crash point's, or a poison's (its process had claimed one).
  const poisoned = new Set(
    (await db.query<{ owner: string }>(`SELECT DISTINCT c.owner FROM torture_claims c JOIN workflows w ON w.id = c.workflow_id WHERE w.name = 'poison'`)).rows.map((r) => r.owner),
  );
  const workerDeaths: Record<string, number> = { 'killed by the harness': 0, 'crash point': 0, 'poison workflow': 0 };
  for (const { process: name, attempt } of deaths) {
    if (attempt.signal !== 'SIGKILL') continue;
    const cause = attempt.killedFromOutside ? 'killed by the harness' : attempt.crashedAt ? 'crash point' : poisoned.has(name) ? 'poison workflow' : undefined;
    if (cause) workerDeaths[cause]!++;
    else unexpectedExits.push(`${name} died of a SIGKILL nobody sent (no crash point, no poison claimed): ${lastLines(attempt.stderr || attempt.stdout)}`);
  }
  // A claim no fault explains: keep the named processes' logs and the workflows' claim histories.
  const named = invariants.flatMap((i) => i.violations.flatMap((v) => [...v.matchAll(/\b(w\d+\.\d+)\b/g)].map((m) => m[1]!)));
  let evidence: RoundResult['evidence'];
  if (invariants.some((i) => !i.ok)) {
    const concerned = [...new Set(invariants.flatMap((i) => i.violations.map((v) => v.split(':')[0]!)))];
    const claims = await db.query(`SELECT * FROM torture_claims WHERE workflow_id = ANY($1) ORDER BY workflow_id, token`, [concerned]);
    const steps = await db.query(`SELECT workflow_id, seq, name, kind, output, fencing_token, created_at FROM steps WHERE workflow_id = ANY($1) ORDER BY workflow_id, seq`, [concerned]);
    const events = await db.query(`SELECT * FROM events WHERE workflow_id = ANY($1) ORDER BY workflow_id, arrival`, [concerned]);
    const cancelled = await db.query(`SELECT * FROM torture_cancels WHERE workflow_id = ANY($1)`, [concerned]);
    const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
    evidence = {
      logs: Object.fromEntries([...new Set(named)].map((name) => [name, logs.get(name) ?? []])),
      claims: claims.rows,
      steps: steps.rows,
      events: events.rows,
      cancels: cancelled.rows,
      sends: sends.filter((s) => concerned.includes(s.orderId)).map((s) => ({ ...s, at: iso(s.at) })),
      disruptions: {
        workers: Object.fromEntries([...disruptions.workers].map(([name, d]) => [name, { killedAt: iso(d.killedAt), killedBy: d.killedBy, frozen: d.frozen.map((f) => `${iso(f.from)} to ${iso(f.to)}`) }])),
        database: disruptions.database.map((d) => ({ at: iso(d.at), what: d.what })),
      },
    };
  }
  log(`  events and cancellations: ${describeRound(sends, cancels, observed)}`);
  await db.end();
  await sendDb.end();
  await world.stop({ removeDir: true });
  await dropDatabase(databaseUrl, adminUrl).catch(() => {});
  return { seed, orders, faults, skipped, invariants, observed: { ...observed, workerDeaths }, evidence, unexpectedExits, durationMs: Date.now() - started };
}

/** One line for the round's log: how the sends went, and the cancels. */
function describeRound(sends: SendRecord[], cancels: CancelRecord[], observed: Observed): string {
  const count = (of: (s: SendRecord) => boolean) => sends.filter(of).length;
  const processes = sends.filter((s) => s.via === 'process');
  const outcomes = (list: SendRecord[]) => ['delivered', 'duplicate', 'not-running', 'killed', 'failed'].map((o) => `${list.filter((s) => s.outcome === o).length} ${o}`).join(', ');
  const states = new Map<string, number>();
  for (const c of cancels) states.set(c.state.replace(/ by w\d+\.\d+$/, ''), (states.get(c.state.replace(/ by w\d+\.\d+$/, '')) ?? 0) + 1);
  return [
    `${sends.length} sends (${count((s) => s.via === 'harness')} from this process: ${outcomes(sends.filter((s) => s.via === 'harness'))}; ${processes.length} from sender processes: ${outcomes(processes)}; ${count((s) => !!s.detail?.includes('after-event-sent'))} SIGKILLed after their commit)`,
    `${observed.eventWaits} waits ended by their event, ${observed.wokenBySend} woken by a send`,
    `${observed.parents} batches of ${BATCH_SIZE} child orders, ${observed.parentsCompleted} completed`,
    `${cancels.length} cancels (${[...states].map(([state, n]) => `${n} ${state}`).join(', ')}; ${cancels.filter((c) => c.outcome === 'requested').length} requested), ${observed.cancelled} orders cancelled, ${observed.completedBeforeHearing} completed before their run heard of the cancel, ${observed.stepsInFlightAtCancel} step(s) recorded after a cancel by the run that held it (in flight), ${observed.compensations} compensation(s) (release_inventory)`,
  ].join('; ');
}

/** Workflows waiting in the database right now — a back-off first — and the worker whose run released them. */
async function waitingWorkflows(db: pg.Pool): Promise<Array<{ id: string; reason: 'back-off' | 'sleep' | 'event' | 'children'; leftMs: number; putBy: string }>> {
  // Which wait, from the log: a failed attempt with a retry time under the releasing claim is a back-off; a log
  // that ends in a sleep, a sleep; a batch with children started, its children; an order, its event.
  const { rows } = await db.query<{ id: string; reason: 'back-off' | 'sleep' | 'event' | 'children'; leftMs: number; putBy: string }>(
    `SELECT * FROM (
       SELECT w.id, c.owner AS "putBy",
              CASE WHEN EXISTS (SELECT 1 FROM step_failures f WHERE f.workflow_id = w.id AND f.fencing_token = w.fencing_token - 1 AND f.retry_at IS NOT NULL)
                   THEN 'back-off'
                   WHEN (SELECT s.kind FROM steps s WHERE s.workflow_id = w.id ORDER BY s.seq DESC LIMIT 1) = 'sleep' THEN 'sleep'
                   WHEN EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.kind = 'child') THEN 'children'
                   ELSE 'event' END AS reason,
              ceil(extract(epoch FROM least(w.lease_expires_at, now() + interval '1 day') - now()) * 1000)::int AS "leftMs"
         FROM workflows w
         JOIN torture_claims c ON c.workflow_id = w.id AND c.token = w.fencing_token - 1
        WHERE w.status = 'running' AND w.lease_owner IS NULL AND w.lease_expires_at > now() + interval '50 milliseconds'
     ) AS waiting
     ORDER BY reason = 'back-off' DESC, random()`,
  );
  return rows;
}

/** Where an order is, as the log and its row say (never the engine's wait columns). */
interface OrderState {
  id: string;
  status: string;
  /** new: never claimed; held: a worker holds its lease (running, or frozen); backing-off, sleeping, parked (for its event): released until later; runnable: anyone may claim it now. */
  state: 'new' | 'held' | 'backing-off' | 'sleeping' | 'parked' | 'runnable' | 'ended';
  /** Its charge is recorded: its wait for the event has begun, or is over. */
  charged: boolean;
  owner: string | null;
  /** The worker whose run released it (for a released one). */
  putBy: string | null;
}

async function orderStates(db: pg.Pool, ids: string[]): Promise<OrderState[]> {
  const { rows } = await db.query<OrderState>(
    `SELECT w.id, w.status, w.lease_owner AS owner, c.owner AS "putBy",
            EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.name = 'charge_card' AND s.error IS NULL) AS charged,
            CASE WHEN w.status <> 'running' THEN 'ended'
                 WHEN w.fencing_token = 0 THEN 'new'
                 WHEN w.lease_owner IS NOT NULL AND w.lease_expires_at > now() THEN 'held'
                 WHEN w.lease_expires_at <= now() THEN 'runnable'
                 WHEN EXISTS (SELECT 1 FROM step_failures f WHERE f.workflow_id = w.id AND f.fencing_token = w.fencing_token - 1 AND f.retry_at IS NOT NULL) THEN 'backing-off'
                 WHEN (SELECT s.kind FROM steps s WHERE s.workflow_id = w.id ORDER BY s.seq DESC LIMIT 1) = 'sleep' THEN 'sleeping'
                 ELSE 'parked' END AS state
       FROM workflows w
       LEFT JOIN torture_claims c ON c.workflow_id = w.id AND c.token = w.fencing_token - 1 AND w.lease_owner IS NULL
      WHERE w.id = ANY($1)
      ORDER BY w.id`,
    [ids],
  );
  return rows;
}

/** The orders worker process `owner` holds that have not taken their event yet. */
async function heldWithoutEvent(db: pg.Pool, ids: string[], owner: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT w.id FROM workflows w
      WHERE w.id = ANY($1) AND w.status = 'running' AND w.lease_owner = $2
        AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.kind = 'event')`,
    [ids, owner],
  );
  return rows.map((r) => r.id);
}

/**
 * Orders parked for their event — released, nobody holding them, their charge
 * recorded and no wait ended — while that event is in the table, untaken: a
 * lost wake-up. One statement, one snapshot: a send that committed its event
 * committed its wake in the same transaction (the row runnable at once), so
 * no in-between state can show here.
 */
async function strandedEvents(db: pg.Pool, ids: string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string; key: string; sentAt: Date; until: Date }>(
    `SELECT w.id, e.key, e.sent_at AS "sentAt", w.lease_expires_at AS until
       FROM workflows w JOIN events e ON e.workflow_id = w.id AND e.taken_at_seq IS NULL
      WHERE w.id = ANY($1) AND w.status = 'running' AND w.lease_owner IS NULL AND w.lease_expires_at > now()
        AND EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.name = 'charge_card' AND s.error IS NULL)
        AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.kind = 'event')
        AND NOT EXISTS (SELECT 1 FROM step_failures f WHERE f.workflow_id = w.id AND f.fencing_token = w.fencing_token - 1 AND f.retry_at IS NOT NULL)`,
    [ids],
  );
  return rows.map((r) => `${r.id}: parked for its event until ${r.until.toISOString()}, while its event (key ${r.key}, sent at ${r.sentAt.toISOString()}) sat untaken`);
}

/**
 * Batches parked — released, nobody holding them, their children started —
 * while none of their children is running any more: a parent that its last
 * child's end did not wake. One snapshot: a child's end commits its event for
 * the parent and the parent's wake-up together.
 */
async function strandedParents(db: pg.Pool, ids: string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string; until: Date; lastEnd: Date }>(
    `SELECT w.id, w.lease_expires_at AS until, (SELECT max(c.updated_at) FROM workflows c WHERE c.parent_id = w.id) AS "lastEnd"
       FROM workflows w
      WHERE w.id = ANY($1) AND w.status = 'running' AND w.lease_owner IS NULL AND w.lease_expires_at > now()
        AND EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.kind = 'child')
        AND NOT EXISTS (SELECT 1 FROM workflows c WHERE c.parent_id = w.id AND c.status = 'running')`,
    [ids],
  );
  return rows.map((r) => `${r.id}: parked until ${r.until.toISOString()}, while every child of its had ended (the last at ${r.lastEnd?.toISOString()})`);
}

/**
 * Workflows waiting in the database — released, nobody holding them, not
 * runnable before a time to come — more than a lease after their cancel was
 * written. cancel() makes a waiting workflow runnable in the statement that
 * writes the request; one released again after it was put to wait by a run
 * that had not heard of the cancel, and no NOTIFY or heartbeat reaches a run
 * that is over: it waits out its sleep, its back-off, its event — for ever,
 * if that has no timeout.
 */
async function waitingAfterCancel(db: pg.Pool, ids: string[], leaseMs: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string; requestedAt: Date; until: Date }>(
    `SELECT id, cancel_requested_at AS "requestedAt", lease_expires_at AS until FROM workflows
      WHERE id = ANY($1) AND status = 'running' AND lease_owner IS NULL AND lease_expires_at > now()
        AND cancel_requested_at < now() - $2::int * interval '1 millisecond'`,
    [ids, leaseMs + 1000],
  );
  return rows.map((r) => `${r.id}: waits until ${r.until.getUTCFullYear() === 9999 ? 'an event comes (no timeout)' : r.until.toISOString()}, its cancel written at ${r.requestedAt.toISOString()}`);
}

/** The most failed attempts of `step` any order has recorded while the step is not done (0: none). */
async function mostFailedAttempts(db: pg.Pool, ids: string[], step: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT coalesce(max(n), 0)::int AS n FROM (
       SELECT count(*) AS n FROM step_failures f
        WHERE f.workflow_id = ANY($1) AND f.name = $2
          AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = f.workflow_id AND s.seq = f.seq)
        GROUP BY f.workflow_id, f.seq) AS per_order`,
    [ids, step],
  );
  return rows[0]!.n;
}

/** Every order has ended (or not been started yet: then it has not ended). */
async function allEnded(db: pg.Pool, ids: string[]): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id = ANY($1) AND status <> 'running'`, [ids]);
  return rows[0]!.n === ids.length;
}

/** "[orders: 12/40 started, 3 ended, 5 waiting (2 for their event), 1 cancelled]": where the orders are when a fault lands. */
async function describeProgress(db: pg.Pool, ids: string[]): Promise<string> {
  const { rows } = await db.query<{ done: number; started: number; waiting: number; parked: number; cancelled: number }>(
    `SELECT count(*) FILTER (WHERE status <> 'running')::int AS done, count(*)::int AS started,
            count(*) FILTER (WHERE status = 'running' AND lease_owner IS NULL AND lease_expires_at > now())::int AS waiting,
            count(*) FILTER (WHERE status = 'running' AND lease_owner IS NULL AND lease_expires_at > now()
                              AND EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.name = 'charge_card')
                              AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = w.id AND s.kind = 'event'))::int AS parked,
            count(*) FILTER (WHERE status = 'cancelled')::int AS cancelled
       FROM workflows w WHERE id = ANY($1)`,
    [ids],
  );
  const { done, started, waiting, parked, cancelled } = rows[0]!;
  return `  [orders: ${started}/${ids.length} started, ${done} ended (${cancelled} cancelled), ${waiting} waiting (${parked} for their event)]`;
}

function shuffled<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** The end of what a worker printed: enough of a stack trace to see where it died. */
function lastLines(text: string): string {
  return text.trim().split('\n').slice(-60).join('\n        ').slice(-8000);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
