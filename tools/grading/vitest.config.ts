/**
 * The vitest config that runs the exercise specs — for `npm run exercise`,
 * `npm run grade` and the CI check alike. (The course's own suite, `npm test`,
 * uses the root vitest.config.ts and never runs these specs directly.)
 *
 * Two tricks, both about which code a spec gets:
 *
 *   - a spec imports an exercise's file by a relative path
 *     (`../../../exercises/NN-name/engine.ts`, so the type checker knows the
 *     API), and the alias below sends every import of `…/exercises/` to
 *     IMPL_ROOT instead — the learner's exercises (the same folder), a
 *     submission's copy, or the reference answers derived for grading;
 *   - the exercise's files are laid over the chapter it extends: a chapter
 *     module that imports a file the exercise has its own copy of (chapter
 *     6's engine imports `./worker.ts`) gets the one under test. A spec
 *     imports what the exercise does not change straight from the chapter.
 *
 * Which specs run and how long a test may take come from the environment too
 * (see impl.ts); the runner sets it.
 */
import fs from 'node:fs';
import { defineConfig, type Plugin } from 'vitest/config';
import { courseRoot, implRoot, overlaid, overlayOf, testTimeoutMs, type Overlay } from './impl.ts';

const specs = (process.env.GRADE_SPECS ?? 'tools/grading/specs/*.spec.ts').split(',').filter(Boolean);

/** The exercise under test (the runner says which), or every exercise folder in IMPL_ROOT. */
function overlays(): Overlay[] {
  const named = process.env.GRADE_EXERCISE;
  let slugs: string[] = [];
  try {
    slugs = named ? [named] : fs.readdirSync(implRoot()).filter((name) => /^\d\d-/.test(name));
  } catch {
    // no IMPL_ROOT: nothing to lay over anything
  }
  return slugs.map(overlayOf);
}

function exerciseOverChapter(): Plugin {
  const layers = overlays();
  return {
    name: 'exercise-over-chapter',
    enforce: 'pre',
    async resolveId(source, importer, options) {
      if (layers.length === 0) return null;
      const resolved = await this.resolve(source, importer, { ...options, skipSelf: true });
      if (!resolved || resolved.external) return resolved;
      const id = resolved.id.split('?')[0]!;
      for (const layer of layers) {
        const target = overlaid(layer, id);
        if (target) return target;
      }
      return resolved;
    },
  };
}

export default defineConfig({
  root: courseRoot,
  plugins: [exerciseOverChapter()],
  resolve: {
    alias: [{ find: /^(?:\.\.\/)+exercises\//, replacement: `${implRoot()}/` }],
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
