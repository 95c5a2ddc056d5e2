// HDF5's native type ids and flags are macros (some expand to H5open() plus a global); Swift
// cannot import them. Each function below returns one of them.
#ifndef MESHLM_CHDF5_SHIM_H
#define MESHLM_CHDF5_SHIM_H
#include <hdf5.h>

static inline hid_t meshlm_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t meshlm_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t meshlm_h5t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t meshlm_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t meshlm_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t meshlm_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t meshlm_h5t_native_uint32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t meshlm_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t meshlm_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t meshlm_h5t_c_s1(void) { return H5T_C_S1; }

static inline unsigned meshlm_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned meshlm_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned meshlm_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned meshlm_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline hid_t meshlm_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t meshlm_h5s_all(void) { return H5S_ALL; }
static inline hid_t meshlm_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hsize_t meshlm_h5s_unlimited(void) { return H5S_UNLIMITED; }

/// Turns off HDF5's automatic printing of an error stack on every failed call: failures are
/// reported once, as a Swift error naming the call.
static inline herr_t meshlm_h5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

#endif
