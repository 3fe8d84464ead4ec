/**
 * What the inspector's page shows, as data: the list of workflows (filtered),
 * and one workflow with its timeline. The same functions answer the JSON
 * endpoints and feed the live updates (live.ts), so a page that loads and a
 * page that is pushed to see the same thing.
 *
 * The engine's queries do the reading (listWorkflows, getWorkflow, loadLog,
 * waitingOf — as `durable list` and `durable show` use them); the inspector
 * adds its times, and what chapter 9 keeps beside the log — parents and
 * children, waits, events, cancel requests (queries.ts) — and the timeline
 * (timeline.ts).
 */
import { age } from '../../chapters/09-waiting-for-the-world/cli.ts';
import { decodeFromLog } from '../../chapters/09-waiting-for-the-world/json.ts';
import { getWorkflow, listWorkflows, loadLog, waitingOf, type Sql, type WorkflowStatus, type WorkflowSummary } from '../../chapters/09-waiting-for-the-world/queries.ts';
import { databaseNow, listExtras, workflowRelations, workflowTimes, type ChildRow, type EventRow, type ListExtras, type WorkflowRelations } from './queries.ts';
import { buildTimeline, type Timeline } from './timeline.ts';

export const STATUSES: readonly WorkflowStatus[] = ['running', 'completed', 'failed', 'cancelled'];

/** A request the inspector cannot answer as asked: a 400, with a sentence. */
export class BadRequest extends Error {}

export interface ListFilter {
  status?: WorkflowStatus;
  name?: string;
  /** Last changed at most this long ago: `15m`, `2h`, `7d` (as `durable list --newer-than`). */
  newer?: string;
  /** Last changed at least this long ago. */
  older?: string;
  limit: number;
}

export type View = { kind: 'list'; filter: ListFilter } | { kind: 'workflow'; id: string };

/** The view a query string asks for: `?id=…` one workflow; otherwise the list, with `status`, `name`, `newer`, `older`, `limit`. */
export function parseView(params: URLSearchParams): View {
  const id = params.get('id');
  if (id !== null) {
    if (id === '') throw new BadRequest('id: which workflow? It is empty.');
    return { kind: 'workflow', id };
  }
  const filter: ListFilter = { limit: 100 };
  const status = params.get('status') || undefined;
  if (status !== undefined) {
    if (!(STATUSES as readonly string[]).includes(status)) throw new BadRequest(`status: one of ${STATUSES.join(', ')}.`);
    filter.status = status as WorkflowStatus;
  }
  const name = params.get('name')?.trim();
  if (name) filter.name = name;
  for (const key of ['newer', 'older'] as const) {
    const value = params.get(key)?.trim();
    if (!value) continue;
    try {
      age(value, key);
    } catch {
      throw new BadRequest(`${key}: an age is a number and a unit, e.g. 90s, 15m, 12h or 30d.`);
    }
    filter[key] = value;
  }
  const limit = params.get('limit');
  if (limit) {
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new BadRequest('limit: a whole number from 1 to 1000.');
    filter.limit = n;
  }
  return { kind: 'list', filter };
}

/** One key per distinct view: pages showing the same thing share its queries. */
export function viewKey(view: View): string {
  return JSON.stringify(view.kind === 'workflow' ? ['workflow', view.id] : ['list', view.filter.status ?? null, view.filter.name ?? null, view.filter.newer ?? null, view.filter.older ?? null, view.filter.limit]);
}

/**
 * A row of the list, with what its lease columns mean in one word, its parent
 * and children, the events it is parked for, and a cancel request.
 */
export type ListedWorkflow = WorkflowSummary &
  Omit<ListExtras, 'id'> & {
    state: 'held' | 'waiting' | 'runnable' | 'completed' | 'failed' | 'cancelled';
  };

export interface ListData {
  dbNow: Date;
  filter: ListFilter;
  workflows: ListedWorkflow[];
}

export async function listData(db: Sql, filter: ListFilter): Promise<ListData> {
  const [rows, dbNow] = await Promise.all([
    listWorkflows(db, {
      status: filter.status,
      name: filter.name,
      newerThanMs: filter.newer === undefined ? undefined : age(filter.newer, 'newer'),
      olderThanMs: filter.older === undefined ? undefined : age(filter.older, 'older'),
      limit: filter.limit,
    }),
    databaseNow(db),
  ]);
  const extras = await listExtras(db, rows.map((row) => row.id));
  const workflows = rows.map((row): ListedWorkflow => {
    const extra = extras.get(row.id); // missing only for a row pruned between the two reads
    const parked = row.status === 'running' && row.leaseOwner === null && row.leaseMsLeft > 0;
    return {
      ...row,
      state:
        row.status !== 'running' ? row.status
        : row.leaseMsLeft <= 0 ? 'runnable'
        : row.leaseOwner === null ? 'waiting' // released by its run until a back-off, a sleep or its events end
        : 'held',
      parentId: extra?.parentId ?? null,
      children: extra?.children ?? 0,
      childrenRunning: extra?.childrenRunning ?? 0,
      waitEvents: parked ? (extra?.waitEvents ?? null) : null,
      waitUntil: parked ? (extra?.waitUntil ?? null) : null,
      cancelRequestedAt: extra?.cancelRequestedAt ?? null,
    };
  });
  return { dbNow, filter, workflows };
}

export type WorkflowData =
  | { found: false; id: string; dbNow: Date }
  | {
      found: true;
      id: string;
      dbNow: Date;
      workflow: {
        id: string;
        name: string;
        status: WorkflowStatus;
        input: unknown;
        output: unknown;
        error: string | null;
        fencingToken: number;
        leaseOwner: string | null;
        leaseMsLeft: number;
        attempts: number;
        maxAttempts: number;
        deadlineInMs: number | null;
        deadlineAt: Date | null;
        createdAt: Date;
        updatedAt: Date;
      };
      /** What it waits for now: a back-off or a sleep until a time; events, until a timeout (null: none). inMs: time left (null: no timeout). */
      waiting: { reason: 'retry' | 'sleep'; until: Date; inMs: number } | { reason: 'event'; events: string[]; until: Date | null; inMs: number | null } | null;
      /** The waits it is parked in, each with the event already sent for it (not yet taken: the workflow is woken once all have one). */
      waits: Array<{ seq: number; name: string; until: Date | null; child: string | null; arrived: { key: string; sentAt: Date } | null }>;
      /** The events sent to it, oldest first (at most 500; eventCount: all). */
      events: Array<Omit<EventRow, 'payload'> & { payload: unknown; child: string | null }>;
      eventCount: number;
      eventsUntaken: number;
      /** The children it started, in the order it started them (at most 500; childCount: all). */
      children: ChildRow[];
      childCount: number;
      childrenByStatus: WorkflowRelations['childrenByStatus'];
      parent: WorkflowRelations['parent'];
      cancel: { requestedAt: Date; reason: string | null } | null;
      stepCount: number;
      failedAttempts: number;
      timeline: Timeline;
    };

const CHILD_EVENT = 'durable:child:';
const childOf = (name: string) => (name.startsWith(CHILD_EVENT) ? name.slice(CHILD_EVENT.length) : null);

/** One workflow: its row, its wait, its relations (parent, children, waits, events, cancel), its timeline (steps, failed attempts, claims). */
export async function workflowData(db: Sql, id: string): Promise<WorkflowData> {
  // Four reads, not one transaction: each is consistent in itself, and the
  // next push (a few hundred ms later) shows whatever moved between them.
  const [row, log, times, relations] = await Promise.all([getWorkflow(db, id), loadLog(db, id), workflowTimes(db, id), workflowRelations(db, id)]);
  if (!row || !times || !relations) return { found: false, id, dbNow: times?.dbNow ?? (await databaseNow(db)) };
  const waiting = waitingOf(row, log);
  const steps = log.steps.map((step) => ({ ...step, output: decodeFromLog(step.output) }));
  // Which wait each untaken event will fill: per name, the oldest event for the earliest wait (as takeEvents pairs them).
  const untaken = new Map<string, EventRow[]>();
  for (const event of relations.events) if (event.takenAtSeq === null) untaken.set(event.name, [...(untaken.get(event.name) ?? []), event]);
  const waits = relations.waits.map((wait) => {
    const event = untaken.get(wait.name)?.shift();
    return { ...wait, child: childOf(wait.name), arrived: event ? { key: event.key, sentAt: event.sentAt } : null };
  });
  const cancel = relations.cancelRequestedAt ? { requestedAt: relations.cancelRequestedAt, reason: relations.cancelReason } : null;
  const inMs = (until: Date | null) => (until === null ? null : Math.max(0, until.getTime() - times.dbNow.getTime()));
  return {
    found: true,
    id,
    dbNow: times.dbNow,
    workflow: {
      ...row,
      input: decodeFromLog(row.input),
      output: decodeFromLog(row.output),
      deadlineAt: times.deadlineAt,
      createdAt: times.createdAt,
      updatedAt: times.updatedAt,
    },
    waiting: waiting && (waiting.reason === 'event' ? { ...waiting, inMs: inMs(waiting.until) } : { ...waiting, inMs: inMs(waiting.until)! }),
    waits,
    events: relations.events.map((event) => ({ ...event, payload: decodeFromLog(event.payload), child: childOf(event.name) })),
    eventCount: relations.eventCount,
    eventsUntaken: relations.eventsUntaken,
    children: relations.children,
    childCount: relations.childCount,
    childrenByStatus: relations.childrenByStatus,
    parent: relations.parent,
    cancel,
    stepCount: log.steps.length,
    failedAttempts: log.failures.length,
    timeline: buildTimeline(row, { steps, failures: log.failures }, times, waiting, {
      events: relations.events,
      waits: relations.waits,
      cancelRequestedAt: relations.cancelRequestedAt,
      cancelReason: relations.cancelReason,
    }),
  };
}

/** The data of a view: what a page gets first, and then on every change. */
export function viewData(db: Sql, view: View): Promise<ListData | WorkflowData> {
  return view.kind === 'list' ? listData(db, view.filter) : workflowData(db, view.id);
}

/** Does this view show a clock that runs (a lease's time left, a wait's end)? Then it is pushed again every second, change or not. */
export function isTicking(data: ListData | WorkflowData): boolean {
  // A park for events with no timeout has no clock to run (its lease_expires_at is the year 9999).
  if ('workflows' in data) return data.workflows.some((w) => w.status === 'running' && w.leaseMsLeft > 0 && !(w.waitEvents && !w.waitUntil));
  return data.found && data.workflow.status === 'running';
}
