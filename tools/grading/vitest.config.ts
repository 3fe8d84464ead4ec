/**
 * The vitest config that runs the exercise specs — for `npm run exercise`,
 * `npm run grade` and the CI check alike. (The course's own suite, `npm test`,
 * uses the root vitest.config.ts and never runs these specs directly.)
 *
 * The one trick: a spec imports the reference answer by a relative path
 * (`../../../solutions/NN-name/engine.ts`, so the type checker knows the API),
 * and the alias below sends every import of `…/solutions/` to IMPL_ROOT
 * instead — the learner's exercises, a submission's copy, or the solutions
 * themselves. Which specs run and how long a test may take come from the
 * environment too (see impl.ts); the runner sets it.
 */
import { defineConfig } from 'vitest/config';
import { courseRoot, implRoot, testTimeoutMs } from './impl.ts';

const specs = (process.env.GRADE_SPECS ?? 'tools/grading/specs/*.spec.ts').split(',').filter(Boolean);

export default defineConfig({
  root: courseRoot,
  resolve: {
    alias: [{ find: /^(?:\.\.\/)+solutions\//, replacement: `${implRoot()}/` }],
  },
  test: {
    include: specs,
    testTimeout: testTimeoutMs(),
    hookTimeout: testTimeoutMs(),
    // The runner gives each exercise a process of its own; inside it, one file at a time.
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    setupFiles: ['tools/grading/setup.ts'],
    // Test locations, so a report can quote a test's code.
    includeTaskLocation: true,
    // Not the learner's or the course's watch mode: the runner decides when to run again.
    watch: false,
  },
});
