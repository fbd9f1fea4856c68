// xl.cfg cpu lists ("0-3", "0,2,5-7", "all", "^1", "0-7,^3-4") as a pure function.

/** Parse `spec` against `npcpus`; returns sorted pCPU indices, or an error message. */
export function parseCpuList(spec: string, npcpus: number): number[] | string {
  const set = new Set<number>();
  const items = spec.split(',').map((s) => s.trim());
  if (items.length === 0 || items.some((s) => s === '')) return `empty item in cpu list '${spec}'`;
  let sawPositive = false;
  for (const item of items) {
    const neg = item.startsWith('^');
    const body = neg ? item.slice(1) : item;
    let lo: number, hi: number;
    if (body === 'all') { lo = 0; hi = npcpus - 1; }
    else {
      const mm = /^(\d+)(?:-(\d+))?$/.exec(body);
      if (mm === null) return `bad cpu list item '${item}' (expected N, N-M, ^N or all)`;
      lo = Number(mm[1]); hi = mm[2] === undefined ? lo : Number(mm[2]);
      if (hi < lo) return `bad cpu range '${item}' (end before start)`;
      if (hi >= npcpus) return `cpu ${hi} in '${item}' does not exist (the machine has ${npcpus} pCPUs)`;
    }
    for (let c = lo; c <= hi; c++) neg ? set.delete(c) : set.add(c);
    if (!neg) sawPositive = true;
  }
  // xl: a list of exclusions alone starts from "all".
  if (!sawPositive) {
    const all = new Set<number>();
    for (let c = 0; c < npcpus; c++) all.add(c);
    for (const item of items) {
      const r = parseCpuList(item.slice(1), npcpus);
      if (typeof r === 'string') return r;
      for (const c of r) all.delete(c);
    }
    if (all.size === 0) return `cpu list '${spec}' leaves no pCPU`;
    return [...all].sort((a, b) => a - b);
  }
  if (set.size === 0) return `cpu list '${spec}' leaves no pCPU`;
  return [...set].sort((a, b) => a - b);
}
