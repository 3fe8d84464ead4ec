/**
 * `npm run hint N` — the next hint for exercise N, one at a time.
 *
 * How many were shown is remembered in .course-data/progress.json
 * (git-ignored), so each call gives the next one.
 *
 *   npm run hint 2               the next hint
 *   npm run hint 2 -- --again    the hints shown so far, again
 *   npm run hint 2 -- --reset    forget them: the next call starts at hint 1
 */
import { parseArgs } from 'node:util';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { findExercise, readHints } from '../grading/exercises.ts';
import { identity } from '../grading/learner.ts';
import { readState, updateState } from '../grading/state.ts';

runMain(async () => {
  const { values, positionals } = parseArgs({
    options: { again: { type: 'boolean', default: false }, reset: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  const [which] = positionals;
  if (!which) throw new CourseError('Which exercise?', 'usage: npm run hint N [-- --again | --reset]');
  const exercise = findExercise(which);
  const hints = readHints(exercise);
  if (hints.length === 0) throw new CourseError(`${identity(exercise)} has no hints.`, `Read exercises/${exercise.slug}/README.md.`);
  const shown = readState().exercises[exercise.slug]?.hintsShown ?? 0;
  const show = (index: number) => console.log(`${paint.bold(`Hint ${index + 1} of ${hints.length}`)} ${paint.dim(`— ${identity(exercise)}`)}\n\n${hints[index]}\n`);

  if (values.reset) {
    updateState(exercise.slug, (entry) => {
      entry.hintsShown = 0;
    });
    console.log(`Hints of ${identity(exercise)} forgotten: the next one is hint 1.`);
  } else if (values.again) {
    if (shown === 0) console.log(`No hints of ${identity(exercise)} shown yet: npm run hint ${exercise.number}`);
    for (let i = 0; i < Math.min(shown, hints.length); i++) show(i);
  } else if (shown >= hints.length) {
    console.log(`You have seen all ${hints.length} hints of ${identity(exercise)}. npm run hint ${exercise.number} -- --again shows them again; the reference answer is in solutions/${exercise.slug}/.`);
  } else {
    show(shown);
    updateState(exercise.slug, (entry) => {
      entry.hintsShown = shown + 1;
    });
    console.log(paint.dim(shown + 1 < hints.length ? `Another one: npm run hint ${exercise.number}` : 'That was the last hint.'));
  }
});
