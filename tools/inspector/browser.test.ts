/**
 * The inspector in a real browser: headless Chromium (Debian's, driven by
 * playwright-core) loads the page while real worker processes run chapter
 * 9's engine. It sees a workflow appear and its steps fill in — pushed, never
 * polled, never reloaded — a worker killed with SIGKILL and another take over
 * with fencing token 2, a Retry button that is there only with --allow-actions
 * and works, a workflow parked for an event and woken by a send (and one
 * whose wait times out), a batch's children linked from their parent and
 * back, a Cancel button (only with --allow-actions) that cancels a booking
 * during its hold and shows its compensation, and workflows whose id, input,
 * events and cancel reason hold <script> shown as text with no dialog fired.
 *
 * Without /usr/bin/chromium (apt-get install -y chromium) these tests are
 * skipped, and say why in their names.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, migrate } from '../../chapters/09-waiting-for-the-world/index.ts';
import type { ChildRun } from '../../shared/crash/runner.ts';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { chromiumMissing, launchChromium } from './browser.ts';
import { fixtureWorkflows } from './fixtures/workflows.ts';
import { startInspector, type Inspector } from './server.ts';
import { startFixtureWorker } from './testing.ts';

const missing = chromiumMissing();
const named = (title: string) => (missing ? `${title} — SKIPPED: ${missing}` : title);
if (missing) console.warn(`tools/inspector/browser.test.ts: the browser tests are skipped: ${missing}`);

const XSS_ID = 'xss-<script>alert(1)</script>';
const XSS_NOTE = '<script>alert(1)</script><img src=x onerror=alert(2)>';

let database: TestPool;
let inspector: Inspector;
let browser: Browser;
let engine: ReturnType<typeof createEngine<typeof fixtureWorkflows>>;
const workers: ChildRun[] = [];

beforeAll(async () => {
  if (missing) return;
  database = await freshPool('inspector_browser');
  await migrate(database.db);
  engine = createEngine({ db: database.db, workflows: fixtureWorkflows });
  [inspector, browser] = await Promise.all([startInspector({ databaseUrl: database.url }), launchChromium()]);
});

afterAll(async () => {
  for (const worker of workers) worker.signal('SIGTERM');
  await Promise.all(workers.map((w) => w.done));
  await browser?.close();
  await inspector?.close();
  await database?.drop();
});

/** A page that records what it requests from the API and every dialog opened (alert, confirm, prompt). */
async function openPage(): Promise<{ page: Page; api: string[]; dialogs: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  const api: string[] = [];
  const dialogs: string[] = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/api/')) api.push(url.pathname);
  });
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  return { page, api, dialogs };
}

/** The little of the page's DOM these tests reach into (the project compiles without the DOM's types). */
interface PageGlobals {
  marked?: boolean;
  document: { querySelectorAll(selector: string): ArrayLike<{ dataset: Record<string, string | undefined>; getAttribute(name: string): string | null }> };
}

/** Marks the document: still marked later means the page was updated in place, not reloaded. */
const mark = (page: Page) => page.evaluate(() => void ((globalThis as unknown as PageGlobals).marked = true));
const stillMarked = (page: Page) => page.evaluate(() => (globalThis as unknown as PageGlobals).marked === true);

describe('the inspector in headless Chromium', () => {
  it.skipIf(missing)(
    named('a workflow appears, its steps fill in live as a worker runs it, and after a SIGKILL another worker takes over with token 2'),
    async () => {
      const { page, api } = await openPage();
      await page.goto(inspector.url);
      await page.locator('#db-status[data-state="connected"]').waitFor();
      await page.getByText('no workflows match').waitFor();
      await mark(page);

      const workerA = await startFixtureWorker(database.url, 'worker-A');
      workers.push(workerA);
      await engine.start('report', { stepMs: 1000 }, { id: 'live-1' });

      // The list: the row arrives by itself, then shows who holds it.
      const row = page.locator('tr[data-workflow-id="live-1"]');
      await row.waitFor({ timeout: 10_000 });
      await expect.poll(() => row.locator('td.where').textContent(), { timeout: 10_000 }).toMatch(/held by worker-A · token 1/);
      expect(await stillMarked(page)).toBe(true);

      // Its page: the steps fill in one by one.
      await row.getByRole('link', { name: 'live-1' }).click();
      await page.waitForURL(/\?id=live-1$/);
      await mark(page);
      const entry = (name: string, token: number) => page.locator(`#timeline tr[data-kind="step"][data-name="${name}"][data-token="${token}"]`);
      await entry('fetch_rows', 1).waitFor({ timeout: 10_000 });
      expect(await page.locator('#timeline tr[data-name="email_link"]').count()).toBe(0); // not yet: live, not after the fact
      await expect.poll(() => page.locator('#lease').textContent()).toMatch(/held by worker-A · fencing token 1/);
      await entry('render_pdf', 1).waitFor({ timeout: 10_000 });

      // Kill worker A in the middle of its next step; worker B takes the workflow over once A's lease runs out.
      workerA.signal('SIGKILL');
      expect((await workerA.done).signal).toBe('SIGKILL');
      workers.push(await startFixtureWorker(database.url, 'worker-B'));
      const takeover = page.locator('#timeline tr[data-kind="claim"][data-claim="takeover"][data-token="2"]');
      await takeover.waitFor({ timeout: 15_000 });
      await entry('email_link', 2).waitFor({ timeout: 15_000 });
      await page.locator('#timeline tr[data-kind="now"][data-state="completed"]').waitFor({ timeout: 10_000 });
      expect(await takeover.textContent()).toMatch(/taken over by worker-B: token 2.*the run of token 1 stopped without a word/);
      expect(await entry('fetch_rows', 1).count()).toBe(1); // recorded by token 1, replayed, not run again
      expect(await page.locator('#timeline tr[data-kind="step"]').count()).toBe(4);
      expect(await stillMarked(page)).toBe(true);

      // No polling: the only API requests the page made were its two event streams (the list's, then the workflow's).
      expect(api).toEqual(['/api/events', '/api/events']);
      await page.close();
    },
    60_000,
  );

  it.skipIf(missing)(
    named('a failed workflow has a Retry button only with --allow-actions; clicking it makes the workflow runnable again'),
    async () => {
      await engine.start('doomed', { card: '4000 0000 0000 0002' }, { id: 'doomed-1' });
      await engine.result('doomed-1').catch(() => {}); // worker-B fails it: its error is not one to retry
      const { page } = await openPage();
      await page.goto(`${inspector.url}?id=doomed-1`);
      await page.locator('#timeline tr[data-kind="now"][data-state="failed"]').waitFor();
      expect(await page.locator('button').count()).toBe(0); // read-only: no buttons at all

      const acting = await startInspector({ databaseUrl: database.url, allowActions: true });
      try {
        await page.goto(`${acting.url}?id=doomed-1`);
        await page.locator('#retry').click();
        await expect.poll(() => page.locator('#action-message').textContent()).toMatch(/doomed-1 is runnable again/);
        // worker-B claims it again (token 2) and it fails again, the same way: its card is still declined.
        await page.locator('#timeline tr[data-kind="claim"][data-token="2"]').waitFor({ timeout: 10_000 });
        await page.locator('#timeline tr[data-kind="now"][data-state="failed"]').waitFor({ timeout: 10_000 });
      } finally {
        await page.close();
        await acting.close();
      }
    },
    30_000,
  );

  it.skipIf(missing)(
    named('an event wait: the page shows the park and its wait, a send wakes it, the timeline says it got its event; another wait times out'),
    async () => {
      const { page } = await openPage();
      await engine.start('approval', { stepMs: 50 }, { id: 'approval-1' });
      await page.goto(`${inspector.url}?id=approval-1`);
      const parked = page.locator('#timeline tr[data-kind="wait"][data-reason="event"][data-ended-by="now"]');
      await parked.waitFor({ timeout: 10_000 });
      expect(await parked.textContent()).toMatch(/parked for event "approved".*no timeout/);
      await page.locator('#waits tr[data-seq="1"][data-name="approved"][data-arrived="no"]').waitFor();
      expect(await page.locator('#lease').textContent()).toMatch(/parked waiting for event "approved" \(no timeout\); held by nobody/);
      await page.locator('#timeline tr[data-kind="now"][data-state="waiting"]').waitFor();
      await mark(page);

      await engine.send('approval-1', 'approved', { approvedBy: 'ada' }, { key: 'evt-1' });
      const got = page.locator('#timeline tr[data-kind="event"][data-outcome="event"][data-seq="1"]');
      await got.waitFor({ timeout: 10_000 });
      expect(await got.textContent()).toMatch(/wait for "approved".*got its event \(key "evt-1".*→ \{"approvedBy":"ada"\}/);
      await page.locator('#timeline tr[data-kind="now"][data-state="completed"]').waitFor({ timeout: 10_000 });
      expect(await page.locator('#timeline tr[data-kind="wait"][data-reason="event"]').textContent()).toMatch(/woken by the send of its event/);
      await page.locator('#events tr[data-key="evt-1"][data-taken="1"]').waitFor();
      expect(await page.locator('#waits').count()).toBe(0); // the wait is over: its row is gone
      expect(await page.locator('#timeline tr[data-name="publish"]').count()).toBe(1);
      expect(await stillMarked(page)).toBe(true);

      await engine.start('approval', { stepMs: 50, timeoutMs: 300 }, { id: 'approval-2' });
      await page.goto(`${inspector.url}?id=approval-2`);
      await page.locator('#timeline tr[data-kind="event"][data-outcome="timeout"]').waitFor({ timeout: 10_000 });
      await page.locator('#timeline tr[data-kind="wait"][data-reason="event"][data-ended-by="timeout"]').waitFor();
      await page.locator('#timeline tr[data-kind="step"][data-name="expire"]').waitFor({ timeout: 10_000 });
      await page.close();
    },
    30_000,
  );

  it.skipIf(missing)(
    named('a batch: the list links each child to its parent; the parent lists its children, linked; a child links back'),
    async () => {
      await engine.start('batch', { count: 3, stepMs: 30 }, { id: 'batch-1' });
      await engine.result('batch-1', { signal: AbortSignal.timeout(20_000) });
      const { page } = await openPage();
      await page.goto(inspector.url);
      const parentRow = page.locator('tr[data-workflow-id="batch-1"]');
      await parentRow.waitFor();
      expect(await parentRow.locator('td.children').textContent()).toBe('3');
      const childRow = page.locator('tr[data-workflow-id="batch-1/2"]');
      expect(await childRow.locator('a.parent-link').textContent()).toBe('batch-1');

      await parentRow.getByRole('link', { name: 'batch-1', exact: true }).click();
      await page.waitForURL(/\?id=batch-1$/);
      await page.locator('#timeline tr[data-kind="now"][data-state="completed"]').waitFor();
      // The three starts are one row, the park one, the three ends taken together one more.
      expect(await page.locator('#timeline tr[data-kind="child"][data-count="3"]').count()).toBe(1);
      expect(await page.locator('#timeline tr[data-kind="wait"][data-reason="event"]').count()).toBe(1);
      expect(await page.locator('#timeline tr[data-kind="event"][data-count="3"][data-outcome="event"]').count()).toBe(1);
      expect(await page.locator('#children tr[data-child-id][data-status="completed"]').count()).toBe(3);
      expect(await page.locator('#events tr[data-key="end"]').count()).toBe(3);

      await page.locator('#children').getByRole('link', { name: 'batch-1/1', exact: true }).click();
      await page.waitForURL(/\?id=batch-1%2F1$/);
      await page.locator('#parent').waitFor();
      expect(await page.locator('#workflow-id').textContent()).toBe('batch-1/1');
      expect(await page.locator('#timeline tr[data-kind="now"]').textContent()).toMatch(/sent to its parent batch-1 as an event/);
      await page.locator('#parent').getByRole('link', { name: 'batch-1', exact: true }).click();
      await page.waitForURL(/\?id=batch-1$/);
      await page.close();
    },
    30_000,
  );

  it.skipIf(missing)(
    named('Cancel is there only with --allow-actions: asked twice, with a reason kept across pushes, it cancels a booking in its hold, which puts the seat back'),
    async () => {
      await engine.start('booking', { stepMs: 30 }, { id: 'booking-1' });
      const { page, dialogs } = await openPage();
      await page.goto(`${inspector.url}?id=booking-1`);
      await page.locator('#timeline tr[data-kind="wait"][data-reason="sleep"].current').waitFor({ timeout: 10_000 });
      expect(await page.locator('button').count()).toBe(0); // read-only

      const acting = await startInspector({ databaseUrl: database.url, allowActions: true });
      try {
        await page.goto(`${acting.url}?id=booking-1`);
        await page.locator('#cancel').click();
        await page.locator('#cancel-confirmation').waitFor();
        const reason = `customer changed their mind ${XSS_NOTE}`;
        await page.locator('#cancel-confirmation').evaluate((element) => (element as unknown as { setAttribute(name: string, value: string): void }).setAttribute('data-before', 'push'));
        await page.locator('#cancel-reason').fill(reason);
        // The page is pushed every second (its sleep's clock) and rebuilt: what was typed, and the focus, stay.
        await expect.poll(() => page.locator('#cancel-confirmation[data-before]').count(), { timeout: 5000 }).toBe(0);
        expect(await page.locator('#cancel-reason').inputValue()).toBe(reason);
        expect(await page.locator('#cancel-reason').evaluate((element) => (element as unknown as { ownerDocument: { activeElement: unknown } }).ownerDocument.activeElement === element)).toBe(true);
        await page.locator('#cancel-confirm').click();
        await expect.poll(() => page.locator('#action-message').textContent()).toMatch(/booking-1: cancellation requested/);

        // worker-B is woken, replays, and the sleep throws: the release runs in ctx.nonCancellable, then it ends cancelled.
        await page.locator('#timeline tr[data-kind="now"][data-state="cancelled"]').waitFor({ timeout: 10_000 });
        expect(await page.locator('#timeline tr[data-kind="cancel"]').textContent()).toContain(reason);
        expect(await page.locator('#timeline tr[data-kind="wait"][data-reason="sleep"]').textContent()).toMatch(/cut short by the cancel request/);
        await page.locator('#timeline tr[data-kind="step"][data-name="release"]').waitFor();
        expect(await page.locator('#timeline tr[data-name="confirm"]').count()).toBe(0);
        expect(await page.locator('#cancel-request').textContent()).toContain(reason);
        expect(await page.locator('#cancel').count()).toBe(0); // nothing left to cancel
        expect(dialogs).toEqual([]);
        expect(await page.locator('img').count()).toBe(0);
      } finally {
        await page.close();
        await acting.close();
      }
    },
    30_000,
  );

  it.skipIf(missing)(
    named('a workflow whose id and input hold <script> is shown as text: no script runs, no dialog opens'),
    async () => {
      const { page, dialogs } = await openPage();
      await engine.start('report', { note: XSS_NOTE, stepMs: 10 }, { id: XSS_ID });
      await page.goto(inspector.url);
      await page.waitForFunction((id) => Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll('tr[data-workflow-id]')).some((tr) => tr.dataset.workflowId === id), XSS_ID);
      const link = page.getByRole('link', { name: XSS_ID, exact: true });
      expect(await link.textContent()).toBe(XSS_ID);
      await link.click();
      await page.locator('#workflow-id').waitFor();
      expect(await page.locator('#workflow-id').textContent()).toBe(XSS_ID);
      expect(JSON.parse((await page.locator('#input').textContent())!)).toEqual({ note: XSS_NOTE, stepMs: 10 });
      await page.waitForTimeout(500); // time for anything injected to have run
      expect(dialogs).toEqual([]);
      expect(await page.evaluate(() => Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll('script')).map((s) => s.getAttribute('src')))).toEqual(['/app.js']);
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.title()).toBe(`${XSS_ID} — durable inspector`);

      // Events whose name, key and payload hold markup, on a workflow whose id does: text, in the events and the timeline.
      const hostile = 'approval-<img src=x onerror=alert(3)>';
      await engine.start('approval', { stepMs: 10 }, { id: hostile });
      await engine.send(hostile, '<script>alert(4)</script>', { note: XSS_NOTE }, { key: XSS_NOTE });
      await engine.send(hostile, 'approved', { approvedBy: XSS_NOTE }, { key: '<b>k</b>' });
      await page.goto(`${inspector.url}?id=${encodeURIComponent(hostile)}`);
      await page.locator('#timeline tr[data-kind="now"][data-state="completed"]').waitFor({ timeout: 10_000 });
      expect(await page.locator('#workflow-id').textContent()).toBe(hostile);
      const untaken = page.locator('#events tr[data-taken="no"]');
      expect(await untaken.locator('td.key').textContent()).toBe(XSS_NOTE);
      expect(await untaken.textContent()).toContain('"<script>alert(4)</script>"');
      expect(await page.locator('#timeline tr[data-kind="event"]').textContent()).toContain(XSS_NOTE);
      await page.waitForTimeout(500);
      expect(dialogs).toEqual([]);
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.locator('b').count()).toBe(0);
      await page.close();
    },
    30_000,
  );
});
