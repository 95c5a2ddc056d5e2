// Inner loops of weight-only quantized inference (QuantizedMatrix, QuantizedLinear): dot products
// of weight rows stored in 32-weight blocks (Q8_0: f16 scale + 32 int8; Q4_0: f16 scale + 16
// bytes of 4-bit codes, value (q − 8)·d, element j in the low nibble of byte j and element j + 16
// in its high nibble) with activation rows quantized to int8 per block of 32 (one f32 scale each).
//
// Each block's products are summed in integers (exact), then scaled by d_weight · d_activation
// in f32. The variants differ only in how the f32 sums are ordered; one variant is chosen per
// process (`meshlm_quant_best_variant`), so a row's result never depends on the batch or the
// thread that computes it. The AVX2 variant is compiled with a target attribute: the binary may
// be built for a baseline without AVX2 and still use it where the CPU has it.
#include "CSupport.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

float meshlm_f16_to_f32(uint16_t bits) {
    uint32_t sign = (uint32_t)(bits & 0x8000) << 16;
    uint32_t exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
    uint32_t result;
    if (exponent == 0x1F) {
        result = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        result = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        result = sign;
    } else {
        // Subnormal: shift the mantissa up until its leading 1 is the implicit bit.
        int shift = 0;
        while ((mantissa & 0x400) == 0) { mantissa <<= 1; shift++; }
        mantissa &= 0x3FF;
        result = sign | ((uint32_t)(113 - shift) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &result, 4);
    return value;
}

static inline uint16_t read_u16(const uint8_t *bytes) {
    uint16_t value;
    memcpy(&value, bytes, 2);
    return value;
}

void meshlm_quantize_activation_row(const float *x, int64_t n, int8_t *q, float *scales) {
    for (int64_t block = 0; block < n / MESHLM_QUANT_BLOCK; block++) {
        const float *values = x + block * MESHLM_QUANT_BLOCK;
        float largest = 0;
        for (int i = 0; i < MESHLM_QUANT_BLOCK; i++) {
            float magnitude = fabsf(values[i]);
            largest = magnitude > largest ? magnitude : largest;
        }
        float inverse = largest > 0 ? 127.0f / largest : 0;
        scales[block] = largest / 127.0f;
        for (int i = 0; i < MESHLM_QUANT_BLOCK; i++) {
            float scaled = roundf(values[i] * inverse);
            // x·(127/amax) may round a hair above 127.
            scaled = scaled > 127 ? 127 : (scaled < -127 ? -127 : scaled);
            q[block * MESHLM_QUANT_BLOCK + i] = (int8_t)scaled;
        }
    }
}

int32_t meshlm_quant_block_sum(int format, const uint8_t *block, const int8_t *xq) {
    int32_t sum = 0;
    if (format == MESHLM_Q8_0) {
        const int8_t *w = (const int8_t *)(block + 2);
        for (int i = 0; i < MESHLM_QUANT_BLOCK; i++) sum += (int32_t)w[i] * xq[i];
    } else {
        const uint8_t *codes = block + 2;
        for (int i = 0; i < MESHLM_QUANT_BLOCK / 2; i++) {
            sum += ((int32_t)(codes[i] & 0x0F) - 8) * xq[i];
            sum += ((int32_t)(codes[i] >> 4) - 8) * xq[i + MESHLM_QUANT_BLOCK / 2];
        }
    }
    return sum;
}

static int block_bytes(int format) { return format == MESHLM_Q8_0 ? 34 : 18; }

// Scalar: each block's integer sum, scaled, added in block order.
static float dot_scalar(int format, const uint8_t *row, int64_t block_count, const int8_t *xq, const float *xs) {
    int stride = block_bytes(format);
    float total = 0;
    for (int64_t block = 0; block < block_count; block++) {
        const uint8_t *weights = row + block * stride;
        int32_t sum = meshlm_quant_block_sum(format, weights, xq + block * MESHLM_QUANT_BLOCK);
        total += (float)sum * (meshlm_f16_to_f32(read_u16(weights)) * xs[block]);
    }
    return total;
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float horizontal_sum(__m256 lanes) {
    __m128 four = _mm_add_ps(_mm256_castps256_ps128(lanes), _mm256_extractf128_ps(lanes, 1));
    __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
    __m128 one = _mm_add_ss(two, _mm_movehdup_ps(two));
    return _mm_cvtss_f32(one);
}

AVX2 static inline __m256i q4_codes(const uint8_t *codes) {
    __m128i packed = _mm_loadu_si128((const __m128i *)codes);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8));
}

// `weight_rows` (1 or 2) weight rows, `rows_stride` bytes apart, against up to 4 activation rows
// (`rows`; row r's codes at xq + r·row_stride, its scales at xs + r·block_count): eight int32
// lanes per block (exact), each lane scaled and added in f32 lanes. A weight block is loaded and
// unpacked once for all activation rows, and the pairs' independent accumulators hide the FMA
// latency. Every (weight row, activation row) accumulator sees the same operations whatever
// else runs beside it, so its bits depend on neither the batch nor the tiling.
AVX2 static inline __attribute__((always_inline)) void dot_avx2(int format, const uint8_t *row, int64_t weight_stride,
                                                                int weight_rows, int64_t block_count, const int8_t *xq,
                                                                const float *xs, int rows, int64_t row_stride, float *out,
                                                                int64_t out_stride) {
    __m256 total[2][4];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 4; r++) total[i][r] = _mm256_setzero_ps();
    const int stride = format == MESHLM_Q8_0 ? 34 : 18;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t block = 0; block < block_count; block++) {
        __m256i w[2], magnitude[2];
        float d[2];
        for (int i = 0; i < weight_rows; i++) {
            const uint8_t *weights = row + i * weight_stride + block * stride;
            // The hardware prefetcher alone left these interleaved streams at a third of the
            // memory bandwidth (6 against 19 GB/s); 1–4 KB ahead reads 12.5.
            _mm_prefetch((const char *)(weights + 2048), _MM_HINT_T0);
            w[i] = format == MESHLM_Q8_0 ? _mm256_loadu_si256((const __m256i *)(weights + 2)) : q4_codes(weights + 2);
            magnitude[i] = _mm256_sign_epi8(w[i], w[i]);
            d[i] = _cvtsh_ss(read_u16(weights));
        }
        for (int r = 0; r < rows; r++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq + r * row_stride + block * MESHLM_QUANT_BLOCK));
            float s = xs[r * block_count + block];
            for (int i = 0; i < weight_rows; i++) {
                // vpmaddubsw takes an unsigned first operand: |w| times x carrying w's sign
                // (|w|, |x| ≤ 127: no saturation).
                __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude[i], _mm256_sign_epi8(x, w[i])), ones);
                total[i][r] = _mm256_fmadd_ps(_mm256_set1_ps(d[i] * s), _mm256_cvtepi32_ps(sums), total[i][r]);
            }
        }
    }
    for (int i = 0; i < weight_rows; i++)
        for (int r = 0; r < rows; r++) out[r * out_stride + i] = horizontal_sum(total[i][r]);
}

// dot_avx2 specialized per format and tile (constants: the accumulators stay in registers).
AVX2 static void dot_avx2_tile(int format, const uint8_t *row, int64_t weight_stride, int weight_rows, int64_t block_count,
                               const int8_t *xq, const float *xs, int rows, int64_t row_stride, float *out, int64_t out_stride) {
#define CASE(F, W, R) dot_avx2(F, row, weight_stride, W, block_count, xq, xs, R, row_stride, out, out_stride); return;
#define ROWS(F, W) switch (rows) { case 1: CASE(F, W, 1) case 2: CASE(F, W, 2) case 3: CASE(F, W, 3) default: CASE(F, W, 4) }
    // (Four weight rows for one activation row measured slower: 12.6 against 10.5 ms.)
    if (format == MESHLM_Q8_0) {
        if (weight_rows == 2) { ROWS(MESHLM_Q8_0, 2) } else { ROWS(MESHLM_Q8_0, 1) }
    } else {
        if (weight_rows == 2) { ROWS(MESHLM_Q4_0, 2) } else { ROWS(MESHLM_Q4_0, 1) }
    }
#undef ROWS
#undef CASE
}
#endif

int meshlm_quant_best_variant(void) {
#if defined(__x86_64__)
    meshlm_cpu_features features = meshlm_cpu_features_runtime();
    // F16C came with every AVX2 CPU (Haswell, Zen 1 and later).
    if (features.avx2 && features.fma) return MESHLM_QUANT_AVX2;
#endif
    return MESHLM_QUANT_SCALAR;
}

void meshlm_quant_dot_rows(int variant, int format, const uint8_t *weights, int64_t row_bytes,
                           int64_t first_row, int64_t row_count, int64_t block_count,
                           const int8_t *xq, const float *xs, int64_t batch, float *output, int64_t output_stride) {
    const int64_t row_stride = block_count * MESHLM_QUANT_BLOCK;
    // Weight rows two at a time stay in L1 while the activation rows pass over them, four at a time.
    for (int64_t r = first_row; r < first_row + row_count;) {
        int weight_rows = first_row + row_count - r >= 2 ? 2 : 1;
        const uint8_t *row = weights + r * row_bytes;
        for (int64_t b = 0; b < batch; b += 4) {
            int rows = batch - b < 4 ? (int)(batch - b) : 4;
#if defined(__x86_64__)
            if (variant == MESHLM_QUANT_AVX2) {
                dot_avx2_tile(format, row, row_bytes, weight_rows, block_count, xq + b * row_stride, xs + b * block_count,
                              rows, row_stride, output + b * output_stride + r, output_stride);
                continue;
            }
#endif
            for (int i = 0; i < weight_rows; i++)
                for (int j = 0; j < rows; j++)
                    output[(b + j) * output_stride + r + i] =
                        dot_scalar(format, row + i * row_bytes, block_count, xq + (b + j) * row_stride, xs + (b + j) * block_count);
        }
        r += weight_rows;
    }
}
