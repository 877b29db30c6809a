/* batch_step.c: the work of one vl_batch_step (engine/batch.c admits and finishes).
 *
 * Prefill: one chunk of the oldest admitted request still prefilling, as a request run alone
 * does it (vl_prefill_chunk: its images encoded before the chunk that holds their pads), with
 * the cache in the pool: each layer appends through the request's block table and attends over
 * its keys gathered into the contiguous workspace. After its last chunk the LM head gives its
 * first token.
 *
 * Decode: every generating request's last token as one row of a batch: B rows embedded, each
 * layer's Linears with m = B, rotary and cache append through each row's table at its own
 * length, attention of each row over its own blocks, the LM head on the B rows into logits
 * [B, V]. Sampling: the backend's sample_rows for every row whose request samples by
 * temperature alone (greedy included), on the device, so that only B tokens come back; on the
 * host, from that row's logits, where a request has a repetition penalty (its seen set is on
 * the host) or top-k / top-p. Either way exactly as a request run alone chooses
 * (engine/pipeline.c). The host pass over 152k logits took 0.13 ms a row greedy and 1.9 ms
 * with a temperature, per step: at 16 rows more than the rest of the step. */
#include "engine/batch.h"
#include "engine/models/models.h"

#include <stdint.h>
#include <stdlib.h>

/* Whether job j's token comes from the backend's sample_rows (greedy or temperature alone)
 * rather than the host (a repetition penalty over its host seen set, or top-k / top-p). */
static int samples_on_device(const batch_job *j) {
    return !j->seen && !j->host_sampling;
}

/* The next token of each of the n jobs, from the n rows of logits the LM head left in the
 * scratch: one sample_rows call for the rows it takes (every row is scored; the others' picks
 * are not used), the rest on the host from that row in float32, penalized in place. Each job
 * gets exactly the token a request run alone gets (the same score, seed and step). */
static int sample_jobs(vl_batch *b, batch_job *const *jobs, int n, int32_t *tokens) {
    vl_context *cx = &b->cx;
    vl_backend *be = b->e->be;
    const int V = b->e->m.cfg.vocab;
    float *temperature = malloc((size_t)n * sizeof *temperature);
    uint64_t *keys = malloc((size_t)n * sizeof *keys);
    if (!temperature || !keys) {
        free(temperature);
        free(keys);
        return vl_error_set("out of host memory");
    }
    int n_device = 0;
    for (int r = 0; r < n; r++) {
        temperature[r] = jobs[r]->temperature;
        keys[r] = vl_sample_key(jobs[r]->rq.seed, jobs[r]->n_gen);
        n_device += samples_on_device(jobs[r]);
    }
    if (n_device > 0) {
        be->upload(be, cx->pool.temperature_dev, temperature, (size_t)n * sizeof *temperature);
        be->upload(be, cx->pool.keys_dev, keys, (size_t)n * sizeof *keys);
        be->sample_rows(be, cx->pool.tokens_dev, cx->scratch.logits, n, V, cx->pool.temperature_dev,
                        cx->pool.keys_dev);
        be->download(be, tokens, cx->pool.tokens_dev, (size_t)n * sizeof *tokens);
    }
    const size_t row_bytes = (size_t)V * vl_dtype_size(be->act);
    for (int r = 0; r < n; r++) {
        batch_job *j = jobs[r];
        if (samples_on_device(j)) continue;
        float *logits = cx->logits_host + (size_t)r * V;
        be->to_f32(be, logits, (const char *)cx->scratch.logits + (size_t)r * row_bytes, V);
        if (j->seen) vl_penalize_host(logits, j->seen, V, j->rep_penalty);
        tokens[r] = j->host_sampling
                        ? vl_sample(&j->smp, logits, V)
                        : vl_sample_token_host(logits, V, j->temperature, j->rq.seed, j->n_gen);
    }
    free(temperature);
    free(keys);
    return 0;
}

/* Job j takes token t and streams its text. 1: the job is done (its limit or its end of turn),
 * 0: it goes on, -1: on_text cancelled it. */
static int take_token(batch_job *j, int32_t t) {
    j->gen[j->n_gen++] = t;
    if (j->seen) j->seen[t] = 1; /* fed next: the penalty's set includes it from then on */
    if (vl_answer_add(&j->ans, t)) return -1;
    return j->n_gen == j->limit || (j->eos_stops && j->ans.eos_at >= 0);
}

/* After take_token: finish job `index` when it is done or cancelled. */
static void settle(vl_batch *b, int index, int taken) {
    if (taken > 0)
        vl_batch_finish(b, index, 0, NULL);
    else if (taken < 0) /* on_text stopped it (its error, if it set one), or decoding failed */
        vl_batch_finish(b, index, -1, vl_error_get()[0] ? vl_error_get() : "cancelled");
}

/* The prefill row of the tables (after the max_batch decode rows) holding job j's table. */
static const int32_t *prefill_table(vl_batch *b, const batch_job *j) {
    vl_backend *be = b->e->be;
    int32_t *row = b->cx.pool.tables + (size_t)b->bc.max_batch * (size_t)b->blocks;
    if (b->prefill_table_id != j->id) {
        be->upload(be, row, j->blocks, (size_t)j->n_blocks * sizeof *j->blocks);
        b->prefill_table_id = j->id;
    }
    return row;
}

int vl_batch_prefill_step(vl_batch *b) {
    int i = 0;
    while (i < b->n_jobs && b->jobs[i]->state != JOB_PREFILL) i++;
    if (i == b->n_jobs) return 0;
    batch_job *j = b->jobs[i];
    vl_context *cx = &b->cx;
    if (b->busy_hook) b->busy_hook(b->busy_ctx);
    double t0 = vl_now_s();
    int64_t c0 = j->n_past, S = j->p.n - c0 < cx->chunk ? j->p.n - c0 : cx->chunk;
    vl_kv_view kv = vl_batch_pool_view(b, prefill_table(b, j), 0, j->n_past, NULL, 0);
    if (vl_prefill_chunk(cx, &kv, &j->p, c0, S, NULL, &j->cur_src)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", vl_error_get());
        vl_error_clear();
        vl_batch_finish(b, i, -1, why); /* this request's failure (its image), not the batch's */
        return 0;
    }
    j->n_past += S;
    vl_context_sample_memory(cx);
    if (j->n_past < j->p.n) {
        const double dt = vl_now_s() - t0;
        j->prefill_s += dt;
        b->prefill_seconds += dt;
        return 0;
    }
    cx->m->arch->text->lm_head(cx, S - 1, 1);
    int32_t t;
    if (sample_jobs(b, &j, 1, &t)) return -1;
    j->t_first = vl_now_s();
    j->prefill_s += j->t_first - t0;
    b->prefill_seconds += j->t_first - t0;
    j->state = JOB_DECODE;
    settle(b, i, take_token(j, t));
    return 0;
}

/* The decode rows' block tables: uploaded again only where a row's job changed. */
static void upload_tables(vl_batch *b, batch_job *const *rows, int B) {
    vl_backend *be = b->e->be;
    for (int r = 0; r < B; r++) {
        if (r < b->n_decode_rows && b->decode_ids[r] == rows[r]->id) continue;
        be->upload(be, b->cx.pool.tables + (size_t)r * (size_t)b->blocks, rows[r]->blocks,
                   (size_t)rows[r]->n_blocks * sizeof *rows[r]->blocks);
        b->decode_ids[r] = rows[r]->id;
    }
    b->n_decode_rows = B;
}

/* ids, positions and lengths of the B rows into the scratch and the pool; the longest row's
 * keys (the attention's bound). */
static int64_t upload_rows(vl_batch *b, batch_job *const *rows, int B, int32_t *host) {
    vl_backend *be = b->e->be;
    int32_t *ids = host, *pos = host + B, *n_past = host + 4 * B;
    int64_t bound = 0;
    for (int r = 0; r < B; r++) {
        const batch_job *j = rows[r];
        ids[r] = j->gen[j->n_gen - 1];
        n_past[r] = (int32_t)j->n_past;
        for (int k = 0; k < 3; k++) pos[k * B + r] = (int32_t)(j->n_past + j->p.rope_delta);
        if (j->n_past + 1 > bound) bound = j->n_past + 1;
    }
    be->upload(be, b->cx.scratch.ids_dev, ids, (size_t)B * sizeof *ids);
    be->upload(be, b->cx.scratch.pos_dev, pos, (size_t)(3 * B) * sizeof *pos);
    be->upload(be, b->cx.pool.n_past_dev, n_past, (size_t)B * sizeof *n_past);
    return bound;
}

/* The forward pass of B decode rows whose longest row has `bound` keys, up to the logits. */
static void decode_rows_ops(vl_batch *b, int B, int64_t bound) {
    vl_context *cx = &b->cx;
    vl_model *m = cx->m;
    m->arch->text->embed(cx, cx->scratch.ids_dev, B);
    vl_kv_view kv = vl_batch_pool_view(b, cx->pool.tables, 1, 0, cx->pool.n_past_dev, bound);
    for (int li = 0; li < m->cfg.n_layers; li++)
        m->arch->text->layer(cx, &kv, li, B, cx->scratch.pos_dev);
    m->arch->text->lm_head(cx, 0, B);
}

/* The decode step of B rows, recorded with the whole pool as the attention's bound: the bound
 * only sizes the attention's workspace slots (each row is split by its own length, read on the
 * device, and at most one wave of CTAs walks the splits: kernels/cuda_attention_decode.cu), so
 * the graph serves every length at the cost of the real ones and gives the eager call's bits. */
static int record_step(vl_batch *b, int B) {
    vl_backend *be = b->e->be;
    if (be->graph_begin(be)) return -1;
    decode_rows_ops(b, B, b->blocks * (int64_t)b->bc.block_tokens);
    b->step_graphs[B - 1] = be->graph_end(be);
    return b->step_graphs[B - 1] ? 0 : -1;
}

/* Recorded at open rather than on first use, as vLLM does: recording a 28-layer step took longer
 * than several steps, and a server met each new row count inside a running batch. The scratch,
 * the tables and the pool stay where they are for the batch's life, so a graph never goes stale.
 * The device memory they take is measured here (the plan reserves VL_DECODE_GRAPH_BYTES each). */
int vl_batch_record_steps(vl_batch *b) {
    vl_backend *be = b->e->be;
    if (b->n_step_graphs == 0) return 0;
    const double t0 = vl_now_s();
    size_t free0 = 0, free1 = 0, total = 0;
    be->sync(be);
    if (be->mem_info) be->mem_info(be, &free0, &total);
    for (int B = 1; B <= b->n_step_graphs; B++)
        if (record_step(b, B)) return -1;
    be->sync(be);
    if (be->mem_info) be->mem_info(be, &free1, &total);
    b->graph_bytes = free0 > free1 ? free0 - free1 : 0;
    b->graph_seconds = vl_now_s() - t0;
    return 0;
}

/* The forward pass of B decode rows: the recorded step (one launch instead of ~400 at 28
 * layers; launched one by one the short kernels of a step left the GPU idle between them), or
 * the ops themselves with the real bound past the recorded row counts or without graphs. */
static void decode_rows(vl_batch *b, int B, int64_t bound) {
    if (B <= b->n_step_graphs)
        b->e->be->graph_launch(b->e->be, b->step_graphs[B - 1]);
    else
        decode_rows_ops(b, B, bound);
}

int vl_batch_decode_step(vl_batch *b) {
    vl_context *cx = &b->cx;
    batch_job **rows = malloc((size_t)b->bc.max_batch * sizeof *rows);
    int32_t *host = malloc((size_t)b->bc.max_batch * 5 * sizeof *host);
    int *index = malloc((size_t)b->bc.max_batch * sizeof *index);
    if (!rows || !host || !index) {
        free(rows);
        free(host);
        free(index);
        return vl_error_set("out of host memory");
    }
    int B = 0, rc = 0;
    for (int i = 0; i < b->n_jobs && B < b->bc.max_batch; i++)
        if (b->jobs[i]->state == JOB_DECODE) {
            index[B] = i;
            rows[B++] = b->jobs[i];
        }
    const double t0 = vl_now_s();
    if (B > 0) {
        upload_tables(b, rows, B);
        decode_rows(b, B, upload_rows(b, rows, B, host));
        if (b->busy_hook) b->busy_hook(b->busy_ctx); /* while the device runs the step */
        /* the rows' ids are uploaded: the host buffer holds their tokens, then what became of
         * each job */
        int32_t *tokens = host, *taken = host + B;
        rc = sample_jobs(b, rows, B, tokens);
        vl_context_sample_memory(cx);
        for (int r = 0; r < B && rc == 0; r++) {
            rows[r]->n_past += 1;
            taken[r] = take_token(rows[r], tokens[r]);
        }
        for (int r = B - 1; r >= 0 && rc == 0; r--)
            settle(b, index[r], taken[r]); /* back to front */
        b->decode_steps += 1;
        b->decode_tokens += B;
        b->decode_seconds += vl_now_s() - t0;
    }
    free(rows);
    free(host);
    free(index);
    return rc;
}
