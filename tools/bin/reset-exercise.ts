/**
 * `npm run reset-exercise N` — put exercise N back as it was shipped.
 *
 * The pristine starter is derived — the chapter's files plus the starter
 * patch in tools/grading/starters/ (tools/grading/derive.ts) — not taken from
 * git: that works without a .git folder, and whatever the learner has
 * committed. The learner's current files are backed up to
 * .course-data/backups/ first.
 *
 *   npm run reset-exercise 2
 *   npm run reset-exercise -- --record 2    (course authors) make exercises/02-…'s
 *                                           current code the new pristine starter
 *                                           (its patch over the chapter)
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { findExercise } from '../grading/exercises.ts';
import { courseRoot } from '../grading/impl.ts';
import { recordStarter, restoreStarter } from '../grading/starters.ts';

runMain(async () => {
  const { values, positionals } = parseArgs({ options: { record: { type: 'boolean', default: false } }, allowPositionals: true });
  const [which] = positionals;
  if (!which) throw new CourseError('Which exercise?', 'usage: npm run reset-exercise N   (course authors: npm run reset-exercise -- --record N)');
  const exercise = findExercise(which);
  if (values.record) {
    const { files, patch } = recordStarter(exercise);
    console.log(`Recorded ${files.join(', ')} of exercises/${exercise.slug} as the pristine starter: ${path.relative(courseRoot, patch)}, a patch over chapters/${exercise.chapter}/.`);
    return;
  }
  const { restored, backup } = restoreStarter(exercise);
  if (!backup) {
    console.log(`exercises/${exercise.slug} is already the starter: nothing to reset.`);
    return;
  }
  console.log(paint.green(`exercises/${exercise.slug} is the starter again${restored.length ? ` (${restored.join(', ')} restored)` : ''}.`));
  console.log(paint.dim(`Your version is in ${path.relative(courseRoot, backup)}/.`));
});
