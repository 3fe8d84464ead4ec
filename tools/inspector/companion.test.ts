/**
 * `npm run chapter 9 -- --inspect`: the inspector beside the demo. The demo
 * itself runs in tools/bin/commands.test.ts (its database, chapter_9_demo, is
 * one name: two runs at once would drop it under each other), so here the
 * companion is started and stopped on its own database, as the demo does,
 * and the command line's refusal for other chapters is checked.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findChapter } from '../../shared/scenarios.ts';
import { freshDatabase, type TestDatabase } from '../../shared/testing/database.ts';
import { runScript } from '../../shared/testing/processes.ts';
import { inspectorBesideTheDemo } from './companion.ts';
import { captureConsole, request } from './testing.ts';

let database: TestDatabase;
beforeAll(async () => {
  database = await freshDatabase('inspector_companion');
});
afterAll(async () => {
  await database?.drop();
});

describe('npm run chapter 9 -- --inspect', () => {
  it('starts the inspector on the demo database, prints its URL first, and stops it with the demo', async () => {
    const printed = captureConsole();
    const beside = await inspectorBesideTheDemo({ interactive: false }).start({ chapter: findChapter(9), databaseUrl: database.url, databaseName: 'inspector_companion' }).finally(printed.restore);
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(printed.text())?.[1];
    expect(url, printed.text()).toBeDefined();
    expect(printed.text()).toContain('on inspector_companion');
    expect((await request(url!, 'GET', '/')).status).toBe(200);
    await beside.afterStory?.(); // not at a terminal: returns at once
    await beside.stop();
    await expect(request(url!, 'GET', '/')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('is refused for a chapter whose log the inspector cannot read', () => {
    const { status, output } = runScript('tools/bin/chapter.ts', ['7', '--inspect'], { DATABASE_URL: inject('adminDatabaseUrl') });
    expect(status).toBe(1);
    expect(output).toMatch(/--inspect: the inspector reads the last chapter's tables/);
    expect(output).toContain('npm run chapter 9 -- --inspect');
  });
});
