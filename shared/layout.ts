// Helpers shared by every layout file. A layout is a list of named word offsets into an Int32Array;
// Float64 fields sit at even word offsets so one Float64Array over the same buffer reaches them at
// offset/2. Each layout asserts its own size at module load, so a field added past the stride fails
// loudly in every thread rather than corrupting a neighbour.

export const WORD = 4;

export function assertLayout(name: string, lastField: number, stride: number): void {
  if (lastField >= stride) {
    throw new Error(`this is a bug in vcpulab: layout ${name} overflows its stride (${lastField} >= ${stride})`);
  }
}

export function assertF64Aligned(name: string, wordOffset: number): void {
  if ((wordOffset & 1) !== 0) {
    throw new Error(`this is a bug in vcpulab: ${name} is a Float64 field at odd word offset ${wordOffset}`);
  }
}
