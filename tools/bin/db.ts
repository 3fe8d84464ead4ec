/**
 * `npm run db` — look inside the course's database.
 *
 *   npm run db                      which server, and its databases
 *   npm run db -- psql [database]   an SQL prompt (psql if installed, else a small built-in one)
 *   npm run db -- sql <database> "select …"   run one statement, print the rows
 *   npm run db -- start             keep the embedded server running (Ctrl-C stops it)
 *   npm run db -- reset             delete the embedded server's data (it is recreated on next use)
 *
 * With DATABASE_URL set, all of this talks to your server instead.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import pg from 'pg';
import { withDatabase } from '../../shared/db/databases.ts';
import { dataDirFor } from '../../shared/db/embedded.ts';
import { projectRoot, startPostgres, type PostgresServer } from '../../shared/db/server.ts';
import { CourseError, explain, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';

const usage = 'npm run db [-- psql [database] | sql <database> "<statement>" | start | reset]';

runMain(async () => {
  const [command = 'info', ...args] = process.argv.slice(2);
  if (command === 'reset') return reset();
  const server = await startPostgres({ purpose: 'dev', log: (line) => console.error(paint.dim(line)) });
  try {
    switch (command) {
      case 'info':
        await info(server);
        break;
      case 'psql':
        await prompt(server, args[0]);
        break;
      case 'sql': {
        const [database, statement] = args;
        if (!database || !statement) throw new CourseError('sql needs a database and a statement', usage);
        await runStatement(withDatabase(server.url, database), statement);
        break;
      }
      case 'start':
        await info(server);
        console.log(paint.dim('\nRunning until Ctrl-C…'));
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        break;
      default:
        throw new CourseError(`unknown command "${command}"`, usage);
    }
  } finally {
    await server.stop();
  }
});

async function info(server: PostgresServer): Promise<void> {
  console.log(`${paint.bold('server')}   ${server.describe}`);
  console.log(`${paint.bold('url')}      ${server.url}`);
  const client = new pg.Client(server.url);
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(
      `select datname from pg_database where not datistemplate and datname <> 'postgres' order by datname`,
    );
    console.log(`${paint.bold('databases')} ${rows.length ? rows.map((r) => r.datname).join(', ') : paint.dim('(none yet: run a chapter)')}`);
  } finally {
    await client.end();
  }
  console.log(paint.dim(`\nnpm run db -- psql <database>   to look at a chapter's tables`));
}

/** psql when the machine has it; otherwise a small prompt of our own, so Node.js alone is enough. */
async function prompt(server: PostgresServer, database = 'postgres'): Promise<void> {
  const url = withDatabase(server.url, database);
  const psql = spawnSync('psql', ['--version'], { encoding: 'utf8' });
  if (psql.status === 0) {
    spawnSync('psql', [url], { stdio: 'inherit' });
    return;
  }
  const client = new pg.Client(url);
  await client.connect();
  console.log(paint.dim(`Connected to ${database}. End statements with ;  —  \\dt tables, \\d <table> columns, \\l databases, \\q quit`));
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, prompt: `${database}=> ` });
  let buffer = '';
  rl.prompt();
  for await (const line of rl) {
    const trimmed = line.trim();
    if (!buffer && trimmed.startsWith('\\')) {
      const [meta, arg] = trimmed.split(/\s+/);
      if (meta === '\\q') break;
      const sql =
        meta === '\\dt'
          ? `select table_name, (xpath('/row/n/text()', query_to_xml('select count(*) as n from ' || quote_ident(table_name), false, true, '')))[1]::text::int as rows
               from information_schema.tables where table_schema = 'public' order by 1`
          : meta === '\\l'
            ? `select datname from pg_database where not datistemplate order by 1`
            : meta === '\\d' && arg
              ? `select column_name, data_type, is_nullable from information_schema.columns where table_name = '${arg.replace(/'/g, "''")}' order by ordinal_position`
              : undefined;
      if (sql) await show(client, sql);
      else console.log('\\dt, \\d <table>, \\l, \\q');
      rl.prompt();
      continue;
    }
    buffer += `${line}\n`;
    if (trimmed.endsWith(';')) {
      await show(client, buffer);
      buffer = '';
    }
    rl.prompt();
  }
  rl.close();
  await client.end();
}

async function show(client: pg.Client, sql: string): Promise<void> {
  try {
    const result = await client.query(sql);
    const results = Array.isArray(result) ? result : [result];
    for (const r of results as pg.QueryResult[]) {
      if (r.rows.length) console.table(r.rows);
      else console.log(paint.dim(`${r.command ?? 'OK'} ${r.rowCount ?? ''}`));
    }
  } catch (thrown) {
    console.log(paint.red(explain(thrown)));
  }
}

async function runStatement(url: string, statement: string): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    await show(client, statement);
  } finally {
    await client.end();
  }
}

function reset(): void {
  if (process.env.DATABASE_URL) throw new CourseError('DATABASE_URL is set: reset only deletes the embedded server’s data', 'Unset DATABASE_URL first.');
  const dataDir = dataDirFor('dev', projectRoot);
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (fs.existsSync(pidFile)) {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
    let running = false;
    try {
      process.kill(pid, 0);
      running = true;
    } catch {
      // not running: safe to delete
    }
    if (running) throw new CourseError(`the embedded server is running (pid ${pid})`, 'Stop the demo or `npm run db` that uses it, then reset.');
  }
  for (const p of [dataDir, `${dataDir}.log`, `${dataDir}.owner.json`]) fs.rmSync(p, { recursive: true, force: true });
  console.log(`Deleted ${path.relative(projectRoot, dataDir) || dataDir}; it is recreated on next use.`);
}
