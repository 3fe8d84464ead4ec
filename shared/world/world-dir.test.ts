/**
 * The world's temp folder (`course-world-<pid>-…`): removed when the process
 * that made it ends, and — when that process was killed, so no exit hook ran —
 * by the next start.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChild } from '../crash/runner.ts';
import { freshDatabase, type TestDatabase } from '../testing/database.ts';
import { removeAbandonedWorldDirs, startWorld, type World } from './world.ts';

let db: TestDatabase;
let world: World;

beforeAll(async () => {
  db = await freshDatabase('world dir');
  world = await startWorld({ databaseUrl: db.url });
});

afterAll(async () => {
  await world?.stop({ removeDir: true });
  await db?.drop();
});

describe("the world's temp folder", () => {
  const fixture = 'shared/world/fixtures/world-then-exit.ts';

  it('is removed when the process that made it ends (a demo that stopped its world)', async () => {
    const child = startChild({ script: fixture, args: [db.url] });
    const line = await child.waitForLine(/^WORLD_DIR=/, 30_000);
    const dir = line.slice('WORLD_DIR='.length);
    expect(path.basename(dir)).toMatch(new RegExp(`^course-world-${child.pid}-`));
    await child.done;
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("one left by a killed process goes at the next start; a live process's, and a recent one from before pids, stay", async () => {
    const child = startChild({ script: fixture, args: [db.url, 'hang'] });
    const line = await child.waitForLine(/^WORLD_DIR=/, 30_000);
    const killed = line.slice('WORLD_DIR='.length);
    child.signal('SIGKILL'); // no exit hook runs
    await child.done;
    expect(fs.existsSync(killed)).toBe(true);

    const tmp = os.tmpdir();
    const live = fs.mkdtempSync(path.join(tmp, 'course-world-1-')); // pid 1 is always alive
    const recentOld = fs.mkdtempSync(path.join(tmp, 'course-world-'));
    const staleOld = fs.mkdtempSync(path.join(tmp, 'course-world-'));
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    fs.utimesSync(staleOld, twoHoursAgo, twoHoursAgo);
    try {
      const next = await startWorld({ databaseUrl: db.url });
      await next.stop({ removeDir: true });
      expect(fs.existsSync(killed)).toBe(false);
      expect(fs.existsSync(staleOld)).toBe(false);
      expect(fs.existsSync(live)).toBe(true);
      expect(fs.existsSync(recentOld)).toBe(true);
      // This process's own worlds are never taken for abandoned ones.
      expect(removeAbandonedWorldDirs()).not.toContain(world.dir);
      expect(fs.existsSync(world.dir)).toBe(true);
    } finally {
      for (const dir of [live, recentOld, staleOld]) fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
