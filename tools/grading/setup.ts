/**
 * Runs in each test process before the specs — and before any code under test
 * is imported (the spec imports it).
 *
 * 1. Open the progress channel (GRADE_PROGRESS_FILE), then, graded as root,
 *    become the submission's own user (GRADE_UID, GRADE_GID; isolation.ts).
 *    The channel stays open for writing; nothing else of the grader's does:
 *    not the results file the reporter writes in vitest's main process, not
 *    the grader's processes, not other workspaces.
 *
 * 2. Move into the submission's private workspace, so code under test that
 *    reads files by relative path finds its own copy — not the course folder,
 *    where other students' work may be (the fixture class is there, for one).
 *
 * 3. Write each test's start and end to the progress channel *from the test
 *    process itself*, synchronously. vitest sends results to its main process
 *    in batches every 100 ms, from a timer; a test stuck in a synchronous loop
 *    never lets that timer fire, and a test that kills its process takes the
 *    unsent batch with it. These lines are written before the test body runs
 *    and right after it, so the runner knows which test was running when it
 *    had to stop the process. They are not verdicts: the code under test can
 *    write to this channel too, so the runner scores only what the reporter
 *    says (run-specs.ts).
 */
import fs from 'node:fs';
import { afterEach, beforeEach } from 'vitest';

const progressFile = process.env.GRADE_PROGRESS_FILE;
const progress = progressFile ? fs.openSync(progressFile, 'a') : undefined;
// The code under test has no business with the grader's files: do not hand it the paths.
delete process.env.GRADE_PROGRESS_FILE;
delete process.env.GRADE_RESULTS_FILE;

const uid = Number(process.env.GRADE_UID);
const gid = Number(process.env.GRADE_GID);
delete process.env.GRADE_UID;
delete process.env.GRADE_GID;
if (Number.isInteger(uid) && uid > 0 && process.getuid?.() === 0) {
  // Groups first, then the group, then the user: once the user changes, root's powers are gone.
  process.setgroups!([gid]);
  process.setgid!(gid);
  process.setuid!(uid);
  if (process.getuid() !== uid || process.geteuid?.() !== uid) throw new Error(`could not become user ${uid}`);
}

const workdir = process.env.GRADE_WORKDIR;
if (workdir) process.chdir(workdir);

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

if (progress !== undefined) {
  const write = (event: object) => fs.writeSync(progress, `${JSON.stringify(event)}\n`);
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
