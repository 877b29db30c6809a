/* fuzz_common.h: what every libFuzzer harness in tests/fuzz/ shares: a private temporary
 * directory for the APIs that take a path, the error-record contract, and a trap for a broken
 * invariant (a crash libFuzzer saves as an artifact).
 * Leaves out: the harnesses' own oracles (each file checks what its API promises). */
#ifndef VL_FUZZ_COMMON_H
#define VL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Stop the run with a message: libFuzzer reports a crash and writes the input. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                            \
    } while (0)

_Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The harness's own directory, made once (mkdtemp under $VL_FUZZ_TMPDIR, /dev/shm or /tmp)
 * and removed at exit with what fuzz_path() named in it. */
const char *fuzz_tmpdir(void);
/* tmpdir/name; the string lives until exit. At most 16 distinct names. */
const char *fuzz_path(const char *name);
/* Write bytes to tmpdir/name (replacing it); returns the path. Aborts on I/O failure, which is
 * the harness's problem, not the input's. */
const char *fuzz_write(const char *name, const void *data, size_t size);

/* The loader's contract for a call that returned rc: failure (rc != 0) leaves one non-empty
 * message; success leaves none. what names the call in the trap message. */
void fuzz_check_error(int rc, const char *what);

/* data[0, size) as a NUL-terminated heap copy (free it). */
char *fuzz_strndup(const uint8_t *data, size_t size);

#endif
