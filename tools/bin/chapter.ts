/**
 * `npm run chapter N` — run chapter N's narrated demo.
 *
 *   npm run chapter 9 -- --inspect   with the web inspector beside it, on the demo's database (its URL printed first)
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';
import { besideTheDemo } from '../../shared/demo.ts';
import { CourseError, runMain } from '../../shared/errors.ts';
import { findChapter, listChapters } from '../../shared/scenarios.ts';

runMain(async () => {
  const which = process.argv[2];
  if (!which) {
    const list = listChapters().map((c) => `  ${c.number}  ${c.slug}`).join('\n');
    throw new CourseError(`which chapter?\n${list}`, 'npm run chapter 3');
  }
  let chapter;
  try {
    chapter = findChapter(which);
  } catch (thrown) {
    throw new CourseError((thrown as Error).message, 'npm run chapter 3');
  }
  const demo = path.join(chapter.dir, 'demo.ts');
  if (!fs.existsSync(demo)) throw new CourseError(`chapter ${chapter.number} has no demo yet`);
  if (process.argv.slice(3).includes('--inspect')) {
    if (chapter.number !== 9) {
      throw new CourseError(`--inspect: the inspector reads the last chapter's tables (failed attempts, sleeps, events, waits, children); chapter ${chapter.number}'s log has not got them.`, 'npm run chapter 9 -- --inspect');
    }
    const { inspectorBesideTheDemo } = await import('../inspector/companion.ts');
    besideTheDemo(inspectorBesideTheDemo());
  }
  await import(pathToFileURL(demo).href);
});
