/**
 * The inspector in a real browser: headless Chromium (Debian's, driven by
 * playwright-core) loads the page while real worker processes run chapter
 * 8's engine. It sees a workflow appear and its steps fill in — pushed, never
 * polled, never reloaded — a worker killed with SIGKILL and another take over
 * with fencing token 2, a Retry button that is there only with --allow-actions
 * and works, and a workflow whose id and input hold <script> shown as text
 * with no dialog fired.
 *
 * Without /usr/bin/chromium (apt-get install -y chromium) these tests are
 * skipped, and say why in their names.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, migrate } from '../../chapters/08-failures-and-time/index.ts';
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
      await page.close();
    },
    30_000,
  );
});
