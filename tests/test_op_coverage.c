/* test_op_coverage.c: every op of the backend table has a test case (as llama.cpp's
 * test-backend-ops lists every ggml op).
 *   1. The lists next to struct vl_backend (VL_BACKEND_OPS, VL_BACKEND_DATA in kernels.h) cover
 *      the whole struct: sorted by offset, members follow each other with no more than alignment
 *      padding in between and to the end, so a member added without an entry fails here.
 *   2. Every op is called (`->op(`) by some tests/test_*.c, and every op the CUDA backend has by
 *      a GPU test (test_*_gpu.c); heartbeat, a callback the engine sets and the CPU backend
 *      calls, counts where a test sets it (`->heartbeat =`).
 * One line per op names the files that cover it.
 * Leaves out: whether a test case is good (each op test's own header says what it checks).
 */
#include "kernels/kernels.h"
#include "vltest.h"

#include <dirent.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    const char *name;
    size_t offset, size;
    int is_op;
} member;

#define OP_MEMBER(m)   {#m, offsetof(vl_backend, m), sizeof(((vl_backend *)0)->m), 1},
#define DATA_MEMBER(m) {#m, offsetof(vl_backend, m), sizeof(((vl_backend *)0)->m), 0},
static member members[] = {VL_BACKEND_OPS(OP_MEMBER) VL_BACKEND_DATA(DATA_MEMBER)};
#define N_MEMBERS ((int)(sizeof members / sizeof members[0]))

static int by_offset(const void *a, const void *b) {
    const member *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

static size_t align_up(size_t at, size_t size) {
    const size_t a = size < sizeof(void *) ? size : sizeof(void *);
    return (at + a - 1) / a * a;
}

static void test_layout(void) {
    member sorted[N_MEMBERS];
    memcpy(sorted, members, sizeof sorted);
    qsort(sorted, N_MEMBERS, sizeof sorted[0], by_offset);
    size_t end = 0;
    for (int i = 0; i < N_MEMBERS; i++) {
        VT_CHECKF(sorted[i].offset == align_up(end, sorted[i].size),
                  "vl_backend: %zu bytes before %s are in no list (VL_BACKEND_OPS / "
                  "VL_BACKEND_DATA, kernels.h): a member without an entry?",
                  sorted[i].offset - end, sorted[i].name);
        if (sorted[i].is_op)
            VT_CHECKF(sorted[i].size == sizeof(void (*)(void)), "%s is not a function pointer",
                      sorted[i].name);
        end = sorted[i].offset + sorted[i].size;
    }
    VT_CHECKF(align_up(end, sizeof(void *)) == sizeof(vl_backend),
              "vl_backend: %zu bytes after %s are in no list", sizeof(vl_backend) - end,
              sorted[N_MEMBERS - 1].name);
}

/* The test sources (tests/test_*.c but this one), read whole. */
#define MAX_SOURCES 128
static struct {
    char name[256];
    char *text;
    int gpu;
} sources[MAX_SOURCES];
static int n_sources;

static void read_sources(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", vt_fixture(".."));
    DIR *d = opendir(dir);
    VT_CHECKF(d != NULL, "cannot list %s", dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) && n_sources < MAX_SOURCES;) {
        const size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "test_", 5) != 0 || len < 3 || strcmp(e->d_name + len - 2, ".c") ||
            strcmp(e->d_name, "test_op_coverage.c") == 0)
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = 0;
        char *text = vt_read_all(path, &n);
        if (!text) continue;
        snprintf(sources[n_sources].name, sizeof sources[0].name, "%s", e->d_name);
        sources[n_sources].text = text;
        sources[n_sources].gpu = len > 6 && strcmp(e->d_name + len - 6, "_gpu.c") == 0;
        n_sources++;
    }
    closedir(d);
    VT_CHECKF(n_sources >= 10, "only %d test sources found in %s", n_sources, dir);
}

static void test_cases(void) {
    for (int i = 0; i < N_MEMBERS; i++) {
        if (!members[i].is_op) continue;
        const int callback = strcmp(members[i].name, "heartbeat") == 0;
        char call[64];
        snprintf(call, sizeof call, callback ? "->%s =" : "->%s(", members[i].name);
        char files[1024] = "";
        int any = 0, gpu = 0;
        for (int s = 0; s < n_sources; s++) {
            if (!strstr(sources[s].text, call)) continue;
            any = 1;
            gpu |= sources[s].gpu;
            if (strlen(files) + strlen(sources[s].name) + 2 < sizeof files) {
                strcat(files, " ");
                strcat(files, sources[s].name);
            }
        }
        printf("  %-20s%s\n", members[i].name, any ? files : " (none)");
        VT_CHECKF(any, "op %s: no test calls it (\"%s\" in tests/test_*.c)", members[i].name, call);
        VT_CHECKF(callback || gpu, "op %s: no GPU test (tests/test_*_gpu.c) calls it",
                  members[i].name);
    }
}

int main(void) {
    test_layout();
    read_sources();
    test_cases();
    for (int s = 0; s < n_sources; s++) free(sources[s].text);
    return vt_finish();
}
