/* test_batch.c: continuous batching (engine/batch.c) on the CPU backend, tiny checkpoints, the
 * small tokenizer. Each request's tokens and text in a batch must be byte-identical to
 * vl_engine_run of the same request alone (the reference: its prefill and decode are checked
 * against transformers by test_engine_api / test_engine_golden):
 *   1. 8 requests (0-3 images, the prompt and the messages paths, different max_tokens, greedy,
 *      a repetition penalty, seeded temperature, top-k) added at once, prefill chunks of 16
 *      tokens interleaved with decode steps; on tiny-a, tiny-a with --kv int8, tiny-odd with
 *      --quant nf4, tiny-b, and tiny-a with --quant nf4 and with --quant int8: quantizing places
 *      the weights, and tiny-a's q/k/v (sizes multiples of the 256-byte placement) then lie back
 *      to back, so decode runs them fused (checked), a path the CPU backend's in-place weights
 *      never take;
 *   2. a pool that holds one request at a time: all queue, run one by one, finish in FIFO order,
 *      each still equal to its run alone;
 *   3. a request larger than the pool is refused at add (never_fits 1), a malformed one too
 *      (never_fits 0);
 *   4. a request cancelled mid-decode ends with rc -1 and frees its blocks, and on_text's -1
 *      cancels too;
 *   5. the plan equals the arena to the byte, and a budget-sized pool is the largest that fits;
 *   6. the vision cache (1 runs with it automatic, off, and 3 KiB so that entries are
 *      overwritten): the same answers, and the expected hits and misses;
 *   7. the plan reserves VL_DECODE_GRAPH_BYTES for each decode graph a batch would record (one
 *      per row count, at most VL_STEP_GRAPHS_MAX) on a backend that records them, none on the
 *      CPU;
 *   8. the busy hook (vl_batch_set_busy_hook, where the server wakes its clients) runs once a
 *      decode step and once a prefill chunk, and not at all once cleared. */
#include "engine/batch.h"
#include "engine/models/models.h"
#include "vltest.h"

#define N_REQ 8

static char g_img[4][4096]; /* img_a, img_b, img_c, page */

typedef struct {
    char text[4096];
    size_t len;
    int done, rc, order;
    char error[256];
    int32_t tokens[64];
    int n_tokens, prompt_tokens;
    char stop[16];
    int stop_after; /* on_text returns -1 after this many pieces (0: never) */
    int pieces;
} job_sink;

static int g_done_count;

static int on_text(void *ctx, const char *piece, size_t len) {
    job_sink *s = ctx;
    if (s->len + len < sizeof s->text) memcpy(s->text + s->len, piece, len);
    s->len += len;
    s->pieces++;
    return s->stop_after && s->pieces >= s->stop_after ? -1 : 0;
}

static void on_done(void *ctx, int rc, const char *error, const vl_result *r) {
    job_sink *s = ctx;
    s->done++;
    s->rc = rc;
    s->order = g_done_count++;
    if (error) snprintf(s->error, sizeof s->error, "%s", error);
    if (!r) return;
    s->n_tokens = r->n_tokens < 64 ? r->n_tokens : 64;
    memcpy(s->tokens, r->tokens, (size_t)s->n_tokens * sizeof *s->tokens);
    s->prompt_tokens = r->prompt_tokens;
    snprintf(s->stop, sizeof s->stop, "%s", r->stop_reason ? r->stop_reason : "");
    VT_CHECK(r->text_len == s->len && memcmp(r->text, s->text, s->len) == 0);
}

/* The 8 requests: images, text or messages, sampling. */
typedef struct {
    vl_request rq;
    vl_image_arg img[3];
    vl_part parts[5];
    vl_message msgs[4];
} request;

static void make_requests(request *r) {
    static const int n_img[N_REQ] = {0, 1, 2, 3, 1, 0, 1, 3};
    static const int which[N_REQ][3] = {{0}, {0}, {1, 2}, {0, 3, 1}, {3}, {0}, {2}, {2, 0, 1}};
    static const int max_tokens[N_REQ] = {5, 7, 4, 9, 3, 6, 8, 1};
    for (int i = 0; i < N_REQ; i++) {
        request *q = &r[i];
        memset(q, 0, sizeof *q);
        vl_request_default(&q->rq);
        for (int k = 0; k < n_img[i]; k++)
            q->img[k] = (vl_image_arg){g_img[which[i][k]], 1, NULL, 0};
        if (i == 6) q->img[0].repeat = 2; /* IMAGE x2 */
        q->rq.images = n_img[i] ? q->img : NULL;
        q->rq.n_images = n_img[i];
        q->rq.max_tokens = max_tokens[i];
        q->rq.prompt = i % 2 ? "What is in the picture?" : "Describe it in detail, please.";
    }
    /* messages: a conversation with a system message and an earlier answer (no image) */
    request *m = &r[5];
    m->parts[0] = (vl_part){"Answer in one word.", -1};
    m->parts[1] = (vl_part){"Hi there", -1};
    m->parts[2] = (vl_part){"Hello.", -1};
    m->parts[3] = (vl_part){"\nAnd now?", -1};
    m->msgs[0] = (vl_message){VL_ROLE_SYSTEM, &m->parts[0], 1};
    m->msgs[1] = (vl_message){VL_ROLE_USER, &m->parts[1], 1};
    m->msgs[2] = (vl_message){VL_ROLE_ASSISTANT, &m->parts[2], 1};
    m->msgs[3] = (vl_message){VL_ROLE_USER, &m->parts[3], 1};
    m->rq.messages = m->msgs;
    m->rq.n_messages = 4;
    /* messages with images: text around two image parts */
    request *q = &r[3];
    q->parts[0] = (vl_part){"Look: ", -1};
    q->parts[1] = (vl_part){NULL, 0};
    q->parts[2] = (vl_part){NULL, 1};
    q->parts[3] = (vl_part){NULL, 2};
    q->parts[4] = (vl_part){" Which differs?", -1};
    q->msgs[0] = (vl_message){VL_ROLE_USER, q->parts, 5};
    q->rq.messages = q->msgs;
    q->rq.n_messages = 1;
    r[1].rq.repetition_penalty = 1.3f;
    r[2].rq.greedy = 0; /* seeded temperature: the backend's sampler alone, its twin here */
    r[2].rq.temperature = 0.8f;
    r[2].rq.seed = 7;
    r[4].rq.greedy = 0; /* top-k: the host sampler in both */
    r[4].rq.top_k = 5;
    r[4].rq.seed = 3;
}

static vl_engine *open_engine(const char *model, int kv_int8, vl_quant quant, int64_t budget) {
    char tok[4096];
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    vl_engine_config cfg;
    vl_engine_config_default(&cfg);
    cfg.backend = VL_BACKEND_CPU;
    cfg.model_dir = vt_fixture(model);
    cfg.tokenizer_path = tok;
    cfg.kv_int8 = kv_int8;
    cfg.quant = quant;
    cfg.chunk = 16; /* prefill spans many steps, between decode steps */
    cfg.max_pixels = 28 * 28 * 40;
    cfg.mem_budget = budget;
    vl_engine *e = vl_engine_open(&cfg);
    VT_CHECKF(e != NULL, "%s: %s", model, vl_error_get());
    return e;
}

/* Each request alone: the reference. */
static void run_alone(vl_engine *e, request *r, job_sink *want) {
    for (int i = 0; i < N_REQ; i++) {
        memset(&want[i], 0, sizeof want[i]);
        vl_callbacks cb = {.ctx = &want[i], .on_text = on_text};
        vl_result res;
        int rc = vl_engine_run(e, &r[i].rq, &cb, &res);
        VT_CHECKF(rc == 0, "alone %d: %s", i, vl_error_get());
        if (rc) continue;
        on_done(&want[i], 0, NULL, &res);
        vl_result_free(&res);
    }
}

static void check_same(const char *what, int i, const job_sink *got, const job_sink *want) {
    VT_CHECKF(got->done == 1 && got->rc == 0, "%s %d: done %d rc %d %s", what, i, got->done,
              got->rc, got->error);
    VT_CHECKF(got->n_tokens == want->n_tokens &&
                  memcmp(got->tokens, want->tokens, (size_t)want->n_tokens * 4) == 0,
              "%s %d: tokens differ (%d vs %d)", what, i, got->n_tokens, want->n_tokens);
    VT_CHECKF(got->len == want->len && memcmp(got->text, want->text, want->len) == 0,
              "%s %d: text differs", what, i);
    VT_CHECKF(got->prompt_tokens == want->prompt_tokens && strcmp(got->stop, want->stop) == 0,
              "%s %d: prompt %d vs %d, stop %s vs %s", what, i, got->prompt_tokens,
              want->prompt_tokens, got->stop, want->stop);
}

/* Add all, step to the end; returns the most queued at once. */
static int run_batch(vl_batch *b, request *r, job_sink *got) {
    int most_queued = 0;
    g_done_count = 0;
    for (int i = 0; i < N_REQ; i++) {
        memset(&got[i], 0, sizeof got[i]);
        vl_job_callbacks cb = {.ctx = &got[i], .on_text = on_text, .on_done = on_done};
        int nf = -1;
        int64_t id = vl_batch_add(b, &r[i].rq, &cb, &nf);
        VT_CHECKF(id == i && nf == 0, "add %d: %s", i, vl_error_get());
    }
    for (int steps = 0; steps < 10000; steps++) {
        vl_batch_stats st;
        vl_batch_get_stats(b, &st);
        if (st.queued > most_queued) most_queued = st.queued;
        int left = vl_batch_step(b);
        VT_CHECKF(left >= 0, "step: %s", vl_error_get());
        if (left <= 0) break;
    }
    vl_batch_stats st;
    vl_batch_get_stats(b, &st);
    VT_CHECK(st.blocks_free == st.blocks_total && st.running == 0 && st.queued == 0);
    return most_queued;
}

/* 5: the arena is the plan, byte for byte. */
static void check_plan(vl_batch *b) {
    vl_shape sh;
    vl_mem_plan plan;
    vl_batch_plan(b->e, &b->bc, b->blocks, &sh, &plan);
    VT_CHECK_INT(b->cx.arena.peak_total, vl_layout_plan(&b->e->m.cfg, b->e->be->act, &sh, NULL));
    VT_CHECK_INT(plan.kv + plan.act + plan.workspace - b->e->be->workspace_bytes,
                 b->cx.arena.peak_total);
    vl_batch_stats st;
    vl_batch_get_stats(b, &st);
    VT_CHECK_INT(st.planned_total, plan.total);
    VT_CHECK_INT(st.blocks_total, b->blocks);
}

/* The busy hook's calls (vl_batch_set_busy_hook): one a decode step, one a prefill chunk. */
static int g_busy_calls;
static void count_busy(void *ctx) {
    (void)ctx;
    g_busy_calls++;
}

static void test_variant(const char *model, int kv_int8, vl_quant quant, int want_fused) {
    vl_engine *e = open_engine(model, kv_int8, quant, 0);
    if (!e) return;
    static request r[N_REQ];
    job_sink want[N_REQ], got[N_REQ];
    make_requests(r);
    run_alone(e, r, want);
    if (want_fused) { /* the weights are placed by the first request */
        const vl_qwen2_vl_text_weights *tw = e->m.text_w;
        VT_CHECKF(tw->layers[0].qkv.data != NULL,
                  "%s: q/k/v not fused: the fused decode path is not tested", model);
    }
    /* the vision cache: automatic (its hits give the same answers), none, and 3 KiB (entries
     * overwritten) */
    const int64_t caches[] = {-1, 0, 3072};
    for (int c = 0; c < 3; c++) {
        vl_batch_config bc;
        vl_batch_config_default(&bc);
        bc.block_tokens = 8;
        bc.vision_cache_bytes = caches[c];
        vl_batch *b = vl_batch_open(e, &bc);
        VT_CHECKF(b != NULL, "%s: open: %s", model, vl_error_get());
        if (!b) continue;
        check_plan(b);
        g_busy_calls = 0;
        vl_batch_set_busy_hook(b, count_busy, NULL);
        if (c != 0) vl_batch_set_busy_hook(b, NULL, NULL); /* cleared: never called */
        run_batch(b, r, got);
        char what[128];
        snprintf(what, sizeof what, "%s, vision cache %lld", model, (long long)caches[c]);
        for (int i = 0; i < N_REQ; i++) check_same(what, i, &got[i], &want[i]);
        vl_batch_stats st;
        vl_batch_get_stats(b, &st);
        int64_t chunks = 0;
        for (int i = 0; i < N_REQ; i++)
            chunks += (got[i].prompt_tokens + b->cx.chunk - 1) / b->cx.chunk;
        VT_CHECKF(g_busy_calls == (c == 0 ? st.decode_steps + chunks : 0),
                  "%s: busy hook called %d times, %lld decode steps, %lld prefill chunks", what,
                  g_busy_calls, (long long)st.decode_steps, (long long)chunks);
        /* 12 images, 11 lookups (request 6's IMAGE x2 once), 4 distinct pixel sets */
        if (c == 0)
            VT_CHECKF(st.vision_cache_hits == 7 && st.vision_cache_misses == 4 &&
                          st.vision_cache_evictions == 0,
                      "%s: hits %lld misses %lld evictions %lld", what,
                      (long long)st.vision_cache_hits, (long long)st.vision_cache_misses,
                      (long long)st.vision_cache_evictions);
        if (c == 1) VT_CHECK(st.vision_cache_bytes == 0 && st.vision_cache_hits == 0);
        if (c == 2)
            VT_CHECKF(st.vision_cache_hits + st.vision_cache_misses == 11 &&
                          st.vision_cache_evictions > 0 && st.vision_cache_misses > 4,
                      "%s: %lld lookups, %lld misses, %lld evictions", what,
                      (long long)(st.vision_cache_hits + st.vision_cache_misses),
                      (long long)st.vision_cache_misses, (long long)st.vision_cache_evictions);
        vl_batch_close(b);
    }
    vl_engine_close(e);
}

/* 2 and 3: a pool of one request at a time, and requests it can never hold. */
static void test_small_pool(void) {
    vl_engine *e = open_engine("models/tiny-a", 0, VL_QUANT_BF16, 0);
    if (!e) return;
    static request r[N_REQ];
    job_sink want[N_REQ], got[N_REQ];
    make_requests(r);
    run_alone(e, r, want);
    int most = 0;
    for (int i = 0; i < N_REQ; i++)
        if (want[i].prompt_tokens + r[i].rq.max_tokens > most)
            most = want[i].prompt_tokens + r[i].rq.max_tokens;
    vl_batch_config bc;
    vl_batch_config_default(&bc);
    bc.block_tokens = 16;
    const vl_config *c = &e->m.cfg;
    int64_t block = (int64_t)c->n_layers * 2 * c->n_kv_heads * 16 * c->head_dim * 4;
    int64_t blocks = (most + 15) / 16;
    bc.kv_bytes = blocks * block + block / 2; /* the largest request, not two small ones */
    vl_batch *b = vl_batch_open(e, &bc);
    VT_CHECKF(b != NULL, "open: %s", vl_error_get());
    if (!b) {
        vl_engine_close(e);
        return;
    }
    VT_CHECK_INT(b->blocks, blocks);
    int queued = run_batch(b, r, got);
    VT_CHECKF(queued >= N_REQ - 2, "at most %d queued", queued);
    for (int i = 0; i < N_REQ; i++) {
        check_same("small pool", i, &got[i], &want[i]);
        VT_CHECKF(got[i].order == i, "request %d finished %d-th", i, got[i].order);
    }
    /* 3: more tokens than the pool: refused at once */
    vl_request big = r[1].rq;
    big.max_tokens = (int)(blocks * 16);
    int nf = 0;
    vl_error_clear();
    VT_CHECK(vl_batch_add(b, &big, NULL, &nf) == -1 && nf == 1);
    VT_CHECKF(strstr(vl_error_get(), "pool holds") != NULL, "%s", vl_error_get());
    vl_image_arg missing = {"/nonexistent/vlrun-batch.png", 1, NULL, 0};
    vl_request bad = r[1].rq;
    bad.images = &missing;
    VT_CHECK(vl_batch_add(b, &bad, NULL, &nf) == -1 && nf == 0);
    VT_CHECK(strstr(vl_error_get(), "vlrun-batch.png") != NULL);
    vl_batch_stats st;
    vl_batch_get_stats(b, &st);
    VT_CHECK(st.queued == 0 && st.blocks_free == st.blocks_total);
    vl_batch_close(b);
    vl_engine_close(e);
}

/* 4: cancel mid-decode (vl_batch_cancel, and on_text's -1); closing ends what is left. */
static void test_cancel(void) {
    vl_engine *e = open_engine("models/tiny-a", 0, VL_QUANT_BF16, 0);
    if (!e) return;
    static request r[N_REQ];
    make_requests(r);
    vl_batch_config bc;
    vl_batch_config_default(&bc);
    vl_batch *b = vl_batch_open(e, &bc);
    VT_CHECK(b != NULL);
    if (b) {
        job_sink s[3];
        memset(s, 0, sizeof s);
        s[1].stop_after = 2;
        int64_t id[3];
        for (int i = 0; i < 3; i++) {
            r[3].rq.max_tokens = 30;
            vl_job_callbacks cb = {.ctx = &s[i], .on_text = on_text, .on_done = on_done};
            id[i] = vl_batch_add(b, &r[3].rq, &cb, NULL);
        }
        for (int k = 0; k < 200 && !s[1].done && vl_batch_step(b) > 0; k++) {
        }
        VT_CHECKF(s[1].done == 1 && s[1].rc == -1 && s[1].pieces == 2, "on_text -1: %d %d",
                  s[1].done, s[1].pieces);
        VT_CHECKF(strcmp(s[1].error, "cancelled") == 0, "%s", s[1].error);
        /* a request stopped by on_text (a server's stop string) still reports its usage */
        VT_CHECKF(s[1].prompt_tokens > 0 && s[1].n_tokens >= 2,
                  "usage of a cancelled request: "
                  "%d prompt, %d generated",
                  s[1].prompt_tokens, s[1].n_tokens);
        vl_batch_stats st;
        vl_batch_get_stats(b, &st);
        VT_CHECK(st.running == 2 && s[0].done == 0 && s[0].pieces >= 2);
        int64_t held = st.blocks_total - st.blocks_free;
        VT_CHECK(vl_batch_cancel(b, id[0]) == 0 && vl_batch_cancel(b, 999) == -1);
        vl_batch_step(b);
        VT_CHECKF(s[0].done == 1 && s[0].rc == -1 && strstr(s[0].error, "cancelled"), "%s",
                  s[0].error);
        vl_batch_get_stats(b, &st);
        VT_CHECK(st.running == 1 && held > 0);
        VT_CHECK_INT(st.blocks_total - st.blocks_free, held / 2); /* s[0]'s blocks are free */
        VT_CHECK(st.kv_bytes_used > 0 && st.kv_bytes_used < st.kv_bytes_total);
        vl_batch_close(b);
        VT_CHECKF(s[2].done == 1 && s[2].rc == -1 && strstr(s[2].error, "shutting down"), "%s",
                  s[2].error);
    }
    vl_engine_close(e);
}

/* 5: with --mem-budget the pool is the largest whose plan fits it. */
static void test_budget(void) {
    int64_t budget = 64ll << 20;
    vl_engine *e = open_engine("models/tiny-a", 0, VL_QUANT_BF16, budget);
    if (!e) return;
    vl_batch_config bc;
    vl_batch_config_default(&bc);
    vl_batch *b = vl_batch_open(e, &bc);
    VT_CHECKF(b != NULL, "%s", vl_error_get());
    if (b) {
        vl_shape sh;
        vl_mem_plan at, more;
        vl_batch_plan(e, &bc, b->blocks, &sh, &at);
        vl_batch_plan(e, &bc, b->blocks + 1, &sh, &more);
        VT_CHECKF(at.total <= (size_t)budget && more.total > (size_t)budget,
                  "%lld blocks: %zu, %zu", (long long)b->blocks, at.total, more.total);
        check_plan(b);
        vl_batch_close(b);
    }
    vl_engine_close(e);
    e = open_engine("models/tiny-a", 0, VL_QUANT_BF16, 1 << 20); /* too small for the scratch */
    vl_error_clear();
    VT_CHECK(e && vl_batch_open(e, &bc) == NULL && strstr(vl_error_get(), "--mem-budget"));
    vl_engine_close(e);
}

/* Stands in for a recording backend's graph_begin: the plan only asks whether there is one. */
static int fake_graph_begin(vl_backend *be) {
    (void)be;
    return -1;
}

static void test_graph_plan(void) {
    vl_engine *e = open_engine("models/tiny-a", 0, VL_QUANT_BF16, 0);
    if (!e) return;
    vl_batch_config bc;
    vl_batch_config_default(&bc);
    vl_shape sh;
    vl_mem_plan plain, rec;
    VT_CHECK_INT(vl_batch_graph_count(e, &bc), 0);
    vl_batch_plan(e, &bc, 10, &sh, &plain);
    VT_CHECK(plain.context == 0);
    int (*cpu_begin)(vl_backend *) = e->be->graph_begin;
    const int rows[] = {1, 16, 64, 100};
    for (int i = 0; i < 4; i++) {
        bc.max_batch = rows[i];
        const int want = rows[i] < VL_STEP_GRAPHS_MAX ? rows[i] : VL_STEP_GRAPHS_MAX;
        vl_batch_plan(e, &bc, 10, &sh, &plain);
        e->be->graph_begin = fake_graph_begin;
        VT_CHECK_INT(vl_batch_graph_count(e, &bc), want);
        vl_batch_plan(e, &bc, 10, &sh, &rec);
        e->be->graph_begin = cpu_begin;
        VT_CHECKF(rec.context == (size_t)want * VL_DECODE_GRAPH_BYTES &&
                      rec.total == plain.total + rec.context,
                  "max_batch %d: context %zu, total %zu (%zu without graphs), expected %d graphs",
                  rows[i], rec.context, rec.total, plain.total, want);
    }
    vl_engine_close(e);
}

int main(void) {
    snprintf(g_img[0], sizeof g_img[0], "%s", vt_fixture("models/images/img_a_56x84.png"));
    snprintf(g_img[1], sizeof g_img[1], "%s", vt_fixture("models/images/img_b_100x60.png"));
    snprintf(g_img[2], sizeof g_img[2], "%s", vt_fixture("models/images/img_c_45x130.png"));
    snprintf(g_img[3], sizeof g_img[3], "%s", vt_fixture("../../examples/page.png"));
    test_variant("models/tiny-a", 0, VL_QUANT_BF16, 0);
    test_variant("models/tiny-a", 1, VL_QUANT_BF16, 0);
    test_variant("models/tiny-odd", 0, VL_QUANT_NF4, 0);
    test_variant("models/tiny-b", 0, VL_QUANT_BF16, 0);
    test_variant("models/tiny-a", 0, VL_QUANT_NF4, 1);
    test_variant("models/tiny-a", 0, VL_QUANT_INT8, 1);
    test_small_pool();
    test_cancel();
    test_budget();
    test_graph_plan();
    printf("%d passed, %d failed\n", vt_passed, vt_failed);
    return vt_failed ? 1 : 0;
}
