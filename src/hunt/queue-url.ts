// The --queue URL of a distributed hunt, checked without loading BullMQ or ioredis (the CLI parses flags
// before it knows whether it needs them).
import { UserError } from '../errors.js';

/** `redis://[user:password@]HOST:PORT[/DB]`, checked; the shown form drops the password. */
export interface QueueUrl { url: string; shown: string; host: string; port: number; db: number }

export function parseQueueUrl(flag: string, v: string): QueueUrl {
  const bad = (why: string): never => { throw new UserError(`vcpulab ${flag}: --queue must be redis://HOST:PORT[/DB] (${why}), got '${v}'`); };
  let u: URL;
  try { u = new URL(v); } catch { return bad('not a URL'); }
  if (u.protocol !== 'redis:') bad(`scheme '${u.protocol.replace(/:$/, '')}' is not redis`);
  if (u.hostname === '') bad('no host');
  const port = u.port === '' ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d{1,2}$/.test(path)) bad(`database '${path}' is not a number 0..15`);
  const db = path === '' ? 0 : Number(path);
  if (db > 15) bad(`database ${db} is not 0..15`);
  if (u.search !== '' || u.hash !== '') bad('no query or fragment');
  const shown = `redis://${u.hostname}:${port}/${db}`;
  return { url: v, shown, host: u.hostname, port, db };
}

