/* version.c: what `vlrun --version` and the reports name: the project version (CMake) and the
 * git commit of the source at build time (vl_git_commit.h, scripts/git_commit.cmake). */
#include "engine/engine.h"

#ifndef VL_VERSION_STRING
#define VL_VERSION_STRING "0.0.0"
#endif
#ifdef VL_HAVE_GIT_COMMIT_H
#include "vl_git_commit.h" /* written at build time by scripts/git_commit.cmake */
#endif
#ifndef VL_GIT_COMMIT
#define VL_GIT_COMMIT "unknown"
#endif

const char *vl_version(void) {
    return VL_VERSION_STRING;
}

const char *vl_version_commit(void) {
    return VL_GIT_COMMIT;
}

int vl_build_has_cuda(void) {
#ifdef VL_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

void vl_version_print(FILE *f) {
    fprintf(f, "vlrun %s (commit %s, %s build)\n", vl_version(), vl_version_commit(),
            vl_build_has_cuda() ? "CUDA" : "CPU-only");
}
