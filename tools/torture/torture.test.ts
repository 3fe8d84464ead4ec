/**
 * The short torture run of `npm test`: one round of real worker processes of
 * chapter 6 under tens of seeded faults of every kind — the PostgreSQL
 * server's kill -9 included, on a server of this file's own — and every
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
import { installFenceWatch, checkInvariants } from './invariants.ts';
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

describe('torture: randomized crashes of workers and of PostgreSQL itself', () => {
  it('one round of 30 seeded faults of every kind: every order completes exactly once, no fenced write, no worker crash-loops', async () => {
    const lines: string[] = [];
    const result = await runRound({ seed: 7, orders: 24, workers: 3, faults: 30, leaseMs: 1000, adminUrl: server.url, server, log: (l) => lines.push(l) });
    const trace = `seed ${result.seed}\n${lines.join('\n')}`;
    expect(result.skipped, trace).toEqual([]);
    const counts = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, result.faults.filter((f) => f.kind === kind).length]));
    for (const kind of FAULT_KINDS) expect(counts[kind], `${kind} in ${JSON.stringify(counts)}`).toBeGreaterThanOrEqual(3);
    expect(result.faults.filter((f) => f.detail.includes('the fault itself failed')), trace).toEqual([]);
    expect(result.invariants.filter((i) => !i.ok), trace).toEqual([]);
    expect(result.unexpectedExits, trace).toEqual([]);
  }, 180_000);

  it('the checker catches what it checks for: a step record committed under a stale fencing token is reported', async () => {
    const url = await createDatabase(server.url, 'torture_checker');
    const db = new pg.Pool({ connectionString: url, max: 2 });
    try {
      const { migrate } = await import('../../chapters/07-fast-path/index.ts');
      await migrate(db);
      await installFenceWatch(db);
      // A zombie's write, made by hand: token 1's step committed after claim 2.
      await db.query(`INSERT INTO workflows (id, name, input, fencing_token) VALUES ('z-1', 'order', '{}', 2)`);
      await db.query(`INSERT INTO steps (workflow_id, seq, name, output, fencing_token) VALUES ('z-1', 0, 'charge_card', '{}', 1)`);
      const noWorld = { ledger: async () => ({ byOrder: () => ({ charges: 1, stockDecrements: 1, emails: 1 }) }) } as unknown as World;
      await db.query('CREATE TABLE IF NOT EXISTS stock_movements (order_id text)');
      const invariants = await checkInvariants({ db, world: noWorld, ids: ['z-1'] });
      const fenced = invariants.find((i) => i.name.startsWith('no write by a fenced worker'));
      expect(fenced?.violations).toEqual(['z-1 step #0: committed under token 1 when the latest claim was 2']);
    } finally {
      await db.end();
      await dropDatabase(url, server.url).catch(() => {});
    }
  });
});
