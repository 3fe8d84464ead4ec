/**
 * Each submission's database identity: a role of its own, and a database it
 * owns and no one else may connect to.
 *
 *   prepareCluster(adminUrl)        at the start of a grading run: leftovers of a
 *                                   killed run removed, the cluster checked sane
 *   createSubmissionDatabase(…)     per submission: CREATE ROLE grade_… LOGIN
 *                                   PASSWORD …, NOSUPERUSER NOCREATEDB NOCREATEROLE;
 *                                   CREATE DATABASE … OWNER it; CONNECT for it alone
 *   drop()                          its sessions ended, its database and role dropped
 *
 * What that stops: a submission used to log in as the server's superuser. It
 * dropped classmates' databases, created a superuser role, and made every
 * later login read-only (ALTER ROLE … SET default_transaction_read_only). Its
 * role can do none of that: it owns one database, may connect to no other
 * (graded on the grader's own cluster), cannot create roles or databases, and
 * what it sets on itself goes with it when the role is dropped.
 *
 * A role only means something where logins need passwords. The grader's own
 * cluster (`startPostgres({ purpose: 'grade' })`) is made fresh for each run,
 * with a random superuser password, scram-sha-256 for every login. On a server
 * of yours (DATABASE_URL) the roles are made the same way, but whether one
 * role can log in as another is your pg_hba.conf's business: the grader tries,
 * and the report says what it found.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { uniqueName, withDatabase } from '../../shared/db/databases.ts';

/** Every role and database the grader makes starts with this: what a killed run left is found by it. */
const PREFIX = 'grade_';
/** PREFIX as a LIKE pattern: its underscore taken literally. */
const OURS = PREFIX.replace(/_/g, '\\_');

export interface SubmissionDatabase {
  /** The submission's connection string: its own role, its own database. */
  url: string;
  drop(): Promise<void>;
}

export interface ClusterCheck {
  /** One line for the report: what a submission's role can and cannot do here. */
  summary: string;
  /** False: roles per submission are impossible here (no CREATEROLE); every submission connects as the admin. */
  rolesPerSubmission: boolean;
}

async function withAdmin<T>(adminUrl: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {});
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Before any submission: remove what a killed grading run left (grade_…
 * databases and roles), refuse a cluster a submission could have poisoned
 * for everyone (read-only by default), and find out whether roles per
 * submission are possible and whether logins need their password.
 */
export async function prepareCluster(adminUrl: string, { ownCluster }: { ownCluster: boolean }): Promise<ClusterCheck> {
  return withAdmin(adminUrl, async (admin) => {
    const readOnly = (await admin.query<{ v: string }>(`SELECT current_setting('default_transaction_read_only') AS v`)).rows[0]?.v;
    if (readOnly === 'on') {
      const who = (await admin.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u ?? 'the admin role';
      throw new Error(
        `the database server makes every transaction read-only by default for ${who} (default_transaction_read_only = on): ` +
          `a submission of an earlier run, graded with too much power, may have done it. Undo it as a superuser: ` +
          `ALTER ROLE ${who} RESET default_transaction_read_only; ALTER DATABASE postgres RESET default_transaction_read_only — or grade on the grader's own cluster (unset DATABASE_URL).`,
      );
    }
    const me = (await admin.query<{ createrole: boolean; superuser: boolean }>('SELECT rolcreaterole AS createrole, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user')).rows[0];
    // What a killed run left: its submissions' databases, then their roles.
    // LIKE 'grade\_%': an unescaped _ matches any character, and a database of yours named "gradebook" is not ours.
    // Only those nobody is connected to: another grading run on the same server keeps its own.
    const leftovers = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database d WHERE datname LIKE $1 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)`,
      [`${OURS}%`],
    );
    for (const { datname } of leftovers.rows) await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(datname)}`).catch(() => {});
    const roles = await admin.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1`, [`${OURS}%`]);
    // A role that still owns a database (one in use, kept above) cannot be dropped: the error is the answer.
    for (const { rolname } of roles.rows) await admin.query(`DROP ROLE IF EXISTS ${admin.escapeIdentifier(rolname)}`).catch(() => {});
    if (!me?.createrole && !me?.superuser) {
      return { rolesPerSubmission: false, summary: 'shared: the admin role may not create roles, so every submission connects as it (give it CREATEROLE)' };
    }
    if (ownCluster) {
      // On the grader's own cluster nobody but a database's owner may connect to it: not the admin's database, not the templates.
      for (const db of ['postgres', 'template1']) await admin.query(`REVOKE CONNECT ON DATABASE ${admin.escapeIdentifier(db)} FROM PUBLIC`);
      return { rolesPerSubmission: true, summary: 'a role of its own per submission, on a cluster made for this run (password logins only): it owns its database and can reach nothing else' };
    }
    // Does a wrong password get a role in? Then roles are names here, not identities: say so.
    const probe = uniqueName(`${PREFIX}probe`);
    await admin.query(`CREATE ROLE ${admin.escapeIdentifier(probe)} LOGIN PASSWORD ${admin.escapeLiteral(randomBytes(24).toString('base64url'))}`);
    let trusted = false;
    try {
      const url = new URL(adminUrl);
      url.username = probe;
      url.password = 'not-the-password';
      const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5000 });
      client.on('error', () => {});
      trusted = await client.connect().then(
        () => true,
        () => false,
      );
      await client.end().catch(() => {});
    } finally {
      await admin.query(`DROP ROLE IF EXISTS ${admin.escapeIdentifier(probe)}`);
    }
    return trusted
      ? { rolesPerSubmission: true, summary: 'a role of its own per submission on your server (DATABASE_URL), which lets a login in without its password: one submission could log in as another, or as you — grade untrusted code on the grader\'s own cluster (unset DATABASE_URL)' }
      : { rolesPerSubmission: true, summary: 'a role of its own per submission on your server (DATABASE_URL), password logins: it owns its database and cannot create roles or databases' };
  });
}

/** A role and a database for one submission; `label` (the student's name) is part of both names, for `\l` and `\du`. */
export async function createSubmissionDatabase(adminUrl: string, label: string, check: ClusterCheck): Promise<SubmissionDatabase> {
  const name = uniqueName(`${PREFIX}${label}`);
  const password = randomBytes(24).toString('base64url');
  await withAdmin(adminUrl, async (admin) => {
    const role = admin.escapeIdentifier(name);
    if (check.rolesPerSubmission) {
      await admin.query(
        `CREATE ROLE ${role} LOGIN PASSWORD ${admin.escapeLiteral(password)} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 64`,
      );
      await admin.query(`CREATE DATABASE ${role} OWNER ${role}`);
      await admin.query(`REVOKE ALL ON DATABASE ${role} FROM PUBLIC`);
      await admin.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${role} TO ${role}`);
    } else {
      await admin.query(`CREATE DATABASE ${role}`);
    }
  });
  const url = new URL(withDatabase(adminUrl, name));
  if (check.rolesPerSubmission) {
    url.username = name;
    url.password = password;
  }
  return {
    url: url.toString(),
    drop: () =>
      withAdmin(adminUrl, async (admin) => {
        const quoted = admin.escapeIdentifier(name);
        await admin.query(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`);
        if (check.rolesPerSubmission) {
          // A role that still owns something cannot be dropped. Its database is gone; DROP OWNED (run in the
          // admin's database) clears any grant or object left there — none is expected, its role could not connect.
          await admin.query(`DROP OWNED BY ${quoted}`).catch(() => {});
          await admin.query(`DROP ROLE IF EXISTS ${quoted}`);
        }
      }),
  };
}
