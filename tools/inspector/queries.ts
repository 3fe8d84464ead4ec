/**
 * The inspector's own SQL: what the engine's queries (chapters/08-failures-and-time/queries.ts:
 * listWorkflows, getWorkflow, loadLog, retryWorkflow) do not already read.
 * Small named functions, values always as parameters, as in the engine's file.
 * Every one of them only reads.
 */
import type { Sql } from '../../chapters/08-failures-and-time/queries.ts';

/**
 * Has anything committed since we last asked? The database's current snapshot,
 * as text: `xmin:xmax:in-progress ids`. It changes whenever a transaction that
 * wrote anything ends — a step recorded, a claim, a heartbeat, a completion,
 * in any database of the server — and not when only reads happen (ours
 * included: a read takes no transaction id). No table is read: it costs what
 * `SELECT 1` costs. See live.ts for why this is the inspector's clock.
 */
export async function changeMarker(db: Sql): Promise<string> {
  const result = await db.query<{ marker: string }>({ name: 'inspector-change-marker', text: 'SELECT pg_current_snapshot()::text AS marker' });
  return result.rows[0]!.marker;
}

/** A workflow's times the engine's WorkflowRow does not carry: for the timeline's axis and its last entry. */
export interface WorkflowTimes {
  createdAt: Date;
  updatedAt: Date;
  deadlineAt: Date | null;
  leaseExpiresAt: Date;
  /** The database's clock now: every "time left" on the page is measured by it. */
  dbNow: Date;
}

export async function workflowTimes(db: Sql, id: string): Promise<WorkflowTimes | undefined> {
  const result = await db.query<WorkflowTimes>({
    name: 'inspector-workflow-times',
    text: `SELECT created_at AS "createdAt", updated_at AS "updatedAt", deadline_at AS "deadlineAt",
                  lease_expires_at AS "leaseExpiresAt", now() AS "dbNow"
             FROM workflows WHERE id = $1`,
    values: [id],
  });
  return result.rows[0];
}

/** The database's clock, for the list (the engine's listWorkflows gives times, not now). */
export async function databaseNow(db: Sql): Promise<Date> {
  const result = await db.query<{ now: Date }>({ name: 'inspector-now', text: 'SELECT now() AS now' });
  return result.rows[0]!.now;
}
