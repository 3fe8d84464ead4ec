/**
 * `durable`, the operator's command line (cli.ts), on a real database: list,
 * show, retry a failed workflow, prune finished ones — and a clear error,
 * with nothing changed, for every mistake on the command line.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { runCli } from './cli.ts';
import { createEngine, migrate } from './index.ts';

let database: TestPool;
let db: pg.Pool;
const sends = new Map<string, number>();
let mailDown = true;

/** Run `durable …`: exit code, stdout, stderr. */
async function durable(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { out: (t) => (out += t), err: (t) => (err += t), env: { DATABASE_URL: database.url }, interactive: false });
  return { code, out, err };
}

const workflows = {
  order: async (ctx: Parameters<Parameters<typeof createEngine>[0]['workflows'][string]>[0], id: string) => {
    await ctx.step('charge', async () => `charged ${id}`);
    return ctx.step('email', async () => {
      sends.set(ctx.workflowId, (sends.get(ctx.workflowId) ?? 0) + 1);
      if (mailDown) throw new Error('the mail server is down');
      return 'sent';
    });
  },
};

beforeAll(async () => {
  database = await freshPool('ch09_cli');
  db = database.db;
  await migrate(db);
  const engine = createEngine({ db, retry: { maxAttempts: 1 }, workflows });
  for (const id of ['order-1', 'order-2', 'hostile\u001b[2J\nid']) await engine.start('order', id, { id });
  mailDown = false;
  await engine.createWorker({ leaseMs: 5000 }).drain(); // all three complete…
  mailDown = true;
  await engine.start('order', 'order-3', { id: 'order-3' });
  await engine.createWorker({ leaseMs: 5000 }).drain(); // …and order-3 fails: its email step threw, on its one attempt (retry: maxAttempts 1)
  await engine.start('order', 'order-4', { id: 'order-4' }); // never claimed: running
});

afterAll(async () => {
  await database?.drop();
});

describe('durable, the operator command line', () => {
  it('list: a table for people, newest first, filtered by status; --json for scripts; hostile text never reaches the terminal raw', async () => {
    const all = await durable('list');
    expect(all.code).toBe(0);
    expect(all.out.split('\n')[0]).toMatch(/^id\s+name\s+status\s+steps\s+token\s+owner\s+lease left\s+last change\s+error$/);
    expect(all.out).toMatch(/^order-3\s+order\s+failed\s+2\s+1\s+\S+\s+—\s+\S+\s+workflow order-3 step #1 email failed after 1 attempt: Erro…$/m); // 2 entries: the charge, and the email that failed for good
    expect(all.out).toMatch(/^order-4\s+order\s+running\s+0\s+0\s+—/m);
    expect(all.out).toContain(JSON.stringify('hostile\u001b[2J\nid')); // shown escaped…
    expect(all.out).not.toContain('\u001b'); // …never as an escape sequence
    const failed = await durable('list', '--status', 'failed', '--json');
    expect(JSON.parse(failed.out)).toMatchObject([{ id: 'order-3', status: 'failed', steps: 2, error: 'workflow order-3 step #1 email failed after 1 attempt: Error: the mail server is down' }]);
  });

  it('show: the row, the lease, the recorded steps and who recorded each', async () => {
    const { code, out } = await durable('show', 'order-3');
    expect(code).toBe(0);
    expect(out).toContain('workflow order-3  (order)');
    expect(out).toContain('status   failed: workflow order-3 step #1 email failed after 1 attempt: Error: the mail server is down');
    expect(out).toMatch(/^0\s+charge\s+1\s+\S+\s+"charged order-3"$/m);
    // The step that failed for good, and each failed attempt with its error.
    expect(out).toMatch(/^1\s+email\s+1\s+\S+\s+✗ Error: the mail server is down \(1 attempts\)$/m);
    expect(out).toMatch(/^failed attempts\n#\s+step\s+attempt\s+token\s+failed at\s+error\s+next attempt\n1\s+email\s+1\s+1\s+\S+\s+Error: the mail server is down\s+— \(failed for good\)$/m);
    const json = JSON.parse((await durable('show', 'order-1', '--json')).out) as { status: string; output: unknown; steps: Array<{ name: string }> };
    expect(json).toMatchObject({ status: 'completed', output: 'sent' });
    expect(json.steps.map((s) => s.name)).toEqual(['charge', 'email']);
  });

  it('retry: a failed workflow is runnable again, and the next claim replays its log: the recorded step does not run again', async () => {
    const before = sends.get('order-3') ?? 0;
    expect(await durable('retry', 'order-2')).toMatchObject({ code: 1, err: expect.stringContaining('workflow order-2 is completed, not failed: nothing to retry') });
    const retried = await durable('retry', 'order-3');
    expect(retried).toMatchObject({ code: 0, out: 'workflow order-3 is runnable again: the next claim replays its 1 recorded step(s) and runs the rest.\n' });
    mailDown = false;
    const engine = createEngine({ db, workflows });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await engine.result('order-3')).toBe('sent');
    expect((sends.get('order-3') ?? 0) - before).toBe(1); // the email, once; the charge came from the log
    expect((await engine.inspect('order-3'))?.fencingToken).toBe(2);
  });

  it('prune: --dry-run says what would go; without --yes and nobody to ask it deletes nothing; --yes deletes finished workflows and their steps, never a running one', async () => {
    // Everything is finished by now (the retry's drain ran order-4 too): one more, never claimed, stays running.
    await createEngine({ db, workflows }).start('order', 'order-5', { id: 'order-5' });
    const dry = await durable('prune', '--older-than', '0s', '--dry-run');
    expect(dry.out).toMatch(/^would delete 5 completed or failed or cancelled workflow\(s\) last changed more than 0s ago, with their steps/);
    const unasked = await durable('prune', '--older-than', '0s');
    expect(unasked.code).toBe(2);
    expect(unasked.err).toContain('not without --yes when nobody is there to confirm');
    expect((await db.query('SELECT count(*)::int AS n FROM workflows')).rows[0].n).toBe(6);
    const done = await durable('prune', '--older-than', '0s', '--yes', '--batch', '2'); // in batches of two
    expect(done).toMatchObject({ code: 0, out: 'deleted 5 workflow(s) and their steps\n' });
    expect((await db.query('SELECT id FROM workflows')).rows).toEqual([{ id: 'order-5' }]);
    expect((await db.query('SELECT count(*)::int AS n FROM steps')).rows[0].n).toBe(0);
  });

  it.each([
    [['list', '--older-than', 'soon'], 2, '--older-than soon: an age is a number and a unit'],
    [['list', '--status', 'lost'], 2, '--status lost: a status is one of running, completed, failed'],
    [['prune', '--older-than', '1d', '--status', 'running'], 2, 'a running workflow is never pruned'],
    [['prune'], 2, 'prune: how old?'],
    [['show'], 2, 'show: which workflow?'],
    [['show', 'nobody'], 1, 'no workflow nobody in the log'],
    [['cancel', 'nobody'], 1, 'no workflow nobody in the log'],
    [['launch'], 2, 'unknown command "launch"'],
    [['list', '--bogus'], 2, "Unknown option '--bogus'"],
  ])('durable %j: exit %i, "%s", and nothing changed', async (argv, code, message) => {
    const result = await durable(...(argv as string[]));
    expect(result.code).toBe(code);
    expect(result.err).toContain(message);
    expect((await db.query('SELECT count(*)::int AS n FROM workflows')).rows[0].n).toBeGreaterThan(0);
  });

  it('without a database it says how to give one; with a URL that is not PostgreSQL\'s, that', async () => {
    let err = '';
    const code = await runCli(['list'], { out: () => {}, err: (t) => (err += t), env: {}, interactive: false });
    expect([code, err]).toEqual([2, expect.stringContaining('no database: set DATABASE_URL or pass --database-url')]);
    const wrong = await durable('list', '--database-url', 'mysql://localhost/x');
    expect(wrong).toMatchObject({ code: 1, err: expect.stringContaining('--database-url is not a PostgreSQL connection string') });
  });
});
