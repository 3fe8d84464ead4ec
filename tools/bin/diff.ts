/**
 * `npm run diff 2 3` — what chapter 3 adds to chapter 2, file by file.
 * Chapters are snapshots, so this diff *is* the lesson's code.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { CourseError, runMain } from '../../shared/errors.ts';
import { projectRoot } from '../../shared/db/server.ts';
import { findChapter } from '../../shared/scenarios.ts';

runMain(async () => {
  const [from, to, ...rest] = process.argv.slice(2);
  if (from === undefined || to === undefined) throw new CourseError('which two chapters?', 'npm run diff 2 3   (add -- --stat for a summary)');
  const a = findChapter(from);
  const b = findChapter(to);
  const args = ['diff', '--no-index', '--find-renames', ...rest, path.relative(projectRoot, a.dir), path.relative(projectRoot, b.dir)];
  const result = spawnSync('git', args, { cwd: projectRoot, stdio: 'inherit' });
  if (result.error) {
    throw new CourseError(`could not run git: ${result.error.message}`, `Compare the folders with any diff tool: diff -ru ${a.dir} ${b.dir}`);
  }
  // git diff exits 1 when there are differences: that is the normal case here.
});
