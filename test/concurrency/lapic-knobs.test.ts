// Scenario knobs for the places where LAPIC implementations disagree (apic.md [DIV]), exercised end to
// end: a lowest-priority logical IPI to four equal-priority vCPUs.
import { describe, expect, it } from 'vitest';
import { runGuest } from '../helpers/run.js';

const PROG = `
.equ ROUNDS, 4
_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    mov ebp, ebx
    lidt idt
    mov eax, 1
    mov ecx, ebp
    shl eax, ecx
    shl eax, 24
    mov [0xFEE000D0], eax       ; LDR: flat model, one bit per vCPU
    lock add [ready], 1
    sti
    cmp ebp, 0
    jnz spin
wait:
    mov eax, [ready]
    cmp eax, VCPUS
    jnz wait
    mov esi, 0
send:
    mov eax, 0x0F000000
    mov [0xFEE00310], eax       ; logical destination: vCPUs 0-3
    mov eax, 0x950
    mov [0xFEE00300], eax       ; lowest priority, logical, vector 0x50
    add esi, 1
got_wait:
    mov eax, [got]
    cmp eax, esi
    jz next
    pause
    jmp got_wait
next:
    cmp esi, ROUNDS
    jnz send
    mov edi, 0
report:
    mov ebx, edi
    add ebx, 10
    mov eax, edi
    shl eax, 2
    add eax, rec
    mov ecx, [eax]
    magic 1                     ; key 10 + i = IPIs vCPU i received
    add edi, 1
    cmp edi, VCPUS
    jnz report
    mov ebx, 0
    magic 0
spin:
    pause
    jmp spin
on_ipi:
    push eax
    mov eax, ebp
    shl eax, 2
    add eax, rec
    lock add [eax], 1
    lock add [got], 1
    mov [0xFEE000B0], 0
    pop eax
    iret
.align 8
ready: .word 0
got:   .word 0
rec:   .space 16
idt:
    .space 4 * 0x50
    .word on_ipi
    .space 4 * (256 - 0x50 - 1)
`;

async function receivers(policy: string): Promise<number[]> {
  const r = await runGuest(PROG, { vcpus: 4, pcpus: 4, memoryKb: 256, machineExtra: [`lapic_lowest_priority = "${policy}"`, 'migration = "none"'] });
  expect(r.outcome).toBe('completed');
  return [0, 1, 2, 3].map((i) => r.reports.find((x) => x.key === 10 + i)?.value ?? -1);
}

describe('lapic_lowest_priority', () => {
  it('xen (default): round robin among equal PPR, starting after the previous winner', async () => {
    expect(await receivers('xen')).toEqual([1, 1, 1, 1]);
  });
  it('qemu-first: always the first match', async () => {
    expect(await receivers('qemu-first')).toEqual([4, 0, 0, 0]);
  });
  it('kvm-hash: vector mod N picks the same vCPU every time', async () => {
    expect(await receivers('kvm-hash')).toEqual([4, 0, 0, 0]); // 0x50 mod 4 = 0
  });
});
