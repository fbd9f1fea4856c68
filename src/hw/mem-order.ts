// How the pCPU code reads and updates words other agents of the machine may touch at the same time.
//
// Under the threaded engine every pCPU is its own thread: a word another thread writes is read with
// Atomics.load (ordered after this thread's earlier Atomics operations), and a guest `lock`-prefixed
// instruction is an Atomics read-modify-write. Under the serial engine one thread owns the whole machine
// (Machine.exclusive): nothing can run between the read and the write of an update, so the same operation
// done with plain typed-array accesses has exactly the same result. It matters for speed only: V8 in Node 20
// does not inline Atomics (each is a builtin call, 10-16 ns against ~1 ns for a plain access, see
// bench/README table), and a serial step makes about ten such reads. `ex` is the exclusive flag, a loop
// invariant, so these small functions inline into a predictable branch.

/** Read a shared word. */
export function ld(a: Int32Array, i: number, ex: boolean): number {
  return ex ? a[i] : Atomics.load(a, i);
}

/** Atomic exchange; returns the old value. */
export function xchg(a: Int32Array, i: number, v: number, ex: boolean): number {
  if (!ex) return Atomics.exchange(a, i, v);
  const old = a[i];
  a[i] = v;
  return old;
}

/** Atomic add; returns the old value. */
export function add(a: Int32Array, i: number, v: number, ex: boolean): number {
  if (!ex) return Atomics.add(a, i, v);
  const old = a[i];
  a[i] = (old + v) | 0;
  return old;
}

/** Atomic or; returns the old value. */
export function or(a: Int32Array, i: number, v: number, ex: boolean): number {
  if (!ex) return Atomics.or(a, i, v);
  const old = a[i];
  a[i] = old | v;
  return old;
}

/** Atomic and; returns the old value. */
export function and(a: Int32Array, i: number, v: number, ex: boolean): number {
  if (!ex) return Atomics.and(a, i, v);
  const old = a[i];
  a[i] = old & v;
  return old;
}

/** Atomic compare-and-exchange; returns the old value (the swap happened when it equals `expected`). */
export function cmpxchg(a: Int32Array, i: number, expected: number, v: number, ex: boolean): number {
  if (!ex) return Atomics.compareExchange(a, i, expected, v);
  const old = a[i];
  if (old === expected) a[i] = v;
  return old;
}
