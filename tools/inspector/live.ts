/**
 * Live updates: the server finds out that something changed, recomputes the
 * views that pages have open, and pushes each page its view when it differs
 * from what it was last sent (Server-Sent Events; server.ts writes them).
 * The page never polls.
 *
 * How the server finds out — the choice, and its cost:
 *
 *   - LISTEN/NOTIFY would be the natural source, but the engine does not
 *     NOTIFY on every record, on purpose: a NOTIFY takes a cluster-wide lock
 *     at COMMIT, which serializes every notifying commit — on the engine's
 *     hottest path (a step's record is one statement, 0.26 ms in the bench)
 *     that would cost its throughput, for the sake of a page few people open.
 *     It NOTIFYs only when a start needs another process's worker: too little
 *     to show steps filling in.
 *   - Triggers the inspector installs while it runs (NOTIFY from a trigger on
 *     steps and workflows) put that same cost on the engine whenever a page is
 *     open, need the right to CREATE TRIGGER on the engine's tables (an
 *     operator's read-only role has none), take locks that conflict with the
 *     engine's writes while they are created, and outlive an inspector that is
 *     killed: the engine would pay for ever.
 *   - So the inspector polls, the database side only, and one cheap question:
 *     `SELECT pg_current_snapshot()` every `pollMs` (250 ms) — has any
 *     transaction that wrote something ended since last time? It reads no
 *     table, takes no lock and no transaction id: ~4 trivial statements a
 *     second, one connection, whatever the size of the log or the number of
 *     pages open. Only when the answer changes are the open views recomputed —
 *     once per distinct view, however many pages show it — with the engine's
 *     own read queries (a list is listWorkflows, one ORDER BY … LIMIT, and one
 *     indexed read of its rows' parents, children and waits; a workflow is
 *     four indexed reads). Nothing that writes can be missed: a
 *     claim, a record, a release, a heartbeat, an event sent, a cancel
 *     request all end a transaction that had an id. The snapshot is the server's, so writes in other databases on it
 *     also trigger a recompute: wasted reads, never a missed change. While
 *     workers are busy (their heartbeats alone commit several times a
 *     second), the open views are recomputed up to 4 times a second.
 *   - Clocks that run without a write (a lease's time left, a wait's end)
 *     are pushed once a second while a view shows one.
 *
 * When the database goes away (a restart, a failover), the poll fails: every
 * page is told "database unavailable — retrying", the poll backs off (up to
 * 2 s), and the first answer after it tells them "connected" and pushes each
 * view again. The pool opens new connections by itself.
 */
import type pg from 'pg';
import { isConnectionFailure } from '../../chapters/09-waiting-for-the-world/queries.ts';
import { changeMarker } from './queries.ts';
import { isTicking, viewData, viewKey, type View } from './views.ts';

export type DatabaseState = 'connecting' | 'connected' | 'unavailable' | 'schema-missing' | 'error';

export interface StatusEvent {
  state: DatabaseState;
  message: string;
}

/** What a subscriber is sent: `status` (the database), then its view's data as `list` or `workflow`. */
export type Send = (event: 'status' | 'list' | 'workflow', data: unknown) => void;

interface Group {
  view: View;
  listeners: Set<Send>;
  /** The JSON last pushed (without its clock): a push that would repeat it is skipped. */
  last?: string;
  lastData?: unknown;
  ticking: boolean;
  pushedAt: number;
  /** Recompute at the next poll even if nothing committed (new subscriber, reconnected). */
  stale: boolean;
}

const MESSAGES: Record<DatabaseState, string> = {
  connecting: 'connecting to the database…',
  connected: 'connected',
  unavailable: 'database unavailable — retrying',
  'schema-missing': 'no chapter 9 tables in this database yet (waits, events, parent_id) — chapter 9\'s engine creates them at its first start (retrying)',
  error: 'the database refused a query — retrying',
};

/** PostgreSQL's "no such table" and "no such column": a database the engine has not migrated (to chapter 9). */
function isSchemaMissing(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '42P01' || code === '42703';
}

export class Live {
  readonly #db: pg.Pool;
  readonly #pollMs: number;
  readonly #log: (line: string) => void;
  readonly #groups = new Map<string, Group>();
  #status: StatusEvent = { state: 'connecting', message: MESSAGES.connecting };
  #marker: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #failures = 0;
  #closed = false;

  constructor(db: pg.Pool, options: { pollMs?: number; log?: (line: string) => void } = {}) {
    this.#db = db;
    this.#pollMs = options.pollMs ?? 250;
    this.#log = options.log ?? (() => {});
  }

  get status(): StatusEvent {
    return this.#status;
  }

  /** Push `view` to `send` now and on every change, until the returned function is called. */
  subscribe(view: View, send: Send): () => void {
    const key = viewKey(view);
    let group = this.#groups.get(key);
    if (!group) {
      group = { view, listeners: new Set(), ticking: false, pushedAt: 0, stale: true };
      this.#groups.set(key, group);
    }
    group.listeners.add(send);
    send('status', this.#status);
    if (group.lastData !== undefined) send(view.kind, group.lastData);
    group.stale = true;
    this.#schedule(0);
    return () => {
      group.listeners.delete(send);
      if (group.listeners.size === 0) this.#groups.delete(key);
    };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** A failure of the database, as the pages should hear it (a request that failed tells it here too). */
  noteFailure(error: unknown): void {
    const state: DatabaseState = isConnectionFailure(error) ? 'unavailable' : isSchemaMissing(error) ? 'schema-missing' : 'error';
    const detail = (error as Error)?.message ?? String(error);
    if (this.#status.state !== state) this.#log(`inspector: ${MESSAGES[state]} (${detail})`);
    this.#setStatus({ state, message: state === 'error' ? `${MESSAGES.error}: ${detail}` : MESSAGES[state] });
  }

  #setStatus(status: StatusEvent): void {
    const changed = status.state !== this.#status.state || status.message !== this.#status.message;
    this.#status = status;
    if (!changed) return;
    for (const group of this.#groups.values()) for (const send of group.listeners) send('status', status);
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#polling) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#poll(), ms);
  }

  async #poll(): Promise<void> {
    if (this.#closed || this.#groups.size === 0) return;
    this.#polling = true;
    let next = this.#pollMs;
    try {
      const marker = await changeMarker(this.#db);
      const reconnected = this.#status.state === 'unavailable' || this.#status.state === 'connecting';
      if (reconnected) {
        if (this.#status.state === 'unavailable') this.#log('inspector: the database answers again');
        this.#setStatus({ state: 'connected', message: MESSAGES.connected });
      }
      const changed = marker !== this.#marker;
      this.#marker = marker;
      const now = Date.now();
      for (const group of [...this.#groups.values()]) {
        const due = changed || reconnected || group.stale || this.#status.state !== 'connected' || (group.ticking && now - group.pushedAt >= 1000);
        if (due) await this.#refresh(group);
      }
      this.#failures = 0;
    } catch (error) {
      this.noteFailure(error);
      this.#failures++;
      next = Math.min(2000, this.#pollMs * 2 ** this.#failures);
      // Everything is recomputed, and pushed again, once the database answers again.
      for (const group of this.#groups.values()) {
        group.stale = true;
        group.last = undefined;
      }
    } finally {
      this.#polling = false;
    }
    if (this.#groups.size > 0) this.#schedule(next);
  }

  async #refresh(group: Group): Promise<void> {
    const data = await viewData(this.#db, group.view); // a failure goes up to #poll: the status says it
    if (this.#status.state !== 'connected') this.#setStatus({ state: 'connected', message: MESSAGES.connected });
    group.stale = false;
    group.ticking = isTicking(data);
    group.pushedAt = Date.now();
    // The database's clock always moves: a view that differs in nothing else is not pushed again.
    const { dbNow: _, ...rest } = data;
    const json = JSON.stringify(rest);
    if (json === group.last) return;
    group.last = json;
    group.lastData = data;
    for (const send of group.listeners) send(group.view.kind, data);
  }
}
