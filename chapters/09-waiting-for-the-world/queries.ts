/**
 * Every SQL statement chapter 9 runs, each in a small named function.
 *
 * The engine (engine.ts and its parts) and the worker (worker.ts) never write SQL
 * themselves; they call `claimWorkflows`, `recordStep`, `renewLeases`… That
 * keeps them readable as a story, and puts all the SQL in one file you can
 * read against migrations/ (the way graphile-worker and pg-boss do it).
 *
 * Two rules hold for every function here:
 *   - values go in as parameters ($1, $2…), never pasted into the SQL text;
 *   - JSON goes in as text we made with JSON.stringify, cast to jsonb. (Left
 *     to itself, `pg` would turn a JS array into a Postgres *array*, not JSON.)
 *
 * New in chapter 6, one more rule: every write a run makes is FENCED. It names
 * the workflow's fencing token the run was claimed with, and is refused —
 * zero rows, no error — unless, at that statement, the token is still the
 * workflow's and its lease has not expired on the database clock. Every fence
 * also takes a lock on the workflow row (FOR KEY SHARE, or the UPDATE's own
 * lock) that the claim cannot get past (FOR UPDATE SKIP LOCKED skips it), so no
 * new claim can slip in between a fence and its COMMIT.
 *
 * New in chapter 7, two things about cost:
 *   - The statements a workflow runs every time (admit, claim, load, record,
 *     complete, renew) are PREPARED: they carry a `name`, so `pg` has
 *     PostgreSQL parse and plan each once per connection, then only binds
 *     values. Measured (npm run bench): parse + plan was a third of
 *     PostgreSQL's CPU per workflow, and on two cores shared with Node, CPU is
 *     what bounds throughput. (Behind PgBouncer in transaction mode, prepared
 *     statements need PgBouncer ≥ 1.21 with max_prepared_statements set.)
 *   - A step's record and the completion each come in two forms: one row
 *     (recordStep, completeWorkflow), for a write sent alone — a transaction
 *     of its own, no BEGIN or COMMIT around it — and many rows over unnest()
 *     (recordSteps, completeWorkflows), for the writes of several runs that
 *     share one statement (batcher.ts). Both fence each row with stillHeld().
 *
 * New in chapter 8, a run can end by going to WAIT — a step's retry after a
 * back-off, a sleep — and the claim counts attempts:
 *   - `suspend…` statements record why (the failed attempt, the sleep) and
 *     release the workflow in ONE fenced statement: lease_expires_at set to
 *     when it may run again, on the database clock, and the fencing token
 *     moved on, so nothing of the run that went to wait can write after it;
 *   - claimWorkflows counts each claim in `attempts`, and nextWakeUp tells an
 *     idle worker when the next waiting workflow becomes runnable.
 */
import type pg from 'pg';

/** Anything we can send a query to: the pool, or one connection inside a transaction. */
export type Sql = pg.Pool | pg.PoolClient;

/** A workflow's status: `running` until it finishes (whether or not a worker holds it), then `completed` or `failed`. */
export type WorkflowStatus = 'running' | 'completed' | 'failed' | 'cancelled';

/** A row of `workflows`. */
export interface WorkflowRow {
  id: string;
  name: string;
  input: unknown;
  status: WorkflowStatus;
  output: unknown;
  error: string | null;
  /** Claims so far: the token of the latest (0: never claimed). */
  fencingToken: number;
  /** The worker that claimed it last (null: never claimed). */
  leaseOwner: string | null;
  /** How long its lease still runs, on the database clock; 0 when it is runnable. */
  leaseMsLeft: number;
  /** Claims in a row with no word from their runs (see migration 004). */
  attempts: number;
  /** More claims than this without a word fail the workflow. */
  maxAttempts: number;
  /** Milliseconds to its deadline, by the database clock (negative: past); null when it has none. */
  deadlineInMs: number | null;
  /** The events it is parked waiting for, if any (one name per wait), and the soonest timeout (database clock; null: none). */
  waitEvents: string[] | null;
  waitUntil: Date | null;
  /** The workflow that started it with ctx.startChild (null: started by start(), or its parent was pruned). */
  parentId: string | null;
}

/** What an entry of the log is: a step (plain or transaction), a sleep, how a wait for an event ended, or a child started. */
export type EntryKind = 'step' | 'sleep' | 'event' | 'child';

/** How a failed step's error is kept: its class name and message — what JSON can carry of an Error. */
export interface RecordedError {
  name: string;
  message: string;
}

/** A row of `steps`: one recorded step. */
export interface StepRow {
  workflowId: string;
  seq: number;
  name: string;
  kind: EntryKind;
  output: unknown;
  /** A step that failed for good: its last error and how many attempts it made; null for one that returned. */
  error: (RecordedError & { attempts: number }) | null;
  /** The fencing token of the claim whose run recorded it. */
  fencingToken: number;
  /** When it was recorded, on the database clock. */
  recordedAt: Date;
}

/** What recording a step's result writes: a row of `steps` of kind `step`, with no error. */
export type StepRecord = Pick<StepRow, 'workflowId' | 'seq' | 'name' | 'output' | 'fencingToken'>;

/** A row of `step_failures`: one failed attempt of a step. */
export interface StepFailureRow {
  seq: number;
  attempt: number;
  name: string;
  error: RecordedError;
  fencingToken: number;
  /** When the next attempt may start; null when there was none (the step failed for good). */
  retryAt: Date | null;
  failedAt: Date;
}

/** The fencing token a run was claimed with, for its workflow. */
export interface Fence {
  workflowId: string;
  fencingToken: number;
}

// ── the fence ────────────────────────────────────────────────────────────────

/**
 * The fence, written once — still held: the claim `token` names is still the workflow's,
 * the workflow is still running, and its lease has not run out. Every write a
 * run makes (a step's record, a transaction step's first statement, the
 * completion, a renewal, a deferral, a release) puts this in its WHERE.
 *
 * `statement_timestamp()`, never `now()`: `now()` is the time the transaction
 * *began*. In an autocommit statement the two are equal; inside BEGIN … COMMIT
 * `now()` is as old as the BEGIN, and a process frozen since then would be
 * judged by a stale clock — its lease would look alive. One rule everywhere
 * means no statement has to know which kind of transaction it runs in.
 *
 * `token` is the placeholder of the fencing token ('$2'); `row` a table alias
 * when the statement has one ('w.'). Both are constants of this file, never
 * values: values always go in as parameters.
 */
function stillHeld(token: string, row = ''): string {
  return `${row}fencing_token = ${token} AND ${row}status = 'running' AND ${row}lease_expires_at > statement_timestamp()`;
}

// ── transactions ─────────────────────────────────────────────────────────────

/**
 * BEGIN, run `body` on one connection, COMMIT — or ROLLBACK if it throws.
 * If the process dies in between, no COMMIT is ever sent: the connection
 * drops, and PostgreSQL throws away everything the transaction wrote.
 *
 * New in chapter 6: `idleTimeoutMs`. A process that is not dead but frozen
 * (SIGSTOP, a VM paused, a GC pause of minutes) inside a transaction keeps its
 * connection open, and with it its locks: the row locks of its business
 * writes, and the lock on its workflow row that keeps every other worker from
 * taking the workflow over. `SET LOCAL idle_in_transaction_session_timeout`
 * has PostgreSQL end such a session once it has sat idle that long, which rolls
 * it back and frees the locks. (Sent in the same round trip as BEGIN.)
 */
export async function inTransaction<T>(db: pg.Pool, body: (tx: pg.PoolClient) => Promise<T>, options: { idleTimeoutMs?: number } = {}): Promise<T> {
  const client = await db.connect();
  // A checked-out connection that PostgreSQL ends (the idle timeout above, a
  // restart) reports it as an 'error' event; with no listener that event would
  // crash the process. The query waiting on it fails anyway, which is how we hear of it.
  let broken: Error | undefined;
  const onError = (error: Error) => (broken = error);
  client.on('error', onError);
  try {
    const idle = options.idleTimeoutMs;
    // SET takes no $1 parameters; this is a number we computed, never text from outside.
    await client.query(idle ? `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.ceil(idle))}` : 'BEGIN');
    const result = await body(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', onError);
    // A broken connection must not go back to the pool.
    client.release(broken);
  }
}

/**
 * The connection to the database failed — not the statement: the server is
 * down or restarting, the connection was ended (pg_terminate_backend, an idle
 * timeout), or the network dropped it. Retrying the same work elsewhere, later,
 * can succeed; counting it against the workflow would be wrong.
 */
export function isConnectionFailure(error: unknown): boolean {
  const { code = '', message = '' } = (error ?? {}) as { code?: string; message?: string };
  // 08…: connection exceptions; 57P01 admin shutdown, 57P02 crash of another
  // backend (the server is resetting), 57P03 cannot connect now (starting up,
  // in recovery); 25P03: idle-in-transaction timeout. The messages are pg's
  // own, for failures that carry no code (a socket closed mid-query, a pool
  // that waited connectionTimeoutMillis for a connection).
  return (
    /^(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|08|57P0[123]|25P03)/.test(code) ||
    /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|the database system is/i.test(message)
  );
}

// ── workflows ────────────────────────────────────────────────────────────────

/** Milliseconds from now to a deadline column, by the database clock (negative once past); null when there is none. */
function deadlineInMs(column: string, clock = 'now()'): string {
  return `ceil(extract(epoch FROM ${column} - ${clock}) * 1000)::float8 AS "deadlineInMs"`;
}

// Milliseconds as float8, never int: a sleep of 25 days or more is past an int's 2^31 − 1.
const workflowColumns = `id, name, input, status, output, error,
       fencing_token AS "fencingToken", lease_owner AS "leaseOwner",
       attempts, max_attempts AS "maxAttempts", ${deadlineInMs('deadline_at')},
       CASE WHEN waits_missing IS NOT NULL THEN (SELECT array_agg(waits.name ORDER BY waits.seq) FROM waits WHERE waits.workflow_id = workflows.id) END AS "waitEvents",
       CASE WHEN waits_missing IS NOT NULL THEN (SELECT min(waits.until) FROM waits WHERE waits.workflow_id = workflows.id) END AS "waitUntil",
       parent_id AS "parentId",
       GREATEST(0, ceil(extract(epoch FROM lease_expires_at - now()) * 1000))::float8 AS "leaseMsLeft"`;

/** The channel workers LISTEN on. */
export const WAKE_CHANNEL = 'durable_workflows';

/** What `admitWorkflow` found: the workflow's row, and how it compares with what the caller passed. */
export interface Admission {
  /** True when this call inserted the row; false when the id was already in the log. */
  created: boolean;
  row: WorkflowRow;
  /** The row's name is the one passed (always true when created). */
  sameName: boolean;
  /** The row's input equals the one passed, as jsonb: key order and whitespace do not count. */
  sameInput: boolean;
  /** When both inputs are JSON objects: the top-level keys whose values differ, sorted. Otherwise null. */
  differentFields: string[] | null;
}

/**
 * Add a workflow in status `running` — runnable at once: its `lease_expires_at`
 * defaults to now(); or, given `claimFor`, already claimed for that worker
 * (fencing token 1, a lease of `leaseMs`), the way claimWorkflows would have;
 * given `notify`, NOTIFY workers in the same statement (payload: the sender) —
 * or, if its id is already in the log, compare that row with what the caller passed:
 *
 * 1. `INSERT … ON CONFLICT (id) DO NOTHING RETURNING`: exactly one caller
 *    inserts an id, however many race (a concurrent insert of the same id
 *    waits for the first to commit, then does nothing). The caller who
 *    inserted it is done: one round trip.
 * 2. Otherwise `SELECT` the row, with the comparison done by PostgreSQL. It is
 *    a new statement, so under READ COMMITTED it sees the row even when
 *    another process committed it a moment ago. `input = $3::jsonb` is jsonb
 *    equality: semantic, not textual, so `{"a":1,"b":2}` equals `{"b":2,"a":1}`.
 */
export async function admitWorkflow(
  db: Sql,
  workflow: { id: string; name: string; input: unknown; maxAttempts: number; timeoutMs?: number },
  { claimFor, notify }: { claimFor?: { worker: string; leaseMs: number }; notify?: string } = {},
): Promise<Admission> {
  const params = [workflow.id, workflow.name, JSON.stringify(workflow.input)];
  // A local claim (claimFor) is the workflow's first claim: token 1, attempt 1.
  const inserted = await db.query<WorkflowRow & { notified: unknown }>({
    name: 'admit-workflow',
    text: `INSERT INTO workflows (id, name, input, fencing_token, attempts, max_attempts, deadline_at, lease_owner, lease_expires_at)
           VALUES ($1, $2, $3::jsonb,
                   CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END, CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END, $7::int,
                   now() + $8::float8 * interval '1 millisecond',
                   $4::text, now() + coalesce($5::int, 0) * interval '1 millisecond')
           ON CONFLICT (id) DO NOTHING
           RETURNING ${workflowColumns},
                     CASE WHEN $6::text IS NOT NULL THEN pg_notify('${WAKE_CHANNEL}', $6::text) END AS "notified"`,
    values: [...params, claimFor?.worker ?? null, claimFor?.leaseMs ?? null, notify ?? null, workflow.maxAttempts, workflow.timeoutMs ?? null],
  });
  const first = inserted.rows[0];
  if (first) {
    const { notified: _, ...row } = first;
    return { created: true, row, sameName: true, sameInput: true, differentFields: null };
  }
  const result = await db.query<WorkflowRow & Omit<Admission, 'created' | 'row'>>(
    `SELECT ${workflowColumns},
            name = $2                AS "sameName",
            input = $3::jsonb        AS "sameInput",
            CASE WHEN jsonb_typeof(input) = 'object' AND jsonb_typeof($3::jsonb) = 'object' THEN
              ARRAY(SELECT key
                      FROM jsonb_each(input) AS recorded
                      FULL JOIN jsonb_each($3::jsonb) AS passed USING (key)
                     WHERE recorded.value IS DISTINCT FROM passed.value
                     ORDER BY key)
            END                      AS "differentFields"
       FROM workflows WHERE id = $1`,
    params,
  );
  const found = result.rows[0];
  if (!found) throw new Error(`workflow ${workflow.id} is neither inserted nor found: was it deleted meanwhile?`);
  const { sameName, sameInput, differentFields, ...existing } = found;
  return { created: false, row: existing, sameName, sameInput, differentFields };
}

export async function getWorkflow(db: Sql, id: string): Promise<WorkflowRow | undefined> {
  const result = await db.query<WorkflowRow>(`SELECT ${workflowColumns} FROM workflows WHERE id = $1`, [id]);
  return result.rows[0];
}

/** id → status for the ids that have a row (absent ids are simply not in the map). */
export async function workflowStatuses(db: Sql, ids: string[]): Promise<Map<string, WorkflowStatus>> {
  const result = await db.query<{ id: string; status: WorkflowStatus }>(
    `SELECT id, status FROM workflows WHERE id = ANY($1::text[])`,
    [ids],
  );
  return new Map(result.rows.map((row) => [row.id, row.status]));
}

/** Status and outcome of these ids, for whoever awaits their results (an id not in the log has no row). */
export async function workflowOutcomes(db: Sql, ids: string[]): Promise<Array<Pick<WorkflowRow, 'id' | 'status' | 'output' | 'error'>>> {
  const result = await db.query<Pick<WorkflowRow, 'id' | 'status' | 'output' | 'error'>>(
    `SELECT id, status, output, error FROM workflows WHERE id = ANY($1::text[])`,
    [ids],
  );
  return result.rows;
}

/** One line of the demo's live view: who holds a workflow, under which token, for how long, and how far it got. */
export interface LeaseView {
  id: string;
  status: WorkflowStatus;
  leaseOwner: string | null;
  fencingToken: number;
  leaseMsLeft: number;
  steps: number;
}

/** The live view of these workflows, in id order (the demo refreshes it every 200 ms). */
export async function viewLeases(db: Sql, ids: string[]): Promise<LeaseView[]> {
  const result = await db.query<LeaseView>(
    `SELECT id, status, lease_owner AS "leaseOwner", fencing_token AS "fencingToken",
            GREATEST(0, ceil(extract(epoch FROM lease_expires_at - now()) * 1000))::float8 AS "leaseMsLeft",
            (SELECT count(*)::int FROM steps WHERE steps.workflow_id = workflows.id) AS steps
       FROM workflows WHERE id = ANY($1::text[]) ORDER BY id`,
    [ids],
  );
  return result.rows;
}

// ── leases ───────────────────────────────────────────────────────────────────

/** A workflow a claim handed to this worker, with the token its run must write under. */
export interface Claim {
  id: string;
  name: string;
  input: unknown;
  fencingToken: number;
  /** Claims in a row with no word from their runs, this one included (1: the previous run recorded something, or there was none). */
  attempts: number;
  maxAttempts: number;
  /** The database's clock at the claim, in epoch ms: what a sleep in the log is compared with. Undefined for a first claim, which has no log. */
  claimedAt?: number;
  /** Milliseconds to the workflow's deadline at the claim, by the database clock (≤ 0: past); null when it has none. */
  deadlineInMs: number | null;
  /** cancel() was called on it: why (null: not cancelled). Undefined for a first claim made in start(), which cannot be. */
  cancelReason?: string | null;
  /** The workflow that started it with ctx.startChild: its end is sent there as an event. Undefined for a claim made in start(). */
  parentId?: string | null;
}

/** What a claim returns of the row it stamped (alias `w`): a {@link Claim}. Also the handover of a send that wakes a workflow (deliverEvent). */
// statement_timestamp(), not now(): in a claim's own statement they are the same; in a send's transaction now() is its BEGIN's.
const claimColumns = `w.id, w.name, w.input, w.fencing_token AS "fencingToken", w.attempts, w.max_attempts AS "maxAttempts",
               extract(epoch FROM statement_timestamp())::float8 * 1000 AS "claimedAt", ${deadlineInMs('w.deadline_at', 'statement_timestamp()')},
               CASE WHEN w.cancel_requested_at IS NOT NULL THEN coalesce(w.cancel_reason, '') END AS "cancelReason",
               w.parent_id AS "parentId"`;

/**
 * Claim up to `limit` runnable workflows for `worker`, in ONE statement: pick
 * them, lock them, and stamp each with a lease and a new fencing token.
 *
 * Runnable means `status = 'running' AND lease_expires_at <= now()`: never
 * claimed, released, or — the takeover — held by a worker whose lease ran out
 * because it died or froze. The sweep of expired leases IS this WHERE clause:
 * no daemon resets them, so nothing runs late because a reaper did.
 *
 * `FOR UPDATE SKIP LOCKED` is what lets many workers run this at once:
 *   - a plain `SELECT … LIMIT n` then `UPDATE`: two workers read the same rows
 *     and both "claim" them (a lost update);
 *   - `FOR UPDATE` without SKIP LOCKED: they queue on the first row's lock,
 *     and every worker claims one after another;
 *   - SERIALIZABLE: correct, but the losers get serialization failures to retry;
 *   - an advisory lock per workflow: a second lock to keep in step with the row;
 *   - SKIP LOCKED: each worker passes over rows another has locked and takes
 *     the next ones. Correct at READ COMMITTED, and nobody waits.
 * And it must be FOR UPDATE, not FOR NO KEY UPDATE: the fences (recordStep,
 * fenceTransaction) hold FOR KEY SHARE on the row until their COMMIT, and only
 * FOR UPDATE conflicts with that — it is what keeps a claim out while a run's
 * write is in flight.
 *
 * Every name, not only those this worker has code for: a workflow no worker
 * knows (a newer deploy started it, or its code was removed) would otherwise sit
 * at the head of the index and be visited, and skipped, by every claim for
 * ever. The worker defers what it cannot run (`deferWorkflow`) instead.
 *
 * The claim's own now() is the database's clock; so is every later check.
 *
 * New in chapter 8, each claim is an attempt: `attempts` + 1 — or 1 when the
 * previous claim's run recorded a step (its token is on the log's last entry:
 * one row read backwards on the steps' primary key), because a run that made
 * progress was not killed by the workflow. A workflow that kills every
 * worker that runs it climbs 1, 2, 3, … and the run of the claim past
 * `max_attempts` fails it instead of running it (run.ts). A run that goes to
 * wait sets it to 0; one that gives its lease back cleanly takes its +1 back.
 */
export async function claimWorkflows(db: Sql, claim: { worker: string; limit: number; leaseMs: number }): Promise<Claim[]> {
  const result = await db.query<Claim>({
    name: 'claim-workflows',
    text: `WITH runnable AS (
       SELECT id FROM workflows
        WHERE status = 'running' AND lease_expires_at <= now()
        ORDER BY lease_expires_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     )
     UPDATE workflows w
        SET fencing_token = w.fencing_token + 1,
            lease_owner = $1,
            lease_expires_at = now() + $3::int * interval '1 millisecond',
            attempts = CASE WHEN (SELECT s.fencing_token FROM steps s WHERE s.workflow_id = w.id ORDER BY s.seq DESC LIMIT 1) = w.fencing_token
                            THEN 1 ELSE w.attempts + 1 END
       FROM runnable
      WHERE w.id = runnable.id
     RETURNING ${claimColumns}`,
    values: [claim.worker, claim.limit, claim.leaseMs],
  });
  return result.rows;
}

/**
 * Put a claimed workflow back, runnable again only in `delayMs` (database
 * clock): a worker that has no code for it leaves it, still `running`, to a
 * worker that has — during a rolling deploy, the next version's. Fenced like a
 * renewal; false when the claim was no longer ours.
 */
export async function deferWorkflow(db: Sql, fence: Fence, delayMs: number): Promise<boolean> {
  const result = await db.query(
    `UPDATE workflows SET lease_expires_at = now() + $3::int * interval '1 millisecond', attempts = GREATEST(0, attempts - 1)
      WHERE id = $1 AND ${stillHeld('$2')}`,
    [fence.workflowId, fence.fencingToken, Math.round(delayMs)],
  );
  return result.rowCount === 1;
}

/**
 * Heartbeat: renew the leases this worker holds — `lease_expires_at = now() +
 * leaseMs`, on the database clock — all of them in ONE statement, and say
 * which it renewed. Fenced like every write of a run: only while the token is
 * still the workflow's (nobody has claimed it since), the workflow is still
 * running, AND the lease has not yet expired. That last condition is the one
 * that is easy to forget: from the moment a lease expires any worker may claim
 * the workflow, so a late renewal must fail even if nobody has claimed it yet
 * — otherwise it would bring back a lease another worker is about to take (the
 * gap Absurd's extend_claim has). The database's clock, not ours: the only
 * clock every worker shares.
 *
 * One statement for all, where chapter 6 sends one per lease: a worker of
 * concurrency 8 renews 8 leases a beat, and 8 statements at once take 8 of the
 * pool's connections from the runs and make 8 commits. Over the course's
 * 1.5 s lease that is ~13 commits a second against ~1.6: small (under 1 % of
 * what an 8-way run commits), and free — one statement reads no worse than eight.
 *
 * Returns the ids it renewed, each with its cancellation's reason if cancel()
 * was called on it (else null); a missing one is lost (expired, taken over,
 * or the workflow finished).
 */
export async function renewLeases(db: Sql, held: Fence[], leaseMs: number): Promise<Array<{ id: string; cancelReason: string | null }>> {
  if (held.length === 0) return [];
  const result = await db.query<{ id: string; cancelReason: string | null }>({
    name: 'renew-leases',
    // The rows locked in one order, by id (bytewise: a parent's id is a prefix
    // of its children's, so it comes first) — the order cancel() and a child's
    // end lock them in too. Two statements that lock the same rows in
    // different orders can deadlock: PostgreSQL then aborts one after a second.
    text: `UPDATE workflows w
              SET lease_expires_at = now() + $3::int * interval '1 millisecond'
             FROM (SELECT x.id, held.fencing_token
                     FROM workflows x JOIN unnest($1::text[], $2::int[]) AS held (id, fencing_token) ON x.id = held.id
                    ORDER BY x.id COLLATE "C" FOR NO KEY UPDATE OF x) AS held
            WHERE w.id = held.id AND ${stillHeld('held.fencing_token', 'w.')}
           RETURNING w.id, CASE WHEN w.cancel_requested_at IS NOT NULL THEN coalesce(w.cancel_reason, '') END AS "cancelReason"`,
    values: [held.map((h) => h.workflowId), held.map((h) => h.fencingToken), Math.round(leaseMs)],
  });
  // New in chapter 9: with each, whether it was cancelled meanwhile (a NOTIFY the worker missed).
  return result.rows;
}

/**
 * Give leases back (a worker shutting down): make the workflows runnable now
 * instead of when the lease would have run out. Same fence as a renewal.
 * The run reported back, so its claim is not counted as an attempt (−1).
 */
export async function releaseLeases(db: Sql, held: Fence[]): Promise<string[]> {
  if (held.length === 0) return [];
  const result = await db.query<{ id: string }>(
    `UPDATE workflows w
        SET lease_expires_at = now(), attempts = GREATEST(0, w.attempts - 1)
       FROM unnest($1::text[], $2::int[]) AS held (id, fencing_token)
      WHERE w.id = held.id AND ${stillHeld('held.fencing_token', 'w.')}
     RETURNING w.id`,
    [held.map((h) => h.workflowId), held.map((h) => h.fencingToken)],
  );
  return result.rows.map((row) => row.id);
}

/**
 * The first statement of a `transaction` step: check the fence and lock the
 * workflow row (FOR KEY SHARE) before the step's business writes, so that
 * from here to COMMIT no claim can take the workflow over (the claim's FOR
 * UPDATE SKIP LOCKED passes the row by). The heartbeat's UPDATE does not
 * conflict with KEY SHARE: the lease keeps being renewed meanwhile.
 *
 * Inside a transaction: this is where stillHeld()'s statement_timestamp() matters.
 */
export async function fenceTransaction(tx: pg.PoolClient, fence: Fence): Promise<boolean> {
  const result = await tx.query({
    name: 'fence-transaction',
    text: `SELECT 1 FROM workflows
            WHERE id = $1 AND ${stillHeld('$2')}
              FOR KEY SHARE`,
    values: [fence.workflowId, fence.fencingToken],
  });
  return result.rowCount === 1;
}

/**
 * What the log says now about a token a fence refused: `lost`, and why in
 * words; or `held` — the token still holds, so the lease was not why. Only a
 * plain step's record can be refused while held: recordSteps' ON CONFLICT DO
 * NOTHING, and recordStep sent alone (recordStepAlone in run.ts), turn a
 * position already recorded into a refusal. A typed answer, not a sentence: a
 * reason is for people, and nothing may compare it with another sentence to
 * decide what happened.
 */
export type Refusal = { kind: 'held' } | { kind: 'lost'; reason: string };

/** Why a fence refused this token, as a {@link Refusal}. Read after the refusal, so it may describe a later state. */
export async function explainRefusal(db: Sql, fence: Fence): Promise<Refusal> {
  const result = await db.query<{ status: WorkflowStatus; fencingToken: number; leaseOwner: string | null; expiredMsAgo: number }>(
    `SELECT status, fencing_token AS "fencingToken", lease_owner AS "leaseOwner",
            floor(extract(epoch FROM now() - lease_expires_at) * 1000)::int AS "expiredMsAgo"
       FROM workflows WHERE id = $1`,
    [fence.workflowId],
  );
  const row = result.rows[0];
  const lost = (reason: string): Refusal => ({ kind: 'lost', reason });
  if (!row) return lost('the workflow is no longer in the log');
  if (row.fencingToken !== fence.fencingToken) return lost(`taken over by ${row.leaseOwner ?? 'another worker'} (fencing token ${row.fencingToken})`);
  if (row.status !== 'running') return lost(`the workflow is already ${row.status}`);
  if (row.expiredMsAgo >= 0) return lost(`the lease expired ${row.expiredMsAgo} ms ago`);
  return { kind: 'held' };
}

/**
 * Why a fence refused this token, in words — for the LeaseLostError. Read
 * after the refusal, so it may describe a later state; it is for people.
 */
export async function explainLostLease(db: Sql, fence: Fence): Promise<string> {
  const refusal = await explainRefusal(db, fence);
  return refusal.kind === 'lost' ? refusal.reason : 'refused by the fence';
}

/**
 * Record the end: status completed, and the output. Fenced: the UPDATE
 * matches only while the token is ours and the lease holds; false otherwise.
 */
export async function completeWorkflow(db: Sql, fence: Fence, output: unknown): Promise<boolean> {
  const result = await db.query({
    name: 'complete-workflow',
    text: `UPDATE workflows SET status = 'completed', output = $3::jsonb, updated_at = now()
            WHERE id = $1 AND ${stillHeld('$2')}`,
    values: [fence.workflowId, fence.fencingToken, JSON.stringify(output)],
  });
  return result.rowCount === 1;
}

/**
 * completeWorkflow for many workflows at once — status completed, and each one's output
 * — in one statement (several runs finishing at once share it: batcher.ts).
 * Fenced per workflow: each row matches only while its token is the one
 * passed and its lease holds. Returns the ids it completed; a missing one was refused.
 */
export async function completeWorkflows(db: Sql, done: Array<Fence & { output: unknown }>): Promise<Set<string>> {
  const result = await db.query<{ id: string }>({
    name: 'complete-workflows',
    text: `UPDATE workflows w SET status = 'completed', output = done.output::jsonb, updated_at = now()
             FROM unnest($1::text[], $2::int[], $3::text[]) AS done (id, fencing_token, output)
            WHERE w.id = done.id AND ${stillHeld('done.fencing_token', 'w.')}
           RETURNING w.id`,
    values: [done.map((d) => d.workflowId), done.map((d) => d.fencingToken), done.map((d) => JSON.stringify(d.output))],
  });
  return new Set(result.rows.map((row) => row.id));
}

/**
 * Record that the workflow was cancelled (cancel() asked, its run stopped):
 * status cancelled, its reason as its error — and cancel its children still
 * running, as cancel() did (one started while the request was in flight
 * would otherwise outlive it). Fenced: the reason, or undefined when refused.
 */
export async function cancelWorkflow(db: Sql, fence: Fence): Promise<string | null | undefined> {
  const result = await db.query<{ reason: string | null }>(
    `WITH RECURSIVE ${treeLocked}, ended AS (
       UPDATE workflows w SET status = 'cancelled', error = w.cancel_reason, updated_at = now()
        WHERE w.id = $1 AND ${stillHeld('$2', 'w.')}
       RETURNING w.cancel_reason AS reason
     ), children AS (
       ${askToCancel(`w.id <> $1 AND EXISTS (SELECT 1 FROM ended)`, `'its parent ' || $1 || ' was cancelled: ' || coalesce((SELECT reason FROM ended), '')`)}
     )
     SELECT reason FROM ended, (SELECT count(*) FROM children) AS done`,
    [fence.workflowId, fence.fencingToken],
  );
  return result.rows[0] ? result.rows[0].reason : undefined;
}

/** Record that the workflow failed for good. Fenced like completeWorkflows. */
export async function failWorkflow(db: Sql, fence: Fence, error: string): Promise<boolean> {
  const result = await db.query(
    `UPDATE workflows SET status = 'failed', error = $3, updated_at = now()
      WHERE id = $1 AND ${stillHeld('$2')}`,
    [fence.workflowId, fence.fencingToken, error],
  );
  return result.rowCount === 1;
}

/**
 * Ask sleeping workers to claim now. A statement of its own, never inside
 * start()'s: see wakeWorkers in engine.ts. The payload names the sending
 * process, whose own workers ignore it (they were woken in-process).
 */
export async function notifyWorkers(db: Sql, sender: string): Promise<void> {
  await db.query({ name: 'notify-workers', text: `SELECT pg_notify($1, $2)`, values: [WAKE_CHANNEL, sender] });
}

// ── steps ────────────────────────────────────────────────────────────────────

/** A workflow's log: its recorded entries, and the failed attempts of its steps. */
export interface Log {
  steps: StepRow[];
  failures: StepFailureRow[];
}

/**
 * Every recorded entry of one workflow, and every failed attempt of its steps,
 * in order — one query, however many. Run AFTER the claim, as its own
 * statement: under READ COMMITTED it then sees every step committed before
 * the claim took the row, including the last one a previous holder committed
 * as its lease ran out.
 *
 * The failures ride in the same query (UNION ALL), not a second round trip:
 * a run needs them to know which attempt of a step it is on. A workflow that
 * never failed a step pays an index probe of an empty range for them.
 */
export async function loadLog(db: Sql, workflowId: string): Promise<Log> {
  const result = await db.query<StepRow & { entry: 'step' | 'failure'; attempt: number | null; retryAt: Date | null }>({
    name: 'load-log',
    text: `SELECT 'step' AS entry, workflow_id AS "workflowId", seq, name, kind, output, error,
                  fencing_token AS "fencingToken", created_at AS "recordedAt", NULL::int AS attempt, NULL::timestamptz AS "retryAt"
             FROM steps
            WHERE workflow_id = $1
           UNION ALL
           SELECT 'failure', workflow_id, seq, name, 'step', NULL, error,
                  fencing_token, created_at, attempt, retry_at
             FROM step_failures
            WHERE workflow_id = $1
            ORDER BY seq, attempt NULLS LAST`,
    values: [workflowId],
  });
  const log: Log = { steps: [], failures: [] };
  for (const { entry, attempt, retryAt, ...row } of result.rows) {
    if (entry === 'step') log.steps.push(row);
    else log.failures.push({ seq: row.seq, attempt: attempt!, name: row.name, error: row.error!, fencingToken: row.fencingToken, retryAt, failedAt: row.recordedAt });
  }
  return log;
}

/**
 * Record one finished step, inside the caller's transaction — for a
 * `transaction` step, the same one that holds its business writes. Fenced in
 * the same statement: the row is inserted only if the workflow row, locked FOR
 * KEY SHARE, still carries our token and an unexpired lease. False: refused.
 *
 * A second record at the same (workflow_id, seq) still fails with
 * unique_violation (23505). Under leases it cannot happen — a step is only
 * written by the token holder, which loaded the log after its claim — so it
 * would mean something wrote to the log behind the engine's back.
 */
export async function recordStep(db: Sql, step: StepRecord): Promise<boolean> {
  const result = await db.query({
    name: 'record-step',
    text: `INSERT INTO steps (workflow_id, seq, name, output, fencing_token)
           SELECT id, $2, $3, $4::jsonb, fencing_token FROM workflows
            WHERE id = $1 AND ${stillHeld('$5')}
              FOR KEY SHARE`,
    values: [step.workflowId, step.seq, step.name, JSON.stringify(step.output), step.fencingToken],
  });
  return result.rowCount === 1;
}

/**
 * recordStep for many steps — of different workflows, each under its own
 * token — in one statement (see batcher.ts). For one step, recordStep is
 * cheaper: measured ~0.15 ms less a statement than unnest() of one row (a
 * plain index lookup instead of a join), about a quarter of a bare INSERT. Returns `<workflowId>:<seq>` of
 * the rows it inserted; a missing one was refused by its fence, or (never,
 * under leases) its position was already recorded: ON CONFLICT DO NOTHING, so
 * that one step's duplicate cannot fail the others' records.
 */
export async function recordSteps(db: Sql, steps: StepRecord[]): Promise<Set<string>> {
  const result = await db.query<{ key: string }>({
    name: 'record-steps',
    text: `INSERT INTO steps (workflow_id, seq, name, output, fencing_token)
           SELECT w.id, step.seq, step.name, step.output::jsonb, w.fencing_token
             FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[]) AS step (workflow_id, seq, name, output, fencing_token)
             JOIN workflows w ON w.id = step.workflow_id
            WHERE ${stillHeld('step.fencing_token', 'w.')}
              FOR KEY SHARE OF w
           ON CONFLICT (workflow_id, seq) DO NOTHING
           RETURNING workflow_id || ':' || seq AS key`,
    values: [
      steps.map((step) => step.workflowId),
      steps.map((step) => step.seq),
      steps.map((step) => step.name),
      steps.map((step) => JSON.stringify(step.output)),
      steps.map((step) => step.fencingToken),
    ],
  });
  return new Set(result.rows.map((row) => row.key));
}

/**
 * A step that failed for good — its retries ran out, or its error is not one
 * to retry: its last attempt goes into step_failures, and the step's entry
 * into the log with that error (output null), in one fenced statement. The
 * replay finds the entry and throws the same error to the workflow again.
 */
export async function recordStepFailure(db: Sql, failure: Fence & { seq: number; attempt: number; name: string; error: RecordedError }): Promise<boolean> {
  const result = await db.query({
    name: 'record-step-failure',
    text: `WITH held AS (
             SELECT id FROM workflows WHERE id = $1 AND ${stillHeld('$2')} FOR KEY SHARE
           ), failed AS (
             INSERT INTO step_failures (workflow_id, seq, attempt, name, error, fencing_token)
             SELECT id, $3, $4, $5, $6::jsonb, $2 FROM held
           )
           INSERT INTO steps (workflow_id, seq, name, output, error, fencing_token)
           SELECT id, $3, $5, 'null'::jsonb, $6::jsonb || jsonb_build_object('attempts', $4::int), $2 FROM held`,
    values: [failure.workflowId, failure.fencingToken, failure.seq, failure.attempt, failure.name, JSON.stringify(failure.error)],
  });
  return result.rowCount === 1;
}

// ── waiting: a retry's back-off, a sleep ─────────────────────────────────────
//
// A run that must wait does not wait holding its lease, its worker slot and a
// connection: it records why, RELEASES the workflow until the time it may run
// again, and ends. One fenced UPDATE does the release:
//
//   lease_expires_at = the time it may run again   the claim's own test, `<= now()`, on the database clock —
//                      or its deadline, if sooner  (the claim then fails it: a wait never outlasts a deadline)
//   fencing_token    + 1                           the run that went to wait is fenced off from here on:
//                                                  a write it still had in flight, or a heartbeat that
//                                                  would bring its lease back, is refused
//   lease_owner      NULL                          nobody holds it: it waits (for people: `durable show`)
//   attempts         0                             its run reported back
//
// Each returns how long until the workflow is runnable again, by the database
// clock, in whole ms rounded up (so a timer set from it never fires early), or
// null when the fence refused (the run had lost its lease).

/** The release, as a SET list (see above); `$until` is the placeholder of the time it may run again. */
function releaseUntil(until: string, waitsMissing = 'NULL'): string {
  // LEAST ignores a NULL deadline: without one, the wait ends at `until`.
  // waits_missing: only a park for events counts sends down (parkForEvents); no other wait is woken by one.
  // Cancelled meanwhile (the request written before this run heard of it): runnable now, not parked — cancel()
  // woke what waited when it was written, and nothing would wake this wait after it (found by the torture run).
  return `fencing_token = w.fencing_token + 1, lease_owner = NULL, attempts = 0, waits_missing = ${waitsMissing}, updated_at = now(),
          lease_expires_at = CASE WHEN w.cancel_requested_at IS NOT NULL THEN now() ELSE LEAST(${until}, w.deadline_at) END`;
}

/**
 * A step's attempt failed and will be tried again after `delayMs`: the
 * failure recorded (with when the retry may start) and the workflow released
 * until then, in one fenced statement.
 */
export async function suspendForRetry(
  db: Sql,
  failure: Fence & { seq: number; attempt: number; name: string; error: RecordedError; delayMs: number },
): Promise<number | null> {
  const result = await db.query<{ dueInMs: number }>({
    name: 'suspend-for-retry',
    text: `WITH released AS (
             UPDATE workflows w SET ${releaseUntil(`now() + $3::float8 * interval '1 millisecond'`)}
              WHERE w.id = $1 AND ${stillHeld('$2', 'w.')}
             RETURNING w.id, w.lease_expires_at
           )
           INSERT INTO step_failures (workflow_id, seq, attempt, name, error, fencing_token, retry_at)
           SELECT id, $4, $5, $6, $7::jsonb, $2, lease_expires_at FROM released
           RETURNING ceil(extract(epoch FROM retry_at - now()) * 1000)::float8 AS "dueInMs"`,
    values: [failure.workflowId, failure.fencingToken, failure.delayMs, failure.seq, failure.attempt, failure.name, JSON.stringify(failure.error)],
  });
  return result.rows[0]?.dueInMs ?? null;
}

/**
 * `ctx.sleep` / `ctx.sleepUntil` at position `seq`, the first time: record
 * the sleep with the time it ends — `until`, or `ms` from now by the
 * DATABASE clock, to the millisecond — and, if that is still ahead, release
 * the workflow until then (`released`); all in one fenced statement. A replay finds the
 * entry and compares its time with the claim's database clock: the worker's
 * own clock never decides when a sleep is over. Null: refused.
 */
export async function suspendForSleep(
  db: Sql,
  sleep: Fence & { seq: number; name: string } & ({ until: Date; ms?: undefined } | { ms: number; until?: undefined }),
): Promise<{ until: Date; released: boolean; dueInMs: number } | null> {
  const result = await db.query<{ until: Date; released: boolean; dueInMs: number }>({
    name: 'suspend-for-sleep',
    text: `WITH held AS (
             SELECT id, deadline_at, date_trunc('milliseconds', coalesce($4::timestamptz, now() + $5::float8 * interval '1 millisecond')) AS until
               FROM workflows WHERE id = $1 AND ${stillHeld('$2')}
                FOR NO KEY UPDATE
           ), recorded AS (
             INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token)
             SELECT id, $3, $6, 'sleep', jsonb_build_object('until', until), $2 FROM held
           ), released AS (
             UPDATE workflows w SET ${releaseUntil('held.until')}
               FROM held WHERE w.id = held.id AND held.until > now()
           )
           SELECT until, until > now() AS released,
                  GREATEST(0, ceil(extract(epoch FROM LEAST(until, deadline_at) - now()) * 1000))::float8 AS "dueInMs"
             FROM held`,
    values: [sleep.workflowId, sleep.fencingToken, sleep.seq, sleep.until?.toISOString() ?? null, sleep.ms ?? null, sleep.name],
  });
  return result.rows[0] ?? null;
}

/**
 * A replayed sleep that is not over yet (its workflow was claimed early: an
 * operator's retry, a release): release the workflow again until `until`,
 * with no new entry. Null: refused.
 */
export async function suspendUntil(db: Sql, fence: Fence, until: Date): Promise<number | null> {
  const result = await db.query<{ dueInMs: number }>({
    name: 'suspend-until',
    text: `UPDATE workflows w SET ${releaseUntil('$3::timestamptz')}
            WHERE w.id = $1 AND ${stillHeld('$2', 'w.')}
           RETURNING GREATEST(0, ceil(extract(epoch FROM w.lease_expires_at - now()) * 1000))::float8 AS "dueInMs"`,
    values: [fence.workflowId, fence.fencingToken, until.toISOString()],
  });
  return result.rows[0]?.dueInMs ?? null;
}

/**
 * How long, by the database clock, until the next unfinished workflow that the
 * last claim could not take becomes runnable — a back-off or a sleep ending, or
 * a lease running out — in whole ms rounded up (0 or less: it is due already);
 * null when there is none. A worker with free slots sleeps until then instead
 * of a whole poll interval: the first entry to the right of a time in the
 * claim's own index, one probe.
 *
 * That time is not now() but `sinceMs` earlier — when the worker sent its
 * claim: a workflow that fell due between the claim's look and this one was
 * not claimed, and must not be skipped for being no longer in the future (it
 * would wait for the next poll). One that was due before the claim and is not
 * claimed is locked by another claim in flight: left out, or a worker would
 * spin on it.
 */
export async function nextWakeUp(db: Sql, sinceMs: number): Promise<number | null> {
  const result = await db.query<{ dueInMs: number | null }>({
    name: 'next-wake-up',
    text: `SELECT ceil(extract(epoch FROM min(lease_expires_at) - now()) * 1000)::float8 AS "dueInMs"
             FROM workflows WHERE status = 'running' AND lease_expires_at > now() - $1::float8 * interval '1 millisecond'`,
    values: [Math.max(0, sinceMs)],
  });
  return result.rows[0]?.dueInMs ?? null;
}

/**
 * Is the workflow waiting, and for what? Nobody holds it (a release cleared
 * its owner) and it may not run yet: a sleep when the log's last entry is a
 * sleep not yet over, a retry otherwise. Read from what inspect loads anyway.
 */
export function waitingOf(row: WorkflowRow, log: Log): { reason: 'retry' | 'sleep'; until: Date } | { reason: 'event'; events: string[]; until: Date | null } | null {
  if (row.status !== 'running' || row.leaseOwner !== null || row.leaseMsLeft <= 0) return null;
  if (row.waitEvents !== null) return { reason: 'event', events: row.waitEvents, until: row.waitUntil };
  const last = log.steps[log.steps.length - 1];
  const lastFailure = log.failures[log.failures.length - 1];
  if (last?.kind === 'sleep') {
    const until = new Date((last.output as { until: string }).until);
    if (!lastFailure?.retryAt || lastFailure.retryAt <= until) return { reason: 'sleep', until };
  }
  if (lastFailure?.retryAt) return { reason: 'retry', until: lastFailure.retryAt };
  return null;
}

// ── events: a workflow waits; the world sends ───────────────────────────────
//
// The race that loses wake-ups everywhere: the workflow looks for its event,
// finds none, and parks — while the event lands in between, its sender seeing
// a workflow still running, so waking nobody. Here both sides take the SAME
// lock first — the workflow's row, FOR NO KEY UPDATE — each in a transaction,
// and only then look, in a statement of their own (READ COMMITTED takes a new
// snapshot per statement, so what they see includes whatever the other side
// committed before they got the lock):
//
//   the waiter   lockForWait  →  takeEvents  →  got one: record it      │ one transaction
//                                               none: parkForEvents     │
//   the sender   lockForSend  →  deliverEvent: the event; parked for it?  │ one transaction
//                                the wait's end recorded, woken at the last
//
// Whichever locks first finishes first; the other sees its effect. A sender
// that locks first has committed its event before the waiter looks: taken. A
// waiter that locks first has parked before the sender looks: the sender ends
// the wait itself. Without the lock, each side's look can miss the other's
// uncommitted write (events.test.ts replays that interleaving on a naive
// protocol, and shows the event stranded).
//
// Why the SENDER records the wait's end, not the woken run: the run would
// otherwise spend a transaction of its own (lock, take, record, commit —
// 5 round trips, one commit) before its next step; a send that fills the
// wait under the lock it already holds costs one statement more. The woken
// run replays the wait from the log like any step. Measured (npm run bench,
// idle worker): send → the step after the wait p50 7.3–9.2 ms before, when
// the run took its event itself.

/**
 * "Until an event comes", as a time: the last day of year 9999. Not
 * 'infinity': every figure computed from lease_expires_at (time left, the next
 * wake-up) stays a finite number, on every PostgreSQL major the course supports.
 */
const FOREVER = `timestamptz '9999-12-31 00:00:00+00'`;

/** A wait in progress, as the row keeps it: its position, and its timeout (database clock; null: none). */
export interface WaitRow {
  seq: number;
  until: Date | null;
}

/** The workflow's row, locked for waits — fenced: null when this run no longer holds it. The waits it is parked in, and the database's clock. */
export async function lockForWait(tx: pg.PoolClient, fence: Fence): Promise<{ waits: WaitRow[]; nowMs: number } | null> {
  const result = await tx.query<{ waits: WaitRow[] | null; nowMs: number }>({
    name: 'lock-for-wait',
    text: `SELECT (SELECT json_agg(json_build_object('seq', seq, 'until', until)) FROM waits WHERE workflow_id = $1) AS waits,
                  extract(epoch FROM statement_timestamp())::float8 * 1000 AS "nowMs"
             FROM workflows WHERE id = $1 AND ${stillHeld('$2')}
              FOR NO KEY UPDATE`,
    values: [fence.workflowId, fence.fencingToken],
  });
  const row = result.rows[0];
  if (!row) return null;
  return { nowMs: row.nowMs, waits: (row.waits ?? []).map((w) => ({ seq: w.seq, until: w.until === null ? null : new Date(w.until) })) };
}

/**
 * For each wait (its position and name), take the oldest event of that name
 * no wait has taken — in one statement, waits of the same name taking events
 * in the order they arrived, the earlier position first. Inside the waiter's
 * transaction, after lockForWait. Returns what each wait that found one took.
 */
export async function takeEvents(tx: pg.PoolClient, workflowId: string, waits: Array<{ seq: number; name: string }>): Promise<Map<number, { payload: unknown; key: string }>> {
  const result = await tx.query<{ seq: number; payload: unknown; key: string }>({
    name: 'take-events',
    text: `WITH wanted AS (
             SELECT seq, name, row_number() OVER (PARTITION BY name ORDER BY seq) AS n
               FROM unnest($2::int[], $3::text[]) AS w (seq, name)
           ), present AS (
             SELECT name, key, row_number() OVER (PARTITION BY name ORDER BY arrival) AS n
               FROM events WHERE workflow_id = $1 AND name = ANY($3::text[]) AND taken_at_seq IS NULL
           ), matched AS (
             SELECT wanted.seq, present.name, present.key FROM wanted JOIN present USING (name, n)
           )
           UPDATE events e SET taken_at_seq = matched.seq
             FROM matched WHERE e.workflow_id = $1 AND e.name = matched.name AND e.key = matched.key
           RETURNING matched.seq, e.payload, e.key`,
    values: [workflowId, waits.map((w) => w.seq), waits.map((w) => w.name)],
  });
  return new Map(result.rows.map((row) => [row.seq, { payload: row.payload, key: row.key }]));
}

/** How waits ended — each one's event, or its timeout — as the log's entries at their positions; their rows gone. Inside the waiter's transaction. */
export async function recordWaitsEnded(tx: pg.PoolClient, fence: Fence, ended: Array<{ seq: number; name: string; output: unknown }>): Promise<void> {
  await tx.query({
    name: 'record-waits-ended',
    text: `WITH over AS (
             DELETE FROM waits WHERE workflow_id = $1 AND seq = ANY($3::int[])
           )
           INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token)
           SELECT $1, seq, name, 'event', output::jsonb, $2 FROM unnest($3::int[], $4::text[], $5::text[]) AS e (seq, name, output)`,
    values: [fence.workflowId, fence.fencingToken, ended.map((e) => e.seq), ended.map((e) => e.name), ended.map((e) => JSON.stringify(e.output))],
  });
}

/**
 * Waits found no event: park the workflow for ALL of them at once — a row per
 * wait (a wait that had one keeps its timeout: a replay must not start a new
 * one), `waits_missing` = how many, and the release until the soonest timeout
 * (or FOREVER, until sends fill them all), as every release. Rows of waits
 * this run did not make again are dropped. Inside the waiter's transaction,
 * after lockForWait. Returns how long until that timeout, by the database
 * clock; null: none.
 */
export async function parkForEvents(tx: pg.PoolClient, fence: Fence, missing: Array<{ seq: number; name: string; timeoutMs: number | null }>): Promise<number | null> {
  const result = await tx.query<{ dueInMs: number | null }>({
    name: 'park-for-events',
    text: `WITH stale AS (
             DELETE FROM waits WHERE workflow_id = $1 AND seq <> ALL($3::int[])
           ), added AS (
             INSERT INTO waits (workflow_id, seq, name, until)
             SELECT $1, seq, name, now() + timeout_ms * interval '1 millisecond' FROM unnest($3::int[], $4::text[], $5::float8[]) AS m (seq, name, timeout_ms)
             ON CONFLICT (workflow_id, seq) DO NOTHING
             RETURNING until
           ), timeouts AS (
             SELECT until FROM added UNION ALL SELECT until FROM waits WHERE workflow_id = $1 AND seq = ANY($3::int[])
           )
           UPDATE workflows w
              SET ${releaseUntil(`coalesce((SELECT min(until) FROM timeouts), ${FOREVER})`, 'cardinality($3::int[])')}
            WHERE w.id = $1 AND ${stillHeld('$2', 'w.')}
           RETURNING CASE WHEN w.lease_expires_at = ${FOREVER} THEN NULL
                          ELSE GREATEST(0, ceil(extract(epoch FROM w.lease_expires_at - now()) * 1000))::float8 END AS "dueInMs"`,
    values: [fence.workflowId, fence.fencingToken, missing.map((m) => m.seq), missing.map((m) => m.name), missing.map((m) => m.timeoutMs)],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`workflow ${fence.workflowId}: its row was locked for these waits and is gone`);
  return row.dueInMs;
}

/** The sender's first statement: lock the workflow's row (waiting for a waiter's transaction in flight), and say what it is. */
export async function lockForSend(tx: pg.PoolClient, workflowId: string): Promise<{ status: WorkflowStatus } | null> {
  const result = await tx.query<{ status: WorkflowStatus }>({
    name: 'lock-for-send',
    text: `SELECT status FROM workflows WHERE id = $1 FOR NO KEY UPDATE`,
    values: [workflowId],
  });
  return result.rows[0] ?? null;
}

/** Was this event (workflow, name, key) sent already? */
export async function eventSent(tx: pg.PoolClient, event: { workflowId: string; name: string; key: string }): Promise<boolean> {
  const result = await tx.query(`SELECT 1 FROM events WHERE workflow_id = $1 AND name = $2 AND key = $3`, [event.workflowId, event.name, event.key]);
  return result.rowCount === 1;
}

/** What a send did: inserted the event (false: that key was sent already), ended a wait with it, woke the workflow — and, when it was handed to a worker of the sender's process, the claim. */
export interface Delivery {
  delivered: boolean;
  /** It ended one of the waits the workflow was parked in (recorded in its log). */
  filled: boolean;
  /** …the last one: the workflow is runnable now, or claimed (`claim`). */
  woke: boolean;
  /** The workflow's name, when it woke: only workers with code for it are worth waking. */
  workflowName: string | null;
  claim: Claim | null;
}

/**
 * The sender's second statement, after lockForSend — ONE statement:
 *
 *   1. insert the event, once per (workflow, name, key): the same key again is
 *      a redelivery, and changes nothing;
 *   2. if the workflow is parked for events (held by nobody, not runnable yet,
 *      waits missing) and one of its waits is for this name, the earliest such
 *      wait takes the event: `taken_at_seq`, its end recorded in the log as
 *      the waiter's flush would have (`{ payload, key }`, kind `event`), its
 *      row gone;
 *   3. `waits_missing` counts down. At 0 the workflow is woken: runnable now
 *      with a NOTIFY at COMMIT (payload: the sending process, whose own workers
 *      are woken in memory) — or, given `claimFor` and a worker with code for
 *      it, claimed for that worker of the sender's process (a new token, a
 *      lease), the way start() hands a workflow over: no claim, no NOTIFY.
 *      Otherwise it stays parked until the soonest timeout of the waits left.
 *
 * A workflow not parked — its run in flight, or runnable already (a timeout
 * passed, a cancel) — is left alone: its run's flush takes the event. The
 * entry's fencing token is the workflow's, which its park moved on: the next
 * claim's run writes above it.
 */
export async function deliverEvent(
  tx: pg.PoolClient,
  event: { workflowId: string; name: string; key: string; payload: unknown },
  { claimFor, notify }: { claimFor?: { worker: string; leaseMs: number; names: string[] }; notify: string },
): Promise<Delivery> {
  const result = await tx.query<{ delivered: boolean; filled: boolean; woke: boolean | null; claimed: boolean | null } & Partial<Claim>>({
    name: 'deliver-event',
    text: `WITH parked AS (
             SELECT x.seq FROM waits x JOIN workflows w ON w.id = x.workflow_id
              WHERE x.workflow_id = $1 AND x.name = $2
                AND w.status = 'running' AND w.waits_missing > 0 AND w.lease_owner IS NULL AND w.lease_expires_at > statement_timestamp()
              ORDER BY x.seq LIMIT 1
           ), sent AS (
             INSERT INTO events (workflow_id, name, key, payload, taken_at_seq)
             VALUES ($1, $2, $3, $4::jsonb, (SELECT seq FROM parked))
             ON CONFLICT DO NOTHING
             RETURNING taken_at_seq
           ), filled AS (
             DELETE FROM waits x USING sent WHERE x.workflow_id = $1 AND x.seq = sent.taken_at_seq
             RETURNING x.seq
           ), recorded AS (
             INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token)
             SELECT $1, filled.seq, $2, 'event', jsonb_build_object('payload', $4::jsonb, 'key', $3::text), w.fencing_token
               FROM filled JOIN workflows w ON w.id = $1
           ), wake AS (
             -- The last wait filled: woken — handed over if the sender's worker has code for it.
             SELECT waits_missing = 1 AS last, waits_missing = 1 AND $5::text IS NOT NULL AND name = ANY($8::text[]) AS handover FROM workflows WHERE id = $1
           ), woken AS (
             UPDATE workflows w
                SET waits_missing = w.waits_missing - 1,
                    fencing_token = w.fencing_token + CASE WHEN wake.handover THEN 1 ELSE 0 END,
                    lease_owner = CASE WHEN wake.handover THEN $5::text END,
                    attempts = CASE WHEN wake.handover THEN 1 ELSE w.attempts END,
                    lease_expires_at = CASE WHEN wake.handover THEN statement_timestamp() + $6::int * interval '1 millisecond'
                                            WHEN wake.last THEN statement_timestamp()
                                            -- still parked: until the soonest timeout left (releaseUntil's cancel case cannot arise: a cancel leaves nothing parked)
                                            ELSE LEAST(coalesce((SELECT min(x.until) FROM waits x WHERE x.workflow_id = $1 AND x.seq <> filled.seq), ${FOREVER}), w.deadline_at) END
               FROM filled, wake
              WHERE w.id = $1
             RETURNING w.waits_missing = 0 AS woke, w.lease_owner IS NOT NULL AS claimed, ${claimColumns},
                       CASE WHEN w.waits_missing = 0 AND w.lease_owner IS NULL THEN pg_notify('${WAKE_CHANNEL}', $7) END AS notified
           )
           SELECT EXISTS (SELECT 1 FROM sent) AS delivered, EXISTS (SELECT 1 FROM woken) AS filled, woken.* FROM (SELECT) AS one LEFT JOIN woken ON true`,
    values: [event.workflowId, event.name, event.key, JSON.stringify(event.payload), claimFor?.worker ?? null, claimFor?.leaseMs ?? null, notify, claimFor?.names ?? []],
  });
  const row = result.rows[0]!;
  const woke = row.woke === true;
  const claim = woke && row.claimed ? ({ id: row.id!, name: row.name!, input: row.input, fencingToken: row.fencingToken!, attempts: row.attempts!, maxAttempts: row.maxAttempts!, claimedAt: row.claimedAt, deadlineInMs: row.deadlineInMs ?? null, cancelReason: row.cancelReason ?? null, parentId: row.parentId ?? null }) : null;
  return { delivered: row.delivered, filled: row.filled, woke, workflowName: woke ? row.name! : null, claim };
}

// ── child workflows ──────────────────────────────────────────────────────────

/** The name of the event a child's end sends its parent. Reserved: send() refuses names that start with `durable:`. */
export function childEndEvent(childId: string): string {
  return `durable:child:${childId}`;
}

/** What a child's end tells its parent, as the event's payload. */
export type ChildEnd = { status: 'completed'; output: unknown } | { status: 'failed' | 'cancelled'; error: string | null };

/**
 * Start children of the workflow holding `fence`, and record each at its
 * position in the parent's log — in the parent's transaction, after
 * fenceTransaction: all of it commits, or none. Runnable at once, with a
 * NOTIFY at COMMIT. Returns the ids that were already taken by a workflow that
 * is not this parent's child (nothing is written then: the caller rolls back).
 */
export async function startChildren(
  tx: pg.PoolClient,
  fence: Fence,
  children: Array<{ seq: number; id: string; name: string; input: unknown; maxAttempts: number; timeoutMs: number | null }>,
  sender: string,
): Promise<string[]> {
  const inserted = await tx.query<{ id: string }>({
    name: 'start-children',
    // A parent cancelled before its run heard of it starts its children cancelled too: their first claim ends them.
    text: `INSERT INTO workflows (id, name, input, parent_id, max_attempts, deadline_at, cancel_requested_at, cancel_reason)
           SELECT c.id, c.name, c.input::jsonb, $1, c.max_attempts, now() + c.timeout_ms * interval '1 millisecond',
                  p.cancel_requested_at, CASE WHEN p.cancel_requested_at IS NOT NULL THEN 'its parent ' || $1 || ' was cancelled: ' || coalesce(p.cancel_reason, '') END
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::float8[]) AS c (id, name, input, max_attempts, timeout_ms),
                  (SELECT cancel_requested_at, cancel_reason FROM workflows WHERE id = $1) AS p
           ON CONFLICT (id) DO NOTHING
           RETURNING id`,
    values: [fence.workflowId, children.map((c) => c.id), children.map((c) => c.name), children.map((c) => JSON.stringify(c.input)), children.map((c) => c.maxAttempts), children.map((c) => c.timeoutMs)],
  });
  const started = new Set(inserted.rows.map((row) => row.id));
  const taken = children.filter((c) => !started.has(c.id)).map((c) => c.id);
  if (taken.length > 0) return taken;
  await tx.query({
    name: 'record-children',
    text: `INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token)
           SELECT $1, seq, name, 'child', json_build_object('id', id)::jsonb, $2 FROM unnest($3::int[], $4::text[], $5::text[]) AS c (seq, name, id)`,
    values: [fence.workflowId, fence.fencingToken, children.map((c) => c.seq), children.map((c) => c.name), children.map((c) => c.id)],
  });
  await tx.query({ name: 'notify-workers', text: `SELECT pg_notify($1, $2)`, values: [WAKE_CHANNEL, sender] });
  return [];
}

// ── cancellation ─────────────────────────────────────────────────────────────

/** The channel a worker hears cancellations on: the payload is the workflow's id. */
export const CANCEL_CHANNEL = 'durable_cancellations';

/**
 * The workflow `$1` and all its descendants (children, their children, …),
 * locked in ONE order — by id, bytewise: a parent's id is a prefix of its
 * children's, so a parent comes before its children, as in every statement
 * that locks more than one workflow (renewLeases, a child's end). Read
 * without locks first (the recursion), then locked.
 */
const treeLocked = `tree (id) AS (
       SELECT $1::text
       UNION
       SELECT c.id FROM workflows c JOIN tree ON c.parent_id = tree.id
     ), locked AS (
       SELECT id, status, cancel_requested_at IS NOT NULL AS asked FROM workflows WHERE id IN (SELECT id FROM tree)
        ORDER BY id COLLATE "C" FOR NO KEY UPDATE
     )`;

/** Note a cancel request on the rows of `locked` that match `which`, wake them if they wait, and tell their holders (NOTIFY at COMMIT). */
function askToCancel(which: string, reason: string): string {
  return `UPDATE workflows w
          SET cancel_requested_at = now(), cancel_reason = ${reason},
              lease_expires_at = CASE WHEN w.lease_owner IS NULL AND w.lease_expires_at > now() THEN now() ELSE w.lease_expires_at END
         FROM locked WHERE w.id = locked.id AND locked.status = 'running' AND NOT locked.asked AND ${which}
       RETURNING pg_notify('${CANCEL_CHANNEL}', w.id), pg_notify('${WAKE_CHANNEL}', 'cancel')`;
}

/**
 * Ask for workflow `id` to be cancelled, and with it every child it started
 * that still runs (and theirs), in one statement: note the request (the first
 * reason stays), make each runnable now if it waits (a sleep, a back-off, an
 * event: its next run meets the cancellation at once), and tell the worker
 * holding each (NOTIFY at COMMIT). What it finds: `requested`, `already`
 * (asked before), `finished` (its status), or null (no such workflow).
 */
export async function requestCancel(db: Sql, id: string, reason: string): Promise<{ outcome: 'requested' | 'already' | 'finished'; status: WorkflowStatus } | null> {
  const result = await db.query<{ outcome: 'requested' | 'already' | 'finished'; status: WorkflowStatus }>(
    `WITH RECURSIVE ${treeLocked}, asked AS (
       ${askToCancel(`(w.id = $1 OR EXISTS (SELECT 1 FROM locked t WHERE t.id = $1 AND t.status = 'running' AND NOT t.asked))`, `CASE WHEN w.id = $1 THEN $2 ELSE 'its parent ' || $1 || ' was cancelled: ' || $2 END`)}
     )
     SELECT CASE WHEN status <> 'running' THEN 'finished' WHEN asked THEN 'already' ELSE 'requested' END AS outcome, status
       FROM locked, (SELECT count(*) FROM asked) AS done WHERE locked.id = $1`,
    [id, reason],
  );
  return result.rows[0] ?? null;
}

// ── schedules (schedules.ts) ─────────────────────────────────────────────────

/**
 * The database's clock now, and the last tick each schedule started — a
 * schedule seen for the first time is entered as of now (no back-fill) — in
 * one statement.
 */
export async function scheduleState(db: Sql, names: string[]): Promise<{ now: Date; lastTicks: Map<string, Date> }> {
  const result = await db.query<{ now: Date; name: string; lastTick: Date }>(
    `WITH entered AS (
       INSERT INTO schedules (name, last_tick) SELECT unnest($1::text[]), now()
       ON CONFLICT (name) DO NOTHING
     )
     SELECT now() AS now, name, last_tick AS "lastTick" FROM schedules WHERE name = ANY($1::text[])
     UNION ALL
     SELECT now(), n, now() FROM unnest($1::text[]) AS n WHERE NOT EXISTS (SELECT 1 FROM schedules WHERE name = n)`,
    [names],
  );
  return { now: result.rows[0]?.now ?? new Date(), lastTicks: new Map(result.rows.map((row) => [row.name, row.lastTick])) };
}

/** Schedule `name` has handled its ticks up to `tick` (never moved back: two schedulers may both say so). */
export async function markTick(db: Sql, name: string, tick: Date): Promise<void> {
  await db.query(`UPDATE schedules SET last_tick = GREATEST(last_tick, $2) WHERE name = $1`, [name, tick]);
}

// ── operating it: the command line's queries (cli.ts) ───────────────────────

/** One workflow as `durable list` shows it: its row, how far it got, and when it last changed. */
export interface WorkflowSummary {
  id: string;
  name: string;
  status: WorkflowStatus;
  fencingToken: number;
  leaseOwner: string | null;
  leaseMsLeft: number;
  steps: number;
  error: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** What `durable list` filters on: any of them, all optional. */
export interface WorkflowFilter {
  status?: WorkflowStatus;
  name?: string;
  /** Last changed at least this long ago (ms). */
  olderThanMs?: number;
  /** Last changed at most this long ago (ms). */
  newerThanMs?: number;
  limit: number;
}

/** The newest workflows first, filtered; the step count comes from the steps' primary key, not a scan of their outputs. */
export async function listWorkflows(db: Sql, filter: WorkflowFilter): Promise<WorkflowSummary[]> {
  const result = await db.query<WorkflowSummary>(
    `SELECT w.id, w.name, w.status, w.error,
            w.fencing_token AS "fencingToken", w.lease_owner AS "leaseOwner",
            GREATEST(0, ceil(extract(epoch FROM w.lease_expires_at - now()) * 1000))::float8 AS "leaseMsLeft",
            (SELECT count(*) FROM steps s WHERE s.workflow_id = w.id)::int AS steps,
            w.created_at AS "createdAt", w.updated_at AS "updatedAt"
       FROM workflows w
      WHERE ($1::text IS NULL OR w.status = $1)
        AND ($2::text IS NULL OR w.name = $2)
        AND ($3::bigint IS NULL OR w.updated_at <= now() - $3 * interval '1 millisecond')
        AND ($4::bigint IS NULL OR w.updated_at >= now() - $4 * interval '1 millisecond')
      ORDER BY w.updated_at DESC, w.id
      LIMIT $5`,
    [filter.status ?? null, filter.name ?? null, filter.olderThanMs ?? null, filter.newerThanMs ?? null, filter.limit],
  );
  return result.rows;
}

/**
 * A failed workflow, runnable again: `running`, its error cleared, its
 * attempts back to 0, its deadline lifted (one that had passed would fail it
 * again at once), its lease ended. The next claim takes a new fencing
 * token and replays its log — the steps it recorded are not run again. A
 * step that had failed for good loses its entry and its failed attempts, so
 * it runs again with its whole retry policy ahead of it (its errors were the
 * reason to retry; `durable show` before the retry still has them). False
 * when the id is not a failed workflow.
 */
export async function retryWorkflow(db: Sql, id: string): Promise<boolean> {
  const result = await db.query(
    `WITH retried AS (
       UPDATE workflows
          SET status = 'running', error = NULL, attempts = 0, deadline_at = NULL, lease_owner = NULL, lease_expires_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'failed'
       RETURNING id
     ), failed_steps AS (
       DELETE FROM steps WHERE workflow_id IN (SELECT id FROM retried) AND error IS NOT NULL
       RETURNING workflow_id, seq
     ), cleared AS (
       DELETE FROM step_failures f USING failed_steps s WHERE f.workflow_id = s.workflow_id AND f.seq = s.seq
     )
     SELECT id FROM retried`,
    [id],
  );
  return result.rowCount === 1;
}

/**
 * Delete up to `batch` finished workflows (of `statuses`) last changed more
 * than `olderThanMs` ago, with their steps, in one statement; returns their
 * ids. The oldest go first; rows another session holds are skipped (SKIP
 * LOCKED), so a prune never waits on a worker, and a batch holds its locks
 * only as long as one DELETE. Call it until it returns fewer than `batch`.
 * (The steps go in the same statement: their foreign key is checked at its end.)
 */
export async function pruneFinished(db: Sql, olderThanMs: number, statuses: WorkflowStatus[], batch: number): Promise<string[]> {
  const result = await db.query<{ id: string }>(
    `WITH doomed AS (
       SELECT id FROM workflows
        WHERE status = ANY($1::text[]) AND status <> 'running' AND updated_at < now() - $2 * interval '1 millisecond'
        ORDER BY updated_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED
     ), gone_steps AS (
       DELETE FROM steps WHERE workflow_id IN (SELECT id FROM doomed)
     )
     DELETE FROM workflows WHERE id IN (SELECT id FROM doomed)
     RETURNING id`,
    [statuses, olderThanMs, batch],
  );
  return result.rows.map((row) => row.id);
}

/** How many finished workflows a prune with these settings would delete, and the oldest few. */
export async function countPrunable(db: Sql, olderThanMs: number, statuses: WorkflowStatus[]): Promise<{ count: number; oldest: string[] }> {
  const result = await db.query<{ id: string; total: number }>(
    `SELECT id, count(*) OVER ()::int AS total FROM workflows
      WHERE status = ANY($1::text[]) AND status <> 'running' AND updated_at < now() - $2 * interval '1 millisecond'
      ORDER BY updated_at LIMIT 10`,
    [statuses, olderThanMs],
  );
  return { count: result.rows[0]?.total ?? 0, oldest: result.rows.map((row) => row.id) };
}
