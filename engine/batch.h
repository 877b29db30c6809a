/* batch.h: the inside of a vl_batch (engine/batch.c: opening, sizing, adding, admission;
 * engine/batch_step.c: the prefill chunk and the decode step of vl_batch_step). */
#ifndef VL_BATCH_H
#define VL_BATCH_H

#include "engine/engine.h"

/* Decode steps of up to this many rows are recorded as CUDA graphs when the batch opens, one per
 * row count (batch_step.c); a wider step runs its ops one by one. */
#define VL_STEP_GRAPHS_MAX 64

typedef enum { JOB_QUEUED, JOB_PREFILL, JOB_DECODE } job_state;

/* One added request, from vl_batch_add to its on_done. */
typedef struct {
    int64_t id;
    job_state state;
    int cancelled;
    vl_job_callbacks cb;
    vl_request rq; /* its scalars (the pointers are not kept past vl_batch_add) */
    vl_image_set is;
    vl_prompt p;
    int limit, by_context, eos_stops, host_sampling;
    float temperature, rep_penalty; /* rep_penalty 1: off (seen NULL) */
    vl_sampler smp;
    uint8_t *seen; /* host [V]: the prompt's and the fed tokens' ids (the penalty) */
    int32_t *gen;  /* [limit] sampled tokens */
    int n_gen;
    vl_answer ans;
    int32_t *blocks; /* [n_blocks] its block table (reserved at admission) */
    int64_t n_blocks;
    int64_t n_past; /* tokens in its cache */
    int cur_src;    /* the image whose features are in the scratch (prefill) */
    double t_add, t_admit, t_first, prefill_s;
} batch_job;

struct vl_batch {
    vl_engine *e;
    vl_batch_config bc;
    vl_context cx;
    vl_run_stats stats;
    vl_mem_plan plan;
    int64_t blocks;     /* in the pool */
    int32_t *free_list; /* [blocks] free block ids, a stack */
    int64_t n_free;
    batch_job **jobs; /* [n_jobs] queued and running, in the order they were added */
    int n_jobs, cap_jobs;
    int64_t next_id;
    int64_t prefill_table_id; /* the job whose table is in the prefill row; -1 none */
    int64_t *decode_ids;      /* [max_batch] ids of the decode rows whose tables are uploaded */
    void **step_graphs;       /* [n_step_graphs]: the recorded decode step of B = index + 1 rows */
    int n_step_graphs; /* min(max_batch, VL_STEP_GRAPHS_MAX) where the backend records, else 0 */
    int n_decode_rows;
    int64_t prompt_tokens, completion_tokens;
    int64_t decode_steps, decode_tokens;    /* vl_batch_stats */
    double graph_seconds;                   /* vl_batch_stats: recording them at open */
    size_t graph_bytes;                     /* vl_batch_stats: the device memory they took */
    double decode_seconds, prefill_seconds; /* vl_batch_stats */
    vl_vision_cache vcache;
    void (*busy_hook)(void *ctx); /* vl_batch_set_busy_hook */
    void *busy_ctx;
    int failed; /* the backend failed: every call refuses */
};

/* The pool's view for a decoder layer: one sequence's table (batch 0, n_past on the host) or
 * the decode rows' tables (batch 1, n_past_dev). */
vl_kv_view vl_batch_pool_view(const vl_batch *b, const int32_t *table, int batch, int64_t n_past,
                              const int32_t *n_past_dev, int64_t bound);
/* A job's end: on_done with its result (rc 0) or the error, its blocks freed, removed. */
void vl_batch_finish(vl_batch *b, int index, int rc, const char *error);
/* The decode steps a batch records (one per row count up to max_batch, at most
 * VL_STEP_GRAPHS_MAX; 0 on a backend without graphs): each has VL_DECODE_GRAPH_BYTES in the plan.
 */
int vl_batch_graph_count(const vl_engine *e, const vl_batch_config *bc);
/* Records the decode step of every row count up to n_step_graphs (vl_batch_open, once the pool
 * and the scratch are placed): 0, or -1 with the error set. */
int vl_batch_record_steps(vl_batch *b);
/* The steps of vl_batch_step (engine/batch_step.c): one prefill chunk of the oldest prefilling
 * job, one decode step of every generating job. */
int vl_batch_prefill_step(vl_batch *b);
int vl_batch_decode_step(vl_batch *b);

#endif
