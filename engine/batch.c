/* batch.c: many requests on one engine (vlrun.h's vl_batch): what a server runs.
 *
 * Memory is laid out once (engine/layout.c, shape.pool_blocks): the scratch of one prefill chunk
 * and of max_batch decode rows, the largest image, the kv_gather workspace, and a pool of KV
 * blocks filling what the budget leaves (kv_bytes, else mem_budget, else the device's free
 * memory less a margin; the planner prices each choice to the byte). A request is prepared when
 * added (images decoded, prompt built, token limit known) and refused then if it could never
 * run; it waits in a FIFO queue until its prompt plus its token limit fit in free blocks, which
 * are reserved whole at admission, so a running request never runs out. The steps themselves
 * (a prefill chunk, a decode step of every generating request) are engine/batch_step.c. */
#include "engine/batch.h"

#include <stdlib.h>

#define DEVICE_MARGIN ((size_t)512 << 20) /* left free on the device: other allocations */
#define CPU_POOL_MAX  ((size_t)1 << 30)   /* the CPU's pool without a budget */

void vl_batch_config_default(vl_batch_config *c) {
    memset(c, 0, sizeof *c);
    c->max_batch = 16;
    c->block_tokens = 16;
    c->default_max_tokens = 1024;
    c->vision_cache_bytes = -1;
}

/* The largest image: the config's, else the preprocessor's max_pixels in patches. */
static int64_t max_image_patches(const vl_engine *e, const vl_batch_config *bc) {
    if (bc->max_image_patches > 0) return bc->max_image_patches;
    const vl_preproc_config *pre = &e->m.pre;
    return pre->max_pixels / ((int64_t)pre->patch * pre->patch);
}

/* The vision cache's block: the config's, or (-1) the embeddings of 4 of the largest images,
 * at most 64 MiB and 1/32 of the memory budget. */
static size_t vision_cache_bytes(const vl_engine *e, const vl_batch_config *bc) {
    if (bc->vision_cache_bytes >= 0) return (size_t)bc->vision_cache_bytes;
    const vl_config *c = &e->m.cfg;
    const int64_t tokens = max_image_patches(e, bc) / ((int64_t)c->merge * c->merge);
    size_t bytes = 4 * (size_t)tokens * (size_t)c->hidden * vl_dtype_size(e->be->act);
    if (bytes > (size_t)64 << 20) bytes = (size_t)64 << 20;
    if (e->cfg.mem_budget > 0 && bytes > (size_t)e->cfg.mem_budget / 32)
        bytes = (size_t)e->cfg.mem_budget / 32;
    return bytes;
}

static vl_shape batch_shape(const vl_engine *e, const vl_batch_config *bc, int64_t blocks) {
    vl_shape sh = {0};
    sh.ctx = blocks * bc->block_tokens; /* the longest sequence: the whole pool */
    sh.prompt_tokens = sh.ctx;
    sh.chunk = e->cfg.chunk; /* auto (0): VL_CHUNK_SMALL, for the decodes it runs between */
    sh.max_patches = max_image_patches(e, bc);
    sh.kv_int8 = e->cfg.kv_int8;
    sh.batch_rows = bc->max_batch;
    sh.pool_blocks = blocks;
    sh.block_tokens = bc->block_tokens;
    sh.vision_cache_bytes = vision_cache_bytes(e, bc);
    return sh;
}

int vl_batch_graph_count(const vl_engine *e, const vl_batch_config *bc) {
    if (!e->be->graph_begin) return 0; /* the CPU, or a backend made with no_graphs */
    return bc->max_batch < VL_STEP_GRAPHS_MAX ? bc->max_batch : VL_STEP_GRAPHS_MAX;
}

void vl_batch_plan(const vl_engine *e, const vl_batch_config *bc, int64_t blocks, vl_shape *sh,
                   vl_mem_plan *out) {
    vl_weight_plan wp;
    vl_weight_plan_of(&wp, &e->cfg);
    *sh = batch_shape(e, bc, blocks);
    size_t context = e->be->caps->kind == VL_BACKEND_CPU ? 0 : VL_CUDA_CONTEXT_BYTES;
    context += (size_t)vl_batch_graph_count(e, bc) * VL_DECODE_GRAPH_BYTES;
    vl_plan_session(&e->m.cfg, e->be->act, sh, vl_model_weights_bytes((vl_model *)&e->m, &wp),
                    e->be->workspace_bytes, context, out);
}

static size_t arena_bytes(const vl_engine *e, const vl_batch_config *bc, int64_t blocks) {
    vl_shape sh = batch_shape(e, bc, blocks);
    return vl_layout_plan(&e->m.cfg, e->be->act, &sh, NULL);
}

/* The most blocks whose arena fits in `limit` bytes (0 when not even one does). */
static int64_t blocks_within(const vl_engine *e, const vl_batch_config *bc, size_t limit) {
    size_t a1 = arena_bytes(e, bc, 1);
    if (a1 > limit) return 0;
    double per_block = (double)(arena_bytes(e, bc, 1025) - a1) / 1024.0;
    int64_t n = 1 + (int64_t)((double)(limit - a1) / per_block);
    for (size_t a; n > 1 && (a = arena_bytes(e, bc, n)) > limit;)
        n -= 1 + (int64_t)((double)(a - limit) / per_block);
    return n > 1 ? n : 1;
}

/* Bytes of one block of the pool (K and V of every layer, and their scales). */
static size_t block_bytes(const vl_engine *e, const vl_batch_config *bc) {
    const vl_config *c = &e->m.cfg;
    size_t rows = (size_t)c->n_layers * 2 * c->n_kv_heads * (size_t)bc->block_tokens;
    size_t esz = e->cfg.kv_int8 ? 1 : vl_dtype_size(e->be->act);
    return rows * (size_t)c->head_dim * esz + (e->cfg.kv_int8 ? rows * sizeof(float) : 0);
}

static int choose_blocks(const vl_engine *e, const vl_batch_config *bc, int64_t *out) {
    vl_shape sh;
    vl_mem_plan one;
    vl_batch_plan(e, bc, 1, &sh, &one);
    size_t fixed = one.total - arena_bytes(e, bc, 1); /* weights, context, backend workspace */
    const double gib = 1024.0 * 1024 * 1024;
    if (bc->kv_bytes > 0) {
        *out = bc->kv_bytes / (int64_t)block_bytes(e, bc);
    } else if (e->cfg.mem_budget > 0) {
        size_t budget = (size_t)e->cfg.mem_budget;
        *out = budget > fixed ? blocks_within(e, bc, budget - fixed) : 0;
        if (*out < 1)
            return vl_error_set("--mem-budget %.2f GiB leaves no room for the KV pool: the "
                                "weights, workspaces and the scratch of %d decode rows and the "
                                "largest image need %.2f GiB; raise it, lower --max-batch or "
                                "--max-pixels, or use --quant nf4",
                                budget / gib, bc->max_batch, one.total / gib);
    } else if (e->be->mem_info) {
        size_t free_b = 0, total_b = 0;
        e->be->mem_info(e->be, &free_b, &total_b);
        *out = free_b > DEVICE_MARGIN ? blocks_within(e, bc, free_b - DEVICE_MARGIN) : 0;
    } else { /* the CPU without a budget: max_batch full contexts, at most CPU_POOL_MAX */
        int64_t want = (int64_t)bc->max_batch * e->m.cfg.max_positions / bc->block_tokens;
        int64_t cap = (int64_t)(CPU_POOL_MAX / block_bytes(e, bc));
        *out = want < cap ? want : cap;
    }
    if (*out < 1)
        return vl_error_set("the KV pool would hold no block of %d tokens (%.3f MiB each); give "
                            "more memory (--mem-budget, --kv-bytes) or use --kv int8",
                            bc->block_tokens, block_bytes(e, bc) / 1048576.0);
    return 0;
}

static int check_config(const vl_engine *e, const vl_batch_config *bc) {
    if (bc->max_batch < 1 || bc->max_batch > 4096)
        return vl_error_set("max_batch %d: expected 1 to 4096 sequences", bc->max_batch);
    if (bc->block_tokens < 1 || bc->block_tokens > 4096 ||
        (bc->block_tokens & (bc->block_tokens - 1)))
        return vl_error_set("block_tokens %d: expected a power of two from 1 to 4096",
                            bc->block_tokens);
    if (bc->default_max_tokens < 1 || bc->kv_bytes < 0 || bc->max_image_patches < 0 ||
        bc->vision_cache_bytes < -1)
        return vl_error_set("default_max_tokens must be >= 1, kv_bytes and max_image_patches "
                            ">= 0, vision_cache_bytes >= -1 (-1: automatic)");
    if (e->cfg.attn_naive)
        return vl_error_set("the batch runs the flash attention only; drop --attn naive");
    if (!e->be->caps->paged_kv)
        return vl_error_set("the %s backend has no paged KV cache (a batch needs it)", e->be->name);
    return 0;
}

static void free_step_graphs(vl_batch *b) {
    for (int i = 0; b->step_graphs && i < b->n_step_graphs; i++)
        if (b->step_graphs[i]) b->e->be->graph_free(b->e->be, b->step_graphs[i]);
    free(b->step_graphs);
}

vl_batch *vl_batch_open(vl_engine *e, const vl_batch_config *bc) {
    if (check_config(e, bc)) return NULL;
    vl_batch *b = calloc(1, sizeof *b);
    if (!b) {
        vl_error_set("out of host memory");
        return NULL;
    }
    b->e = e;
    b->bc = *bc;
    b->prefill_table_id = -1;
    vl_shape sh;
    vl_mem_plan one;
    vl_batch_plan(e, bc, 1, &sh, &one);
    if (e->cfg.mem_budget > 0 && one.total > (size_t)e->cfg.mem_budget) { /* before placing */
        vl_budget_error(&one, e->cfg.mem_budget,
                        "lower --max-batch or --max-pixels, or use "
                        "--quant nf4");
        goto fail;
    }
    if (vl_engine_place_weights(e) || choose_blocks(e, bc, &b->blocks)) goto fail;
    vl_batch_plan(e, bc, b->blocks, &sh, &b->plan);
    if (vl_refuse_device_memory(e, &b->plan)) goto fail;
    if (vl_context_start(&b->cx, &e->m, &sh, &b->stats)) goto fail;
    vl_vision_cache_init(&b->vcache, b->cx.pool.vision_cache, sh.vision_cache_bytes);
    b->cx.vcache = &b->vcache;
    b->free_list = malloc((size_t)b->blocks * sizeof *b->free_list);
    b->decode_ids = calloc((size_t)bc->max_batch, sizeof *b->decode_ids);
    b->step_graphs = calloc(VL_STEP_GRAPHS_MAX, sizeof *b->step_graphs);
    if (!b->free_list || !b->decode_ids || !b->step_graphs) {
        vl_error_set("out of host memory");
        goto fail;
    }
    for (int64_t i = 0; i < b->blocks; i++) b->free_list[i] = (int32_t)(b->blocks - 1 - i);
    b->n_free = b->blocks;
    b->n_step_graphs = vl_batch_graph_count(e, bc); /* what the plan reserved for */
    if (vl_batch_record_steps(b)) goto fail;
    return b;
fail:
    free_step_graphs(b);
    vl_vision_cache_free(&b->vcache);
    vl_context_free(&b->cx);
    free(b->free_list);
    free(b->decode_ids);
    free(b);
    return NULL;
}

vl_kv_view vl_batch_pool_view(const vl_batch *b, const int32_t *table, int batch, int64_t n_past,
                              const int32_t *n_past_dev, int64_t bound) {
    const vl_config *c = &b->e->m.cfg;
    const int bt = b->bc.block_tokens;
    size_t esz = b->e->cfg.kv_int8 ? 1 : vl_dtype_size(b->e->be->act);
    int64_t block_rows = (int64_t)c->n_kv_heads * bt; /* scales of one block */
    vl_kv_view kv = {0};
    kv.kv = b->cx.pool.kv;
    kv.kv_scale = b->cx.pool.kv_scale;
    kv.v_scale_offset = (size_t)(b->blocks * block_rows);
    kv.layer_scales = 2 * kv.v_scale_offset;
    kv.v_offset = kv.v_scale_offset * (size_t)c->head_dim * esz;
    kv.layer_bytes = 2 * kv.v_offset;
    kv.head_stride = (int64_t)bt * c->head_dim;
    kv.scale_head_stride = bt;
    kv.pages.table = table;
    kv.pages.table_stride = b->blocks;
    kv.pages.block_tokens = bt;
    kv.pages.block_stride = block_rows * c->head_dim;
    kv.pages.scale_block_stride = block_rows;
    kv.batch = batch;
    kv.n_past = n_past;
    kv.n_past_dev = n_past_dev;
    kv.bound = bound;
    return kv;
}

static void job_free(batch_job *j) {
    if (!j) return;
    vl_answer_free(&j->ans);
    free(j->gen);
    free(j->seen);
    free(j->blocks);
    vl_prompt_free(&j->p);
    vl_image_set_free(&j->is);
    free(j);
}

/* Sampling and stopping as vl_engine_run decides them (engine/pipeline.c). */
static int job_setup(vl_batch *b, batch_job *j) {
    vl_engine *e = b->e;
    const vl_request *rq = &j->rq;
    j->host_sampling = !rq->greedy && (rq->top_k > 0 || rq->top_p < 1.0f);
    j->temperature = rq->greedy ? 0.0f : rq->temperature;
    vl_sampler_init(&j->smp, rq);
    j->eos_stops = vl_eos_stops(e, rq);
    j->rep_penalty =
        vl_model_repetition_penalty(&e->m, e->cfg.random_weights, rq->repetition_penalty);
    if (!(j->rep_penalty > 0.0f) || j->rep_penalty == 1.0f) j->rep_penalty = 1.0f;
    j->gen = malloc((size_t)j->limit * sizeof *j->gen);
    j->seen = j->rep_penalty != 1.0f ? calloc((size_t)e->m.cfg.vocab, 1) : NULL;
    if (!j->gen || (j->rep_penalty != 1.0f && !j->seen)) return vl_error_set("out of host memory");
    for (int i = 0; j->seen && i < j->p.n; i++) j->seen[j->p.ids[i]] = 1;
    vl_answer_init(&j->ans, &e->m, rq->ignore_eos, j->cb.on_text, j->cb.ctx);
    j->cur_src = -1;
    return 0;
}

/* What could never run on this batch: *never_fits = 1 with the reason. */
static int check_fits(vl_batch *b, batch_job *j, int *never_fits) {
    const int64_t planned = b->cx.shape.max_patches, bt = b->bc.block_tokens;
    for (int i = 0; i < j->is.n_uniq; i++)
        if (j->is.uniq[i].n_patches > planned) {
            *never_fits = 1;
            return vl_error_set("image %d has %lld patches, more than the %lld the server is "
                                "planned for; send a smaller image",
                                i + 1, (long long)j->is.uniq[i].n_patches, (long long)planned);
        }
    int64_t tokens = (int64_t)j->p.n + j->limit;
    j->n_blocks = (tokens + bt - 1) / bt;
    if (j->n_blocks <= b->blocks) return 0;
    *never_fits = 1;
    return vl_error_set("the request needs %lld tokens of KV cache (prompt %d + up to %d "
                        "generated) and the pool holds %lld in all (%lld blocks of %lld); send "
                        "fewer or smaller images or a lower max_tokens",
                        (long long)tokens, j->p.n, j->limit, (long long)(b->blocks * bt),
                        (long long)b->blocks, (long long)bt);
}

static int job_prepare(vl_batch *b, batch_job *j, const vl_request *rq, int *never_fits) {
    vl_engine *e = b->e;
    if (rq->prefill_only) return vl_error_set("prefill_only requests do not run in a batch");
    if (vl_request_prompt(e, rq, NULL, &j->is, &j->p)) return -1;
    if (vl_generation_limit(e, rq, &j->p, &j->limit, &j->by_context)) {
        *never_fits = 1;
        return -1;
    }
    if (rq->max_tokens == 0 && j->limit > b->bc.default_max_tokens) {
        j->limit = b->bc.default_max_tokens;
        j->by_context = 0;
    }
    if (check_fits(b, j, never_fits)) return -1;
    if (b->vcache.base && j->p.n_images > 0) { /* the vision cache's keys */
        j->p.image_key = malloc((size_t)j->p.n_images * sizeof *j->p.image_key);
        if (!j->p.image_key) return vl_error_set("out of host memory");
        for (int i = 0; i < j->p.n_images; i++) {
            int same = -1; /* an earlier image with the same pixels (IMAGE xN) */
            for (int k = 0; k < i && same < 0; k++)
                if (j->p.image_src[k] == j->p.image_src[i]) same = k;
            j->p.image_key[i] =
                same >= 0 ? j->p.image_key[same] : vl_vision_key_of(&j->p.images[i]);
        }
    }
    j->rq.images = NULL; /* the caller's memory: not kept */
    j->rq.prompt = j->rq.system = j->rq.assistant_prefix = NULL;
    j->rq.messages = NULL;
    return job_setup(b, j);
}

static int jobs_push(vl_batch *b, batch_job *j) {
    if (b->n_jobs == b->cap_jobs) {
        int ncap = b->cap_jobs * 2 + 16;
        batch_job **t = realloc(b->jobs, (size_t)ncap * sizeof *t);
        if (!t) return vl_error_set("out of host memory");
        b->jobs = t;
        b->cap_jobs = ncap;
    }
    b->jobs[b->n_jobs++] = j;
    return 0;
}

int64_t vl_batch_add(vl_batch *b, const vl_request *rq, const vl_job_callbacks *cb,
                     int *never_fits) {
    int nf = 0;
    vl_error_clear();
    if (never_fits) *never_fits = 0;
    if (b->failed) return vl_error_set("the batch failed earlier; reopen it");
    batch_job *j = calloc(1, sizeof *j);
    if (!j) return vl_error_set("out of host memory");
    j->rq = *rq;
    if (cb) j->cb = *cb;
    j->t_add = vl_now_s();
    if (job_prepare(b, j, rq, &nf) || jobs_push(b, j)) {
        if (never_fits) *never_fits = nf;
        job_free(j);
        return -1;
    }
    j->id = b->next_id++;
    return j->id;
}

int vl_batch_cancel(vl_batch *b, int64_t id) {
    for (int i = 0; i < b->n_jobs; i++)
        if (b->jobs[i]->id == id) {
            b->jobs[i]->cancelled = 1;
            return 0;
        }
    return -1;
}

/* What job j produced so far (its answer finished): the result of a request that ends, and the
 * usage of one cancelled on the way (a stop string). 0, or -1 with the error set. */
static int job_result(vl_batch *b, batch_job *j, vl_result *r) {
    double now = vl_now_s();
    int rc = vl_answer_finish(&j->ans);
    vl_result_set_answer(r, &j->rq, &j->gen, j->n_gen, j->limit, j->by_context, &j->ans);
    if (!rc) rc = vl_result_set_prompt(r, b->e, &j->p, &j->is, NULL);
    r->repetition_penalty = j->rep_penalty;
    r->t.ttft_s = j->t_first > 0 ? j->t_first - j->t_add : 0.0;
    r->t.prefill_s = j->prefill_s;
    r->t.prefill_tokens = j->p.n;
    r->t.decode_s = j->t_first > 0 ? now - j->t_first : 0.0;
    r->t.decode_tokens = j->n_gen > 0 ? j->n_gen - 1 : 0;
    r->total_s = now - j->t_add;
    r->plan = b->plan;
    r->peak_device = b->stats.peak_device;
    r->device_total = b->stats.device_total;
    return rc;
}

void vl_batch_finish(vl_batch *b, int index, int rc, const char *error) {
    batch_job *j = b->jobs[index];
    vl_result r;
    memset(&r, 0, sizeof r);
    const int started = j->state != JOB_QUEUED;
    char why[1024];
    snprintf(why, sizeof why, "%s", error ? error : "");
    if (started && job_result(b, j, &r) && rc == 0) {
        rc = -1;
        snprintf(why, sizeof why, "%s", vl_error_get());
    }
    for (int64_t k = 0; k < (started ? j->n_blocks : 0); k++)
        b->free_list[b->n_free++] = j->blocks[k];
    if (started) b->completion_tokens += j->n_gen;
    if (j->cb.on_done) j->cb.on_done(j->cb.ctx, rc, rc ? why : NULL, started ? &r : NULL);
    vl_result_free(&r);
    vl_error_clear();
    job_free(j);
    memmove(&b->jobs[index], &b->jobs[index + 1],
            (size_t)(b->n_jobs - index - 1) * sizeof *b->jobs);
    b->n_jobs--;
}

/* Admit queued jobs in order while the first fits (FIFO: none overtakes another). */
static int admit(vl_batch *b) {
    int active = 0;
    for (int i = 0; i < b->n_jobs; i++) active += b->jobs[i]->state != JOB_QUEUED;
    for (int i = 0; i < b->n_jobs && active < b->bc.max_batch; i++) {
        batch_job *j = b->jobs[i];
        if (j->state != JOB_QUEUED) continue;
        if (j->n_blocks > b->n_free) break;
        j->blocks = malloc((size_t)j->n_blocks * sizeof *j->blocks);
        if (!j->blocks) return vl_error_set("out of host memory");
        for (int64_t k = 0; k < j->n_blocks; k++) j->blocks[k] = b->free_list[--b->n_free];
        j->state = JOB_PREFILL;
        j->t_admit = vl_now_s();
        b->prompt_tokens += j->p.n;
        active++;
    }
    return 0;
}

int vl_batch_step(vl_batch *b) {
    if (b->failed) return vl_error_set("the batch failed earlier; reopen it");
    for (int i = 0; i < b->n_jobs;)
        if (b->jobs[i]->cancelled)
            vl_batch_finish(b, i, -1, "cancelled");
        else
            i++;
    if (admit(b) || vl_batch_prefill_step(b) || vl_batch_decode_step(b)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", vl_error_get());
        while (b->n_jobs > 0) vl_batch_finish(b, 0, -1, why);
        b->failed = 1;
        vl_error_set("%s", why);
        return -1;
    }
    return b->n_jobs;
}

void vl_batch_set_busy_hook(vl_batch *b, void (*fn)(void *ctx), void *ctx) {
    b->busy_hook = fn;
    b->busy_ctx = ctx;
}

void vl_batch_get_stats(const vl_batch *b, vl_batch_stats *st) {
    memset(st, 0, sizeof *st);
    for (int i = 0; i < b->n_jobs; i++) {
        if (b->jobs[i]->state == JOB_QUEUED)
            st->queued++;
        else
            st->running++;
    }
    st->blocks_total = b->blocks;
    st->blocks_free = b->n_free;
    st->block_tokens = b->bc.block_tokens;
    st->kv_bytes_total = (size_t)b->blocks * block_bytes(b->e, &b->bc);
    st->kv_bytes_used = (size_t)(b->blocks - b->n_free) * block_bytes(b->e, &b->bc);
    st->peak_device = b->stats.peak_device;
    st->planned_total = b->plan.total;
    st->prompt_tokens = b->prompt_tokens;
    st->completion_tokens = b->completion_tokens;
    for (int i = 0; i < b->n_jobs; i++)
        if (b->jobs[i]->state != JOB_QUEUED) st->completion_tokens += b->jobs[i]->n_gen;
    st->max_request_tokens = b->blocks * b->bc.block_tokens;
    st->decode_steps = b->decode_steps;
    st->decode_tokens = b->decode_tokens;
    st->decode_seconds = b->decode_seconds;
    st->decode_graphs_recorded = b->n_step_graphs;
    st->decode_graph_seconds = b->graph_seconds;
    st->decode_graph_bytes = b->graph_bytes;
    st->prefill_seconds = b->prefill_seconds;
    st->vision_cache_hits = b->vcache.hits;
    st->vision_cache_misses = b->vcache.misses;
    st->vision_cache_evictions = b->vcache.evictions;
    st->vision_cache_bytes = b->vcache.cap;
}

void vl_batch_close(vl_batch *b) {
    if (!b) return;
    while (b->n_jobs > 0) vl_batch_finish(b, 0, -1, "shutting down");
    free_step_graphs(b);
    vl_vision_cache_free(&b->vcache);
    vl_context_free(&b->cx);
    free(b->jobs);
    free(b->free_list);
    free(b->decode_ids);
    free(b);
}
