/**
 * `npm run chapter N` — run chapter N's narrated demo.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';
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
  await import(pathToFileURL(demo).href);
});
