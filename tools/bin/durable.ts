/**
 * `npm run durable -- <command>` — the engine's operator command line
 * (chapters/09-waiting-for-the-world/cli.ts, which the package ships as `durable`), on the
 * course's database.
 *
 *   npm run durable -- list                     what chapter 9's demo left (database chapter_9_demo)
 *   npm run durable -- show order-3
 *   npm run durable -- list --db other_db       another database on the course's server
 *
 * With DATABASE_URL set, that database is used as it is, and --db is not needed.
 */
import { withDatabase } from '../../shared/db/databases.ts';
import { startPostgres } from '../../shared/db/server.ts';
import { runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { runCli } from '../../chapters/09-waiting-for-the-world/cli.ts';

runMain(async () => {
  const args = process.argv.slice(2);
  const at = args.indexOf('--db');
  const database = at >= 0 ? args[at + 1] : undefined;
  if (at >= 0) args.splice(at, 2);

  // The course's server (started, or shared with another course process) unless DATABASE_URL names one.
  const server = process.env.DATABASE_URL ? undefined : await startPostgres({ purpose: 'dev', log: (line) => console.error(paint.dim(line)) });
  try {
    process.exitCode = await runCli(args, {
      out: (text) => process.stdout.write(text),
      err: (text) => process.stderr.write(text),
      env: { ...process.env, DATABASE_URL: server ? withDatabase(server.url, database ?? 'chapter_9_demo') : process.env.DATABASE_URL },
      interactive: Boolean(process.stdin.isTTY),
    });
  } finally {
    await server?.stop();
  }
});
