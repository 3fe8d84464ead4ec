/**
 * What must hold after any number of crashes, zombies, database restarts,
 * provider outages and poison workflows. Each invariant is checked against
 * the outside world (the payment provider's and the mailbox's ledgers, the
 * stock table) and the engine's log, never against what the engine says
 * about itself; times are compared on the database clock, the only one every
 * worker shares.
 *
 * What counts as the right end of a workflow (chapter 8):
 *   - an order COMPLETES, charged, decremented and emailed once each. The
 *     round's provider outages are kept within what the order's retry policy
 *     rides out (round.ts), so no order may fail for a step's retries. An
 *     order may fail in one way only: as a poison does — claimed its
 *     `maxAttempts` times in a row with no run recording a step or reporting
 *     back — and only if every one of those claims was ended by a fault: the
 *     worker process that held it was SIGKILLed (by the harness, a crash
 *     point, or a poison workflow it ran beside) or frozen, or PostgreSQL was
 *     killed or the connections dropped while it held it. Its effects are
 *     then at most once each. Any other failed order is a violation.
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
 * + 1, on a row this same transaction wrote.
 *
 * The claim watch: every claim (a new fencing token with an owner) with its
 * owner, its attempt count and the time, so the checker can say which process
 * held each claim of an order that failed, and the harness which worker put a
 * waiting workflow to wait.
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
        AND CASE TG_TABLE_NAME WHEN 'steps' THEN to_jsonb(NEW)->>'kind' = 'sleep' ELSE to_jsonb(NEW)->>'retry_at' IS NOT NULL END;
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
}

export async function checkInvariants({ db, world, orders, poisons, coolingOffMs, disruptions }: CheckInput): Promise<{ invariants: Invariant[]; observed: Observed }> {
  const ids = [...orders, ...poisons.map((p) => p.id)];
  const ledger = await world.ledger();
  const workflows = await db.query<{ id: string; status: string; error: string | null; fencing_token: number; max_attempts: number }>(
    `SELECT id, status, error, fencing_token, max_attempts FROM workflows WHERE id = ANY($1)`,
    [ids],
  );
  const steps = await db.query<{ workflow_id: string; seq: number; name: string; kind: string; fencing_token: number; error: { message?: string } | null }>(
    `SELECT workflow_id, seq, name, kind, fencing_token, error FROM steps WHERE workflow_id = ANY($1) ORDER BY workflow_id, seq`,
    [ids],
  );
  const movements = await db.query<{ order_id: string; n: number }>(
    `SELECT order_id, count(*)::int AS n FROM stock_movements WHERE order_id = ANY($1) GROUP BY order_id`,
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
  const sleeps = await db.query<{ workflow_id: string; seq: number; until: string; next: string | null; next_at: Date | null; early_ms: number | null }>(
    `SELECT s.workflow_id, s.seq, s.output->>'until' AS until,
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
  const stepsOf = new Map<string, typeof steps.rows>();
  for (const row of steps.rows) stepsOf.set(row.workflow_id, [...(stepsOf.get(row.workflow_id) ?? []), row]);
  const claimsOf = new Map<string, typeof claims.rows>();
  for (const row of claims.rows) claimsOf.set(row.workflow_id, [...(claimsOf.get(row.workflow_id) ?? []), row]);
  const stock = new Map(movements.rows.map((m) => [m.order_id, m.n]));
  const expectedSteps = ['charge_card', 'reserve_inventory', ...(coolingOffMs > 0 ? ['sleep'] : []), 'send_email'];
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
  /** Once, or — for an order that failed (explained or not: that is the first invariant's business) — at most once, and once if its step was recorded. */
  const once = (id: string, count: number, step: string, what: string) => {
    const failed = byId.get(id)?.status === 'failed';
    const ok = failed ? count <= 1 && (count === 1 || !recorded(id, step)) : count === 1;
    return ok ? [] : [`${id}: ${count} ${what}${failed ? ` (failed; ${step} ${recorded(id, step) ? 'recorded' : 'not recorded'})` : ''}`];
  };

  const invariants = [
    invariant(
      'every order completed — or failed only once claimed at least its maxAttempts times in a row, a fault ending each of those claims (none lost, none stuck)',
      orders.flatMap((id) => {
        const w = byId.get(id);
        if (!w) return [`${id}: not in the log`];
        if (w.status === 'completed') return [];
        if (w.status === 'failed') return unexplainedFailure(id);
        return [`${id}: still ${w.status} after recovery`];
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
      'each order charged once (at most once if it failed)',
      orders.flatMap((id) => once(id, ledger.byOrder(id).charges, 'charge_card', 'charge(s)')),
    ),
    invariant(
      'each order’s stock decremented once (at most once if it failed)',
      orders.flatMap((id) => once(id, ledger.byOrder(id).stockDecrements, 'reserve_inventory', 'decrement(s)')),
    ),
    invariant(
      'each order emailed once (at most once if it failed)',
      orders.flatMap((id) => once(id, ledger.byOrder(id).emails, 'send_email', 'email(s)')),
    ),
    invariant(
      `each order’s log holds its steps in order (${expectedSteps.join(', ')}; a failed order, the first of them), none failed for good`,
      orders.flatMap((id) => {
        const entries = stepsOf.get(id) ?? [];
        const names = entries.map((s) => `${s.seq}:${s.name}`);
        const expected = expectedSteps.map((name, seq) => `${seq}:${name}`);
        const prefix = byId.get(id)?.status === 'failed' ? expected.slice(0, names.length) : expected;
        const gaveUp = entries.filter((s) => s.error).map((s) => `${id}: step #${s.seq} ${s.name} failed for good (${s.error?.message ?? JSON.stringify(s.error)})`);
        return [...(names.join(',') === prefix.join(',') ? [] : [`${id}: ${names.join(',') || '(no steps)'}`]), ...gaveUp];
      }),
    ),
    invariant(
      'no step record without its business write, and no business write without its record',
      orders.flatMap((id) => {
        const record = recorded(id, 'reserve_inventory');
        const written = stock.get(id) ?? 0;
        return record === (written === 1) ? [] : [`${id}: reserve record ${record ? 'present' : 'absent'}, ${written} stock movement(s)`];
      }),
    ),
    invariant(
      'sleeps never end early: the entry after each sleep (or the completion) recorded at or after its end, on the database clock',
      sleeps.rows.flatMap((s) =>
        s.early_ms !== null && s.early_ms > 0 ? [`${s.workflow_id}: ${s.next} recorded at ${s.next_at!.toISOString()}, ${s.early_ms.toFixed(3)} ms before its sleep (#${s.seq}) ended at ${s.until}`] : [],
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
          const tokens = (stepsOf.get(id) ?? []).map((s) => s.fencing_token);
          const last = byId.get(id)?.fencing_token ?? 0;
          const backwards = tokens.some((t, i) => i > 0 && t < tokens[i - 1]!);
          const ahead = tokens.some((t) => t > last);
          return backwards || ahead ? [`${id}: step tokens ${tokens.join(',')}, last claim ${last}`] : [];
        }),
      ],
    ),
  ];
  const observed: Observed = {
    sleeps: sleeps.rows.length,
    backoffs: backoffs.rows.length,
    ordersFailed: failedOrders.filter((id) => unexplainedFailure(id).length === 0).length,
    poisons: poisons.length,
    failedOrders: failedOrders.map((id) => `${id} (maxAttempts ${byId.get(id)!.max_attempts}): ${claimsInARow(id).story.join('; ')}`),
  };
  return { invariants, observed };
}
