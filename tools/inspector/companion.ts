/**
 * `npm run chapter 9 -- --inspect`: the inspector beside the demo, on the
 * demo's database (shared/demo.ts runs it through `besideTheDemo`). Its URL is
 * printed before the story begins; at a terminal the demo waits for Enter (or
 * 20 s) so the page is open before the first process is killed, and at the
 * end the inspector stays up until Enter, for a look at what the demo left.
 */
import { createInterface } from 'node:readline';
import type { DemoCompanion } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';
import { DEFAULT_PORT, startOnPort } from './options.ts';

/** Resolves on Enter, or after `ms` (never, when ms is undefined); Ctrl-C is passed on to the demo's own handler. */
function enterOrTimeout(prompt: string, ms?: number): Promise<void> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      rl.close();
      resolve();
    }
    rl.on('SIGINT', () => {
      // Not resolved: the demo's own handler stops its world and its database, then exits.
      clearTimeout(timer);
      rl.close();
      process.kill(process.pid, 'SIGINT');
    });
    rl.question(prompt, done);
  });
}

export function inspectorBesideTheDemo({ interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY) } = {}): DemoCompanion {
  return {
    async start({ databaseUrl, databaseName }) {
      const inspector = await startOnPort({ databaseUrl, port: DEFAULT_PORT, log: (line) => say.explain(line) }, { portGiven: false });
      say.line(`\n${paint.bold('The inspector')} on ${databaseName}: ${paint.cyan(paint.bold(inspector.url))}`);
      say.explain('Open it: the workflows appear as they are started, each one’s steps fill in, a killed worker’s takeover shows as a new fencing token, and a workflow parked for an event, a cancel and a batch’s children show as they happen.');
      if (interactive) await enterOrTimeout(paint.dim('Press Enter to start the demo (it starts by itself in 20 s) '), 20_000);
      return {
        async afterStory() {
          if (!interactive) return;
          await enterOrTimeout(`\n${paint.bold('The inspector is still up')} at ${paint.cyan(inspector.url)} — look around, then press Enter to stop it and the demo. `);
        },
        stop: () => inspector.close(),
      };
    },
  };
}
