// Small C helpers for what Swift does not reach directly: CPU feature detection (cpuid) and the
// FMA loop that measures this CPU's fp32 peak.
#ifndef MESHLM_CSUPPORT_H
#define MESHLM_CSUPPORT_H
#include <stdint.h>

/// CPU vector features found at run time by cpuid.
typedef struct {
    int avx2;
    int fma;
    int avx512f;
    int avx512bw;
    int avx512vl;
} meshlm_cpu_features;

/// The features the running CPU has.
meshlm_cpu_features meshlm_cpu_features_runtime(void);
/// The features this binary's C code was compiled to use (from the compiler's -march).
meshlm_cpu_features meshlm_cpu_features_compiled(void);
/// The CPU's brand string (e.g. "AMD EPYC 9R45"), written into `out` (at least 49 bytes).
void meshlm_cpu_brand(char *out);

/// Runs `iterations` rounds of independent fp32 FMAs in the widest vector registers the binary
/// was compiled for and returns the number of floating-point operations done (2 per lane per FMA).
/// `sink` receives a value derived from the result so the loop cannot be optimized away.
double meshlm_fma_loop(int64_t iterations, float *sink);
/// Lanes of fp32 in the vector width meshlm_fma_loop uses (16 for AVX-512, 8 for AVX2, 4 for SSE).
int meshlm_fma_vector_lanes(void);

/// Asks the CPU to start loading the cache line at `address` into all cache levels (a hint:
/// never faults). Inline so a kernel's inner loop pays one instruction.
static inline void meshlm_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// Starts writing back the dirty pages of `descriptor` in [offset, offset+length) without
/// waiting (Linux sync_file_range; a no-op elsewhere), so a later fsync has little left to do.
int meshlm_start_writeback(int descriptor, int64_t offset, int64_t length);
/// Sets the calling thread's nice value (Linux threads have their own); 0 or -1 with errno.
int meshlm_set_thread_nice(int nice);
/// Puts the calling thread in Linux's SCHED_IDLE class: it runs only on a core no other thread
/// wants, and a waking thread of the normal class preempts it at once; 0 or -1 with errno.
int meshlm_set_thread_idle(void);
/// Whether meshlm_crc32c_update can run here (x86-64 SSE4.2 compiled in and present).
int meshlm_crc32c_hardware(void);
/// The CRC-32C register after `bytes` (no initial or final inversion: the caller does those).
uint32_t meshlm_crc32c_update(uint32_t state, const void *bytes, int64_t count);



/// Installs handlers for SIGTERM and SIGUSR1 (Slurm's preemption and time-limit warnings) that
/// only record that a stop was requested; the training loop polls it between steps.
void meshlm_install_stop_signals(void);
/// The signal number of the first stop request since installation, or 0.
int meshlm_stop_signal(void);

/// Weight-only quantized inference (Sources/CSupport/quant.c): weights in blocks of 32, each an
/// f16 scale d then the codes. Q8_0: 32 int8 (value q·d), 34 bytes. Q4_0: 16 bytes, element j in
/// the low nibble of byte j and element j + 16 in the high one (value (q − 8)·d), 18 bytes.
#define MESHLM_QUANT_BLOCK 32
enum { MESHLM_Q8_0 = 0, MESHLM_Q4_0 = 1 };
/// Kernel variants of `meshlm_quant_dot_rows`.
enum { MESHLM_QUANT_SCALAR = 0, MESHLM_QUANT_AVX2 = 1 };
/// The fastest variant this CPU runs (cpuid).
int meshlm_quant_best_variant(void);
/// An IEEE half's bits as a float (exact).
float meshlm_f16_to_f32(uint16_t bits);
/// Quantizes `n` floats (a multiple of 32) per block of 32: scales[b] = max |x| / 127,
/// q = round(x · 127 / max |x|) (halves away from zero), clamped to ±127.
void meshlm_quantize_activation_row(const float *x, int64_t n, int8_t *q, float *scales);
/// Σ w·x over one block in integers (w the block's codes less 8 for Q4_0): the exact part of a dot.
int32_t meshlm_quant_block_sum(int format, const uint8_t *block, const int8_t *xq);
/// output[b · output_stride + r] = Σ_blocks d_w · xs[b][block] · (block sum) for weight rows
/// r in [first_row, first_row + row_count) (each `row_bytes` long, `block_count` blocks) and the
/// `batch` activation rows in `xq` / `xs` (block_count · 32 codes and block_count scales each).
void meshlm_quant_dot_rows(int variant, int format, const uint8_t *weights, int64_t row_bytes,
                           int64_t first_row, int64_t row_count, int64_t block_count,
                           const int8_t *xq, const float *xs, int64_t batch, float *output, int64_t output_stride);
#endif
