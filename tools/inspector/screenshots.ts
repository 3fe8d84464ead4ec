/**
 * `npm run inspector -- --screenshots DIR`: the docs' pictures of the
 * inspector, made by a command, never by hand — list.png (the workflows),
 * timeline.png (one workflow's timeline after a takeover), batch.png (a
 * parent parked for its children's ends, two of four in) and cancel.png (a
 * booking cancelled during its hold, and its compensation).
 *
 * A scenario of its own, on a fresh database (inspector_screenshots, dropped
 * at the end): fixture workflows (fixtures/workflows.ts) run by real worker
 * processes on chapter 9's engine. report-2043 fails an attempt (a back-off),
 * sleeps, and its worker is killed with SIGKILL in the middle of its upload;
 * a second worker takes it over. Beside it: one that completes, one that
 * fails for good, one asleep for an hour, one parked for an approval that has
 * not come, a booking cancelled in its hold (it puts its seat back), a batch
 * of four child workflows ending one after another, one held right now, and
 * one whose id and input hold markup (shown as text).
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createEngine, migrate } from '../../chapters/09-waiting-for-the-world/index.ts';
import { getWorkflow, loadLog, workflowStatuses } from '../../chapters/09-waiting-for-the-world/queries.ts';
import type { ChildRun } from '../../shared/crash/runner.ts';
import { dropDatabase, recreateDatabase } from '../../shared/db/databases.ts';
import { startPostgres } from '../../shared/db/server.ts';
import { CourseError } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { chromiumMissing, launchChromium } from './browser.ts';
import { fixtureWorkflows } from './fixtures/workflows.ts';
import { startInspector } from './server.ts';
import { startFixtureWorker } from './testing.ts';

const DATABASE = 'inspector_screenshots';

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`screenshots: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function takeScreenshots(dir: string): Promise<void> {
  const missing = chromiumMissing();
  if (missing) throw new CourseError(`--screenshots needs a browser: ${missing}.`, 'As root: apt-get install -y chromium');
  fs.mkdirSync(dir, { recursive: true });
  const log = (line: string) => console.log(paint.dim(line));
  const server = await startPostgres({ purpose: 'dev', log });
  const url = await recreateDatabase(server.url, DATABASE);
  const db = new pg.Pool({ connectionString: url, max: 4 });
  db.on('error', () => {});
  const workers: ChildRun[] = [];
  const inspector = await startInspector({ databaseUrl: url });
  const browser = await launchChromium();
  try {
    await migrate(db);
    const engine = createEngine({ db, workflows: fixtureWorkflows });
    log('worker-A starts; the workflows are started');
    const workerA = await startFixtureWorker(url, 'worker-A');
    workers.push(workerA);
    await engine.start('report', { stepMs: 120 }, { id: 'report-2042' });
    await engine.start('doomed', { card: '4000 0000 0000 0002' }, { id: 'invoice-2041' });
    await engine.start('report', { stepMs: 400, flaky: 1, sleepMs: 700 }, { id: 'report-2043' });
    await engine.start('report', { stepMs: 100, sleepMs: 3_600_000 }, { id: 'nightly-2044' });
    await engine.start('report', { stepMs: 50, note: '<script>alert("hi")</script>' }, { id: 'import-<b>7</b>' });
    await engine.start('approval', { stepMs: 80 }, { id: 'approval-2046' }); // parks for "approved": nobody sends it
    await engine.start('booking', { stepMs: 80 }, { id: 'booking-2047' }); // holds its seat for an hour

    // report-2043: once it is claimed again after its sleep, kill its worker in the middle of the upload.
    await until('report-2043 running after its sleep', async () => {
      const [row, log] = await Promise.all([getWorkflow(db, 'report-2043'), loadLog(db, 'report-2043')]);
      const slept = log.steps.find((s) => s.kind === 'sleep');
      return Boolean(row && slept && row.leaseOwner === 'worker-A' && row.leaseMsLeft > 0 && row.fencingToken > slept.fencingToken + 1);
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    workerA.signal('SIGKILL');
    await workerA.done;
    log('worker-A killed with SIGKILL in the middle of report-2043’s upload; worker-B starts');
    workers.push(await startFixtureWorker(url, 'worker-B'));
    await engine.result('report-2043', { signal: AbortSignal.timeout(30_000) });

    log('booking-2047 is cancelled during its hold: worker-B puts the seat back');
    await engine.cancel('booking-2047', { reason: 'customer changed their mind' });
    await engine.result('booking-2047', { signal: AbortSignal.timeout(30_000) }).catch(() => {}); // it ends cancelled
    await engine.start('report', { stepMs: 20_000 }, { id: 'report-2045' }); // held by worker-B while the pictures are taken
    await until('report-2045 held', async () => (await getWorkflow(db, 'report-2045'))?.leaseOwner === 'worker-B');

    log('batch-2048 starts four children, whose steps take 0.5, 1, 1.5 and 2 s each');
    await engine.start('batch', { count: 4, stepMs: 500, staggered: true }, { id: 'batch-2048' });
    const children = ['batch-2048/0', 'batch-2048/1', 'batch-2048/2', 'batch-2048/3'];
    await until('two of batch-2048’s children ended', async () => [...(await workflowStatuses(db, children)).values()].filter((s) => s === 'completed').length >= 2);

    const page = await browser.newPage({ viewport: { width: 1360, height: 640 }, deviceScaleFactor: 1 });
    const save = async (name: string) => {
      const file = path.join(dir, name);
      await page.screenshot({ path: file, fullPage: true });
      log(`wrote ${file}`);
    };
    await page.goto(`${inspector.url}?id=${encodeURIComponent('batch-2048')}`);
    await page.locator('#waits tr[data-arrived="yes"]').nth(1).waitFor();
    await page.locator('#db-status[data-state="connected"]').waitFor();
    await save('batch.png');

    await page.goto(inspector.url);
    await page.locator('tr[data-workflow-id="report-2045"] td.where').getByText(/held by worker-B/).waitFor();
    await page.locator('tr[data-workflow-id="batch-2048"][data-state="waiting"]').waitFor();
    await page.locator('#db-status[data-state="connected"]').waitFor();
    await save('list.png');

    await page.setViewportSize({ width: 1360, height: 900 });
    await page.goto(`${inspector.url}?id=report-2043`);
    await page.locator('#timeline tr[data-kind="now"][data-state="completed"]').waitFor();
    await save('timeline.png');

    await page.goto(`${inspector.url}?id=booking-2047`);
    await page.locator('#timeline tr[data-kind="now"][data-state="cancelled"]').waitFor();
    await save('cancel.png');
  } finally {
    for (const worker of workers) worker.signal('SIGKILL');
    await Promise.all(workers.map((w) => w.done));
    await browser.close();
    await inspector.close();
    await db.end();
    await dropDatabase(url, server.url).catch(() => {});
    await server.stop();
  }
}
