#include "CSupport.h"
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

meshlm_cpu_features meshlm_cpu_features_runtime(void) {
    meshlm_cpu_features f = {0, 0, 0, 0, 0};
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        f.fma = (c >> 12) & 1;
        int osxsave = (c >> 27) & 1;
        if (!osxsave) { f.fma = 0; return f; }
        unsigned xcr0_lo, xcr0_hi;
        __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
        int ymm_ok = (xcr0_lo & 0x6) == 0x6;
        int zmm_ok = (xcr0_lo & 0xe6) == 0xe6;
        if (!ymm_ok) { f.fma = 0; return f; }
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            f.avx2 = (b >> 5) & 1;
            if (zmm_ok) {
                f.avx512f = (b >> 16) & 1;
                f.avx512bw = (b >> 30) & 1;
                f.avx512vl = (b >> 31) & 1;
            }
        }
    }
#endif
    return f;
}

meshlm_cpu_features meshlm_cpu_features_compiled(void) {
    meshlm_cpu_features f = {0, 0, 0, 0, 0};
#ifdef __AVX2__
    f.avx2 = 1;
#endif
#ifdef __FMA__
    f.fma = 1;
#endif
#ifdef __AVX512F__
    f.avx512f = 1;
#endif
#ifdef __AVX512BW__
    f.avx512bw = 1;
#endif
#ifdef __AVX512VL__
    f.avx512vl = 1;
#endif
    return f;
}

// Runs when the binary is loaded, before any Swift code: a binary built for AVX-512 (or AVX2
// and FMA) started on a CPU without them dies of SIGILL at the first such instruction, which
// the compiler may emit anywhere in code built for that target — even before `main` could
// check. This function is plain scalar code (cpuid, compares, write), so it runs on any x86-64.
// JobContext repeats the check with the CPU's name in the message.
__attribute__((constructor)) static void meshlm_refuse_missing_cpu_features(void) {
    meshlm_cpu_features have = meshlm_cpu_features_runtime(), need = meshlm_cpu_features_compiled();
    const char *missing = 0;
    if ((need.avx512f || need.avx512bw || need.avx512vl) && !(have.avx512f && have.avx512bw && have.avx512vl))
        missing = "AVX-512";
    else if (need.avx2 && !have.avx2)
        missing = "AVX2";
    else if (need.fma && !have.fma)
        missing = "FMA";
    if (!missing) return;
    static const char before[] = "meshlm: this binary was built for ";
    static const char after[] = " but this CPU lacks it; rebuild on this machine, or build once for every node of the "
                                "cluster with MESHLM_TARGET_CPU=haswell (AVX2 + FMA) when building (docs/architecture.md, Build)\n";
    ssize_t ignored = write(2, before, sizeof before - 1);
    ignored = write(2, missing, strlen(missing));
    ignored = write(2, after, sizeof after - 1);
    (void)ignored;
    _exit(1);
}

void meshlm_cpu_brand(char *out) {
    out[0] = 0;
#if defined(__x86_64__)
    unsigned regs[12];
    if (__get_cpuid_max(0x80000000, 0) < 0x80000004) return;
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    memcpy(out, regs, 48);
    out[48] = 0;
    // Trim the leading and trailing blanks some vendors pad with.
    char *start = out;
    while (*start == ' ') start++;
    memmove(out, start, strlen(start) + 1);
    for (int n = (int)strlen(out); n > 0 && out[n - 1] == ' '; n--) out[n - 1] = 0;
#endif
}

int meshlm_fma_vector_lanes(void) {
#if defined(__AVX512F__)
    return 16;
#elif defined(__AVX2__) || defined(__AVX__)
    return 8;
#else
    return 4;
#endif
}

// Twelve independent accumulators hide the FMA latency (4 cycles) on two FMA pipes.
#define ACCUMULATORS 12

double meshlm_fma_loop(int64_t iterations, float *sink) {
#if defined(__AVX512F__) && defined(__FMA__)
    __m512 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_set1_ps(0.001f * (float)i);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iterations; it++) {
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
    }
    __m512 total = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) total = _mm512_add_ps(total, acc[i]);
    *sink = _mm512_reduce_add_ps(total);
    return (double)iterations * ACCUMULATORS * 16 * 2;
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm256_set1_ps(0.001f * (float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iterations; it++) {
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]));
    }
    __m256 total = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) total = _mm256_add_ps(total, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, total);
    float s = 0;
    for (int i = 0; i < 8; i++) s += lanes[i];
    *sink = s;
    return (double)iterations * ACCUMULATORS * 8 * 2;
#else
    float acc[ACCUMULATORS * 4];
    for (int i = 0; i < ACCUMULATORS * 4; i++) acc[i] = 0.001f * (float)i;
    for (int64_t it = 0; it < iterations; it++)
        for (int i = 0; i < ACCUMULATORS * 4; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < ACCUMULATORS * 4; i++) s += acc[i];
    *sink = s;
    return (double)iterations * ACCUMULATORS * 4 * 2;
#endif
}
