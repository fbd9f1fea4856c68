// Streaming reader for trace files (layout: ./writer.ts). It decodes msgpack values chunk by chunk and keeps
// only the undecoded tail, so a trace of any length costs one chunk plus the batches decoded from it. A run
// killed mid-write leaves a partial last batch: it is dropped and counted in `truncatedBytes`, not an error.
// writer.ts's readTrace loads the whole file; this is what `vcpulab trace` uses.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { MAX_PCPUS } from '../../shared/machine.js';
import { unpackMultiple } from 'msgpackr';
import { UserError } from '../errors.js';
import { TRACE_FORMAT, TRACE_VERSION, type TraceHeader, type TraceRecord } from './writer.js';

const CHUNK_BYTES = 512 << 10;
/** A writer batch is 4096 records of at most 8 × 9 bytes (~300 KiB). An undecodable run far longer than
 *  that is a corrupt length field, not a value split across chunks; stop before it eats the memory. */
const MAX_PENDING_BYTES = 64 << 20;
/** `next()`'s end of file: msgpack nil decodes to null, so neither null nor undefined can mark it. */
const END = Symbol('end of trace');

export class TraceReader {
  readonly header: TraceHeader;
  batchesRead = 0;
  recordsRead = 0;
  /** Bytes at the end of the file that never formed a whole value (an interrupted run). Final once `batches()` ends. */
  truncatedBytes = 0;
  private fd: number;
  private pending: Buffer = Buffer.alloc(0);
  /** File offset of pending[0], for error messages. */
  private offset = 0;
  private queue: unknown[] = [];
  private qi = 0;
  private eof = false;

  constructor(readonly file: string, private readonly chunkBytes = CHUNK_BYTES) {
    try { this.fd = openSync(file, 'r'); } catch (e) {
      throw new UserError(`${file}: cannot read trace (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (fstatSync(this.fd).isDirectory()) {
      this.close();
      throw new UserError(`${file}: is a directory, not a trace file`);
    }
    try {
      const v = this.next();
      if (v === END) throw new UserError(`${file}: not a vcpulab trace (${this.truncatedBytes > 0 ? 'its header is cut short' : 'empty file'})`);
      this.header = traceCheckHeader(file, v);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The event batches in file order: each pCPU's events in time order, pCPUs interleaved by drain. */
  *batches(): Generator<TraceRecord[]> {
    try {
      for (let v = this.next(); v !== END; v = this.next()) {
        if (!isBatch(v)) throw new UserError(`${this.file}: not a vcpulab trace (value ${this.batchesRead + 2} is not an event batch)`);
        this.batchesRead++;
        this.recordsRead += v.length;
        yield v;
      }
    } finally {
      this.close(); // also when the consumer stops early (grep --limit)
    }
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }

  private next(): unknown {
    while (this.qi >= this.queue.length) {
      if (this.eof) return END;
      this.queue = [];
      this.qi = 0;
      this.fill();
    }
    return this.queue[this.qi++];
  }

  /** Read one chunk and decode every whole value in pending + chunk. */
  private fill(): void {
    const chunk = Buffer.allocUnsafe(this.chunkBytes);
    let n: number;
    try { n = this.fd < 0 ? 0 : readSync(this.fd, chunk, 0, this.chunkBytes, null); } catch (e) {
      this.close();
      throw new UserError(`${this.file}: cannot read trace (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (n === 0) {
      this.eof = true;
      this.truncatedBytes = this.pending.length;
      this.close();
      return;
    }
    const buf = this.pending.length === 0 ? chunk.subarray(0, n) : Buffer.concat([this.pending, chunk.subarray(0, n)]);
    const used = this.decode(buf);
    this.pending = buf.subarray(used);
    this.offset += used;
    if (this.pending.length > MAX_PENDING_BYTES) this.corrupt(0);
  }

  /** Decode whole values into the queue; returns the bytes they took. A value cut at the end waits for more. */
  private decode(buf: Buffer): number {
    let used = 0;
    try {
      unpackMultiple(buf, (v: unknown, _start?: number, end?: number) => {
        this.queue.push(v);
        used = end ?? buf.length;
      });
    } catch (e) {
      if ((e as { incomplete?: boolean } | null)?.incomplete !== true) this.corrupt(used);
    }
    return used;
  }

  private corrupt(at: number): never {
    throw new UserError(`${this.file}: not a vcpulab trace (msgpack decoding failed at byte ${this.offset + at})`);
  }
}

export function traceCheckHeader(file: string, v: unknown): TraceHeader {
  const h = (typeof v === 'object' && v !== null ? v : {}) as Partial<TraceHeader>;
  if (h.format !== TRACE_FORMAT) throw new UserError(`${file}: not a vcpulab trace (no '${TRACE_FORMAT}' header)`);
  if (h.version !== TRACE_VERSION) {
    throw new UserError(`${file}: trace format version ${String(h.version)}; this vcpulab reads version ${TRACE_VERSION}`);
  }
  if (typeof h.pcpus !== 'number' || !Array.isArray(h.domains)) throw new UserError(`${file}: trace header lacks pcpus or domains`);
  if (!Number.isInteger(h.pcpus) || h.pcpus < 1 || h.pcpus > MAX_PCPUS) throw new UserError(`${file}: trace header field 'pcpus' must be an integer from 1 to ${MAX_PCPUS}, got ${String(h.pcpus)}`);
  if (h.domains.length > 4096 || !h.domains.every((d) => typeof d === 'string')) throw new UserError(`${file}: trace header field 'domains' must be a list of domain names`);
  return h as TraceHeader;
}

/** Every record of a batch is 8 numbers (what the writer emits): a foreign or damaged file stops here. */
function isBatch(v: unknown): v is TraceRecord[] {
  if (!Array.isArray(v)) return false;
  for (const r of v as unknown[]) {
    if (!Array.isArray(r) || r.length !== 8) return false;
    for (let i = 0; i < 8; i++) if (typeof r[i] !== 'number') return false;
  }
  return true;
}
