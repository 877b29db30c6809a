/* say.h: vl_say, the one-line message every kernels/ function that can refuse writes into its
 * caller's buffer (why, why_len): kernels/ sits below loader/error.c, so the caller records the
 * line. Defined in say.c; C linkage for the CUDA files. */
#ifndef VL_SAY_H
#define VL_SAY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* printf into why (nothing when why is NULL or why_len 0); always returns -1. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int vl_say(char *why, size_t why_len, const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif
