; wait-vcpu-map.s: passthrough designs (IPI_PATH 1, 2) wait until every vCPU has run once, so the
; published vCPU map holds a pCPU for each (-1 would be the broadcast ID); other designs jump to `go`,
; which the including program defines right after this. Clobbers eax, edi.
    mov eax, IPI_PATH
    cmp eax, 1
    jl go
    cmp eax, 2
    jg go
    mov edi, 0
wait_map:
    mov eax, edi
    shl eax, 3
    add eax, VCPU_MAP
    mov eax, [eax]
    cmp eax, -1
    jnz map_next
    pause
    jmp wait_map
map_next:
    add edi, 1
    cmp edi, VCPUS
    jnz wait_map
