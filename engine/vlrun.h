/* vlrun.h: the engine as a library. Open an engine once (backend, model, tokenizer; weights
 * on the first request), then run any number of requests on it:
 *
 *   images -> prompt -> position check -> plan and budget -> sequence -> prefill -> decode
 *
 * with callbacks for streamed text, notices and progress. The vlrun command line (cli/) is the
 * first user of this API; examples/two_requests.c is the smallest. docs/design.md describes
 * the data flow. Errors: a function that fails returns NULL or non-zero and vl_error_get()
 * holds one line saying what is wrong and what to do (per thread). */
#ifndef VL_VLRUN_H
#define VL_VLRUN_H

#include "kernels/kernels.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { VL_QUANT_BF16, VL_QUANT_NF4, VL_QUANT_INT8 } vl_quant;

/* What an engine is opened with: the model, where it runs and in which formats. */
typedef struct {
    const char *model_dir;          /* Hugging Face checkpoint folder */
    const char *config_path;        /* config.json for random_weights without model_dir */
    const char *tokenizer_path;     /* NULL: model_dir/tokenizer.json when present */
    int random_weights;             /* synthesize the weights from the config's shapes */
    uint64_t weights_seed;          /* random_weights: their seed */
    vl_backend_kind backend;        /* VL_BACKEND_CUDA or VL_BACKEND_CPU */
    vl_cuda_config cuda;            /* the CUDA backend's device and settings (kernels.h) */
    vl_quant quant;                 /* every Linear of the decoder and the vision tower */
    int double_quant;               /* NF4 with 8-bit double-quantized block scales */
    int quant_lm_head;              /* also quantize the LM head */
    int embed_on_host;              /* the embedding table in pinned host memory */
    int kv_int8;                    /* int8 KV cache with one fp32 scale per row */
    int attn_naive;                 /* materialized-score attention (the baseline) */
    int chunk;                      /* prefill chunk (tokens); 0: the largest that fits */
    int64_t mem_budget;             /* bytes a request may plan for in all; 0: no limit */
    int64_t min_pixels, max_pixels; /* over preprocessor_config.json's; 0: the file's */
} vl_engine_config;
void vl_engine_config_default(vl_engine_config *c);

typedef struct {
    const char *path; /* image file; with data: the image's name in messages ("image 2") */
    int repeat;       /* IMAGE xN: N copies (decoded once) */
    /* Optional: the encoded file in memory (a server's upload) instead of reading path; the
     * same decoders, caps and checks as a file. */
    const uint8_t *data;
    size_t data_len;
} vl_image_arg;

/* A conversation (OpenAI's chat messages): each message is a role and parts, a part is text or
 * an image (an index into vl_request.images; each image used once, in order of appearance). */
typedef enum { VL_ROLE_SYSTEM, VL_ROLE_USER, VL_ROLE_ASSISTANT } vl_role;
typedef struct {
    const char *text; /* UTF-8; NULL for an image part */
    int image;        /* the image's index in vl_request.images, -1 for a text part */
} vl_part;
typedef struct {
    vl_role role;
    const vl_part *parts;
    int n_parts;
} vl_message;

/* One request: the images and text of one user turn, how much to generate, how to sample. */
typedef struct {
    const vl_image_arg *images;
    int n_images;
    const char *prompt; /* the user's text after the images (UTF-8) */
    const char *system; /* NULL: the chat template's default system prompt */
    /* > 0: exactly max_tokens tokens (the plan covers them) unless stop_at_eos. 0: until the
     * end-of-turn token or the model's context limit (512 tokens with ignore_eos or
     * random_weights). The text ends at the end-of-turn token unless ignore_eos. */
    int max_tokens;
    int stop_at_eos, ignore_eos;
    int greedy;               /* argmax (also when temperature == 0) */
    float temperature;        /* > 0: sample softmax(logits / temperature) */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    uint64_t seed;            /* sampling seed */
    float repetition_penalty; /* 0: the model's generation_config.json (1: off) */
    int prefill_only;         /* no generation: the prompt's logits only (callbacks) */
    /* NULL, or the start of the assistant's answer, after its header: part of the prompt, so
     * the model continues it (generation) or is teacher-forced through it (prefill_only) */
    const char *assistant_prefix;
    /* Optional: the whole conversation through the model's chat template (the system message
     * of the template when the first is not a system message; the assistant header after the
     * last, which must be a user message). prompt and system are then not used. */
    const vl_message *messages;
    int n_messages;
} vl_request;
void vl_request_default(vl_request *r);

typedef struct vl_progress vl_progress;
/* Logits of one prompt position (float32 [n]); return 0, or -1 (error set) to stop. */
typedef int (*vl_logits_fn)(void *ctx, int64_t pos, const float *logits, int n);

/* Optional hooks of one request (any may be NULL). */
typedef struct {
    void *ctx;
    /* the answer's text as it is generated (special tokens skipped); -1 stops the request */
    int (*on_text)(void *ctx, const char *piece, size_t len);
    /* a one-line notice for the user (an image that becomes many tokens) */
    void (*on_notice)(void *ctx, const char *line);
    /* the last prompt position's logits, before the penalty and sampling */
    vl_logits_fn on_last_logits;
    /* every prompt position's logits, in order (prefill_only: runs the LM head on each) */
    vl_logits_fn on_each_logits;
    /* the prompt's ids, once built, before prefill */
    int (*on_prompt)(void *ctx, const int32_t *ids, int n);
    vl_progress *progress;  /* a terminal's progress line (engine/progress.c), NULL: none */
    int no_decode_progress; /* the streamed text shares that terminal: no decode line */
} vl_callbacks;

/* Memory by group (the report's and the planner's split). */
typedef enum {
    VL_MEM_WEIGHTS,
    VL_MEM_KV,
    VL_MEM_ACT,
    VL_MEM_WORKSPACE,
    VL_MEM_GROUPS
} vl_mem_group;
const char *vl_mem_group_name(vl_mem_group g);

typedef struct {
    size_t weights, kv, act, workspace, context, total;
    int chunk; /* the prefill chunk it is laid out for, in tokens (clamped to the prompt) */
} vl_mem_plan;

typedef struct {
    double load_s, vision_s, prefill_s, ttft_s, decode_s;
    int64_t prefill_tokens, decode_tokens;
} vl_timings;

/* One distinct image of a request. */
typedef struct {
    const char *path;
    int repeat;
    int width, height;                 /* as decoded */
    int resized_width, resized_height; /* after smart_resize */
    int64_t tokens;                    /* image pad tokens of one copy */
} vl_result_image;

/* What a request produced. vl_result_free releases it. */
typedef struct {
    int32_t *tokens; /* [n_tokens] every generated token */
    int n_tokens;
    int token_limit;         /* the most tokens the request could generate */
    int answer_tokens;       /* tokens before the first end-of-turn token */
    const char *stop_reason; /* "eos", "max_tokens", "context" (NULL with prefill_only) */
    char *text;              /* the answer: UTF-8 (may hold NUL bytes), text_len bytes */
    size_t text_len;
    int prompt_tokens;
    int64_t image_tokens;
    int n_images; /* images in the prompt (IMAGE xN counted N times) */
    vl_result_image *images;
    int n_distinct_images;
    float repetition_penalty; /* as applied */
    int decode_graph;         /* decode steps replayed as one CUDA graph each */
    vl_timings t;
    double total_s;
    /* memory: the plan, what the arena held by group, the weights, the device */
    vl_mem_plan plan;
    size_t arena_peak[VL_MEM_GROUPS], arena_peak_total;
    size_t weights_bytes, host_weights_bytes, backend_workspace_bytes;
    size_t device_base;               /* device memory in use before the weights */
    size_t peak_device, device_total; /* 0 on the CPU */
    int weight_loads;                 /* times the engine has placed its weights (1) */
} vl_result;
void vl_result_free(vl_result *r);

typedef struct vl_engine vl_engine;

/* Backend and model (config, preprocessor, tokenizer, every tensor bound and checked): NULL
 * with the error set. A model the backend cannot run is refused here, before any device
 * memory. The weights are placed by the first vl_engine_run, after its budget check. */
vl_engine *vl_engine_open(const vl_engine_config *cfg);
/* One request, start to end. Returns 0, or -1 with the error set (the engine stays usable). */
int vl_engine_run(vl_engine *e, const vl_request *rq, const vl_callbacks *cb, vl_result *out);
void vl_engine_close(vl_engine *e);

/* ---- many requests at once (engine/batch.c): what a server runs ------------------------------
 * A batch is an engine's weights plus one arena laid out once: the scratch of one prefill chunk
 * and of max_batch decode rows, the largest image, and a KV pool of fixed-size blocks (block
 * tables per sequence, vl_kv_pages) filling the rest of the memory budget. Requests are added to
 * a FIFO queue; a request is admitted when its prompt plus its token limit fit in free blocks
 * (reserved whole at admission, so a running request never runs out); one that could never fit
 * is refused when added. Each vl_batch_step admits what fits (in order), runs one prefill chunk
 * of the oldest request still prefilling, then one decode step of every generating request
 * together. A request that ends, or is cancelled, frees its blocks at once. Greedy tokens do
 * not depend on what else runs. Not thread-safe: one thread adds, cancels and steps (a server's
 * engine thread); callbacks run on that thread. */
typedef struct {
    int max_batch;              /* sequences generating at once (default 16) */
    int64_t kv_bytes;           /* the pool; 0: the engine's mem_budget (or the device's free
                                 * memory) less everything else */
    int block_tokens;           /* tokens per KV block (default 16) */
    int default_max_tokens;     /* a request with max_tokens 0 (default 1024, within the context) */
    int64_t max_image_patches;  /* the largest image planned for; 0: the preprocessor's
                                 * max_pixels */
    int64_t vision_cache_bytes; /* recent images' embeddings, reused by a request whose image has
                                 * the same pixels; in the plan. -1 (default): 4 of the largest
                                 * images', at most 64 MiB and 1/32 of the memory budget; 0:
                                 * none */
} vl_batch_config;
void vl_batch_config_default(vl_batch_config *c);

/* A request's end: on_done gets rc 0, or rc -1 and the error (one line): cancelled, or failed
 * while running; and, once the request was admitted, its result so far in r (its prompt and
 * generated tokens: the usage of a request cancelled at a stop string), else r NULL. Called once
 * per added request, on the stepping thread. */
typedef struct {
    void *ctx;
    int (*on_text)(void *ctx, const char *piece, size_t len); /* -1: cancel the request */
    void (*on_done)(void *ctx, int rc, const char *error, const vl_result *r);
} vl_job_callbacks;

typedef struct {
    int queued, running;
    int64_t blocks_total, blocks_free, block_tokens;
    size_t kv_bytes_total, kv_bytes_used;
    size_t peak_device, planned_total; /* device peak seen (0 on the CPU), the plan's total */
    int64_t prompt_tokens, completion_tokens; /* since open */
    int64_t max_request_tokens;               /* the most a request may hold (prompt + limit) */
    /* Since open: decode steps, the tokens they made (one per row), and the wall time of the
     * decode and prefill steps (each decode step ends when its tokens are on the host) */
    int64_t decode_steps, decode_tokens;
    double decode_seconds, prefill_seconds;
    /* Decode steps recorded as CUDA graphs when the batch opened (one per row count up to
     * max_batch, at most 64; none on the CPU or without graphs), the wall time that took (not
     * part of decode_seconds) and the device memory they took (measured; the plan reserves a
     * fixed amount a graph, VL_DECODE_GRAPH_BYTES) */
    int64_t decode_graphs_recorded;
    double decode_graph_seconds;
    size_t decode_graph_bytes;
    /* the vision cache: lookups that found an image, that did not, entries overwritten */
    int64_t vision_cache_hits, vision_cache_misses, vision_cache_evictions;
    size_t vision_cache_bytes;
} vl_batch_stats;

typedef struct vl_batch vl_batch;
/* Places the engine's weights, plans and allocates the arena: NULL with the error set when it
 * does not fit (the budget, or the device). */
vl_batch *vl_batch_open(vl_engine *e, const vl_batch_config *bc);
/* Queue a request (images decoded and its prompt built now): its id (>= 0), or -1 with the
 * error set when it is malformed or could never run (more tokens than the pool or the context,
 * an image larger than planned); *never_fits is then 1 for the second kind. cb is copied. */
int64_t vl_batch_add(vl_batch *b, const vl_request *rq, const vl_job_callbacks *cb,
                     int *never_fits);
/* Cancel a queued or running request (a client that went away): its on_done is called with
 * rc -1 at the next step, and its blocks are free after it. 0, or -1 for an unknown id. */
int vl_batch_cancel(vl_batch *b, int64_t id);
/* One step (above): the number of requests still queued or running after it; -1 when the
 * backend failed (the batch is then unusable; every request got on_done with the error). */
int vl_batch_step(vl_batch *b);
/* fn(ctx) on the stepping thread whenever the device is about to be busy for a while: right
 * after a decode step is launched (the device runs it meanwhile) and before a prefill chunk.
 * Host work put there, such as waking a server's waiting clients, then costs the steps nothing.
 * fn NULL: none (the default). */
void vl_batch_set_busy_hook(vl_batch *b, void (*fn)(void *ctx), void *ctx);
void vl_batch_get_stats(const vl_batch *b, vl_batch_stats *st);
void vl_batch_close(vl_batch *b); /* on_done(-1, "shutting down") for every request left */

const char *vl_error_get(void);
void vl_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif
