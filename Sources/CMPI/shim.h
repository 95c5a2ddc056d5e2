// Open MPI's handles are macros over addresses of global objects; Swift cannot import them.
// Each function below returns one of them.
#ifndef MESHLM_CMPI_SHIM_H
#define MESHLM_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm meshlm_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm meshlm_mpi_comm_self(void) { return MPI_COMM_SELF; }
static inline MPI_Comm meshlm_mpi_comm_null(void) { return MPI_COMM_NULL; }

static inline MPI_Datatype meshlm_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype meshlm_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype meshlm_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype meshlm_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype meshlm_mpi_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype meshlm_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype meshlm_mpi_uint32(void) { return MPI_UINT32_T; }
static inline MPI_Datatype meshlm_mpi_uint64(void) { return MPI_UINT64_T; }

static inline MPI_Op meshlm_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op meshlm_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op meshlm_mpi_min(void) { return MPI_MIN; }

static inline void *meshlm_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *meshlm_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *meshlm_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request meshlm_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler meshlm_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Info meshlm_mpi_info_null(void) { return MPI_INFO_NULL; }

static inline int meshlm_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int meshlm_mpi_any_tag(void) { return MPI_ANY_TAG; }
static inline int meshlm_mpi_undefined(void) { return MPI_UNDEFINED; }
static inline int meshlm_mpi_success(void) { return MPI_SUCCESS; }
static inline int meshlm_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int meshlm_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int meshlm_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int meshlm_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int meshlm_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }

#endif
