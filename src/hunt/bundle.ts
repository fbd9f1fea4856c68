// A scenario as data (DESIGN.md §9): the TOML, its programs, the files they include and its agent modules, so a distributed hunt's
// workers need no shared file system. Files keep their paths relative to the lowest folder that holds them
// all, so the TOML's relative references (`program = "../common/x.s"` too) resolve the same way once the
// files are written out again. The bundle is addressed by the scenario's content hash (lab.ts
// `scenarioHash`): a worker writes it once per hash and checks that preparing it gives the same hash.
// Built-in agents are part of the tool (the version check covers them), so they do not travel.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { BUILTIN_AGENTS } from '../scenario/loader.js';
import type { Prepared } from '../lab.js';

export interface BundleFile {
  /** Path relative to the bundle's root, '/'-separated, never leaving it. */
  path: string;
  /** The file's text, base64 (agent modules and programs are text, but nothing here depends on it). */
  data: string;
  sha256: string;
}

export interface ScenarioBundle {
  /** The scenario's content hash (Prepared.hash): the bundle's address. */
  hash: string;
  /** The TOML's path inside the bundle. */
  scenario: string;
  files: BundleFile[];
}

/** Largest bundle a campaign carries: a scenario is a few files of text. */
export const BUNDLE_MAX_BYTES = 16 << 20;

/** Collect the files a prepared scenario is made of. */
export function bundleScenario(prep: Prepared): ScenarioBundle {
  const sc = prep.scenario;
  const files = [resolve(sc.file)];
  for (const d of sc.domains) {
    if (isAbsolute(d.program)) throw new UserError(`${sc.shown}: a distributed hunt sends the scenario's files to its workers: program '${d.program}' must be a path relative to the scenario file`);
    files.push(resolve(dirname(sc.file), d.program));
  }
  // What the programs `.include` travels too (relative includes resolve the same way in the written-out bundle;
  // an absolute one is looked for at the same path on the worker).
  for (const incs of prep.spec.programIncludes ?? []) for (const f of incs) files.push(resolve(f));
  for (const [i, d] of sc.domains.entries()) {
    if (d.agent === '' || (BUILTIN_AGENTS as readonly string[]).includes(d.agent)) continue;
    if (isAbsolute(d.agent)) throw new UserError(`${sc.shown}: a distributed hunt sends the scenario's files to its workers: agent '${d.agent}' of domain ${i} must be a path relative to the scenario file`);
    const a = prep.agents.find((x) => x.dom === i);
    if (a !== undefined) files.push(fileURLToPath(a.module));
  }
  const unique = [...new Set(files)];
  let root = dirname(unique[0]);
  for (const f of unique) while (!(f + sep).startsWith(root.endsWith(sep) ? root : root + sep)) root = dirname(root);
  let total = 0;
  const out: BundleFile[] = unique.map((f) => {
    const data = readFileSync(f);
    total += data.length;
    return { path: relative(root, f).split(sep).join('/'), data: data.toString('base64'), sha256: createHash('sha256').update(data).digest('hex') };
  });
  if (total > BUNDLE_MAX_BYTES) throw new UserError(`${sc.shown}: the scenario's files are ${total} bytes; a distributed hunt sends at most ${BUNDLE_MAX_BYTES}`);
  return { hash: prep.hash, scenario: relative(root, resolve(sc.file)).split(sep).join('/'), files: out };
}

/** A bundle path is safe to write under a folder: relative, no '..', no empty or odd segments. */
export function bundlePathOk(p: string): boolean {
  if (p === '' || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** What a bundle holds, as its files go; a cache written under another layout is not reused. */
export const BUNDLE_LAYOUT = 2; // 2: the files programs `.include` travel too

/** Where a worker keeps the bundles it has written. */
export function bundleCacheDir(): string {
  return join(tmpdir(), `vcpulab-bundles-${process.getuid?.() ?? 'u'}`, `layout${BUNDLE_LAYOUT}`);
}

/**
 * Write a bundle's files under `cache/<hash>/` (once per hash) and return the TOML's path there. Throws
 * with a one-line reason when the bundle is malformed (a file's hash does not match, a path leaves it).
 */
export function bundleMaterialize(b: ScenarioBundle, cache = bundleCacheDir()): string {
  if (!/^[0-9a-f]{64}$/.test(b.hash)) throw new Error(`bundle: bad content hash '${String(b.hash).slice(0, 80)}'`);
  const dir = join(cache, b.hash);
  const done = join(dir, '.complete');
  if (!bundlePathOk(b.scenario) || !b.files.some((f) => f.path === b.scenario)) throw new Error(`bundle ${b.hash.slice(0, 12)}: no scenario file '${b.scenario}'`);
  if (existsSync(done)) return join(dir, ...b.scenario.split('/'));
  // Written into a fresh folder and renamed into place, so a worker never prepares a half-written bundle.
  const tmp = `${dir}.${process.pid}.${Date.now()}`;
  try {
    for (const f of b.files) {
      if (!bundlePathOk(f.path)) throw new Error(`bundle ${b.hash.slice(0, 12)}: file path '${f.path}' leaves the bundle`);
      const data = Buffer.from(f.data, 'base64');
      if (createHash('sha256').update(data).digest('hex') !== f.sha256) throw new Error(`bundle ${b.hash.slice(0, 12)}: '${f.path}' does not match its sha256`);
      const p = join(tmp, ...f.path.split('/'));
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, data);
    }
    writeFileSync(join(tmp, '.complete'), '');
    mkdirSync(cache, { recursive: true });
    try { renameSync(tmp, dir); } catch (e) {
      // Another worker on this machine wrote the same bundle first: its copy is the same content.
      if (!existsSync(done)) throw e;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true }); // gone already when the rename took it
  }
  return join(dir, ...b.scenario.split('/'));
}
