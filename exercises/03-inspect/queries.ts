/**
 * Exercise 3: chapter 3's queries, plus the two that let anyone look into the
 * log — `inspectWorkflow` and `listWorkflowSummaries`, at the end of this file.
 * Writing those two is your job (TODO 1 and TODO 2).
 *
 * Every SQL statement chapter 3 runs, each in a small named function.
 *
 * The engine (engine.ts) never writes SQL itself; it calls `recordStep`,
 * `loadSteps`, `completeWorkflow`… That keeps the engine readable as a story,
 * and puts all the SQL in one file you can read against schema.sql (the way
 * job queues on Postgres such as graphile-worker and pg-boss do it).
 *
 * Two rules hold for every function here:
 *   - values go in as parameters ($1, $2…), never pasted into the SQL text;
 *   - JSON goes in as text we made with JSON.stringify, cast to jsonb. (Left
 *     to itself, `pg` would turn a JS array into a Postgres *array*, not JSON.)
 */
import fs from 'node:fs';
import type pg from 'pg';

/** Anything we can send a query to: the pool, or one connection inside a transaction. */
export type Sql = pg.Pool | pg.PoolClient;

export type WorkflowStatus = 'running' | 'completed' | 'failed';

/** A row of `workflows`. */
export interface WorkflowRow {
  id: string;
  name: string;
  input: unknown;
  status: WorkflowStatus;
  output: unknown;
  error: string | null;
}

/** A row of `steps`: one recorded step. */
export interface StepRow {
  workflowId: string;
  seq: number;
  name: string;
  output: unknown;
}

// ── the schema ───────────────────────────────────────────────────────────────

const schemaSql = fs.readFileSync(new URL('../../chapters/03-postgres-log/schema.sql', import.meta.url), 'utf8');

/**
 * Create the tables if they are not there yet. Every process does this when it
 * starts, and two processes may start at the same moment: two concurrent
 * `CREATE TABLE IF NOT EXISTS` can both decide the table is missing, and the
 * slower one then fails on the catalog ("duplicate key value violates unique
 * constraint pg_type_typname_nsp_index" — try it without the lock). So we take a
 * transaction-scoped advisory lock first: the second process waits for the
 * first to commit, then finds the tables there and does nothing.
 */
export async function createSchema(db: pg.Pool): Promise<void> {
  await inTransaction(db, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('durable-execution-course: exercise 3 schema'))`);
    await tx.query(schemaSql);
  });
}

// ── transactions ─────────────────────────────────────────────────────────────

/**
 * BEGIN, run `body` on one connection, COMMIT — or ROLLBACK if it throws.
 * If the process dies in between, no COMMIT is ever sent: the connection
 * drops, and PostgreSQL throws away everything the transaction wrote.
 */
export async function inTransaction<T>(db: pg.Pool, body: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const result = await body(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

// ── workflows ────────────────────────────────────────────────────────────────

/** Add a workflow in status `running`, unless one with this id exists. True when this call created it. */
export async function insertWorkflow(db: Sql, workflow: { id: string; name: string; input: unknown }): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO workflows (id, name, input)
     VALUES ($1, $2, $3::jsonb)
     ON CONFLICT (id) DO NOTHING`,
    [workflow.id, workflow.name, JSON.stringify(workflow.input)],
  );
  return result.rowCount === 1;
}

export async function getWorkflow(db: Sql, id: string): Promise<WorkflowRow | undefined> {
  const result = await db.query<WorkflowRow>(
    `SELECT id, name, input, status, output, error FROM workflows WHERE id = $1`,
    [id],
  );
  return result.rows[0];
}

/** The workflows to resume after a crash: every one still `running`, oldest first. */
export async function listUnfinishedWorkflows(db: Sql): Promise<WorkflowRow[]> {
  const result = await db.query<WorkflowRow>(
    `SELECT id, name, input, status, output, error FROM workflows
     WHERE status = 'running'
     ORDER BY created_at, id`,
  );
  return result.rows;
}

/** id → status for the ids that have a row (absent ids are simply not in the map). */
export async function workflowStatuses(db: Sql, ids: string[]): Promise<Map<string, WorkflowStatus>> {
  const result = await db.query<{ id: string; status: WorkflowStatus }>(
    `SELECT id, status FROM workflows WHERE id = ANY($1::text[])`,
    [ids],
  );
  return new Map(result.rows.map((row) => [row.id, row.status]));
}

export async function completeWorkflow(db: Sql, id: string, output: unknown): Promise<void> {
  await db.query(
    `UPDATE workflows SET status = 'completed', output = $2::jsonb, updated_at = now() WHERE id = $1`,
    [id, JSON.stringify(output)],
  );
}

export async function failWorkflow(db: Sql, id: string, error: string): Promise<void> {
  await db.query(
    `UPDATE workflows SET status = 'failed', error = $2, updated_at = now() WHERE id = $1`,
    [id, error],
  );
}

// ── steps ────────────────────────────────────────────────────────────────────

/** Every recorded step of one workflow, in order — one query, however many steps. */
export async function loadSteps(db: Sql, workflowId: string): Promise<StepRow[]> {
  const result = await db.query<StepRow>(
    `SELECT workflow_id AS "workflowId", seq, name, output FROM steps
     WHERE workflow_id = $1
     ORDER BY seq`,
    [workflowId],
  );
  return result.rows;
}

/** Record one finished step. (The engine calls it inside a transaction; the record counts once that commits.) */
export async function recordStep(db: Sql, step: StepRow): Promise<void> {
  await db.query(
    `INSERT INTO steps (workflow_id, seq, name, output) VALUES ($1, $2, $3, $4::jsonb)`,
    [step.workflowId, step.seq, step.name, JSON.stringify(step.output)],
  );
}

/** The whole `steps` table, for the demo to show what the log looks like. */
export async function listAllSteps(db: Sql): Promise<StepRow[]> {
  const result = await db.query<StepRow>(
    `SELECT workflow_id AS "workflowId", seq, name, output FROM steps ORDER BY workflow_id, seq`,
  );
  return result.rows;
}

// ── looking into the log (exercise 3) ────────────────────────────────────────

/** One recorded step, as `inspect` shows it. */
export interface RecordedStep {
  seq: number;
  name: string;
  output: unknown;
}

/** Everything the log knows about one workflow: its row, and its steps in order. */
export interface WorkflowDetails extends WorkflowRow {
  steps: RecordedStep[];
}

/** One line of `listRuns`: a workflow, and how far it got. */
export interface WorkflowSummary {
  id: string;
  name: string;
  status: WorkflowStatus;
  /** How many steps it has recorded (committed) so far. */
  steps: number;
}

/**
 * One workflow and its steps, or undefined when the log has no such workflow.
 *
 * TODO 1: read the row of `workflows` and its rows of `steps` (in seq order).
 * Think about *when* each is read: other processes keep writing to the log.
 */
export async function inspectWorkflow(db: Sql, id: string): Promise<WorkflowDetails | undefined> {
  void db;
  throw new Error(`TODO 1: inspectWorkflow(${JSON.stringify(id)}) is not written yet (exercises/03-inspect/queries.ts)`);
}

/**
 * Every workflow (or those with one status), oldest first, with its number of recorded steps.
 *
 * TODO 2: one row per workflow — even one with no steps yet.
 */
export async function listWorkflowSummaries(db: Sql, status?: WorkflowStatus): Promise<WorkflowSummary[]> {
  void db;
  throw new Error(`TODO 2: listWorkflowSummaries(${JSON.stringify(status ?? null)}) is not written yet (exercises/03-inspect/queries.ts)`);
}
