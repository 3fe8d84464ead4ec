/**
 * The inspector's own SQL: what the engine's queries (chapters/09-waiting-for-the-world/queries.ts:
 * listWorkflows, getWorkflow, loadLog, waitingOf, retryWorkflow, requestCancel) do not already read.
 * Small named functions, values always as parameters, as in the engine's file.
 * Every one of them only reads.
 */
import type { Sql, WorkflowStatus } from '../../chapters/09-waiting-for-the-world/queries.ts';

/**
 * Has anything committed since we last asked? The database's current snapshot,
 * as text: `xmin:xmax:in-progress ids`. It changes whenever a transaction that
 * wrote anything ends — a step recorded, a claim, a heartbeat, a completion,
 * an event sent, a cancel requested — in any database of the server — and
 * not when only reads happen (ours included: a read takes no transaction id).
 * No table is read: it costs what `SELECT 1` costs. See live.ts for why this
 * is the inspector's clock.
 */
export async function changeMarker(db: Sql): Promise<string> {
  const result = await db.query<{ marker: string }>({ name: 'inspector-change-marker', text: 'SELECT pg_current_snapshot()::text AS marker' });
  return result.rows[0]!.marker;
}

/** A workflow's times the engine's WorkflowRow does not carry: for the timeline's axis and its last entry. */
export interface WorkflowTimes {
  createdAt: Date;
  /** The last change of its row: its end, or — while it is parked for events — the park. */
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

// ── chapter 9: events, waits, children, cancellation ────────────────────────

/** What the list adds to each row of listWorkflows (which predates chapter 9's columns). */
export interface ListExtras {
  id: string;
  parentId: string | null;
  /** Children it started (ctx.startChild), and how many of them still run. */
  children: number;
  childrenRunning: number;
  /** Parked for these events (one name per wait; null: not parked), and the soonest timeout. */
  waitEvents: string[] | null;
  waitUntil: Date | null;
  cancelRequestedAt: Date | null;
}

/**
 * For the rows of a list page (ids), in one statement: parent, children
 * counted on the engine's `workflows_children` index, the waits a parked
 * workflow is in (as getWorkflow reads them), and a cancel request.
 */
export async function listExtras(db: Sql, ids: string[]): Promise<Map<string, ListExtras>> {
  // Asked even for no ids: on a database without chapter 9's columns it fails (42703), and the page says so.
  const result = await db.query<ListExtras>({
    name: 'inspector-list-extras',
    text: `SELECT w.id, w.parent_id AS "parentId",
                  coalesce(c.children, 0)::int AS children, coalesce(c.running, 0)::int AS "childrenRunning",
                  CASE WHEN w.waits_missing IS NOT NULL THEN (SELECT array_agg(name ORDER BY seq) FROM waits WHERE workflow_id = w.id) END AS "waitEvents",
                  CASE WHEN w.waits_missing IS NOT NULL THEN (SELECT min(until) FROM waits WHERE workflow_id = w.id) END AS "waitUntil",
                  w.cancel_requested_at AS "cancelRequestedAt"
             FROM workflows w
             LEFT JOIN LATERAL (
               SELECT count(*) AS children, count(*) FILTER (WHERE status = 'running') AS running
                 FROM workflows WHERE parent_id = w.id
             ) c ON true
            WHERE w.id = ANY($1::text[])`,
    values: [ids],
  });
  return new Map(result.rows.map((row) => [row.id, row]));
}

/** An event sent to a workflow (a row of `events`). */
export interface EventRow {
  name: string;
  key: string;
  payload: unknown;
  /** The order events arrived in. */
  arrival: number;
  sentAt: Date;
  /** The wait (its log position) that took it; null: not taken yet. */
  takenAtSeq: number | null;
}

/** A wait the workflow is parked in (a row of `waits`). */
export interface WaitRow {
  seq: number;
  name: string;
  /** Its timeout, on the database clock; null: none. */
  until: Date | null;
}

/** A child it started, as its page lists it. */
export interface ChildRow {
  id: string;
  name: string;
  status: WorkflowStatus;
  error: string | null;
  updatedAt: Date;
  /** The position of its start in the parent's log (null: not found there). */
  seq: number | null;
}

export interface WorkflowRelations {
  cancelRequestedAt: Date | null;
  cancelReason: string | null;
  parent: { id: string; name: string; status: WorkflowStatus } | null;
  waits: WaitRow[];
  events: EventRow[];
  /** All its events, and how many are not taken yet (`events` holds at most `limit`, in arrival order). */
  eventCount: number;
  eventsUntaken: number;
  children: ChildRow[];
  /** All its children, by status (`children` holds at most `limit`, in the order it started them). */
  childCount: number;
  childrenByStatus: Partial<Record<WorkflowStatus, number>>;
}

/**
 * Everything chapter 9 adds around one workflow, in one statement: its cancel
 * request, its parent, the waits it is parked in, the events sent to it, the
 * children it started (ordered by their start's position in its log; the
 * engine's indexes: waits' and events' primary keys, workflows_children).
 * Lists are cut at `limit`; the counts are whole.
 */
export async function workflowRelations(db: Sql, id: string, limit = 500): Promise<WorkflowRelations | undefined> {
  type Raw = Omit<WorkflowRelations, 'parent' | 'waits' | 'events' | 'children'> & {
    parentId: string | null;
    parentName: string | null;
    parentStatus: WorkflowStatus | null;
    waits: Array<{ seq: number; name: string; until: string | null }>;
    events: Array<Omit<EventRow, 'sentAt'> & { sentAt: string }>;
    children: Array<Omit<ChildRow, 'updatedAt'> & { updatedAt: string }>;
  };
  const result = await db.query<Raw>({
    name: 'inspector-workflow-relations',
    text: `SELECT w.cancel_requested_at AS "cancelRequestedAt", w.cancel_reason AS "cancelReason",
                  p.id AS "parentId", p.name AS "parentName", p.status AS "parentStatus",
                  (SELECT coalesce(json_agg(json_build_object('seq', seq, 'name', name, 'until', until) ORDER BY seq), '[]')
                     FROM waits WHERE workflow_id = w.id) AS waits,
                  (SELECT count(*) FROM events WHERE workflow_id = w.id)::int AS "eventCount",
                  (SELECT count(*) FROM events WHERE workflow_id = w.id AND taken_at_seq IS NULL)::int AS "eventsUntaken",
                  (SELECT coalesce(json_agg(json_build_object('name', name, 'key', key, 'payload', payload, 'arrival', arrival,
                                                              'sentAt', sent_at, 'takenAtSeq', taken_at_seq) ORDER BY arrival), '[]')
                     FROM (SELECT * FROM events WHERE workflow_id = w.id ORDER BY arrival LIMIT $2) e) AS events,
                  (SELECT count(*) FROM workflows WHERE parent_id = w.id)::int AS "childCount",
                  (SELECT coalesce(json_object_agg(status, n), '{}')
                     FROM (SELECT status, count(*) AS n FROM workflows WHERE parent_id = w.id GROUP BY status) s) AS "childrenByStatus",
                  (SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'status', status, 'error', error,
                                                              'updatedAt', updated_at, 'seq', seq) ORDER BY seq NULLS LAST, id), '[]')
                     FROM (SELECT c.id, c.name, c.status, c.error, c.updated_at, s.seq
                             FROM workflows c
                             LEFT JOIN steps s ON s.workflow_id = w.id AND s.kind = 'child' AND s.output ->> 'id' = c.id
                            WHERE c.parent_id = w.id
                            ORDER BY s.seq NULLS LAST, c.id LIMIT $2) c) AS children
             FROM workflows w
             LEFT JOIN workflows p ON p.id = w.parent_id
            WHERE w.id = $1`,
    values: [id, limit],
  });
  const row = result.rows[0];
  if (!row) return undefined;
  const { parentId, parentName, parentStatus, waits, events, children, ...rest } = row;
  return {
    ...rest,
    parent: parentId === null ? null : { id: parentId, name: parentName!, status: parentStatus! },
    waits: waits.map((w) => ({ ...w, until: w.until === null ? null : new Date(w.until) })),
    events: events.map((e) => ({ ...e, arrival: Number(e.arrival), sentAt: new Date(e.sentAt) })),
    children: children.map((c) => ({ ...c, updatedAt: new Date(c.updatedAt) })),
  };
}
