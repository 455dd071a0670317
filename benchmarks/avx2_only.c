/* A CPU without AVX-512 or AVX-VNNI, as libraries see it: an LD_PRELOAD library for benchmarks/avx2_only.py.
 *
 * Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, the `cpuid_fault` flag) makes every CPUID instruction of the
 * process raise SIGSEGV. The handler runs the real CPUID with faulting briefly off, clears the feature bits of
 * leaf 7 that name AVX-512, AVX-VNNI and AMX, and resumes after the instruction. Libraries that choose their
 * kernels from CPUID at run time (onnxruntime's MLAS, oneDNN, PyTorch's ATen) then choose their AVX2 ones.
 * The setting is per thread and inherited by threads created later; it ends at execve.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* leaf 7, subleaf 0: EBX AVX512F DQ IFMA PF ER CD BW VL; ECX VBMI VBMI2 VNNI BITALG VPOPCNTDQ;
 * EDX 4VNNIW 4FMAPS VP2INTERSECT AMX-BF16 FP16 AMX-TILE AMX-INT8 */
#define EBX7 ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define ECX7 ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define EDX7 ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25))
/* leaf 7, subleaf 1: EAX AVX-VNNI, AVX512_BF16 */
#define EAX71 ((1u << 4) | (1u << 5))

static void set_faulting(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void on_fault(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    /* a faulting CPUID comes as SI_KERNEL; anything else is a real fault: let it end the process */
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        signal(sig, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    set_faulting(0);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_faulting(1);
    if (leaf == 7 && sub == 0) {
        b &= ~EBX7;
        c &= ~ECX7;
        d &= ~EDX7;
    } else if (leaf == 7 && sub == 1) {
        a &= ~EAX71;
    }
    r[REG_RAX] = a, r[REG_RBX] = b, r[REG_RCX] = c, r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &action, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "avx2_only: this kernel or CPU has no CPUID faulting (flag cpuid_fault)\n");
        exit(3);
    }
}
