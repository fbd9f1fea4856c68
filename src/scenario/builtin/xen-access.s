; Workload for the xen-access agent: each vCPU writes WRITES values into its own page, then checks that
; every write landed (the agent let each one through in view 0) and reports its last value (key 1).
; vCPU 0 waits for the others and shuts the domain down. Every store is a write to a page the agent's
; view makes read-execute only, so each one costs a MEM_ACCESS and a SINGLESTEP event.
.equ DATA, 0x10000            ; vCPU n's page: DATA + n * 4096
.equ DONE, 0x20000

_start:
    mov eax, 1
    cpuid
    shr ebx, 25               ; vLAPIC ID 2n -> n
    mov esi, ebx
    shl esi, 12
    add esi, DATA
    mov ecx, 0
write:
    mov [esi], ecx            ; an event each time: the page is r-x in the agent's view
    mov eax, [esi]
    cmp eax, ecx
    jne lost
    inc ecx
    cmp ecx, WRITES
    jne write
    mov ecx, [esi]
    push ebx
    mov ebx, 1
    magic 1                   ; report {1: WRITES - 1}
    pop ebx
    mov edi, DONE
    lock add [edi], 1
    cmp ebx, 0
    jne park
wait:
    mov eax, [edi]
    cmp eax, VCPUS
    jne wait
    mov ebx, 0
    magic 0
park:
    cli
    hlt
lost:
    mov ebx, 1
    magic 3                   ; a write did not land: guest assert
    jmp park
