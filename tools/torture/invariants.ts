/**
 * What must hold after any number of crashes, zombies, database restarts,
 * provider outages and poison workflows. Each invariant is checked against
 * the outside world (the payment provider's and the mailbox's ledgers, the
 * stock table) and the engine's log, never against what the engine says
 * about itself; times are compared on the database clock, the only one every
 * worker shares.
 *
 * What counts as the right end of a workflow (chapter 9):
 *   - an order COMPLETES, charged, decremented and emailed once each, having
 *     taken the one event the round sent it (chapter 9's orders wait for
 *     their payment's "settled" webhook after the charge). The
 *     round's provider outages are kept within what the order's retry policy
 *     rides out (round.ts), so no order may fail for a step's retries. An
 *     order may fail in one way only: as a poison does — claimed its
 *     `maxAttempts` times in a row with no run recording a step or reporting
 *     back — and only if every one of those claims was ended by a fault: the
 *     worker process that held it was SIGKILLed (by the harness, a crash
 *     point, or a poison workflow it ran beside) or frozen, or PostgreSQL was
 *     killed or the connections dropped while it held it. Its effects are
 *     then at most once each. Any other failed order is a violation.
 *   - an order the round CANCELLED (its cancel answered `requested`) ends
 *     cancelled, with the reason it was given — or completed by the run that
 *     held it when the cancel was written, within one lease (a cancel is a
 *     request: that run may record its end before it hears); its effects at most once
 *     each; and nothing is recorded for it after the cancel committed but by
 *     the run that held it then, within one lease (a step in flight when its
 *     run heard of the cancel: the NOTIFY, or the next heartbeat's renewal) —
 *     or its compensation, run in ctx.nonCancellable: cancelled during its
 *     cooling-off, an order puts its stock back (`release_inventory`, right
 *     after its sleep, the stock's one return). No other order ends cancelled.
 *   - a poison workflow FAILS, its error saying it was claimed exactly its
 *     `maxAttempts` times in a row, its first step recorded, the step that
 *     kills never recorded.
 *   - nothing is still running once recovery is over: none lost, none stuck.
 */
import type pg from 'pg';
import type { World } from '../../shared/world/world.ts';

export interface Invariant {
  name: string;
  ok: boolean;
  /** The first few counterexamples, when it does not hold. */
  violations: string[];
}

/** The name of the event every order waits for after its charge, and its one key: a webhook redelivered is the same key. */
export const SETTLED = 'settled';
export const settledKey = (orderId: string) => `settled:${orderId}`;

/** One send of an order's event, and what it answered: by this process (the round's webhook handler) or a sender process of its own. */
export interface SendRecord {
  orderId: string;
  key: string;
  payload: unknown;
  via: 'harness' | 'process';
  /** Why and when it was sent: 'timer', 'early', 'recovery', or the `event` fault's variant. */
  variant: string;
  /** When it started (epoch ms). */
  at: number;
  /** delivered: a new event; duplicate: its key was sent already; not-running: the order had ended; killed: its process was SIGKILLed before it could answer (sent or not); failed: an error. */
  outcome: 'delivered' | 'duplicate' | 'not-running' | 'killed' | 'failed';
  /** It found the order parked for the event, and woke it. */
  woke?: boolean;
  detail?: string;
}

/** One engine.cancel() of an order, and what it answered. */
export interface CancelRecord {
  id: string;
  /** Where the order was: held (running), parked, sleeping, backing-off, new, runnable, or held by a frozen worker. */
  state: string;
  at: number;
  outcome: 'requested' | 'already' | 'finished' | 'failed';
  status?: string;
  detail?: string;
}

/** What the checker looked at, for the report. */
export interface Observed {
  /** Sleep entries checked (each one's next entry against its end). */
  sleeps: number;
  /** Back-offs checked (each failed attempt with a retry time, against the next attempt). */
  backoffs: number;
  /** Orders that failed after their attempts ran out, every claim explained by a fault. */
  ordersFailed: number;
  /** Poison workflows started. */
  poisons: number;
  /** How each order that failed came to: each of its claims in a row, who held it and what ended it. */
  failedOrders: string[];
  /** Waits for an event that ended with it (checked against the events table and the sends). */
  eventWaits: number;
  /** Sends that found their order parked for the event, and woke it. */
  wokenBySend: number;
  /** Orders that ended cancelled. */
  cancelled: number;
  /** Workflows whose cancel was written and that completed all the same: by the run holding them, before it heard (allowed within one lease). */
  completedBeforeHearing: number;
  /** Steps recorded after their order's cancel committed, by the run that held it then, within one lease: in flight when it heard. */
  stepsInFlightAtCancel: number;
  /** Compensations (the order's release_inventory, in ctx.nonCancellable) recorded after a cancel. */
  compensations: number;
  /** Batches (parents of child orders), and how many completed (the rest were cancelled, or failed after their attempts). */
  parents: number;
  parentsCompleted: number;
}

/**
 * When the faults that can end a run happened (epoch ms, this machine's clock):
 * per worker process (its name is its lease_owner), when it died of a SIGKILL
 * and when it was frozen, from SIGSTOP to SIGCONT; and when the database went away (kill -9, dropped connections).
 */
export interface Disruptions {
  /** `killedBy`: 'the harness', 'its crash point <name>', or 'itself' (no crash point: a poison workflow it ran, or something unexpected). */
  workers: Map<string, { killedAt?: number; killedBy?: string; frozen: Array<{ from: number; to: number }> }>;
  database: Array<{ at: number; what: string }>;
}

/**
 * The order's steps that run in ctx.nonCancellable, as a cancelled order's
 * compensation (chapter 9's workflow.ts: the stock put back when the order is
 * cancelled during its cooling-off): recorded after the cancel by design.
 */
const COMPENSATIONS = ['release_inventory'];

/** How far a fault may sit outside a claim's lifetime and still be what ended it: the two clocks (database, harness) and the noting of a death. */
const SLACK_MS = 1000;

function invariant(name: string, violations: string[]): Invariant {
  return { name, ok: violations.length === 0, violations: violations.slice(0, 10) };
}

/**
 * Watches on the log that the engine does not know about. It notes, never
 * refuses: the engine under test must behave exactly as it would without them.
 *
 * The fence watch: a constraint trigger, DEFERRED to each transaction's
 * COMMIT, that notes every step record and every failed attempt committed
 * under a fencing token that is by then no longer the workflow's latest
 * claim. The engine fences each write when it makes it; this checks the
 * outcome at the last moment it could still go wrong, so a fence that let a
 * zombie through — a missing token check, a row lock that did not keep the
 * takeover out until COMMIT — is caught even if its effects happen to look
 * right. One exception, exact: a sleep's entry and a failed attempt with a
 * retry time are written by the statement that releases the workflow to wait,
 * which moves its token on by one — so at COMMIT the latest token is theirs
 * + 1, on a row this same transaction wrote. Chapter 9 writes two more kinds
 * of entry in a releasing transaction: the ends of the waits that a turn's
 * look found ended (`event`), recorded with the park for those still left,
 * and (should a turn's child starts go with it) `child` entries.
 *
 * The claim watch: every claim (a new fencing token with an owner) with its
 * owner, its attempt count and the time, so the checker can say which process
 * held each claim of an order that failed, and the harness which worker put a
 * waiting workflow to wait.
 *
 * The cancel watch: each cancellation as it is written (chapter 9), with the
 * fencing token the workflow had at that moment and whether a worker held it
 * (its owner, its lease live): a step recorded after the cancel under a later
 * token was run by a claim made after it, which was told of the cancel. A
 * child born cancelled (its parent's cancel came first) is watched at its birth.
 */
export async function installWatches(db: pg.Pool): Promise<void> {
  await db.query(`
    CREATE TABLE IF NOT EXISTS torture_fence_breaches (
      tbl text NOT NULL, workflow_id text NOT NULL, seq int NOT NULL, step_token int NOT NULL, latest_token int, noted_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE OR REPLACE FUNCTION torture_watch_write() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE latest int; written_here boolean; released boolean;
    BEGIN
      SELECT fencing_token, xmin = pg_current_xact_id()::xid INTO latest, written_here FROM workflows WHERE id = NEW.workflow_id;
      released := written_here AND latest = NEW.fencing_token + 1
        AND CASE TG_TABLE_NAME WHEN 'steps' THEN to_jsonb(NEW)->>'kind' IN ('sleep', 'event', 'child') ELSE to_jsonb(NEW)->>'retry_at' IS NOT NULL END;
      IF latest IS DISTINCT FROM NEW.fencing_token AND NOT coalesce(released, false) THEN
        INSERT INTO torture_fence_breaches (tbl, workflow_id, seq, step_token, latest_token) VALUES (TG_TABLE_NAME, NEW.workflow_id, NEW.seq, NEW.fencing_token, latest);
      END IF;
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS torture_watch_step ON steps;
    CREATE CONSTRAINT TRIGGER torture_watch_step AFTER INSERT ON steps
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION torture_watch_write();
    DROP TRIGGER IF EXISTS torture_watch_failure ON step_failures;
    CREATE CONSTRAINT TRIGGER torture_watch_failure AFTER INSERT ON step_failures
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION torture_watch_write();

    CREATE TABLE IF NOT EXISTS torture_claims (
      workflow_id text NOT NULL, token int NOT NULL, owner text NOT NULL, attempts int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE OR REPLACE FUNCTION torture_watch_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO torture_claims (workflow_id, token, owner, attempts) VALUES (NEW.id, NEW.fencing_token, NEW.lease_owner, NEW.attempts);
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS torture_watch_claim ON workflows;
    CREATE TRIGGER torture_watch_claim AFTER UPDATE ON workflows FOR EACH ROW
      WHEN (NEW.fencing_token IS DISTINCT FROM OLD.fencing_token AND NEW.lease_owner IS NOT NULL) EXECUTE FUNCTION torture_watch_claim();
    DROP TRIGGER IF EXISTS torture_watch_local_claim ON workflows;
    CREATE TRIGGER torture_watch_local_claim AFTER INSERT ON workflows FOR EACH ROW
      WHEN (NEW.lease_owner IS NOT NULL) EXECUTE FUNCTION torture_watch_claim();

    CREATE TABLE IF NOT EXISTS torture_cancels (
      workflow_id text NOT NULL, token int NOT NULL, owner text, held boolean NOT NULL, requested_at timestamptz NOT NULL, noted_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE OR REPLACE FUNCTION torture_watch_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        -- A child started by a parent whose cancel its run had not heard yet is born cancelled (startChildren):
        -- the parent's cancel, written before the child existed. Nobody held it.
        INSERT INTO torture_cancels (workflow_id, token, owner, held, requested_at)
        VALUES (NEW.id, NEW.fencing_token, NULL, false, NEW.cancel_requested_at);
      ELSE
        INSERT INTO torture_cancels (workflow_id, token, owner, held, requested_at)
        VALUES (NEW.id, OLD.fencing_token, OLD.lease_owner, OLD.lease_owner IS NOT NULL AND OLD.lease_expires_at > statement_timestamp(), NEW.cancel_requested_at);
      END IF;
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS torture_watch_cancel ON workflows;
    CREATE TRIGGER torture_watch_cancel AFTER UPDATE ON workflows FOR EACH ROW
      WHEN (OLD.cancel_requested_at IS NULL AND NEW.cancel_requested_at IS NOT NULL) EXECUTE FUNCTION torture_watch_cancel();
    DROP TRIGGER IF EXISTS torture_watch_born_cancelled ON workflows;
    CREATE TRIGGER torture_watch_born_cancelled AFTER INSERT ON workflows FOR EACH ROW
      WHEN (NEW.cancel_requested_at IS NOT NULL) EXECUTE FUNCTION torture_watch_cancel();
  `);
}

export interface CheckInput {
  db: pg.Pool;
  world: World;
  /** The order workflows' ids. */
  orders: string[];
  /** The poison workflows started, each with its maxAttempts. */
  poisons: Array<{ id: string; maxAttempts: number }>;
  /** The order's cooling-off sleep: > 0 puts a sleep between its stock and its email. */
  coolingOffMs: number;
  /** What may explain an order that failed (round.ts records it). */
  disruptions: Disruptions;
  /** The orders wait for their event `settled` after the charge (chapter 9's AWAIT_SETTLEMENT=1). */
  awaitSettlement?: boolean;
  /** The workers' lease: how long after a cancel the run that held the workflow may still record a step it had in flight. */
  leaseMs?: number;
  /** Every send of an order's event, and what it answered. */
  sends?: SendRecord[];
  /** Every cancel, and what it answered. */
  cancels?: CancelRecord[];
  /** Orders seen parked for their event while it sat untaken, during the round (round.ts looks at every fault). */
  stranded?: string[];
  /** Where each order still running after recovery is, by the engine's inspect(). */
  parkedAtEnd?: Map<string, string>;
  /** The batches: parents whose orders are child workflows, each child's id `<parent>/<position>` (also in `orders`). */
  parents?: Array<{ id: string; children: string[] }>;
  /** Parents seen parked while all their children had ended, during the round. */
  strandedParents?: string[];
  /** Workflows seen waiting more than a lease after their cancel was written, during the round. */
  waitingAfterCancel?: string[];
}

export async function checkInvariants(input: CheckInput): Promise<{ invariants: Invariant[]; observed: Observed }> {
  const { db, world, orders: given, poisons, coolingOffMs, disruptions, awaitSettlement = false, leaseMs = 1000, sends = [], cancels = [], stranded = [], parkedAtEnd = new Map(), parents = [], strandedParents = [], waitingAfterCancel = [] } = input;
  const ids = [...new Set([...given, ...parents.flatMap((p) => [p.id, ...p.children]), ...poisons.map((p) => p.id)])];
  const ledger = await world.ledger();
  const workflows = await db.query<{ id: string; status: string; error: string | null; output: unknown; fencing_token: number; max_attempts: number; cancel_reason: string | null; updated_at: Date }>(
    `SELECT id, status, error, output, fencing_token, max_attempts, cancel_reason, updated_at FROM workflows WHERE id = ANY($1)`,
    [ids],
  );
  const steps = await db.query<{ workflow_id: string; seq: number; name: string; kind: string; fencing_token: number; error: { message?: string } | null; output: unknown; created_at: Date }>(
    `SELECT workflow_id, seq, name, kind, fencing_token, error, output, created_at FROM steps WHERE workflow_id = ANY($1) ORDER BY workflow_id, seq`,
    [ids],
  );
  const events = await db.query<{ workflow_id: string; name: string; key: string; payload: unknown; taken_at_seq: number | null; sent_at: Date }>(
    `SELECT workflow_id, name, key, payload, taken_at_seq, sent_at FROM events WHERE workflow_id = ANY($1) ORDER BY workflow_id, arrival`,
    [ids],
  );
  const cancelWatch = await db.query<{ workflow_id: string; token: number; owner: string | null; held: boolean; requested_at: Date }>(
    `SELECT workflow_id, token, owner, held, requested_at FROM torture_cancels WHERE workflow_id = ANY($1) ORDER BY noted_at`,
    [ids],
  );
  const movements = await db.query<{ order_id: string; taken: number; returned: number }>(
    `SELECT order_id, count(*) FILTER (WHERE delta < 0)::int AS taken, count(*) FILTER (WHERE delta > 0)::int AS returned
       FROM stock_movements WHERE order_id = ANY($1) GROUP BY order_id`,
    [ids],
  );
  const breaches = await db.query<{ tbl: string; workflow_id: string; seq: number; step_token: number; latest_token: number | null }>(
    `SELECT tbl, workflow_id, seq, step_token, latest_token FROM torture_fence_breaches WHERE workflow_id = ANY($1) ORDER BY noted_at`,
    [ids],
  );
  const claims = await db.query<{ workflow_id: string; token: number; owner: string; attempts: number; at: Date }>(
    `SELECT workflow_id, token, owner, attempts, at FROM torture_claims WHERE workflow_id = ANY($1) ORDER BY workflow_id, token, at`,
    [ids],
  );
  // Each sleep, and what came after it: the next entry (or, with none, the completion). Compared by PostgreSQL, to the microsecond.
  const sleeps = await db.query<{ workflow_id: string; seq: number; until: string; next: string | null; next_name: string | null; status: string; next_at: Date | null; early_ms: number | null }>(
    `SELECT s.workflow_id, s.seq, s.output->>'until' AS until, n.name AS next_name, w.status,
            coalesce('step #' || n.seq || ' ' || n.name, CASE WHEN w.status = 'completed' THEN 'the completion' END) AS next,
            coalesce(n.created_at, CASE WHEN w.status = 'completed' THEN w.updated_at END) AS next_at,
            (extract(epoch FROM (s.output->>'until')::timestamptz - coalesce(n.created_at, CASE WHEN w.status = 'completed' THEN w.updated_at END)) * 1000)::float8 AS early_ms
       FROM steps s
       JOIN workflows w ON w.id = s.workflow_id
       LEFT JOIN steps n ON n.workflow_id = s.workflow_id AND n.seq = s.seq + 1
      WHERE s.kind = 'sleep' AND s.workflow_id = ANY($1)
      ORDER BY s.workflow_id, s.seq`,
    [ids],
  );
  // Each failed attempt that scheduled a retry, and the next attempt's record: its own failure, or the step's entry.
  const backoffs = await db.query<{ workflow_id: string; seq: number; name: string; attempt: number; retry_at: Date; next_at: Date | null; early_ms: number | null }>(
    `SELECT f.workflow_id, f.seq, f.name, f.attempt, f.retry_at,
            coalesce(nf.created_at, s.created_at) AS next_at,
            (extract(epoch FROM f.retry_at - coalesce(nf.created_at, s.created_at)) * 1000)::float8 AS early_ms
       FROM step_failures f
       LEFT JOIN step_failures nf ON nf.workflow_id = f.workflow_id AND nf.seq = f.seq AND nf.attempt = f.attempt + 1
       LEFT JOIN steps s ON s.workflow_id = f.workflow_id AND s.seq = f.seq
      WHERE f.retry_at IS NOT NULL AND f.workflow_id = ANY($1)
      ORDER BY f.workflow_id, f.seq, f.attempt`,
    [ids],
  );

  const byId = new Map(workflows.rows.map((w) => [w.id, w]));
  // A batch cancelled (or failed) before it started its children: those were never born, and are no orders to check.
  const parentOf = new Map(parents.flatMap((p) => p.children.map((child) => [child, p.id] as const)));
  const unborn = (id: string) => !byId.has(id) && parentOf.has(id) && ['cancelled', 'failed'].includes(byId.get(parentOf.get(id)!)?.status ?? '');
  const orders = given.filter((id) => !unborn(id));
  const stepsOf = new Map<string, typeof steps.rows>();
  for (const row of steps.rows) stepsOf.set(row.workflow_id, [...(stepsOf.get(row.workflow_id) ?? []), row]);
  const claimsOf = new Map<string, typeof claims.rows>();
  for (const row of claims.rows) claimsOf.set(row.workflow_id, [...(claimsOf.get(row.workflow_id) ?? []), row]);
  const stock = new Map(movements.rows.map((m) => [m.order_id, m]));
  const expectedSteps = ['charge_card', ...(awaitSettlement ? [SETTLED] : []), 'reserve_inventory', ...(coolingOffMs > 0 ? ['sleep'] : []), 'send_email'];
  const eventsOf = new Map<string, typeof events.rows>();
  for (const row of events.rows) eventsOf.set(row.workflow_id, [...(eventsOf.get(row.workflow_id) ?? []), row]);
  /** Each order's cancel as the watch saw it written: the first (a second cancel changes nothing). */
  const cancelOf = new Map<string, (typeof cancelWatch.rows)[number]>();
  for (const row of cancelWatch.rows) if (!cancelOf.has(row.workflow_id)) cancelOf.set(row.workflow_id, row);
  /** Failed or cancelled: its effects at most once each (once if its step is recorded). */
  const endedShort = (id: string) => byId.get(id)?.status === 'failed' || byId.get(id)?.status === 'cancelled';
  const ownerOf = (id: string, token: number) => (claimsOf.get(id) ?? []).find((c) => c.token === token)?.owner ?? 'nobody the claim watch saw';
  const recorded = (id: string, name: string) => (stepsOf.get(id) ?? []).some((s) => s.name === name && !s.error);

  // ── a workflow failed for its attempts: each claim in a row, and the fault that ended it ──
  /**
   * A workflow failed as "claimed N times in a row": the N claims before the
   * one that failed it, from the claim watch, each with the fault that ended
   * it — its process SIGKILLed (by the harness, a crash point, or a poison
   * workflow it held: named) or frozen, or the database killed or its
   * connections dropped while it held it — or none. N may exceed maxAttempts:
   * the claim past maxAttempts, which fails the workflow, can itself be cut
   * short by a fault before its failure commits; then the next one fails it.
   */
  const claimsInARow = (id: string) => {
    const w = byId.get(id)!;
    const claimed = /was claimed (\d+) times in a row/.exec(w.error ?? '');
    if (!claimed) return { problem: `failed: ${w.error}`, story: [] as string[], unexplained: [] as string[] };
    const n = Number(claimed[1]);
    const history = claimsOf.get(id) ?? [];
    const last = history.findIndex((c) => c.token === w.fencing_token);
    if (n < w.max_attempts) return { problem: `failed after ${n} claims in a row, fewer than its maxAttempts ${w.max_attempts}`, story: [], unexplained: [] };
    if (last < n) return { problem: `failed after ${n} claims in a row, but the claim watch saw ${last < 0 ? 'not its last claim' : `only ${last} before its last`}`, story: [], unexplained: [] };
    const story: string[] = [];
    const unexplained: string[] = [];
    history.slice(last - n, last).forEach((claim, i, row) => {
      const from = claim.at.getTime() - SLACK_MS;
      const to = (row[i + 1] ?? history[last]!).at.getTime() + SLACK_MS;
      const within = (t: number | undefined) => t !== undefined && t >= from && t <= to;
      const worker = disruptions.workers.get(claim.owner);
      // A poison claimed in the same statement (the same instant, give or take), and a poison that killed the process.
      const together = poisonClaims.filter((p) => p.owner === claim.owner && p.workflow_id !== id && Math.abs(p.at.getTime() - claim.at.getTime()) <= 100);
      const killer =
        worker?.killedBy === 'itself' && worker.killedAt !== undefined
          ? poisonClaims.filter((p) => p.owner === claim.owner && p.workflow_id !== id && p.at.getTime() <= worker.killedAt! && p.at.getTime() >= from).pop()
          : undefined;
      const cause =
        within(worker?.killedAt) ? `SIGKILLed by ${killer ? killer.workflow_id : worker!.killedBy}`
        // Frozen at any moment of the claim's life — or with the claim in flight: a claim sent just before a
        // freeze commits only after the thaw, by when its run's own clock says the lease it was sent for is gone.
        : worker?.frozen.some((f) => f.from <= to && f.to >= from) ? `frozen`
        : disruptions.database.find((d) => within(d.at))?.what;
      const claimedWith = together.length ? ` (claimed with ${together.map((p) => p.workflow_id).join(', ')})` : '';
      story.push(`#${claim.token} ${claim.owner}${claimedWith}: ${cause ?? 'no fault'}`);
      if (!cause) unexplained.push(`claim ${claim.token} by ${claim.owner} at ${claim.at.toISOString()}`);
    });
    return { problem: undefined, story, unexplained };
  };
  const poisonIds = new Set(poisons.map((p) => p.id));
  const poisonClaims = claims.rows.filter((c) => poisonIds.has(c.workflow_id));
  /** Why an order's failure is not explained by the faults; none when it is. */
  const unexplainedFailure = (id: string): string[] => {
    const { problem, unexplained } = claimsInARow(id);
    if (problem) return [`${id}: ${problem}`];
    return unexplained.length ? [`${id}: failed after ${byId.get(id)!.max_attempts} claims in a row, but no fault ended ${unexplained.join(', ')}`] : [];
  };
  const failedOrders = orders.filter((id) => byId.get(id)?.status === 'failed');
  /** Once, or — for an order that failed (explained or not: that is the first invariant's business) or was cancelled — at most once, and once if its step was recorded. */
  const once = (id: string, count: number, step: string, what: string) => {
    const short = endedShort(id);
    const ok = short ? count <= 1 && (count === 1 || !recorded(id, step)) : count === 1;
    return ok ? [] : [`${id}: ${count} ${what}${short ? ` (${byId.get(id)!.status}; ${step} ${recorded(id, step) ? 'recorded' : 'not recorded'})` : ''}`];
  };

  // ── events: each order's one event, taken once by its one wait ──
  let eventWaits = 0;
  const eventViolations = awaitSettlement
    ? orders.flatMap((id) => {
        const out: string[] = [];
        const w = byId.get(id);
        const waits = (stepsOf.get(id) ?? []).filter((s) => s.kind === 'event');
        const table = eventsOf.get(id) ?? [];
        const delivered = sends.filter((s) => s.orderId === id && s.outcome === 'delivered');
        if (waits.length > 1) out.push(`${id}: ${waits.length} waits ended (#${waits.map((s) => s.seq).join(', #')}), for an order that waits once`);
        for (const wait of waits) {
          const ended = wait.output as { payload?: unknown; key?: string; timedOut?: boolean };
          if (ended.timedOut) {
            const event = table.find((e) => e.name === SETTLED && e.sent_at < wait.created_at);
            out.push(`${id}: its wait #${wait.seq} timed out (recorded at ${wait.created_at.toISOString()})${event ? `, though its event was sent at ${event.sent_at.toISOString()}` : ', no event sent before'}`);
            continue;
          }
          eventWaits++;
          const event = table.find((e) => e.name === wait.name && e.key === ended.key);
          if (ended.key !== settledKey(id)) out.push(`${id}: its wait #${wait.seq} took the key ${JSON.stringify(ended.key)}, not the one sent to it (${settledKey(id)})`);
          if (!event) out.push(`${id}: its wait #${wait.seq} took key ${JSON.stringify(ended.key)}, which the events table does not hold`);
          else {
            if (event.taken_at_seq !== wait.seq) out.push(`${id}: its wait #${wait.seq} took key ${event.key}, which the table says was taken by ${event.taken_at_seq === null ? 'no wait' : `wait #${event.taken_at_seq}`}`);
            if (canonical(event.payload) !== canonical(ended.payload)) out.push(`${id}: its wait #${wait.seq} recorded the payload ${canonical(ended.payload)}, the table kept ${canonical(event.payload)} under that key`);
          }
        }
        for (const event of table) {
          if (event.taken_at_seq !== null && !waits.some((s) => s.seq === event.taken_at_seq && (s.output as { key?: string }).key === event.key)) {
            out.push(`${id}: event ${event.key} marked taken by wait #${event.taken_at_seq}, whose entry in the log does not hold it`);
          }
        }
        if (table.length > 1) out.push(`${id}: ${table.length} events in the table (${table.map((e) => e.key).join(', ')}), for one key sent`);
        if (delivered.length > 1) out.push(`${id}: ${delivered.length} sends of key ${settledKey(id)} answered "delivered" (${delivered.map((s) => `${s.via} ${s.variant}`).join('; ')}): a key is one event`);
        const kept = table.find((e) => e.key === settledKey(id));
        if (delivered.length === 1 && kept && canonical(kept.payload) !== canonical(delivered[0]!.payload)) {
          out.push(`${id}: the table kept ${canonical(kept.payload)} under its key, but the send that answered "delivered" sent ${canonical(delivered[0]!.payload)}`);
        }
        if (delivered.length && !kept) out.push(`${id}: a send answered "delivered", and the table holds no event under its key`);
        if (w?.status === 'completed' && !waits.some((s) => !(s.output as { timedOut?: boolean }).timedOut)) out.push(`${id}: completed without taking its event`);
        return out;
      })
    : [];
  const leftParked = awaitSettlement
    ? orders.flatMap((id) => {
        const untaken = (eventsOf.get(id) ?? []).filter((e) => e.taken_at_seq === null);
        return byId.get(id)?.status === 'running' && untaken.length
          ? [`${id}: still running after recovery (${parkedAtEnd.get(id) ?? 'where, unknown'}), its event ${untaken.map((e) => `${e.key} (sent at ${e.sent_at.toISOString()})`).join(', ')} untaken`]
          : [];
      })
    : [];

  /**
   * A cancel is a request (engine.cancel's documentation): the run holding
   * the workflow when it was written may record its end before it hears of
   * it — by NOTIFY, or at its next heartbeat, so within one lease. Completed
   * by that run (its claim's token), that soon: allowed. By a later claim,
   * which was told of the cancel: a violation.
   */
  const endedBeforeHearing = (w: { status: string; fencing_token: number; updated_at: Date }, watched: { held: boolean; token: number; requested_at: Date }) =>
    w.status === 'completed' && watched.held && w.fencing_token === watched.token && w.updated_at.getTime() - watched.requested_at.getTime() <= leaseMs;
  // ── cancellations: ended cancelled (or completed by the run that had not heard yet); nothing recorded after, but what was in flight ──
  const requestedBy = new Set(cancels.filter((c) => c.outcome === 'requested').map((c) => c.id));
  const cancelEnds = orders.flatMap((id) => {
    const w = byId.get(id);
    const watched = cancelOf.get(id);
    if (!w) return [];
    if (requestedBy.has(id) && !watched) return [`${id}: its cancel answered "requested", but the cancel watch saw none written`];
    if (!watched) return w.status === 'cancelled' ? [`${id}: cancelled, but the round never cancelled it`] : [];
    if (w.status !== 'cancelled') {
      if (endedBeforeHearing(w, watched)) return [];
      const after = ((w.updated_at.getTime() - watched.requested_at.getTime()) / 1000).toFixed(3);
      return [`${id}: ${w.status} (at ${w.updated_at.toISOString()}, ${after} s after its cancel was written at ${watched.requested_at.toISOString()}, when ${watched.held ? `${watched.owner} held it under claim #${watched.token}` : 'nobody held it'})`];
    }
    return w.error === w.cancel_reason ? [] : [`${id}: cancelled with the error ${JSON.stringify(w.error)}, not its reason ${JSON.stringify(w.cancel_reason)}`];
  });
  // ── parents: each batch ends once its children have, with what they did ──
  const parentViolations = parents.flatMap(({ id, children }) => {
    const p = byId.get(id);
    if (!p) return [`${id}: not in the log`];
    const kids = children.map((child) => ({ id: child, w: byId.get(child) }));
    const started = kids.filter((k) => k.w);
    const running = started.filter((k) => k.w!.status === 'running').map((k) => k.id);
    if (p.status === 'running') {
      const last = started.length ? new Date(Math.max(...started.map((k) => k.w!.updated_at.getTime()))).toISOString() : undefined;
      const children = running.length ? `children still running: ${running.join(', ')}` : last ? `every child had ended (the last at ${last})` : 'no child started';
      return [`${id}: still running after recovery (${parkedAtEnd.get(id) ?? 'where, unknown'}); ${children}`];
    }
    const out: string[] = [];
    if (p.status === 'failed') out.push(...unexplainedFailure(id));
    if (p.status === 'cancelled' && !cancelOf.has(id)) out.push(`${id}: cancelled, but the round never cancelled it`);
    if (p.status !== 'cancelled' && cancelOf.has(id) && !endedBeforeHearing(p, cancelOf.get(id)!)) out.push(`${id}: ${p.status}, though its cancel was written at ${cancelOf.get(id)!.requested_at.toISOString()}`);
    if (p.status === 'completed') {
      if (started.length !== children.length) out.push(`${id}: completed with ${started.length} of its ${children.length} children in the log`);
      const later = started.filter((k) => k.w!.updated_at > p.updated_at);
      if (later.length) out.push(`${id}: completed at ${p.updated_at.toISOString()} by ${ownerOf(id, p.fencing_token)} under claim #${p.fencing_token}, before its children ${later.map((k) => `${k.id} (${k.w!.status} at ${k.w!.updated_at.toISOString()})`).join(', ')} ended`);
      const output = p.output as { completed?: number; failed?: string[] } | null;
      const completed = started.filter((k) => k.w!.status === 'completed').map((k) => k.id);
      const others = started.filter((k) => k.w!.status !== 'completed').map((k) => k.id);
      if (output?.completed !== completed.length || canonical([...(output?.failed ?? [])].sort()) !== canonical([...others].sort())) {
        out.push(`${id}: its result ${canonical(output)} does not match its children: completed ${completed.join(', ') || 'none'}; not completed ${others.join(', ') || 'none'}`);
      }
    }
    // A batch that ended cancelled: its children too, but those that had ended before the cancel reached them.
    if (p.status === 'cancelled') {
      const c = cancelOf.get(id);
      const spared = started.filter((k) => k.w!.status !== 'cancelled' && c && k.w!.updated_at > c.requested_at && !cancelOf.has(k.id));
      if (spared.length) out.push(`${id}: cancelled at ${c!.requested_at.toISOString()}, but its children ${spared.map((k) => `${k.id} (${k.w!.status})`).join(', ')} ran on, never cancelled`);
    }
    return out;
  });

  let stepsInFlightAtCancel = 0;
  /** Compensation steps (ctx.nonCancellable) recorded after a cancel: allowed, counted. */
  let compensations = 0;
  /** A step or an effect this long after the cancel was begun after the run holding it had heard (a renewal answers it) — or its lease was gone. */
  const hearingMs = leaseMs + SLACK_MS;
  const afterCancel = [...orders, ...parents.map((p) => p.id)].flatMap((id) => {
    const c = cancelOf.get(id);
    if (!c) return [];
    const out: string[] = [];
    for (const s of stepsOf.get(id) ?? []) {
      if (s.created_at <= c.requested_at) continue;
      if (COMPENSATIONS.includes(s.name)) {
        compensations++;
        continue;
      }
      const gap = s.created_at.getTime() - c.requested_at.getTime();
      const what = `step #${s.seq} ${s.name} recorded at ${s.created_at.toISOString()} (${gap} ms after the cancel was written at ${c.requested_at.toISOString()})`;
      if (s.fencing_token > c.token) out.push(`${id}: ${what} under claim #${s.fencing_token} by ${ownerOf(id, s.fencing_token)}, a claim made after the cancel (which was written under #${c.token})`);
      else if (s.fencing_token < c.token || !c.held) out.push(`${id}: ${what} under claim #${s.fencing_token}, which no live run held when the cancel was written (#${c.token}${c.owner ? `, ${c.owner}'s lease gone` : ', released'})`);
      else if (gap > hearingMs) out.push(`${id}: ${what} by ${c.owner} under claim #${c.token}, which held it at the cancel: more than a lease (${leaseMs} ms) later, by when its run had heard of it or lost its lease`);
      else stepsInFlightAtCancel++;
    }
    // The effects themselves, on the world's clock (this machine's, as the database's): none begun past the hearing
    // by a run that could have heard — one whose step was recorded under a claim made after the cancel. A run frozen
    // inside the step (a zombie: the harness's SIGSTOP, with or without the cancel) sends its request when it wakes,
    // however late, never having heard: its effect lands late, once (its key), and its record is refused — the
    // limit the guide states ("a ctx.step's code can run more than once"), not a broken cancel.
    const recordedAfter = (key: string | null) => {
      const seq = key?.startsWith(`${id}:`) ? Number(key.slice(id.length + 1)) : NaN;
      return (stepsOf.get(id) ?? []).some((s) => s.seq === seq && s.fencing_token > c.token);
    };
    const late = [...(ledger.charges ?? []).map((r) => ({ what: 'charge', r })), ...(ledger.emails ?? []).map((r) => ({ what: 'email', r }))].filter(
      ({ r }) => r.orderId === id && new Date(r.createdAt).getTime() - c.requested_at.getTime() > hearingMs && recordedAfter(r.idempotencyKey),
    );
    for (const { what, r } of late) out.push(`${id}: ${what} made at ${r.createdAt}, ${new Date(r.createdAt).getTime() - c.requested_at.getTime()} ms after its cancel was written at ${c.requested_at.toISOString()}`);
    return out;
  });

  const invariants = [
    invariant(
      'every order completed — or was cancelled, by the round — or failed only once claimed at least its maxAttempts times in a row, a fault ending each of those claims (none lost, none stuck)',
      orders.flatMap((id) => {
        const w = byId.get(id);
        if (!w) return [`${id}: not in the log`];
        if (w.status === 'completed') return [];
        if (w.status === 'cancelled') return cancelOf.has(id) ? [] : [`${id}: cancelled, but the round never cancelled it`];
        if (w.status === 'failed') return unexplainedFailure(id);
        return [`${id}: still ${w.status} after recovery${parkedAtEnd.has(id) ? ` (${parkedAtEnd.get(id)})` : ''}`];
      }),
    ),
    invariant(
      'every poison workflow failed once claimed at least its maxAttempts times in a row, each claim ended by a fault (its own kill, or another); its killing step never recorded',
      poisons.flatMap(({ id, maxAttempts }) => {
        const w = byId.get(id);
        if (!w) return [`${id}: not in the log`];
        const names = (stepsOf.get(id) ?? []).map((s) => `${s.seq}:${s.name}`).join(',');
        const row = w.status === 'failed' ? claimsInARow(id) : undefined;
        return [
          ...(w.status !== 'failed' ? [`${id}: ${w.status}, not failed`] : []),
          ...(row?.problem ? [`${id}: ${row.problem}`] : []),
          ...(row?.unexplained.length ? [`${id}: failed after claims in a row (maxAttempts ${maxAttempts}), but no fault ended ${row.unexplained.join(', ')}`] : []),
          // Its first step, or nothing: a claim cut short by another fault (a poison beside it) may die before recording it, every time.
          ...(names !== '0:open_upload' && names !== '' ? [`${id}: log ${names}, not 0:open_upload`] : []),
        ];
      }),
    ),
    invariant(
      'each order charged once (at most once if it failed or was cancelled)',
      orders.flatMap((id) => once(id, ledger.byOrder(id).charges, 'charge_card', 'charge(s)')),
    ),
    invariant(
      'each order’s stock decremented once (at most once if it failed or was cancelled)',
      orders.flatMap((id) => once(id, ledger.byOrder(id).stockDecrements, 'reserve_inventory', 'decrement(s)')),
    ),
    invariant(
      'each order emailed once (at most once if it failed or was cancelled)',
      orders.flatMap((id) => once(id, ledger.byOrder(id).emails, 'send_email', 'email(s)')),
    ),
    invariant(
      `each order’s log holds its steps in order (${expectedSteps.join(', ')}; a failed or cancelled order, the first of them — or, cancelled in its cooling-off, release_inventory after them), none failed for good`,
      orders.flatMap((id) => {
        const entries = stepsOf.get(id) ?? [];
        const names = entries.map((s) => `${s.seq}:${s.name}`);
        const expected = expectedSteps.map((name, seq) => `${seq}:${name}`);
        const prefix = endedShort(id) ? expected.slice(0, names.length) : expected;
        // Cancelled during its cooling-off: the saga's undo right after the sleep (workflow.ts), in ctx.nonCancellable —
        // its sleep recorded, or cut short before it was (the call threw at once: its position taken, nothing written).
        const slept = expectedSteps.indexOf('sleep');
        const undone = (withSleep: boolean) => [...expected.slice(0, withSleep ? slept + 1 : slept), `${slept + 1}:release_inventory`].join(',');
        if (byId.get(id)?.status === 'cancelled' && slept >= 0 && (names.join(',') === undone(true) || names.join(',') === undone(false))) return [];
        const gaveUp = entries.filter((s) => s.error).map((s) => `${id}: step #${s.seq} ${s.name} failed for good (${s.error?.message ?? JSON.stringify(s.error)})`);
        return [...(names.join(',') === prefix.join(',') ? [] : [`${id}: ${names.join(',') || '(no steps)'}`]), ...gaveUp];
      }),
    ),
    invariant(
      'no step record without its business write, and no business write without its record (the reservation, and a cancelled order’s release of it)',
      orders.flatMap((id) => {
        const { taken = 0, returned = 0 } = stock.get(id) ?? {};
        const reserved = recorded(id, 'reserve_inventory');
        const released = recorded(id, 'release_inventory');
        return [
          ...(reserved === (taken === 1) ? [] : [`${id}: reserve record ${reserved ? 'present' : 'absent'}, ${taken} stock decrement(s)`]),
          ...(released === (returned === 1) ? [] : [`${id}: release record ${released ? 'present' : 'absent'}, ${returned} stock return(s)`]),
          ...(released && !reserved ? [`${id}: stock released, never reserved`] : []),
          ...(released && byId.get(id)?.status !== 'cancelled' ? [`${id}: stock released, but ${byId.get(id)?.status}, not cancelled`] : []),
        ];
      }),
    ),
    invariant(
      'sleeps never end early: the entry after each sleep (or the completion) recorded at or after its end, on the database clock',
      // …but a cancellation's compensation, which runs as soon as the cancel cuts the sleep short.
      sleeps.rows.flatMap((s) =>
        s.early_ms !== null && s.early_ms > 0 && !(s.status === 'cancelled' && COMPENSATIONS.includes(s.next_name ?? '')) ? [`${s.workflow_id}: ${s.next} recorded at ${s.next_at!.toISOString()}, ${s.early_ms.toFixed(3)} ms before its sleep (#${s.seq}) ended at ${s.until}`] : [],
      ),
    ),
    invariant(
      'back-offs never cut short: each retried step’s next attempt recorded at or after its retry time, on the database clock',
      backoffs.rows.flatMap((b) =>
        b.early_ms !== null && b.early_ms > 0
          ? [`${b.workflow_id}: step #${b.seq} ${b.name} attempt ${b.attempt + 1} recorded at ${b.next_at!.toISOString()}, ${b.early_ms.toFixed(3)} ms before its retry time ${b.retry_at.toISOString()}`]
          : [],
      ),
    ),
    invariant(
      'no write by a fenced worker (each step record and failed attempt committed while its token was the latest claim, or released the workflow itself; tokens never go backwards)',
      [
        ...breaches.rows.map(
          (b) => `${b.workflow_id} ${b.tbl === 'steps' ? 'step' : 'failed attempt of step'} #${b.seq}: committed under token ${b.step_token} when the latest claim was ${b.latest_token}`,
        ),
        ...ids.flatMap((id) => {
          // In the order they were recorded, not by position: waits gathered together end in whichever run finds their events.
          const inOrder = [...(stepsOf.get(id) ?? [])].sort((a, b) => a.created_at.getTime() - b.created_at.getTime() || a.seq - b.seq);
          const tokens = inOrder.map((s) => s.fencing_token);
          const last = byId.get(id)?.fencing_token ?? 0;
          const backwards = tokens.some((t, i) => i > 0 && t < tokens[i - 1]!);
          const ahead = tokens.some((t) => t > last);
          return backwards || ahead ? [`${id}: step tokens ${tokens.join(',')}, last claim ${last}`] : [];
        }),
      ],
    ),
    ...(awaitSettlement
      ? [
          invariant(
            'each order’s wait took the one event sent to it, once: its entry holds that key and the payload the table kept under it, never a timeout; the event marked taken by that wait and no other; a key sent again is the same event (never "delivered" twice)',
            eventViolations,
          ),
          invariant(
            'no order parked for its event while the event sat untaken (looked for at every fault and through recovery), nor left running with its event sent',
            [...stranded, ...leftParked],
          ),
        ]
      : []),
    invariant(
      'every order whose cancel was written ended cancelled, its reason as its error — or completed by the run that held it then, within one lease, before it heard (a cancel is a request); no other order was cancelled',
      cancelEnds,
    ),
    ...(parents.length
      ? [
          invariant(
            'no parent stuck: every batch ended once all its children had ended (never parked with none left running), and not before them; a completed batch counts its children’s ends as they were; a cancelled one took its children with it',
            [...strandedParents, ...parentViolations],
          ),
        ]
      : []),
    invariant(
      'nothing recorded after a cancel was written but by the run that held the workflow then, within one lease (a step in flight when it heard); no charge or email made later by a claim made after it',
      afterCancel,
    ),
    invariant(
      'no workflow left waiting after its cancel was written: none seen asleep, backing off or parked more than a lease after it (looked for at every fault and through recovery)',
      waitingAfterCancel,
    ),
  ];
  const observed: Observed = {
    sleeps: sleeps.rows.length,
    backoffs: backoffs.rows.length,
    ordersFailed: failedOrders.filter((id) => unexplainedFailure(id).length === 0).length,
    poisons: poisons.length,
    failedOrders: failedOrders.map((id) => `${id} (maxAttempts ${byId.get(id)!.max_attempts}): ${claimsInARow(id).story.join('; ')}`),
    eventWaits,
    wokenBySend: sends.filter((s) => s.woke).length,
    cancelled: orders.filter((id) => byId.get(id)?.status === 'cancelled').length,
    completedBeforeHearing: [...orders, ...parents.map((p) => p.id)].filter((id) => cancelOf.has(id) && byId.get(id)?.status === 'completed').length,
    stepsInFlightAtCancel,
    compensations,
    parents: parents.length,
    parentsCompleted: parents.filter((p) => byId.get(p.id)?.status === 'completed').length,
  };
  return { invariants, observed };
}

/** JSON with its keys sorted: to compare a payload with what jsonb gave back. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}
