/**
 * The workflow's side of the demo world: the three effects of the course's
 * order workflow, as the workflow process calls them.
 *
 *   chargeCard(order)              → POST WORLD_URL/payments/charges  (another process)
 *   reserveInventory(db, order)    → one UPDATE … in the workflow's own PostgreSQL
 *   sendEmail(order)               → POST WORLD_URL/mail/messages     (another process)
 *
 * None of them is safe to repeat by itself: each call is a new charge, a new
 * decrement, a new email. Making the workflow call each exactly once — across
 * crashes — is what the course is about. The tools it will use are already
 * here: an `idempotencyKey` for the HTTP services, and a `db` parameter so the
 * stock can be taken inside the same transaction that records the step.
 *
 * The world server's address comes from the WORLD_URL environment variable,
 * which `world.ts` hands to every workflow process it starts.
 */
import { CourseError } from '../errors.ts';
import type { Charge, ChargeRequest, Email, EmailRequest, ServiceName } from './protocol.ts';

export type { Charge, Email } from './protocol.ts';

export interface Order {
  orderId: string;
  customer: string;
  email: string;
  amountCents: number;
  sku: string;
  qty: number;
}

/** The sample order every demo uses: the same input for the same id, on every run. */
export function demoOrder(orderId: string): Order {
  return { orderId, customer: 'cus_ada', email: 'ada@example.com', amountCents: 4200, sku: 'widget', qty: 1 };
}

// ─── Errors ─────────────────────────────────────────────────────────────────

/** WORLD_URL is not set: this process was not started by a world (see world.ts). */
export class WorldNotRunningError extends CourseError {}

/**
 * A service said no (a non-2xx answer), or could not be reached at all
 * (`status` 0). `retryable` says whether trying again can help: 503 and other
 * 5xx, 409, 429, and network failures — yes; a 400 — no, it will fail again.
 */
export class ServiceError extends CourseError {
  readonly service: ServiceName;
  /** HTTP status; 0 when no answer came back (refused connection, timeout). */
  readonly status: number;
  /** `error.type` from the answer (`unavailable`, `idempotency_error`, …) or `unreachable` / `timeout`. */
  readonly type: string;
  readonly retryable: boolean;

  constructor(fields: { service: ServiceName; status: number; type: string; message: string; hint?: string; cause?: unknown }) {
    super(fields.message, fields.hint, { cause: fields.cause });
    this.service = fields.service;
    this.status = fields.status;
    this.type = fields.type;
    this.retryable = fields.status === 0 || fields.status === 409 || fields.status === 429 || fields.status >= 500;
  }
}

/** Not enough stock (or no such sku): nothing was taken. Retrying will not help. */
export class OutOfStockError extends CourseError {
  readonly retryable = false;
  constructor(
    readonly sku: string,
    readonly requested: number,
    /** Stock on hand when we looked; null when the sku does not exist at all. */
    readonly onHand: number | null,
  ) {
    super(
      onHand === null
        ? `No product with sku "${sku}" in the inventory.`
        : `Out of stock: order needs ${requested} × ${sku}, ${onHand} on hand. Nothing was reserved.`,
    );
  }
}

// ─── The HTTP services ──────────────────────────────────────────────────────

export interface CallOptions {
  /**
   * Sent as the `Idempotency-Key` header: the same key (with the same order)
   * makes the provider answer with the original charge/email instead of doing
   * it again. Without one, every call is a new effect.
   */
  idempotencyKey?: string;
  /** The world server; default: the WORLD_URL environment variable. */
  worldUrl?: string;
  /** Give up waiting after this long (default 30 s). */
  timeoutMs?: number;
}

/** Charge the order's customer. Every call without an idempotency key is a new charge. */
export async function chargeCard(order: Order, options: CallOptions = {}): Promise<Charge> {
  const request: ChargeRequest = { orderId: order.orderId, amountCents: order.amountCents, customer: order.customer };
  return post<Charge>('payments', '/payments/charges', request, options);
}

/** Send the order confirmation. Every call without an idempotency key is a new email. */
export async function sendEmail(order: Order, options: CallOptions = {}): Promise<Email> {
  // Built from the order alone — no timestamp, no random id — so a retry sends
  // the very same message; the provider refuses a reused key with other content.
  const request: EmailRequest = {
    orderId: order.orderId,
    to: order.email,
    subject: `Order ${order.orderId} confirmed`,
    body: `Thank you! We charged $${(order.amountCents / 100).toFixed(2)} and reserved ${order.qty} × ${order.sku}.`,
  };
  return post<Email>('mail', '/mail/messages', request, options);
}

function worldUrl(explicit: string | undefined): string {
  const url = explicit ?? process.env.WORLD_URL;
  if (!url) {
    throw new WorldNotRunningError(
      'The world server is not running: WORLD_URL is not set, so there is no payment or mail service to call.',
      'Start the workflow through startWorld() (shared/world/world.ts) and pass world.env to it, or run `node --import tsx shared/world/server.ts --dir <dir>` and set WORLD_URL to the URL it prints.',
    );
  }
  return url;
}

async function post<T>(service: ServiceName, path: string, body: unknown, options: CallOptions): Promise<T> {
  const base = worldUrl(options.worldUrl);
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (options.idempotencyKey !== undefined) headers['Idempotency-Key'] = options.idempotencyKey;

  let response: Response;
  try {
    response = await fetch(new URL(path, base), {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
  } catch (thrown) {
    const timedOut = thrown instanceof Error && thrown.name === 'TimeoutError';
    throw new ServiceError({
      service,
      status: 0,
      type: timedOut ? 'timeout' : 'unreachable',
      // A timeout is the hard case: the request may have been done, or not.
      message: timedOut
        ? `No answer from the ${service} service at ${base} in time: it may or may not have done it.`
        : `The world server at ${base} is not reachable (${describeNetworkError(thrown)}); the ${service} call was not made.`,
      hint: timedOut ? 'Retry with the same Idempotency-Key: the provider answers with what it did, or does it now.' : 'Is the world server running? startWorld() starts it.',
      cause: thrown,
    });
  }

  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (thrown) {
    throw new ServiceError({ service, status: response.status, type: 'bad_response', message: `The ${service} service answered ${response.status} with something that is not JSON: ${text.slice(0, 200)}`, cause: thrown });
  }
  if (!response.ok) {
    const error = (parsed as { error?: { type?: unknown; message?: unknown } }).error;
    throw new ServiceError({
      service,
      status: response.status,
      type: typeof error?.type === 'string' ? error.type : 'unknown',
      message: `${service} service answered ${response.status}: ${typeof error?.message === 'string' ? error.message : text.slice(0, 200)}`,
    });
  }
  return parsed as T;
}

/** fetch() hides the reason (ECONNREFUSED…) in `cause`. */
function describeNetworkError(thrown: unknown): string {
  const cause = thrown instanceof Error ? (thrown.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (thrown instanceof Error ? thrown.message : String(thrown));
}

// ─── The inventory, in PostgreSQL ───────────────────────────────────────────

/**
 * Anything that runs a parameterized query: a `pg.Pool`, a `pg.Client`, or a
 * `PoolClient` in the middle of a transaction.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Take `order.qty` of `order.sku` off the shelf and write down that this order
 * took it (`stock_movements`, which the ledger counts).
 *
 * One statement, so it is atomic on its own (autocommit) and equally correct
 * inside the caller's transaction: either the decrement and its movement row
 * both happen, or neither does. The `on_hand >= qty` test sits in the UPDATE's
 * WHERE, so two concurrent reservations cannot both take the last widget: the
 * second waits for the first's row lock, then re-checks the condition.
 */
export async function reserveInventory(db: Queryable, order: Order): Promise<{ onHand: number }> {
  if (!Number.isInteger(order.qty) || order.qty <= 0) {
    throw new RangeError(`order ${order.orderId}: qty must be a positive integer, got ${order.qty}`);
  }
  const { rows } = await db.query(
    `WITH taken AS (
       UPDATE inventory SET on_hand = on_hand - $3::int
        WHERE sku = $2::text AND on_hand >= $3::int
        RETURNING on_hand
     )
     INSERT INTO stock_movements (order_id, sku, delta)
     SELECT $1::text, $2::text, -$3::int FROM taken
     RETURNING (SELECT on_hand FROM taken) AS on_hand`,
    [order.orderId, order.sku, order.qty],
  );
  const row = rows[0] as { on_hand: number } | undefined;
  if (row) return { onHand: row.on_hand };

  // Nothing was taken. Look once more only to say why (unknown sku or too few).
  const found = await db.query('SELECT on_hand FROM inventory WHERE sku = $1', [order.sku]);
  const current = found.rows[0] as { on_hand: number } | undefined;
  throw new OutOfStockError(order.sku, order.qty, current ? current.on_hand : null);
}

/**
 * Put back what `reserveInventory` took for `order` — the saga's undo of a
 * reservation (chapter 9: an order cancelled during its cooling-off). One
 * statement, and at most once per order: it returns only what this order
 * took and has not yet put back, so running it again (a replay, a retry)
 * puts nothing back twice.
 */
export async function releaseInventory(db: Queryable, order: Order): Promise<{ released: number }> {
  const { rows } = await db.query(
    `WITH owed AS (
       SELECT sku, -sum(delta)::int AS qty FROM stock_movements WHERE order_id = $1::text GROUP BY sku HAVING sum(delta) < 0
     ), back AS (
       UPDATE inventory i SET on_hand = i.on_hand + owed.qty FROM owed WHERE i.sku = owed.sku RETURNING owed.sku, owed.qty
     )
     INSERT INTO stock_movements (order_id, sku, delta) SELECT $1::text, sku, qty FROM back
     RETURNING delta`,
    [order.orderId],
  );
  return { released: (rows as Array<{ delta: number }>).reduce((sum, row) => sum + row.delta, 0) };
}

