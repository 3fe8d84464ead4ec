/**
 * The short torture run of `npm test`: one round of real worker processes of
 * the last chapter's engine (chapter 9) under tens of seeded faults of every
 * kind — the PostgreSQL server's kill -9 included, on a server of this file's
 * own; provider outages the retries ride out, kills while workflows wait out
 * a back-off, a sleep or their event, poison workflows, events sent from
 * sender processes killed and sent again, cancellations — and every
 * invariant must hold. The long run is `npm run torture` (docs/torture/report.md).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { EmbeddedPostgres } from '../../shared/db/embedded.ts';
import type { PostgresServer } from '../../shared/db/server.ts';
import { quietPool } from '../../shared/testing/database.ts';
import { checkInvariants, installWatches, type CheckInput } from './invariants.ts';
import { FAULT_KINDS, runRound } from './round.ts';
import type { World } from '../../shared/world/world.ts';

let tmp: string;
let embedded: EmbeddedPostgres;
let server: PostgresServer;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'course-torture-'));
  // As root the server runs as `postgres`, which must reach the folder.
  fs.chmodSync(tmp, 0o755);
  embedded = await EmbeddedPostgres.start({ dataDir: path.join(tmp, 'pg') });
  server = { kind: 'embedded', url: embedded.url, describe: `embedded PostgreSQL on port ${embedded.port}`, embedded, stop: () => embedded.stop() };
}, 120_000);

afterAll(async () => {
  await embedded?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('torture: randomized crashes of workers and of PostgreSQL itself, outages, waits, poison, events and cancellations', () => {
  it('one round of 40 seeded faults of every kind: every order ends as it may, its effects once; sleeps and back-offs never end early; poisons fail after maxAttempts; each event taken once; cancels end cancelled, nothing after; no fenced write; no worker crash-loops', async () => {
    const lines: string[] = [];
    const result = await runRound({ seed: 7, orders: 24, workers: 3, faults: 40, leaseMs: 1000, adminUrl: server.url, server, log: (l) => lines.push(l) });
    const trace = `seed ${result.seed}\n${lines.join('\n')}\n${JSON.stringify(result.observed)}`;
    expect(result.skipped, trace).toEqual([]);
    const counts = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, result.faults.filter((f) => f.kind === kind).length]));
    for (const kind of FAULT_KINDS) expect(counts[kind], `${kind} in ${JSON.stringify(counts)}\n${trace}`).toBeGreaterThanOrEqual(3);
    expect(result.faults.filter((f) => f.detail.includes('the fault itself failed')), trace).toEqual([]);
    expect(result.faults.filter((f) => f.kind === 'provider-outage' && f.detail.startsWith('(none')), trace).toEqual([]);
    // At least one kill timed by the harness while a workflow waited (the rest may be armed crash points: see round.ts).
    expect(result.faults.filter((f) => f.kind === 'kill-waiting' && f.detail.includes(' waits for its ')).length, trace).toBeGreaterThanOrEqual(1);
    // Every invariant holds. (The two engine findings of docs/torture/report.md, 2026-12-03: the dropped connection
    // handed to a parent's code is fixed — stoppedRuns in run.ts —, and a cancel is documented as a request, which
    // the cancel invariant now allows the run that had not heard of it to complete; tools/torture/findings.ts.)
    expect(result.invariants.filter((i) => i.violations.length), trace).toEqual([]);
    expect(result.unexpectedExits, trace).toEqual([]);
    // The new faults did what they are for: orders slept and backed off, the poisons killed workers. (Whether an armed
    // crash point fires is the round's luck: among 40 faults of ten kinds, an armed worker is often killed first.)
    expect(result.observed.sleeps, trace).toBeGreaterThanOrEqual(16);
    expect(result.observed.backoffs, trace).toBeGreaterThanOrEqual(1);
    expect(result.observed.workerDeaths['poison workflow'], trace).toBeGreaterThanOrEqual(3);
    // Chapter 9's: the orders took their events, and the cancels cancelled.
    expect(result.observed.eventWaits, trace).toBeGreaterThanOrEqual(12);
    expect(result.observed.cancelled, trace).toBeGreaterThanOrEqual(1);
    expect(result.observed.parents, trace).toBe(2);
  }, 300_000);

  /** A database with chapter 9's schema and the watches, and a world with no ledger of its own, for checks on logs made by hand. */
  async function checkerDatabase(
    label: string,
    body: (db: pg.Pool, check: (orders: string[], more?: Partial<CheckInput>) => ReturnType<typeof checkInvariants>) => Promise<void>,
  ): Promise<void> {
    const url = await createDatabase(server.url, label);
    const db = quietPool(url, { max: 2 });
    try {
      const { migrate } = await import('../../chapters/09-waiting-for-the-world/index.ts');
      await migrate(db);
      await installWatches(db);
      await db.query('CREATE TABLE IF NOT EXISTS stock_movements (order_id text, delta int)');
      const noWorld = { ledger: async () => ({ byOrder: () => ({ charges: 1, stockDecrements: 1, emails: 1 }) }) } as unknown as World;
      await body(db, (orders, more = {}) =>
        checkInvariants({ db, world: noWorld, orders, poisons: [], coolingOffMs: 400, disruptions: { workers: new Map(), database: [] }, ...more }),
      );
    } finally {
      await db.end();
      await dropDatabase(url, server.url).catch(() => {});
    }
  }

  it('the checker catches what it checks for: a step record committed under a stale fencing token is reported', async () => {
    await checkerDatabase('torture_checker', async (db, check) => {
      // A zombie's write, made by hand: token 1's step committed after claim 2.
      await db.query(`INSERT INTO workflows (id, name, input, fencing_token) VALUES ('z-1', 'order', '{}', 2)`);
      await db.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('z-1', 0, 'charge_card', '{}', 1)`);
      const { invariants } = await check(['z-1']);
      const fenced = invariants.find((i) => i.name.startsWith('no write by a fenced worker'));
      expect(fenced?.violations).toEqual(['z-1 step #0: committed under token 1 when the latest claim was 2']);
      // …while a sleep recorded by the statement that releases the workflow (token + 1, in the same transaction) is no breach.
      await db.query(`INSERT INTO workflows (id, name, input, fencing_token) VALUES ('s-1', 'order', '{}', 3)`);
      await db.query(`
        WITH recorded AS (INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token) VALUES ('s-1', 0, 'sleep', 'sleep', jsonb_build_object('until', now()), 3))
        UPDATE workflows SET fencing_token = fencing_token + 1, lease_owner = NULL WHERE id = 's-1'`);
      const again = (await check(['s-1'])).invariants.find((i) => i.name.startsWith('no write by a fenced worker'));
      expect(again?.violations).toEqual([]);
    });
  });

  it('the checker catches an early wake: a step recorded before the sleep before it ended is reported', async () => {
    await checkerDatabase('torture_checker_sleep', async (db, check) => {
      // A wake made by hand: the sleep ends in an hour, the email is recorded now.
      await db.query(`INSERT INTO workflows (id, name, input, fencing_token) VALUES ('e-1', 'order', '{}', 2)`);
      await db.query(`
        INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token) VALUES
          ('e-1', 0, 'charge_card', 'step', '{}', 1),
          ('e-1', 1, 'reserve_inventory', 'step', '{}', 1),
          ('e-1', 2, 'sleep', 'sleep', jsonb_build_object('until', date_trunc('milliseconds', now() + interval '1 hour')), 1)`);
      await db.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('e-1', 3, 'send_email', '{}', 2)`);
      const { invariants, observed } = await check(['e-1']);
      expect(observed.sleeps).toBe(1);
      const early = invariants.find((i) => i.name.startsWith('sleeps never end early'));
      expect(early?.violations).toHaveLength(1);
      expect(early?.violations[0]).toMatch(/^e-1: step #3 send_email recorded at \S+, 3\d{6}\.\d{3} ms before its sleep \(#2\) ended at /);
      // The same sleep with its end in the past is no violation.
      await db.query(`UPDATE steps SET output = jsonb_build_object('until', created_at - interval '1 second') WHERE workflow_id = 'e-1' AND seq = 2`);
      expect((await check(['e-1'])).invariants.find((i) => i.name.startsWith('sleeps never end early'))?.violations).toEqual([]);
    });
  });

  it('the checker catches a wait that recorded another payload than the event kept under its key, and an event marked taken by no wait', async () => {
    await checkerDatabase('torture_checker_events', async (db, check) => {
      await db.query(`INSERT INTO workflows (id, name, input, status, fencing_token) VALUES ('ev-1', 'order', '{}', 'completed', 1)`);
      await db.query(`INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token) VALUES ('ev-1', 1, 'settled', 'event', '{"payload": {"send": 1}, "key": "settled:ev-1"}', 1)`);
      await db.query(`INSERT INTO events (workflow_id, name, key, payload, taken_at_seq) VALUES ('ev-1', 'settled', 'settled:ev-1', '{"send": 2}', 1), ('ev-1', 'settled', 'other', '{}', 4)`);
      const { invariants, observed } = await check(['ev-1'], { awaitSettlement: true });
      const events = invariants.find((i) => i.name.startsWith('each order’s wait took the one event sent to it'));
      expect(events?.violations).toEqual([
        'ev-1: its wait #1 recorded the payload {"send":1}, the table kept {"send":2} under that key',
        'ev-1: event other marked taken by wait #4, whose entry in the log does not hold it',
        'ev-1: 2 events in the table (settled:ev-1, other), for one key sent',
      ]);
      expect(observed.eventWaits).toBe(1);
    });
  });

  it('the checker catches a step recorded after a cancel by a claim made after it, and lets the compensation through', async () => {
    await checkerDatabase('torture_checker_cancel', async (db, check) => {
      // Held by w1.1 under claim 1 when the cancel is written; claimed again (2) by w2.1, which records a step: it was told of the cancel.
      await db.query(`INSERT INTO workflows (id, name, input, fencing_token, lease_owner, lease_expires_at) VALUES ('c-1', 'order', '{}', 1, 'w1.1', now() + interval '1 hour')`);
      await db.query(`UPDATE workflows SET cancel_requested_at = now(), cancel_reason = 'test' WHERE id = 'c-1'`);
      await db.query(`UPDATE workflows SET fencing_token = 2, lease_owner = 'w2.1' WHERE id = 'c-1'`);
      await db.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('c-1', 0, 'charge_card', '{}', 2), ('c-1', 1, 'release_inventory', '{}', 2)`);
      await db.query(`UPDATE workflows SET status = 'cancelled', error = cancel_reason WHERE id = 'c-1'`);
      const { invariants, observed } = await check(['c-1'], { cancels: [{ id: 'c-1', state: 'held', at: Date.now(), outcome: 'requested' }] });
      expect(invariants.find((i) => i.name.startsWith('every order whose cancel was written ended cancelled'))?.violations).toEqual([]);
      const after = invariants.find((i) => i.name.startsWith('nothing recorded after a cancel'));
      expect(after?.violations).toHaveLength(1);
      expect(after?.violations[0]).toMatch(/^c-1: step #0 charge_card recorded at \S+ \(\d+ ms after the cancel was written at \S+\) under claim #2 by w2\.1, a claim made after the cancel \(which was written under #1\)$/);
      expect(observed.compensations).toBe(1);
    });
  });

  it('the checker catches a parent left running after all its children ended, and one that completed before a child did', async () => {
    await checkerDatabase('torture_checker_parents', async (db, check) => {
      await db.query(`INSERT INTO workflows (id, name, input, fencing_token) VALUES ('b-1', 'batch', '{}', 2), ('b-2', 'batch', '{}', 2)`);
      await db.query(`INSERT INTO workflows (id, name, input, status, parent_id, updated_at) VALUES ('b-1/0', 'order', '{}', 'completed', 'b-1', now())`);
      await db.query(`UPDATE workflows SET status = 'completed', output = '{"completed": 1, "failed": []}' WHERE id = 'b-2'`);
      await db.query(`INSERT INTO workflows (id, name, input, status, parent_id, updated_at) VALUES ('b-2/0', 'order', '{}', 'completed', 'b-2', now() + interval '1 second')`);
      const { invariants } = await check([], { parents: [{ id: 'b-1', children: ['b-1/0'] }, { id: 'b-2', children: ['b-2/0'] }] });
      const stuck = invariants.find((i) => i.name.startsWith('no parent stuck'));
      expect(stuck?.violations).toHaveLength(2);
      expect(stuck?.violations[0]).toMatch(/^b-1: still running after recovery \(where, unknown\); every child had ended \(the last at \S+\)$/);
      expect(stuck?.violations[1]).toMatch(/^b-2: completed at \S+ by nobody the claim watch saw under claim #2, before its children b-2\/0 \(completed at \S+\) ended$/);
    });
  });
});
