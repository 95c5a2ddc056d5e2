// I/O and scheduling calls Swift's Glibc module does not export (they need _GNU_SOURCE).
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CSupport.h"

int meshlm_start_writeback(int descriptor, int64_t offset, int64_t length) {
#ifdef __linux__
    return sync_file_range(descriptor, offset, length, SYNC_FILE_RANGE_WRITE);
#else
    (void)descriptor; (void)offset; (void)length;
    return 0;
#endif
}

int meshlm_set_thread_nice(int nice) {
#ifdef __linux__
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
#else
    (void)nice;
    return 0;
#endif
}

int meshlm_set_thread_idle(void) {
#ifdef __linux__
    struct sched_param parameters = {0};
    return sched_setscheduler((pid_t)syscall(SYS_gettid), SCHED_IDLE, &parameters);
#else
    return 0;
#endif
}

#if defined(__x86_64__) && defined(__SSE4_2__)
#include <nmmintrin.h>
int meshlm_crc32c_hardware(void) { return __builtin_cpu_supports("sse4.2"); }
uint32_t meshlm_crc32c_update(uint32_t state, const void *bytes, int64_t count) {
    const unsigned char *p = bytes;
    uint64_t crc = state;
    while (count >= 8) {
        uint64_t word;
        __builtin_memcpy(&word, p, 8);
        crc = _mm_crc32_u64(crc, word);
        p += 8;
        count -= 8;
    }
    uint32_t small = (uint32_t)crc;
    while (count-- > 0) small = _mm_crc32_u8(small, *p++);
    return small;
}
#else
int meshlm_crc32c_hardware(void) { return 0; }
uint32_t meshlm_crc32c_update(uint32_t state, const void *bytes, int64_t count) { (void)bytes; (void)count; return state; }
#endif
