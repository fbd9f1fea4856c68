// Trace files: a stream of msgpack values (msgpackr). The first value is a header
// { format: "vcpulab-trace", version, scenario, engine, seed, pcpus, domains }; each later value is a
// batch (array) of event records [time_cycles, pcpu, kind, domain, vcpu, a, b, c]. Batches keep
// memory bounded however long the run: at most BATCH events are held before a write.
import { closeSync, openSync, writeSync } from 'node:fs';
import { Packr, unpackMultiple } from 'msgpackr';
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.js';
import type { EventListener } from './collector.js';

export const TRACE_FORMAT = 'vcpulab-trace';
export const TRACE_VERSION = 1;
const BATCH = 4096;

export interface TraceHeader {
  format: string;
  version: number;
  scenario: string;
  engine: string;
  seed: number;
  pcpus: number;
  domains: string[];
}

export type TraceRecord = [number, number, number, number, number, number, number, number];

export class TraceWriter implements EventListener {
  private readonly fd: number;
  private readonly packr = new Packr({ useRecords: false });
  private batch: TraceRecord[] = [];
  written = 0;

  constructor(readonly file: string, header: TraceHeader) {
    try {
      this.fd = openSync(file, 'w');
      writeSync(this.fd, this.packr.pack(header));
    } catch (e) {
      throw new UserError(`--trace: cannot write '${file}' (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }

  /** Why writing stopped mid-run (the disk filled, say), or null: the run goes on, the trace is incomplete. */
  failed: string | null = null;

  /** The record's pc is not written: the trace format stays [time, pcpu, kind, domain, vcpu, a, b, c]. */
  onEvent(pcpu: number, time: number, kind: number, dom: number, vcpu: number, a: number, b: number, c: number, _pc: number): void {
    if (this.failed !== null) return;
    this.batch.push([time, pcpu, kind, dom, vcpu, a, b, c]);
    if (this.batch.length >= BATCH) this.flush();
  }

  flush(): void {
    if (this.batch.length === 0 || this.failed !== null) return;
    try {
      writeSync(this.fd, this.packr.pack(this.batch));
    } catch (e) {
      this.failed = `--trace: writing '${this.file}' failed (${(e as NodeJS.ErrnoException).code ?? 'error'}) after ${this.written} events; the trace is incomplete`;
    }
    this.written += this.failed === null ? this.batch.length : 0;
    this.batch = [];
  }

  close(): void {
    this.flush();
    try { closeSync(this.fd); } catch (e) {
      this.failed ??= `--trace: closing '${this.file}' failed (${(e as NodeJS.ErrnoException).code ?? 'error'}); the trace may be incomplete`;
    }
  }
}

export function readTrace(file: string): { header: TraceHeader; records: TraceRecord[] } {
  let buf: Buffer;
  try { buf = readFileSync(file); } catch (e) {
    throw new UserError(`${file}: cannot read trace (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let values: unknown[];
  try { values = unpackMultiple(buf) as unknown[]; } catch {
    throw new UserError(`${file}: not a vcpulab trace (msgpack decoding failed)`);
  }
  const header = values[0] as TraceHeader | undefined;
  if (header === undefined || header.format !== TRACE_FORMAT) throw new UserError(`${file}: not a vcpulab trace (no header)`);
  const records: TraceRecord[] = [];
  for (let i = 1; i < values.length; i++) for (const r of values[i] as TraceRecord[]) records.push(r);
  return { header, records };
}
