/**
 * What must hold after any number of crashes, zombies and database restarts.
 * Each invariant is checked against the outside world (the payment
 * provider's and the mailbox's ledgers, the stock table) and the engine's
 * log, never against what the engine says about itself.
 */
import type pg from 'pg';
import type { World } from '../../shared/world/world.ts';

export interface Invariant {
  name: string;
  ok: boolean;
  /** The first few counterexamples, when it does not hold. */
  violations: string[];
}

const STEPS = ['charge_card', 'reserve_inventory', 'send_email'];

function invariant(name: string, violations: string[]): Invariant {
  return { name, ok: violations.length === 0, violations: violations.slice(0, 10) };
}

/**
 * A watch on the log that the engine does not know about: a constraint
 * trigger, DEFERRED to each transaction's COMMIT, that notes every step
 * record committed under a fencing token that is by then no longer the
 * workflow's latest claim. The engine fences each write when it makes it; this
 * checks the outcome at the last moment it could still go wrong, so a fence
 * that let a zombie through — a missing token check, a row lock that did not
 * keep the takeover out until COMMIT — is caught even if its effects happen
 * to look right. It notes, never refuses: the engine under test must behave
 * exactly as it would without it.
 */
export async function installFenceWatch(db: pg.Pool): Promise<void> {
  await db.query(`
    CREATE TABLE IF NOT EXISTS torture_fence_breaches (
      workflow_id text NOT NULL, seq int NOT NULL, step_token int NOT NULL, latest_token int, noted_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE OR REPLACE FUNCTION torture_watch_step() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE latest int;
    BEGIN
      SELECT fencing_token INTO latest FROM workflows WHERE id = NEW.workflow_id;
      IF latest IS DISTINCT FROM NEW.fencing_token THEN
        INSERT INTO torture_fence_breaches (workflow_id, seq, step_token, latest_token) VALUES (NEW.workflow_id, NEW.seq, NEW.fencing_token, latest);
      END IF;
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS torture_watch_step ON steps;
    CREATE CONSTRAINT TRIGGER torture_watch_step AFTER INSERT ON steps
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION torture_watch_step();
  `);
}

export async function checkInvariants({ db, world, ids }: { db: pg.Pool; world: World; ids: string[] }): Promise<Invariant[]> {
  const ledger = await world.ledger();
  const workflows = await db.query<{ id: string; status: string; fencing_token: number }>(
    `SELECT id, status, fencing_token FROM workflows WHERE id = ANY($1)`,
    [ids],
  );
  const steps = await db.query<{ workflow_id: string; seq: number; name: string; fencing_token: number }>(
    `SELECT workflow_id, seq, name, fencing_token FROM steps WHERE workflow_id = ANY($1) ORDER BY workflow_id, seq`,
    [ids],
  );
  const movements = await db.query<{ order_id: string; n: number }>(
    `SELECT order_id, count(*)::int AS n FROM stock_movements WHERE order_id = ANY($1) GROUP BY order_id`,
    [ids],
  );
  const byId = new Map(workflows.rows.map((w) => [w.id, w]));
  const stepsOf = new Map<string, typeof steps.rows>();
  for (const row of steps.rows) stepsOf.set(row.workflow_id, [...(stepsOf.get(row.workflow_id) ?? []), row]);
  const stock = new Map(movements.rows.map((m) => [m.order_id, m.n]));
  const breaches = await db.query<{ workflow_id: string; seq: number; step_token: number; latest_token: number | null }>(
    `SELECT workflow_id, seq, step_token, latest_token FROM torture_fence_breaches WHERE workflow_id = ANY($1) ORDER BY noted_at`,
    [ids],
  );

  return [
    invariant(
      'every started workflow completed (none lost, none stuck, none failed)',
      ids.flatMap((id) => {
        const w = byId.get(id);
        return !w ? [`${id}: not in the log`] : w.status !== 'completed' ? [`${id}: ${w.status}`] : [];
      }),
    ),
    invariant(
      'each order charged once',
      ids.flatMap((id) => (ledger.byOrder(id).charges === 1 ? [] : [`${id}: ${ledger.byOrder(id).charges} charges`])),
    ),
    invariant(
      'each order’s stock decremented once',
      ids.flatMap((id) => (ledger.byOrder(id).stockDecrements === 1 ? [] : [`${id}: ${ledger.byOrder(id).stockDecrements} decrements`])),
    ),
    invariant(
      'each order emailed once',
      ids.flatMap((id) => (ledger.byOrder(id).emails === 1 ? [] : [`${id}: ${ledger.byOrder(id).emails} emails`])),
    ),
    invariant(
      'each workflow’s log holds its three steps, in order',
      ids.flatMap((id) => {
        const names = (stepsOf.get(id) ?? []).map((s) => `${s.seq}:${s.name}`).join(',');
        const expected = STEPS.map((name, seq) => `${seq}:${name}`).join(',');
        return names === expected ? [] : [`${id}: ${names || '(no steps)'}`];
      }),
    ),
    invariant(
      'no step record without its business write, and no business write without its record',
      ids.flatMap((id) => {
        const recorded = (stepsOf.get(id) ?? []).some((s) => s.name === 'reserve_inventory');
        const written = stock.get(id) ?? 0;
        return recorded === (written === 1) ? [] : [`${id}: reserve record ${recorded ? 'present' : 'absent'}, ${written} stock movement(s)`];
      }),
    ),
    invariant(
      'no write by a fenced worker (each step record committed while its token was the latest claim; tokens never go backwards)',
      [
        ...breaches.rows.map((b) => `${b.workflow_id} step #${b.seq}: committed under token ${b.step_token} when the latest claim was ${b.latest_token}`),
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
}
