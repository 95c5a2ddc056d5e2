#ifndef MESHLM_CBLAS_SHIM_H
#define MESHLM_CBLAS_SHIM_H
#include <cblas.h>
// Declared by OpenBLAS's cblas.h: openblas_set_num_threads, openblas_get_num_threads,
// openblas_get_config, openblas_get_corename, openblas_get_parallel.
#endif
