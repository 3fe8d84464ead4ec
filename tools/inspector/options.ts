/**
 * `npm run inspector` 's command line, read into options (tools/bin/inspector.ts
 * runs them): kept apart so the tests can check the defaults without starting anything.
 */
import { parseArgs } from 'node:util';
import { CourseError } from '../../shared/errors.ts';
import { isLoopback, startInspector, type Inspector, type InspectorOptions } from './server.ts';

export const DEFAULT_PORT = 7654;
export const DEFAULT_DATABASE = 'chapter_9_demo';

export const USAGE = `usage: npm run inspector -- [--db NAME] [--port N] [--host HOST] [--allow-actions]
       npm run inspector -- --screenshots DIR
  --db NAME         the database on the course's server (default ${DEFAULT_DATABASE}: what npm run chapter 9 left);
                    with DATABASE_URL set, that server, and its database unless --db names another
  --port N          default ${DEFAULT_PORT} (another free one if it is taken); 0: any free port
  --host HOST       default 127.0.0.1: only this machine can open it
  --allow-actions   let the page retry failed workflows and cancel running ones (default: read-only)
  --screenshots DIR run a small scenario on a fresh database and save the page as list.png and timeline.png`;

export interface InspectorArgs {
  database: string;
  /** --db was given (with DATABASE_URL set, it replaces that URL's database). */
  databaseGiven: boolean;
  /** Named on the command line (or the default, which may be taken: then any free port). */
  port: number;
  portGiven: boolean;
  host: string;
  allowActions: boolean;
  screenshots?: string;
  help: boolean;
  /** What the operator should hear before it starts (a host others can reach). */
  warnings: string[];
}

export function parseInspectorArgs(argv: string[]): InspectorArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        db: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        'allow-actions': { type: 'boolean', default: false },
        screenshots: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (thrown) {
    throw new CourseError((thrown as Error).message, USAGE);
  }
  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new CourseError(`--port ${values.port}: a port is a whole number from 0 to 65535 (0: any free port).`, USAGE);
  const host = values.host ?? '127.0.0.1';
  if (host.trim() === '') throw new CourseError('--host: which address? It is empty.', USAGE);
  const warnings: string[] = [];
  if (!isLoopback(host)) {
    warnings.push(
      `warning: --host ${host} lets other machines open the inspector. It has no login: anyone who can reach ${host} sees every workflow's input and output` +
        `${values['allow-actions'] ? ', and can retry failed workflows and cancel running ones' : ''}. Put it behind something that authenticates, or keep the default (127.0.0.1) and use an SSH tunnel.`,
    );
  }
  return {
    database: values.db ?? DEFAULT_DATABASE,
    databaseGiven: values.db !== undefined,
    port,
    portGiven: values.port !== undefined,
    host,
    allowActions: values['allow-actions'],
    screenshots: values.screenshots,
    help: values.help,
    warnings,
  };
}

/** The inspector on `options.port`, or — when that was only the default and is taken — on any free port. */
export async function startOnPort(options: InspectorOptions, args: Pick<InspectorArgs, 'portGiven'>): Promise<Inspector> {
  try {
    return await startInspector(options);
  } catch (thrown) {
    const code = (thrown as { code?: string }).code;
    if (code === 'EADDRINUSE' && !args.portGiven) return startInspector({ ...options, port: 0 });
    if (code === 'EADDRINUSE') throw new CourseError(`port ${options.port} on ${options.host ?? '127.0.0.1'} is taken.`, '--port 0 takes any free port.');
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new CourseError(`--host ${options.host}: not an address of this machine.`, USAGE);
    throw thrown;
  }
}
