// What BLAS.multiply's fixed blocks (Sources/Tensors/BLAS.swift, ProductBlocks) cost one thread:
// one cblas_sgemm against the same product cut into blocks of >= L rows or columns (the longer
// side of the output, a power-of-two count <= 64, boundaries on multiples of 16), for square
// sizes and the 124M model's products (2048 tokens). Times are the thread's CPU time, so other
// processes on a shared machine disturb them less than wall time; variants are interleaved.
//
//   gcc -O2 tools/bench-gemm-blocks.c -o /tmp/bench-gemm-blocks $(pkg-config --cflags --libs openblas)
//   env -u OPENBLAS_CORETYPE /tmp/bench-gemm-blocks 9      # this CPU's kernels
//   OPENBLAS_CORETYPE=Zen /tmp/bench-gemm-blocks 9         # OpenBLAS's AVX2 kernels
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { int m, n, k, transposeA, transposeB; const char *name; } Shape;

static double cpuSeconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// C += op(A)·op(B), cut as ProductBlocks cuts it when minimumLength > 0, else one call.
static void multiply(Shape s, int minimumLength, const float *a, const float *b, float *c) {
    int lda = s.transposeA ? s.m : s.k, ldb = s.transposeB ? s.k : s.n;
    int rows = s.m >= s.n, length = rows ? s.m : s.n, count = 1;
    if (minimumLength > 0 && (long)s.m * s.n * s.k >= (1 << 18)) {
        int most = length / minimumLength < 64 ? length / minimumLength : 64;
        while (count * 2 <= most) count *= 2;
    }
    int units = (length + 15) / 16;
    for (int block = 0; block < count; block++) {
        int start = block * units / count * 16, end = block + 1 == count ? length : (block + 1) * units / count * 16;
        if (start > length) start = length;
        if (end > length) end = length;
        enum CBLAS_TRANSPOSE ta = s.transposeA ? CblasTrans : CblasNoTrans, tb = s.transposeB ? CblasTrans : CblasNoTrans;
        if (rows)
            cblas_sgemm(CblasRowMajor, ta, tb, end - start, s.n, s.k, 1, s.transposeA ? a + start : a + (long)start * lda, lda,
                        b, ldb, 1, c + (long)start * s.n, s.n);
        else
            cblas_sgemm(CblasRowMajor, ta, tb, s.m, end - start, s.k, 1, a, lda,
                        s.transposeB ? b + (long)start * ldb : b + start, ldb, 1, c + start, s.n);
    }
}

static int ascending(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    int repeats = argc > 1 ? atoi(argv[1]) : 7;
    if (repeats < 1 || repeats > 32) repeats = 7;
    Shape shapes[] = {
        {1024, 1024, 1024, 0, 0, "square NN"}, {2048, 2048, 2048, 0, 0, "square NN"},
        {2048, 768, 768, 0, 1, "124M q/o fwd"}, {2048, 2048, 768, 0, 1, "124M gate/up fwd"},
        {2048, 768, 2048, 0, 1, "124M down fwd"}, {2048, 32000, 768, 0, 1, "124M head fwd"},
        {2048, 768, 2048, 0, 0, "124M dx down"}, {768, 768, 2048, 1, 0, "124M dW q/o"},
        {2048, 768, 2048, 1, 0, "124M dW gate/up"}, {768, 2048, 2048, 1, 0, "124M dW down"},
        {32000, 768, 2048, 1, 0, "124M dW head"},
    };
    int lengths[] = {0, 128, 512, 1024};
    enum { variants = 4 };
    printf("OpenBLAS core %s, one thread: speed of the blocks as a fraction of one call's, median (range) of %d\n",
           openblas_get_corename(), repeats);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        Shape s = shapes[i];
        float *a = malloc(sizeof(float) * s.m * s.k), *b = malloc(sizeof(float) * s.k * s.n);
        float *c = calloc((size_t)s.m * s.n, sizeof(float));
        for (long j = 0; j < (long)s.m * s.k; j++) a[j] = (j % 7) * 0.1f - 0.3f;
        for (long j = 0; j < (long)s.k * s.n; j++) b[j] = (j % 5) * 0.1f - 0.2f;
        double flop = 2.0 * s.m * s.n * s.k, seconds[variants][32], ratio[variants][32];
        int calls = flop < 2e9 ? (int)(2e9 / flop) : 1;
        multiply(s, 0, a, b, c);
        for (int r = 0; r < repeats; r++)
            for (int v = 0; v < variants; v++) {
                double start = cpuSeconds();
                for (int call = 0; call < calls; call++) multiply(s, lengths[v], a, b, c);
                seconds[v][r] = (cpuSeconds() - start) / calls;
            }
        for (int v = 0; v < variants; v++)
            for (int r = 0; r < repeats; r++) ratio[v][r] = seconds[0][r] / seconds[v][r];
        qsort(seconds[0], repeats, sizeof(double), ascending);
        printf("%-17s %5d x %5d, inner %4d %c%c: one call %5.1f GFLOP/s;", s.name, s.m, s.n, s.k,
               s.transposeA ? 'T' : 'N', s.transposeB ? 'T' : 'N', flop / seconds[0][repeats / 2] / 1e9);
        for (int v = 1; v < variants; v++) {
            qsort(ratio[v], repeats, sizeof(double), ascending);
            printf("  >=%d: %.3f (%.3f-%.3f)", lengths[v], ratio[v][repeats / 2], ratio[v][0], ratio[v][repeats - 1]);
        }
        printf("\n");
        fflush(stdout);
        free(a); free(b); free(c);
    }
    return 0;
}
