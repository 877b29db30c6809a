/* test_error.c: the error record (loader/error.c) is per thread: two threads that each record a
 * failure at the same time read back their own line, the first record of a thread still wins
 * over its later ones, and the main thread, which recorded nothing, still reads "".
 * The threads meet at a barrier after recording and before reading, so with one shared buffer
 * the first-wins rule would leave both reading the same line and the test would fail.
 */
#include "loader/loader.h"
#include "vltest.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_barrier_t both_recorded;

typedef struct {
    int id;
    char got[64], got_after_second[64];
} thread_case;

static void *record_and_read(void *arg) {
    thread_case *t = arg;
    vl_error_set("thread %d failed", t->id);
    pthread_barrier_wait(&both_recorded);
    snprintf(t->got, sizeof t->got, "%s", vl_error_get());
    vl_error_set("a later, vaguer failure of thread %d", t->id);
    snprintf(t->got_after_second, sizeof t->got_after_second, "%s", vl_error_get());
    vl_error_clear();
    return NULL;
}

int main(void) {
    vl_error_clear();
    VT_CHECK(pthread_barrier_init(&both_recorded, NULL, 2) == 0);
    thread_case cases[2] = {{.id = 1}, {.id = 2}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        VT_CHECK(pthread_create(&threads[i], NULL, record_and_read, &cases[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&both_recorded);
    VT_CHECKF(strcmp(cases[0].got, "thread 1 failed") == 0, "thread 1 read \"%s\"", cases[0].got);
    VT_CHECKF(strcmp(cases[1].got, "thread 2 failed") == 0, "thread 2 read \"%s\"", cases[1].got);
    VT_CHECK(strcmp(cases[0].got_after_second, "thread 1 failed") == 0);
    VT_CHECK(strcmp(cases[1].got_after_second, "thread 2 failed") == 0);
    VT_CHECKF(vl_error_get()[0] == '\0', "the main thread read \"%s\"", vl_error_get());
    vl_error_set("main failed");
    VT_CHECK(strcmp(vl_error_get(), "main failed") == 0);
    return vt_finish();
}
