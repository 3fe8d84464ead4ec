/**
 * Runs in each test process before the specs.
 *
 * 1. Move into the submission's private workspace, so code under test that
 *    reads files by relative path finds its own copy — not the course folder,
 *    where other students' work may be (the fixture class is there, for one).
 *
 * 2. Write each test's start and end to GRADE_RESULTS_FILE *from the test
 *    process itself*, synchronously. vitest sends results to its main process
 *    in batches every 100 ms, from a timer; a test stuck in a synchronous loop
 *    never lets that timer fire, and a test that kills its process takes the
 *    unsent batch with it. These lines are written before the test body runs
 *    and right after it, so the runner knows which test was running when it
 *    had to stop the process, and what the ones before it did.
 */
import fs from 'node:fs';
import { afterEach, beforeEach } from 'vitest';

const workdir = process.env.GRADE_WORKDIR;
if (workdir) process.chdir(workdir);

const resultsFile = process.env.GRADE_RESULTS_FILE;
// The code under test has no business with that file: do not hand it the path.
delete process.env.GRADE_RESULTS_FILE;

interface TaskLike {
  name: string;
  timeout?: number;
  suite?: TaskLike & { filepath?: string };
  result?: { state?: string; errors?: Array<{ message?: string; name?: string; diff?: string }> };
}

/** "describe > it", as vitest's reporters name a test (the file itself is not part of it). */
function fullName(task: TaskLike): string {
  const names = [task.name];
  for (let suite = task.suite; suite && suite.filepath === undefined; suite = suite.suite) names.unshift(suite.name);
  return names.join(' > ');
}

if (resultsFile) {
  const write = (event: object) => fs.appendFileSync(resultsFile, `${JSON.stringify(event)}\n`);
  beforeEach(({ task }) => {
    write({ event: 'worker-start', name: fullName(task), at: Date.now(), timeoutMs: (task as TaskLike).timeout });
  });
  afterEach(({ task }) => {
    const result = (task as TaskLike).result;
    write({
      event: 'worker-result',
      name: fullName(task),
      state: result?.state === 'pass' ? 'passed' : result?.state === 'fail' ? 'failed' : 'pending',
      errors: (result?.errors ?? []).map((e) => ({ message: `${e.message ?? e}`.slice(0, 4000), diff: e.diff?.slice(0, 4000) })),
    });
  });
}
