/**
 * Instructor-only test for exercise 3 — the example of the convention:
 *
 *   solutions/NN-name/*.hidden.spec.ts   run by `npm run grade` and the CI check,
 *                                        never by `npm run exercise`;
 *   solutions/NN-name/points.hidden.json their points;
 *   solutions/.gitattributes             keeps them out of `git archive`, the
 *                                        way to make the students' template.
 *
 * Import the implementation as `../../exercises/NN-name/…` (the reference
 * answer is a patch here, solution.patch, not a file to import): only a path
 * through `exercises/` is swapped for the submission under test.
 *
 * What it checks: SQL built by pasting the id into the text works for
 * `order-1` and breaks (or worse) for an id with a quote in it. The public
 * tests never use such an id; a careful answer passes this anyway.
 */
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createEngine } from '../../exercises/03-inspect/engine.ts';
import { createSchema } from '../../exercises/03-inspect/queries.ts';
import { scratchSchema } from '../../tools/grading/spec-kit.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('inspect and listRuns, instructor-only', () => {
  it("an id with quotes and a backslash is data, not SQL: inspect finds it and nothing else", async () => {
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const schema = await scratchSchema('ex03_hidden');
    const db = new pg.Pool({ connectionString: schema.url });
    try {
      await createSchema(db);
      const engine = createEngine({ db, workflows: { order: async (ctx) => ctx.step('charge_card', async () => 'ch_1') } });
      const tricky = `o'brien\\"; --`;
      await engine.start('order', tricky, null);
      await engine.start('order', 'plain', null);
      expect(await engine.inspect(tricky)).toMatchObject({ id: tricky, status: 'completed', steps: [{ seq: 0, name: 'charge_card', output: 'ch_1' }] });
      expect(await engine.inspect(`x' OR '1'='1`)).toBeUndefined();
      expect((await engine.listRuns()).map((run) => run.id)).toEqual([tricky, 'plain']);
    } finally {
      await db.end();
      await schema.drop();
    }
  });
});
