/* clock.c: the one monotonic clock every timing of a run reads. */
#include "engine/engine.h"

#include <time.h>

double vl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
