/**
 * `npm run inspector` — the web inspector (tools/inspector/) on the course's
 * database: the workflows of chapter 9's demo, each one's timeline, waits,
 * events and children, live.
 *
 *   npm run inspector                          chapter 9's demo database (chapter_9_demo), http://127.0.0.1:7654/
 *   npm run inspector -- --db other_db --port 0
 *   npm run inspector -- --allow-actions       with a Retry button on failed workflows, a Cancel button on running ones
 *   npm run inspector -- --screenshots docs/inspector   the PNGs of the docs, from a scenario of its own
 *   npm run chapter 9 -- --inspect             the demo, with the inspector beside it
 *
 * The course's server (started, or shared with another course process) unless DATABASE_URL names one.
 */
import pg from 'pg';
import { withDatabase } from '../../shared/db/databases.ts';
import { redact, startPostgres } from '../../shared/db/server.ts';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { DEFAULT_DATABASE, parseInspectorArgs, startOnPort, USAGE } from '../inspector/options.ts';

/** Fail at once, with what to do, when the database is not there at all (waiting would not bring it). */
async function checkDatabase(url: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (thrown) {
    if ((thrown as { code?: string }).code === '3D000') {
      throw new CourseError(`there is no database ${name} on ${redact(url)}.`, name === DEFAULT_DATABASE ? 'npm run chapter 9 creates it (or pass --db NAME: npm run db lists the databases).' : 'npm run db lists the databases there are.');
    }
    // Anything else (the server restarting, say) the inspector rides out: it says so on the page.
  } finally {
    await client.end().catch(() => {});
  }
}

runMain(async () => {
  const args = parseInspectorArgs(process.argv.slice(2));
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args.screenshots) {
    const { takeScreenshots } = await import('../inspector/screenshots.ts');
    await takeScreenshots(args.screenshots);
    return;
  }
  const server = process.env.DATABASE_URL ? undefined : await startPostgres({ purpose: 'dev', log: (line) => console.error(paint.dim(line)) });
  const base = server?.url ?? process.env.DATABASE_URL!;
  const databaseUrl = server || args.databaseGiven ? withDatabase(base, args.database) : base;
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  for (const warning of args.warnings) console.error(paint.yellow(warning));
  try {
    await checkDatabase(databaseUrl, name);
    const inspector = await startOnPort(
      { databaseUrl, host: args.host, port: args.port, allowActions: args.allowActions, log: (line) => console.error(paint.dim(line)) },
      args,
    );
    console.log(`${paint.bold('durable inspector')} on database ${name}: ${paint.cyan(inspector.url)}`);
    console.log(paint.dim(`${args.allowActions ? 'actions on: failed workflows can be retried, running ones cancelled, from the page' : 'read-only (--allow-actions adds Retry and Cancel buttons)'} · Ctrl-C to stop`));
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await inspector.close();
  } finally {
    await server?.stop();
  }
});
