/**
 * The ledger: what the world *actually* saw happen, per order. This is the
 * referee of every crash test in the course — not the workflow's own log, which
 * may be wrong, but the effects themselves:
 *
 *   charges          — from the payments service (the world server)
 *   stock decrements — rows in stock_movements (the workflow's database)
 *   stock releases   — the same table's returns (a cancelled order's compensation, chapter 9)
 *   emails           — from the mail service (the world server)
 *
 * "Exactly once" means 1, 1 and 1 for every order, however often the workflow
 * process was killed and restarted on the way.
 */
import pg from 'pg';
import { CourseError, toError } from '../errors.ts';
import type { Charge, Email, LedgerRecord, WorldLedger } from './protocol.ts';

export interface OrderEffects {
  orderId: string;
  charges: number;
  /** Reservations of stock for this order (rows in stock_movements with delta < 0). */
  stockDecrements: number;
  emails: number;
}

export interface Ledger {
  /** Every order that has at least one effect, sorted by id. */
  orders: OrderEffects[];
  /** One order's effects; all zeros for an order the world never saw. */
  byOrder(id: string): OrderEffects;
  /** Stock put back for this order (rows in stock_movements with delta > 0): a saga's undo of its reservation. */
  stockReleases(id: string): number;
  /** The raw records, for a closer look (amounts, ids, idempotency keys). */
  charges: LedgerRecord<Charge>[];
  emails: LedgerRecord<Email>[];
}

/** The ledger could not be read (world server gone, database unreachable, schema missing). */
export class LedgerUnavailableError extends CourseError {}

export async function readLedger(worldUrl: string, databaseUrl: string): Promise<Ledger> {
  const [world, { decrements, releases }] = await Promise.all([fetchWorldLedger(worldUrl), countMovements(databaseUrl)]);

  const effects = new Map<string, OrderEffects>();
  const entry = (orderId: string) => {
    let e = effects.get(orderId);
    if (!e) effects.set(orderId, (e = { orderId, charges: 0, stockDecrements: 0, emails: 0 }));
    return e;
  };
  for (const charge of world.charges) entry(charge.orderId).charges++;
  for (const email of world.emails) entry(email.orderId).emails++;
  for (const [orderId, n] of decrements) entry(orderId).stockDecrements += n;

  const orders = [...effects.values()].sort((a, b) => (a.orderId < b.orderId ? -1 : a.orderId > b.orderId ? 1 : 0));
  return {
    orders,
    byOrder: (id) => ({ ...(effects.get(id) ?? { orderId: id, charges: 0, stockDecrements: 0, emails: 0 }) }),
    stockReleases: (id) => releases.get(id) ?? 0,
    charges: world.charges,
    emails: world.emails,
  };
}

/** One charge, one stock decrement, one email. */
export function exactlyOnce(e: OrderEffects): boolean {
  return e.charges === 1 && e.stockDecrements === 1 && e.emails === 1;
}

/** e.g. "charged 2×, stock −1, 1 email" — the stock figure counts reservations. */
export function describeEffects(e: OrderEffects): string {
  const charged = e.charges === 0 ? 'not charged' : `charged ${e.charges}×`;
  const stock = e.stockDecrements === 0 ? 'stock untouched' : `stock −${e.stockDecrements}`;
  const emails = e.emails === 0 ? 'no email' : e.emails === 1 ? '1 email' : `${e.emails} emails`;
  return `${charged}, ${stock}, ${emails}`;
}

async function fetchWorldLedger(worldUrl: string): Promise<WorldLedger> {
  try {
    const response = await fetch(new URL('/ledger', worldUrl), { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) throw new Error(`GET /ledger answered ${response.status}: ${await response.text()}`);
    return (await response.json()) as WorldLedger;
  } catch (thrown) {
    throw new LedgerUnavailableError(
      `Could not read the world server's ledger at ${worldUrl}: ${toError(thrown).message}`,
      'Is the world still running? Read the ledger before world.stop().',
      { cause: thrown },
    );
  }
}

async function countMovements(databaseUrl: string): Promise<{ decrements: Map<string, number>; releases: Map<string, number> }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
    const { rows } = await client.query<{ order_id: string; taken: number; returned: number }>(
      'SELECT order_id, count(*) FILTER (WHERE delta < 0)::int AS taken, count(*) FILTER (WHERE delta > 0)::int AS returned FROM stock_movements GROUP BY order_id',
    );
    return {
      decrements: new Map(rows.filter((r) => r.taken > 0).map((r) => [r.order_id, r.taken])),
      releases: new Map(rows.filter((r) => r.returned > 0).map((r) => [r.order_id, r.returned])),
    };
  } catch (thrown) {
    const missing = (thrown as { code?: string }).code === '42P01';
    throw new LedgerUnavailableError(
      `Could not count stock movements: ${toError(thrown).message}`,
      missing ? 'This database has no inventory tables: was the world started with it (startWorld({ databaseUrl }))?' : 'Is the database running?',
      { cause: thrown },
    );
  } finally {
    await client.end().catch(() => {});
  }
}
