import { runGuest } from './run.js';
const src = `
_start:
    mov ebx, 1
    mov ecx, 42
    magic 1
    mov eax, 'h'
    out 0xE9, eax
    mov ebx, 3
    magic 0
`;
const r = await runGuest(src);
console.log(JSON.stringify(r, null, 1));
const r2 = await runGuest(`_start:\n ud2\n`);
console.log(JSON.stringify(r2, null, 1));
