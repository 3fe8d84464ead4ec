/**
 * Schedules: cron expressions parsed (or refused, saying why), ticks found,
 * and a workflow started once per tick by however many workers — with missed
 * ticks skipped or caught up, as the schedule says.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { sleep, until } from '../../shared/testing/waiting.ts';
import { createEngine, migrate, ScheduleError, type Context, type LogEntry } from './index.ts';
import { nextTick, parseCron, ticksBetween } from './schedules.ts';

let test: TestPool;
let db: pg.Pool;

beforeAll(async () => {
  test = await freshPool('ch08_schedules', { max: 20 });
  db = test.db;
  await migrate(db);
});
afterAll(async () => {
  await test?.drop();
});

const at = (iso: string) => new Date(iso);

describe('cron expressions', () => {
  it('the next tick: every day at 03:00, weekdays every 15 minutes 9–17, every 10 seconds, the 1st or any Monday, Sunday as 0 and as 7', () => {
    expect(nextTick(parseCron('0 3 * * *'), at('2026-12-03T03:00:00Z'))).toEqual(at('2026-12-04T03:00:00Z'));
    expect(nextTick(parseCron('0 3 * * *'), at('2026-12-03T02:59:59.500Z'))).toEqual(at('2026-12-03T03:00:00Z'));
    // 2026-12-04 is a Friday: after 17:45 comes Monday 09:00.
    expect(nextTick(parseCron('*/15 9-17 * * 1-5'), at('2026-12-04T17:45:00Z'))).toEqual(at('2026-12-07T09:00:00Z'));
    expect(ticksBetween(parseCron('*/10 * * * * *'), at('2026-12-03T00:00:00Z'), at('2026-12-03T00:00:35Z'), 100)).toEqual([
      at('2026-12-03T00:00:10Z'),
      at('2026-12-03T00:00:20Z'),
      at('2026-12-03T00:00:30Z'),
    ]);
    // Both day fields restricted: either matches (the 1st, or a Monday).
    expect(ticksBetween(parseCron('0 0 1 * 1'), at('2026-12-01T00:00:00Z'), at('2026-12-31T00:00:00Z'), 100).map((d) => d.getUTCDate())).toEqual([7, 14, 21, 28]);
    expect(nextTick(parseCron('0 0 * * 7'), at('2026-12-03T00:00:00Z'))).toEqual(nextTick(parseCron('0 0 * * 0'), at('2026-12-03T00:00:00Z')));
    expect(nextTick(parseCron('0 0 29 2 *'), at('2026-03-01T00:00:00Z'))).toEqual(at('2028-02-29T00:00:00Z'));
    expect(nextTick(parseCron('0 0 31 2 *'), at('2026-03-01T00:00:00Z'))).toBeNull();
  });

  it('an expression that does not parse is a ScheduleError naming the field and what it takes', () => {
    const cases: Array<[string, string]> = [
      ['* * *', 'cron expression "* * *" has 3 field(s); it needs 5'],
      ['61 * * * *', 'minute "61" is out of range'],
      ['* 5-2 * * *', 'hour "5-2" is a range that ends before it starts'],
      ['*/0 * * * *', 'minute "*/0" has a step of 0'],
      ['a b c d e', 'minute "a" does not parse'],
      ['0 0 0 * *', 'day of month "0" is out of range'],
      ["0 0 * * 1; DROP TABLE workflows", 'has 8 field(s)'],
    ];
    for (const [expression, message] of cases) {
      expect(() => parseCron(expression)).toThrow(ScheduleError);
      expect(() => parseCron(expression)).toThrow(message);
    }
  });

  it('createEngine refuses a schedule that cannot work: bad cron, one that never fires, an unregistered workflow, a bad policy', () => {
    const workflows = { report: async () => 1 };
    expect(() => createEngine({ db, workflows, schedules: { nightly: { workflow: 'report', cron: '0 3 * *' } } })).toThrow('has 4 field(s)');
    expect(() => createEngine({ db, workflows, schedules: { never: { workflow: 'report', cron: '0 0 31 2 *' } } })).toThrow('cron expression "0 0 31 2 *" of schedule never never fires');
    expect(() => createEngine({ db, workflows, schedules: { nightly: { workflow: 'reprot', cron: '0 3 * * *' } } })).toThrow('schedule nightly starts workflow "reprot", which is not registered');
    expect(() => createEngine({ db, workflows, schedules: { nightly: { workflow: 'report', cron: '0 3 * * *', missed: 'some' as never } } })).toThrow("missed must be 'skip' or 'catch-up'");
    expect(() => createEngine({ db, workflows, schedules: { 'no spaces': { workflow: 'report', cron: '0 3 * * *' } } })).toThrow('schedule name "no spaces"');
  });
});

describe('a scheduled workflow runs once per tick', () => {
  it('three workers run the scheduler of an every-second schedule: each tick is one workflow, its id the tick, none missing, none twice', async () => {
    const runs: string[] = [];
    const engine = createEngine({
      db,
      workflows: { tick: async (ctx: Context, input: { scheduledAt: string }) => ctx.step('note', async () => void runs.push(input.scheduledAt)) },
      schedules: { everySecond: { workflow: 'tick', cron: '* * * * * *' } },
    });
    const workers = ['A', 'B', 'C'].map((name) => engine.createWorker({ name, leaseMs: 5000 }));
    await Promise.all(workers.map((w) => w.start()));
    await sleep(3500);
    await Promise.all(workers.map((w) => w.stop()));
    const rows = await db.query<{ id: string; status: string }>(`SELECT id, status FROM workflows WHERE id LIKE 'everySecond@%' ORDER BY id`);
    const ticks = rows.rows.map((r) => Date.parse(r.id.slice('everySecond@'.length)));
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    // One a second, consecutive: none missing (and, ids being unique, none twice).
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!).toBe(1000);
    expect(ticks.every((t) => t % 1000 === 0)).toBe(true);
    await until('all ticks completed', async () => (await engine.status(rows.rows.map((r) => r.id))) && runs.length >= rows.rows.length, { timeoutMs: 5000 });
    expect([...runs].sort()).toEqual(rows.rows.map((r) => r.id.slice('everySecond@'.length)));
  });

  it('ticks missed while no scheduler ran: skipped by default (and said so), each started once with catch-up', async () => {
    const workflows = { tick: async () => 'ok' };
    // As if every scheduler had been down for the last 5 seconds.
    await db.query(`INSERT INTO schedules (name, last_tick) VALUES ('skipper', now() - interval '5.5 seconds'), ('catcher', now() - interval '5.5 seconds')`);
    const said: LogEntry[] = [];
    const engine = createEngine({
      db,
      workflows,
      log: (entry) => said.push(entry),
      schedules: {
        skipper: { workflow: 'tick', cron: '* * * * * *', graceMs: 500 },
        catcher: { workflow: 'tick', cron: '* * * * * *', missed: 'catch-up' },
      },
    });
    const worker = engine.createWorker({ leaseMs: 5000 });
    await worker.start();
    await sleep(300);
    await worker.stop();
    const count = async (name: string) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id LIKE $1 || '@%'`, [name])).rows[0]!.n;
    expect(await count('catcher')).toBeGreaterThanOrEqual(5);
    expect(await count('skipper')).toBeLessThanOrEqual(1);
    expect(said.find((e) => e.event === 'ticks-skipped')?.message).toMatch(/^schedule skipper: skipped [45] tick\(s\) missed while no scheduler ran/);
  });
});
