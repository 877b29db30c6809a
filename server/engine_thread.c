/* engine_thread.c: the one thread that owns the vl_batch (which is not thread-safe). HTTP threads
 * hand it jobs through a locked FIFO and ask for cancellations with a flag; it adds the new jobs
 * (vl_batch_add: images decoded, prompt built, refused at once when it could never fit), sends
 * the cancellations, and steps the batch while there is work, sleeping on a condition variable
 * otherwise. Its callbacks put each piece of text through the job's stop strings into the job's
 * buffer and mark the job; a stop string cancels the request there, freeing its blocks. The
 * marked jobs' waiters are woken from the batch's busy hook, while the device runs the next
 * step: woken at once, the 16 waiters of a step took the lock between the callbacks of its rows
 * and kept the device idle for that long.
 * Lock order: this thread's lock, then the metrics' (never the other way). */
#include "server/server_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

struct vl_engine_thread {
    vl_batch *b;
    vl_metrics *metrics;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* new jobs, a cancellation, stop */
    pthread_cond_t idle;    /* the last job ended */
    vl_job *head, *tail;    /* submitted, not yet taken */
    int n_pending, n_taken; /* in that list; taken by this thread, not yet added */
    vl_job **active;        /* added to the batch, not yet done (swap-removed) */
    int n_active, cap_active;
    int cancel_pending, closing, stop;
    int broken; /* the backend failed: the batch is unusable */
    char broken_why[512];
};

static void cond_init_monotonic(pthread_cond_t *c) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

/* Wait on c until the vl_now_s() deadline (CLOCK_MONOTONIC, as vl_now_s). ETIMEDOUT or 0. */
static int wait_until(pthread_cond_t *c, pthread_mutex_t *m, double deadline) {
    struct timespec ts;
    ts.tv_sec = (time_t)deadline;
    ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
    return pthread_cond_timedwait(c, m, &ts);
}

int vl_job_init(vl_job *j, const char *const *stops, int n_stops) {
    memset(j, 0, sizeof *j);
    vl_stop_init(&j->stop, stops, n_stops);
    cond_init_monotonic(&j->cond);
    j->id = -1;
    return 0;
}

void vl_job_free(vl_job *j) {
    vl_stop_free(&j->stop);
    vl_buf_free(&j->text);
    pthread_cond_destroy(&j->cond);
}

static int busy(const vl_engine_thread *t) {
    return t->n_pending || t->n_taken || t->n_active;
}

/* The job's end (the lock held): wake its waiter; the engine never touches it again. */
static void job_end(vl_engine_thread *t, vl_job *j) {
    j->t_done = vl_now_s();
    j->done = 1;
    pthread_cond_broadcast(&j->cond);
    if (!busy(t)) pthread_cond_broadcast(&t->idle);
}

static void job_fail(vl_engine_thread *t, vl_job *j, int status, const char *type,
                     const char *why) {
    j->failed = 1;
    vl_api_fail(&j->err, status, type, NULL, "%s", why);
    job_end(t, j);
}

static void fail_cancelled(vl_engine_thread *t, vl_job *j) {
    job_fail(t, j, 503, "server_error",
             j->cancel == VL_CANCEL_SHUTDOWN ? "the server is shutting down; retry on another"
                                             : "the client went away");
}

static int on_text(void *ctx, const char *piece, size_t len) {
    vl_job *j = ctx;
    vl_engine_thread *t = j->et;
    pthread_mutex_lock(&t->lock);
    if (j->t_first == 0) j->t_first = vl_now_s();
    int r = j->cancel ? 1 : vl_stop_feed(&j->stop, piece, len, &j->text);
    if (r == 1 && !j->cancel) j->stopped = 1;
    j->news = 1; /* its waiter is woken by wake_waiters */
    pthread_mutex_unlock(&t->lock);
    return r == 0 ? 0 : -1; /* a stop string, a cancellation, or out of memory: end it */
}

/* Wake the waiters of the jobs that got text (the batch's busy hook, and before the thread
 * sleeps). A job that ended was woken by job_end and is no longer active. */
static void wake_waiters(void *ctx) {
    vl_engine_thread *t = ctx;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->n_active; i++)
        if (t->active[i]->news) {
            t->active[i]->news = 0;
            pthread_cond_broadcast(&t->active[i]->cond);
        }
    pthread_mutex_unlock(&t->lock);
}

static void observe_latency(vl_engine_thread *t, const vl_job *j) {
    double first = j->t_first ? j->t_first : j->t_done;
    int n = j->usage.completion_tokens;
    double tpot = n > 1 && j->t_first ? (j->t_done - j->t_first) / (n - 1) : -1.0;
    vl_metrics_observe(t->metrics, first - j->t_submit, tpot);
}

static void remove_active(vl_engine_thread *t, const vl_job *j) {
    for (int i = 0; i < t->n_active; i++)
        if (t->active[i] == j) {
            t->active[i] = t->active[--t->n_active];
            return;
        }
}

static void on_done(void *ctx, int rc, const char *error, const vl_result *r) {
    vl_job *j = ctx;
    vl_engine_thread *t = j->et;
    pthread_mutex_lock(&t->lock);
    remove_active(t, j);
    if (r) j->usage = (vl_token_usage){r->prompt_tokens, r->n_tokens};
    if (rc == 0 && vl_stop_finish(&j->stop, &j->text) == 0) {
        const char *why = r ? r->stop_reason : NULL;
        j->finish_reason = !why || strcmp(why, "eos") == 0 ? "stop" : "length";
    } else if (j->stopped) {
        j->finish_reason = "stop";
    } else if (j->cancel) {
        fail_cancelled(t, j);
        pthread_mutex_unlock(&t->lock);
        return;
    } else {
        job_fail(t, j, 500, "server_error", rc == 0 ? "out of host memory" : error);
        pthread_mutex_unlock(&t->lock);
        return;
    }
    j->t_done = vl_now_s();
    observe_latency(t, j);
    job_end(t, j);
    pthread_mutex_unlock(&t->lock);
}

/* Room for one more active job (the lock held). 0, or -1 out of memory. */
static int reserve_active(vl_engine_thread *t) {
    if (t->n_active < t->cap_active) return 0;
    int cap = t->cap_active * 2 + 16;
    vl_job **a = realloc(t->active, (size_t)cap * sizeof *a);
    if (!a) return -1;
    t->active = a;
    t->cap_active = cap;
    return 0;
}

/* Into the batch (on this thread, without the lock: it decodes the images). 1 when added. */
static int add_job(vl_engine_thread *t, vl_job *j) {
    pthread_mutex_lock(&t->lock);
    t->n_taken--;
    int cancelled = j->cancel != VL_CANCEL_NONE, broken = t->broken;
    int no_room = !cancelled && !broken && reserve_active(t);
    if (cancelled) fail_cancelled(t, j);
    if (broken) job_fail(t, j, 500, "server_error", t->broken_why);
    if (no_room) job_fail(t, j, 500, "server_error", "out of host memory");
    if (cancelled || broken || no_room) {
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    t->active[t->n_active++] = j; /* busy while it is added; not cancelled before added */
    pthread_mutex_unlock(&t->lock);
    vl_job_callbacks cb = {.ctx = j, .on_text = on_text, .on_done = on_done};
    int never_fits = 0;
    vl_error_clear();
    int64_t id = vl_batch_add(t->b, &j->rq, &cb, &never_fits);
    pthread_mutex_lock(&t->lock);
    if (id >= 0) {
        j->id = id;
        j->added = 1;
        if (j->cancel) t->cancel_pending = 1; /* asked while it was being added */
        pthread_cond_broadcast(&j->cond);
    } else {
        remove_active(t, j);
        job_fail(t, j, 400, "invalid_request_error", vl_error_get());
        if (never_fits) j->err.code = "context_length_exceeded";
        snprintf(j->err.param, sizeof j->err.param, "messages");
    }
    pthread_mutex_unlock(&t->lock);
    vl_error_clear();
    return id >= 0;
}

/* The ids to cancel now (the lock held); *n of them in *ids (grown as needed). */
static int take_cancels(vl_engine_thread *t, int64_t **ids, int *cap) {
    int n = 0;
    t->cancel_pending = 0;
    for (int i = 0; i < t->n_active; i++) {
        vl_job *j = t->active[i];
        if (!j->cancel || j->cancel_sent || !j->added) continue;
        if (n == *cap) {
            int64_t *g = realloc(*ids, (size_t)(*cap * 2 + 16) * sizeof *g);
            if (!g) break;
            *ids = g;
            *cap = *cap * 2 + 16;
        }
        j->cancel_sent = 1;
        (*ids)[n++] = j->id;
    }
    return n;
}

static void step(vl_engine_thread *t, int *work) {
    vl_error_clear();
    int n = vl_batch_step(t->b);
    if (n >= 0) {
        *work = n;
        return;
    }
    pthread_mutex_lock(&t->lock); /* every request got on_done with the error */
    t->broken = 1;
    snprintf(t->broken_why, sizeof t->broken_why, "the engine failed (%s); restart the server",
             vl_error_get());
    pthread_mutex_unlock(&t->lock);
    *work = 0;
}

static void publish_stats(vl_engine_thread *t) {
    vl_batch_stats st;
    vl_batch_get_stats(t->b, &st);
    pthread_mutex_lock(&t->lock);
    int pending = t->n_pending;
    pthread_mutex_unlock(&t->lock);
    vl_metrics_set_batch(t->metrics, &st, pending);
}

static void *run(void *arg) {
    vl_engine_thread *t = arg;
    int work = 0, cap = 0;
    int64_t *ids = NULL;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (!t->head && !t->cancel_pending && work == 0 && !t->stop)
            pthread_cond_wait(&t->wake, &t->lock);
        if (t->stop && !t->head && t->n_active == 0 && work == 0) break;
        vl_job *fresh = t->head;
        t->head = t->tail = NULL;
        t->n_taken = t->n_pending;
        t->n_pending = 0;
        pthread_mutex_unlock(&t->lock);
        for (vl_job *j = fresh, *next; j; j = next) {
            next = j->next; /* j may be freed by its waiter once it is done */
            if (add_job(t, j)) work = 1;
        }
        pthread_mutex_lock(&t->lock);
        int n_ids = take_cancels(t, &ids, &cap);
        pthread_mutex_unlock(&t->lock);
        for (int i = 0; i < n_ids; i++) vl_batch_cancel(t->b, ids[i]);
        if (work > 0 || n_ids > 0) step(t, &work);
        if (work == 0) wake_waiters(t); /* no step to run them beside */
        publish_stats(t);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    free(ids);
    return NULL;
}

vl_engine_thread *vl_engine_thread_start(vl_batch *b, vl_metrics *m) {
    vl_engine_thread *t = calloc(1, sizeof *t);
    if (!t) {
        vl_error_set("out of host memory");
        return NULL;
    }
    t->b = b;
    t->metrics = m;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    cond_init_monotonic(&t->idle);
    vl_batch_set_busy_hook(b, wake_waiters, t);
    publish_stats(t);
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        vl_batch_set_busy_hook(b, NULL, NULL);
        pthread_mutex_destroy(&t->lock);
        free(t);
        vl_error_set("could not start the engine thread");
        return NULL;
    }
    return t;
}

void vl_engine_thread_submit(vl_engine_thread *t, vl_job *j) {
    j->et = t;
    j->next = NULL;
    pthread_mutex_lock(&t->lock);
    if (t->closing) {
        j->cancel = VL_CANCEL_SHUTDOWN;
        fail_cancelled(t, j);
    } else {
        if (t->tail)
            t->tail->next = j;
        else
            t->head = j;
        t->tail = j;
        t->n_pending++;
        pthread_cond_signal(&t->wake);
    }
    pthread_mutex_unlock(&t->lock);
}

void vl_job_poll(vl_engine_thread *t, vl_job *j, size_t from, int want_added, double timeout_s,
                 vl_job_news *out) {
    memset(out, 0, sizeof *out);
    double deadline = vl_now_s() + timeout_s;
    pthread_mutex_lock(&t->lock);
    while (!j->done && j->text.len <= from && !(want_added && j->added))
        if (wait_until(&j->cond, &t->lock, deadline) == ETIMEDOUT) break;
    if (j->text.len > from) {
        out->text = malloc(j->text.len - from);
        if (out->text) {
            memcpy(out->text, j->text.p + from, j->text.len - from);
            out->len = j->text.len - from;
        }
    }
    out->added = j->added;
    out->done = j->done;
    pthread_mutex_unlock(&t->lock);
}

void vl_job_cancel(vl_engine_thread *t, vl_job *j, vl_cancel_reason why) {
    pthread_mutex_lock(&t->lock);
    if (!j->done && !j->cancel) {
        j->cancel = why;
        t->cancel_pending = 1;
        pthread_cond_signal(&t->wake);
    }
    pthread_mutex_unlock(&t->lock);
}

void vl_job_wait_done(vl_engine_thread *t, vl_job *j) {
    pthread_mutex_lock(&t->lock);
    while (!j->done) pthread_cond_wait(&j->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

int vl_engine_thread_wait_idle(vl_engine_thread *t, double deadline) {
    pthread_mutex_lock(&t->lock);
    while (busy(t))
        if (wait_until(&t->idle, &t->lock, deadline) == ETIMEDOUT) break;
    int idle = !busy(t);
    pthread_mutex_unlock(&t->lock);
    return idle;
}

void vl_engine_thread_cancel_all(vl_engine_thread *t) {
    pthread_mutex_lock(&t->lock);
    t->closing = 1;
    for (vl_job *j = t->head; j; j = j->next)
        if (!j->cancel) j->cancel = VL_CANCEL_SHUTDOWN;
    for (int i = 0; i < t->n_active; i++)
        if (!t->active[i]->cancel) t->active[i]->cancel = VL_CANCEL_SHUTDOWN;
    t->cancel_pending = 1;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
}

void vl_engine_thread_stop(vl_engine_thread *t) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->closing = 1;
    t->stop = 1;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    vl_batch_set_busy_hook(t->b, NULL, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    pthread_cond_destroy(&t->idle);
    free(t->active);
    free(t);
}
