/* engine.h: the inside of engine/ (the library whose public face is engine/vlrun.h): the
 * Qwen2-VL model, its memory, prompts and generation, for the engine's own files, the command
 * line (cli/) and the tests.
 *
 * One request (engine/pipeline.c, docs/design.md):
 *   engine (backend + model bound; weights placed once) -> images -> prompt (chat template,
 *   image pads, M-RoPE positions) -> position check -> plan and budget -> session (arena: KV
 *   cache + activations) -> streamed prefill (vision encoder per image, just before the chunk
 *   that holds its pads) -> decode loop -> result.
 */
#ifndef VL_ENGINE_H
#define VL_ENGINE_H

#include "engine/vlrun.h"
#include "kernels/kernels.h"
#include "loader/loader.h"

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- progress on a terminal (engine/progress.c) -------------------------------------------- */

/* One status line on stderr, rewritten in place (\r) during the long phases: loading weights
 * (bytes), prefill (tokens, with the images the vision encoder has done) and decode (tokens),
 * each with its rate and elapsed seconds. Library code reports through the pointer the model
 * holds (vl_model.progress; NULL = silent, the default) and never prints by itself; every
 * function below does nothing when given NULL. Redrawn at most 10 times a second. */
struct vl_progress {
    FILE *out;
    const char *phase;             /* "prefill"; NULL between phases */
    const char *unit;              /* "bytes" (shown in MiB/GiB), "tokens", ... */
    double done, total;            /* in units */
    int images_done, images_total; /* shown beside the phase when images_total > 0 */
    double start_s, last_draw_s;   /* vl_now_s() */
    int width;                     /* characters of the line on the terminal now */
    int stale;                     /* counts changed since the last draw */
};

/* p when stderr is a terminal and not quiet (then vl_progress_* draw on it), else NULL. */
vl_progress *vl_progress_open(vl_progress *p, int quiet);
void vl_progress_begin(vl_progress *p, const char *phase, const char *unit, double total);
void vl_progress_update(vl_progress *p, double done); /* redraws when 0.1 s have passed */
/* vl_progress_tick for the backend's heartbeat (kernels.h) */
void vl_progress_heartbeat(void *p);
void vl_progress_tick(vl_progress *p); /* the same, counts unchanged */
void vl_progress_images(vl_progress *p, int done, int total);
void vl_progress_draw(vl_progress *p); /* now, whatever the time */
/* Draws the final counts and clears the line: call before anything else is printed. */
void vl_progress_end(vl_progress *p);

/* ---- model (engine/model.c, engine/weights.c) ------------------------------------------- */

/* Which parameters a run quantizes (--quant) and where the embedding table lives. */
typedef struct {
    vl_dtype linear;   /* BF16, NF4 or Q8ROW: every Linear of the decoder and the vision tower */
    int double_quant;  /* NF4: double-quantized block scales (default 1) */
    int lm_head;       /* also quantize the LM head (--quant-lm-head) */
    int embed_on_host; /* keep the embedding table in host memory (--embed-on-host) */
} vl_weight_plan;
void vl_weight_plan_of(vl_weight_plan *wp, const vl_engine_config *cfg);

/* The architecture a config names (engine/models/: its weights, scratch and forward pass). */
typedef struct vl_arch vl_arch;

typedef struct {
    vl_config cfg;
    vl_preproc_config pre;
    vl_backend *be;
    vl_checkpoint ck; /* mmapped files (CPU backend reads weights in place) */
    int have_ck;
    const vl_arch *arch;    /* chosen from cfg.model_type (engine/models/registry.c) */
    void *vision_w;         /* the vision tower's weights (the architecture's struct) */
    void *text_w;           /* the decoder's weights (the architecture's struct) */
    int lm_head_is_embed;   /* tied: the LM head is the embedding table */
    void *weights_mem;      /* backend block holding weights when they were copied/synthesized */
    size_t weights_bytes;   /* bytes of all parameters as used by the backend */
    void *host_weights_mem; /* --embed-on-host: pinned host block (the embedding table) */
    size_t host_weights_bytes;
    vl_tokenizer *tok; /* NULL when no tokenizer.json was found */
    char model_path[4096];
    vl_progress *progress;    /* the terminal's progress line; NULL (the default): silent */
    vl_generation_config gen; /* generation_config.json of a checkpoint (defaults if absent) */
} vl_model;

/* vl_model_open: config, preprocessor config, tokenizer (when present), and every parameter
 * bound by name and checked (checkpoint mmapped, or shapes only with --random-weights): no
 * backend memory yet, enough to build the prompt and plan memory. vl_model_load_weights then
 * places the weights on `be` (engine/weights.c). vl_model_load does both. */
int vl_model_load(vl_model *m, const vl_engine_config *cfg, vl_backend *be);
int vl_model_open(vl_model *m, const vl_engine_config *cfg);
int vl_model_load_weights(vl_model *m, const vl_engine_config *cfg, vl_backend *be);
/* The format of the decoder's Linears as bound or placed (reports). */
vl_dtype vl_model_linear_dtype(const vl_model *m);
void vl_model_free(vl_model *m);
/* The backend cfg names (the CUDA device opened); NULL with the error set. */
vl_backend *vl_backend_open(const vl_engine_config *cfg);
/* Does token `id` end the assistant's turn (config eos, generation_config's eos_token_id list,
 * <|im_end|>, <|endoftext|>)? */
int vl_model_is_eos(const vl_model *m, int32_t id);
/* The repetition penalty a run applies: --repetition-penalty when given, else the checkpoint's
 * generation_config.json value (as transformers' generate), 1 (off) with --random-weights. */
float vl_model_repetition_penalty(const vl_model *m, int random_weights, float requested);

/* Call fn on every parameter in a fixed order, with its published name ("visual.blocks.0...",
 * "model.layers.0...", "lm_head.weight"); kind is one of "linear", "embed", "lm_head",
 * "patch_embed", "norm", "bias". Exactly one of w (matrices) and v (vectors) is set; fn may
 * change them. */
typedef int (*vl_weight_fn)(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v);
int vl_weights_visit(vl_model *m, vl_weight_fn fn, void *ctx); /* engine/models/bind.c */

/* ---- weights on the backend (engine/weights.c) --------------------------------------------- */

int vl_weight_plan_quantizes(const vl_weight_plan *wp);
/* Bytes the bound model's parameters take on a backend under wp (what vl_weights_place
 * allocates). */
size_t vl_model_weights_bytes(vl_model *m, const vl_weight_plan *wp);
/* Bytes for a config's shapes (bf16 checkpoint or --random-weights) under wp. */
size_t vl_weights_bytes(const vl_config *c, const vl_weight_plan *wp);
/* One block of backend memory holding every parameter: copied from the checkpoint (F16/F32
 * converted to bf16 on bf16 backends), quantized on the backend per wp (streaming: one bf16
 * tensor of staging at a time), or synthesized (random: counter-based, seed). */
int vl_weights_place(vl_model *m, const vl_weight_plan *wp, int random, uint64_t seed);

/* ---- the request's images (engine/images.c) ----------------------------------------------- */

/* Distinct images decoded and preprocessed once; list[n_list] has one view per requested image
 * (IMAGE xN gives N views of uniq[src[i]]). */
typedef struct {
    vl_pixels *uniq, *list;
    int *src;
    int n_uniq, n_list;
    int *orig_w, *orig_h; /* [n_uniq]: each image's size as decoded, before resizing */
} vl_image_set;
/* pre: the model's (vl_model_open applied --min-pixels / --max-pixels to it). */
int vl_image_set_load(vl_image_set *is, const vl_image_arg *args, int n_args,
                      const vl_preproc_config *pre, const vl_callbacks *cb);
/* --min-pixels / --max-pixels (0: keep the file's value) over a preprocessor config; the
 * combined range must still have min <= max (the error says which value came from where). */
int vl_preproc_override_pixels(vl_preproc_config *pre, int64_t min_pixels, int64_t max_pixels);
/* The option's range: 1 <= N <= VL_MAX_PIXELS_OPTION (config.c's bound for the files). */
#define VL_MAX_PIXELS_OPTION 12845056LL
int vl_parse_pixels(const char *opt, const char *v, int64_t *out);
/* One stderr line when an image becomes more than VL_NOTICE_TOKENS tokens, saying how to
 * lower it (run, logits and preprocess; not with --quiet). */
#define VL_NOTICE_TOKENS 4096
void vl_image_notice(const char *path, const vl_image *img, const vl_pixels *px,
                     const vl_preproc_config *pre, const vl_callbacks *cb);
void vl_image_set_free(vl_image_set *is);

/* ---- prompt (engine/prompt.c) ------------------------------------------------------------ */

typedef struct {
    int32_t *ids; /* [n] */
    int n;
    vl_pixels *images; /* [n_images] (borrowed) */
    int n_images;
    int *image_src;     /* [n_images]: images with the same src share pixels (IMAGE xN) */
    int64_t *image_at;  /* [n_images]: index of the image's first pad token in ids */
    int32_t *pos;       /* [3, n]: M-RoPE position ids (rows t, h, w) */
    int64_t rope_delta; /* decode position of token p is p + rope_delta */
    /* [n_images] each image's vision-cache key (vl_vision_key_of), or NULL: not cached (a
     * request run alone; a batch sets them) */
    struct vl_vision_key *image_key;
} vl_prompt;

/* The Qwen2-VL chat template: default system prompt, one user turn holding the images (each
 * <|vision_start|> <|image_pad|> x tokens <|vision_end|>) then the text, then the assistant
 * header. */
int vl_prompt_build(vl_prompt *p, const vl_model *m, const char *text, vl_pixels *images,
                    const int *image_src, int n_images);
/* The same with a system prompt (NULL: the template's "You are a helpful assistant.") and the
 * start of the assistant's answer after its header (NULL: none; see vl_request). */
int vl_prompt_build_system(vl_prompt *p, const vl_model *m, const char *system, const char *text,
                           const char *assistant_prefix, vl_pixels *images, const int *image_src,
                           int n_images);
/* A conversation through the chat template (vl_request.messages): the default system message
 * when the first is not a system one; each message "<|im_start|>ROLE\n" + its parts in order
 * (text as is, an image as its vision block: every copy of an IMAGE xN) + "<|im_end|>\n"; then
 * "<|im_start|>assistant\n" and assistant_prefix (NULL: none). The last message must be the
 * user's, a system message only first, every image (images[], image_src as vl_image_set's list
 * and src) used once in order. */
int vl_prompt_build_messages(vl_prompt *p, const vl_model *m, const vl_message *msgs, int n_msgs,
                             const char *assistant_prefix, vl_pixels *images, const int *image_src,
                             int n_images);
/* From explicit ids (tests, goldens): checks that the pad runs match the images' grids and
 * computes positions. */
int vl_prompt_from_ids(vl_prompt *p, const vl_config *c, const int32_t *ids, int n,
                       vl_pixels *images, const int *image_src, int n_images);
void vl_prompt_free(vl_prompt *p);

/* One user turn of the chat template as ids (*ids malloc'ed): with `first`, the system message
 * (`system`, NULL: the default) before it; then "<|im_start|>user\n", the images' vision blocks,
 * the text, "<|im_end|>\n<|im_start|>assistant\n". Text between two added tokens is tokenized
 * in one piece, as tokenizing the whole conversation's text does. */
int vl_prompt_user_turn(const vl_model *m, int first, const char *system, const char *text,
                        const vl_pixels *images, int n_images, int32_t **ids, int *n);
/* vl_prompt_from_ids for ids that follow n_past cached tokens whose position counter is at pos0
 * (a later turn): positions continue from pos0, rope_delta is that of the whole sequence. */
int vl_prompt_continue(vl_prompt *p, const vl_config *c, const int32_t *ids, int n,
                       vl_pixels *images, const int *image_src, int n_images, int64_t n_past,
                       int64_t pos0);

/* ---- memory (engine/arena.c) ------------------------------------------------------------- */

/* One backend block carved in aligned slices, every slice tagged with a group. Slices are freed
 * in LIFO order (mark/release), which is all a forward pass needs. */
typedef struct {
    vl_backend *be;
    uint8_t *base;
    size_t cap, used;
    size_t live[VL_MEM_GROUPS], peak[VL_MEM_GROUPS];
    size_t peak_total;
} vl_arena;

int vl_arena_init(vl_arena *a, vl_backend *be, size_t cap_bytes);
void vl_arena_free(vl_arena *a);
/* NULL with the error set when the plan was too small (a bug: the planner must size it). */
void *vl_arena_alloc(vl_arena *a, size_t bytes, vl_mem_group g);
typedef struct {
    size_t used;
    size_t live[VL_MEM_GROUPS];
} vl_arena_mark;
vl_arena_mark vl_arena_get_mark(const vl_arena *a);
void vl_arena_release(vl_arena *a, vl_arena_mark m);
/* Close a region that was released and reused: what follows lies past its largest use, and
 * each group counts its peak as held (so the peaks of what follows add to them). */
void vl_arena_seal(vl_arena *a);

/* ---- sequences and the shared scratch (engine/layout.c, engine/sequence.c, engine/forward.c) --
 *
 * A context holds what every sequence on a model shares: one backend block (the arena) with the
 * per-chunk scratch (the residual stream, the decoder's and the vision tower's buffers, the last
 * logits) and a fixed number of sequence slots. A sequence is one request's state: its KV cache,
 * positions and decode state, in one slot. Prefill and decode take a sequence; several sequences
 * can be open on one context and used in any interleaving (the scratch holds nothing between
 * calls, except the last logits, which vl_decode_begin reads: call it right after the
 * sequence's prefill). The report's figures are a third object, vl_run_stats. */

/* What the memory is laid out for: the one shape of the planner and of the real allocation. */
typedef struct {
    int64_t prompt_tokens; /* the most tokens one prefill takes (the chunk is at most this) */
    int max_tokens;        /* tokens one sequence's decode loop may sample */
    int64_t ctx;           /* KV cache per sequence in tokens; 0: prompt_tokens + max_tokens */
    int chunk;             /* prefill chunk asked for (vl_shape_chunk clamps it; 0: small) */
    int64_t max_patches;   /* the largest image */
    int attn_naive;        /* --attn naive: room for a materialized score matrix */
    int kv_int8;           /* --kv int8: int8 cache (slots or pool) + one fp32 scale per row */
    /* kv_int8 slots: a prefill chunk attends over one layer's K and V dequantized into the
     * scratch (kv_tmp, 2 bytes per element of a layer): the faster path on the GPU, where every
     * query block would otherwise convert the codes again. 0: the attention reads the codes
     * (engine/pipeline.c takes it when the copy would not fit the memory). */
    int kv_int8_copy;
    float rep_penalty; /* repetition penalty; 0 or 1: off (no seen-token set, no scores) */
    int n_sequences;   /* sequences held at once (slots); 0 means 1 */
    /* A batch (engine/batch.c): decode rows run together, and a paged KV pool instead of the
     * slots. pool_blocks > 0: the pool of that many blocks of block_tokens, its block tables and
     * the kv_gather workspace (one layer's K and V of ctx tokens); no slots. */
    int batch_rows;      /* decode rows at once; 0 means 1 */
    int64_t pool_blocks; /* 0: slots */
    int block_tokens;
    size_t vision_cache_bytes; /* with a pool: the vision cache's block (engine/vision_cache.c) */
} vl_shape;
/* The prefill chunk of a run that names none (vl_engine_config.chunk 0, --chunk auto): the
 * largest of VL_CHUNK_LARGE, halved down to VL_CHUNK_SMALL, whose plan fits the memory
 * (vl_plan_choose). A shape with chunk 0 (batches and conversations, laid out once for any
 * request) takes VL_CHUNK_SMALL. A larger chunk runs fewer, larger prefill steps: the NF4
 * weights are dequantized once per chunk and the attention of a chunk fills more of the GPU
 * (H100, x28: NF4 TTFT 1.700 s at 2048, 1.476 s at 8192 for 0.61 GiB more activations;
 * bench/RESULTS.md). */
#define VL_CHUNK_SMALL 2048
#define VL_CHUNK_LARGE 8192
/* The KV cache capacity of one sequence, the prefill chunk (min(chunk, prompt_tokens): the one
 * place it is clamped) and the number of slots. */
int64_t vl_shape_ctx(const vl_shape *sh);
int vl_shape_chunk(const vl_shape *sh);
int vl_shape_sequences(const vl_shape *sh);

/* The buffers every sequence shares (backend memory, act dtype unless said). */
typedef struct {
    void *x;                    /* [chunk, E] the residual stream */
    void *logits;               /* [V] the last position's logits */
    int32_t *ids_dev, *pos_dev; /* [chunk], [3, chunk] */
    void *img_feats;            /* [max_patches / merge^2, E]: the current image */
    void *kv_tmp;  /* [2][Hkv][max_ctx][D] act: one layer's K, V of a prefill chunk's sequence,
                    * gathered from the pool (pool_blocks > 0) or dequantized from an int8
                    * slot (kv_int8_copy) by kv_gather; else NULL */
    float *scores; /* --attn naive: fp32 score matrix of the largest attention call */
    void *text;    /* the decoder's per-chunk buffers (the architecture's host struct) */
    void *vision;  /* the vision tower's buffers (the architecture's host struct) */
} vl_scratch;

/* One sequence slot's backend memory. */
typedef struct {
    void *kv;                /* [layers][2][Hkv][max_ctx][D]: act dtype, or int8 with kv_int8 */
    float *kv_scale;         /* kv_int8: [layers][2][Hkv][max_ctx], one scale per cached row */
    vl_decode_state *st_dev; /* the decode state (vl_decode_begin / vl_decode_next) */
    int32_t *tokens_dev;     /* [max_tokens] sampled tokens */
    uint8_t *seen;           /* penalty: [V] 1 for each token id of the sequence so far */
    float *pen_scores;       /* penalty: [V] float32, the penalized logits the sampler reads */
} vl_sequence_mem;

/* A batch's paged KV pool (shape.pool_blocks > 0) and its block tables (backend memory). */
typedef struct {
    void *kv;            /* [layers][2][blocks][Hkv][block_tokens][D]: act dtype, or int8 */
    float *kv_scale;     /* kv_int8: [layers][2][blocks][Hkv][block_tokens] */
    int32_t *tables;     /* [batch_rows + 1][blocks]: the decode rows', then a prefill's */
    int32_t *n_past_dev; /* [batch_rows]: each decode row's cached tokens */
    /* [batch_rows] each decode row's sampling (the sample_rows op): its token, temperature and
     * Gumbel key */
    int32_t *tokens_dev;
    float *temperature_dev;
    uint64_t *keys_dev;
    void *vision_cache; /* [shape.vision_cache_bytes] recent images' embeddings, or NULL */
} vl_pool_mem;

/* The KV cache a decoder layer appends to and attends over: one sequence's contiguous slot, or
 * the paged pool (one prefilling sequence through its table, or decode rows of several
 * sequences with batch). Layer li's K lies at kv + li * layer_bytes, its V v_offset bytes
 * further (scales likewise in floats). */
typedef struct {
    void *kv;
    float *kv_scale; /* kv_int8, else NULL */
    size_t layer_bytes, v_offset, layer_scales, v_scale_offset;
    int64_t head_stride, scale_head_stride;
    vl_kv_pages pages; /* table NULL: contiguous */
    int batch;         /* decode rows of different sequences (n_past_dev[rows]) */
    int64_t n_past;    /* tokens cached before the chunk, when n_past_dev is NULL */
    const int32_t *n_past_dev;
    int64_t bound; /* with n_past_dev: the most keys a row may see (the launch bound) */
} vl_kv_view;

/* What the report shows of a run (cli/report.c through vl_result). */
typedef struct {
    vl_timings t;
    vl_mem_plan plan;                 /* the planner's figure for this run, by group */
    size_t peak_device, device_total; /* total - min free seen (cudaMemGetInfo); 0 on cpu */
    size_t arena_peak[VL_MEM_GROUPS], arena_peak_total; /* the context's arena */
} vl_run_stats;

typedef struct vl_context {
    vl_model *m;
    vl_shape shape;
    int64_t max_ctx; /* vl_shape_ctx */
    int chunk;       /* vl_shape_chunk */
    vl_arena arena;  /* the scratch, then the sequence slots */
    vl_scratch scratch;
    float *logits_host;     /* [V] */
    vl_sequence_mem *slots; /* [n_slots] */
    vl_pool_mem pool;       /* shape.pool_blocks > 0: the batch's pool (no slots) */
    uint8_t *slot_used;
    int n_slots;
    int no_graph;        /* run decode steps eagerly (the backend has no graphs) */
    vl_run_stats *stats; /* where timings and the device peak go (never NULL) */
    vl_run_stats own_stats;
    struct vl_vision_cache *vcache; /* a batch's: images looked up before the tower; or NULL */
} vl_context;

/* ---- the vision cache (engine/vision_cache.c) ----------------------------------------------
 * A batch's recent images' embeddings in one block of its arena, written as a ring (the oldest
 * entries are overwritten first), keyed by two 64-bit hashes of the preprocessed pixels. */
typedef struct vl_vision_key {
    uint64_t a, b;
} vl_vision_key;
typedef struct {
    vl_vision_key key;
    int64_t n_tokens;
    size_t off, bytes; /* in the block */
} vl_vision_entry;
typedef struct vl_vision_cache {
    void *base; /* backend memory, or NULL: no cache */
    size_t cap, head;
    vl_vision_entry *e;
    int n, cap_e;
    int64_t hits, misses, evictions;
} vl_vision_cache;
vl_vision_key vl_vision_key_of(const vl_pixels *px);
void vl_vision_cache_init(vl_vision_cache *vc, void *base, size_t bytes);
void vl_vision_cache_free(vl_vision_cache *vc);
/* The embedding of `key` (n_tokens merged tokens), or NULL; counts a hit or a miss. */
const void *vl_vision_cache_find(vl_vision_cache *vc, vl_vision_key key, int64_t n_tokens);
/* Room for a new entry of `bytes` (the entries it overlaps are evicted): where to copy the
 * embedding, or NULL when it is not cached (larger than the block, no cache, no host memory). */
void *vl_vision_cache_put(vl_vision_cache *vc, vl_vision_key key, int64_t n_tokens, size_t bytes);

typedef struct {
    vl_context *cx;
    int slot;
    vl_sequence_mem mem;
    int64_t max_ctx; /* KV cache capacity in tokens */
    int64_t n_past;
    int64_t rope_delta;
    int max_tokens, n_sampled; /* decode on the backend */
    float temperature;
    uint64_t seed;
    float rep_penalty; /* 1: off (mem.seen / mem.pen_scores NULL) */
    void *graph;       /* the recorded decode step, when the backend records graphs */
} vl_sequence;

/* The scratch and the slots of `sh` in arena a (engine/layout.c), in one fixed order so that
 * sizing and allocating cannot disagree: the scratch (what lives the whole run, then the
 * decoder's per-chunk buffers and the vision tower's sharing one region, because an image is
 * encoded between a chunk's embedding and its first layer), then each slot, or the pool. A counting
 * arena (base NULL, cap SIZE_MAX) only measures; scratch and slots may then be NULL. */
int vl_layout(vl_arena *a, const vl_config *c, vl_dtype act, const vl_shape *sh,
              vl_scratch *scratch, vl_sequence_mem *slots, vl_pool_mem *pool);
/* Bytes of that layout in all, and by group (NULL: not wanted). No model or backend needed. */
size_t vl_layout_plan(const vl_config *c, vl_dtype act, const vl_shape *sh,
                      size_t group_bytes[VL_MEM_GROUPS]);

/* The context of model m (weights placed) for shape sh: one arena, the scratch laid out and
 * vl_shape_sequences(sh) free slots. stats: where the figures go (NULL: the context's own). */
int vl_context_start(vl_context *cx, vl_model *m, const vl_shape *sh, vl_run_stats *stats);
void vl_context_free(vl_context *cx);
/* A sequence in a free slot of cx (empty); -1 with the error set when every slot is taken. */
int vl_sequence_open(vl_sequence *s, vl_context *cx);
/* The view of s's slot for a decoder layer (n_past_dev: a recorded step reads it there). */
vl_kv_view vl_sequence_kv(const vl_sequence *s, const int32_t *n_past_dev);
/* Forget the cached tokens (and the repetition penalty's seen set): a new conversation. */
int vl_sequence_reset(vl_sequence *s);
void vl_sequence_close(vl_sequence *s);

/* One context with one sequence and its stats: what a single request needs (run, logits, chat,
 * tests). Not movable once started (the parts point at each other). */
typedef struct {
    vl_context cx;
    vl_sequence seq;
    vl_run_stats stats;
} vl_session;
int vl_session_start(vl_session *s, vl_model *m, const vl_shape *sh);
/* A session for max_ctx tokens (prompt and decode), chunk and images of max_patches. */
int vl_session_init(vl_session *s, vl_model *m, int64_t max_ctx, int chunk, int64_t max_patches);
void vl_session_free(vl_session *s);

/* Prefill the whole prompt (streamed in chunks) at s->n_past. logits_last: host [V] float32 of
 * the last position. argmax_all (optional, host [n]): argmax of the logits at every position
 * (runs the LM head on every position: tests only). */
int vl_prefill(vl_sequence *s, const vl_prompt *p, float *logits_last, int32_t *argmax_all);
/* Prefill that hands the float32 logits of every prompt position to fn, in order (the LM head
 * on every position: tests and teacher-forced comparisons). fn returns 0, or -1 to stop. */
typedef int (*vl_logits_fn)(void *ctx, int64_t pos, const float *logits, int n);
int vl_prefill_each(vl_sequence *s, const vl_prompt *p, vl_logits_fn fn, void *ctx);
/* Feed one token at position n_past; logits (host [V] float32) of that position. The host
 * path: tests, and top-k / top-p sampling on the host. */
int vl_decode_step(vl_sequence *s, int32_t token, float *logits);
/* The host path's repetition penalty: logits (host [V] float32) = the last logits computed
 * (prefill's last position or vl_decode_step's), penalized over the sequence's seen tokens.
 * Does nothing when the sequence has no penalty. */
void vl_penalize_logits(vl_sequence *s, float *logits);

/* The pieces of prefill a batch runs too (engine/forward.c). One chunk: ids and positions of
 * p[c0, c0 + S) uploaded (and marked in seen when set), embedded, the features of the images
 * whose pads fall in it over them (*cur_src: which image is encoded in the scratch, -1 none),
 * and every layer over them on kv (kv->n_past tokens before). */
int vl_prefill_chunk(vl_context *cx, const vl_kv_view *kv, const vl_prompt *p, int64_t c0,
                     int64_t S, uint8_t *seen, int *cur_src);
/* The device's memory in use now into cx->stats' peak (nothing on the CPU). */
void vl_context_sample_memory(vl_context *cx);

/* Decode on the backend: right after vl_prefill, vl_decode_begin samples the first token from
 * the last prompt logits (sample_token: greedy when temperature <= 0); each vl_decode_next
 * feeds the last sampled token and samples the next, without the host (one CUDA graph per
 * step on the GPU, recorded per sequence). vl_decode_token(i) / vl_decode_tokens read the
 * sampled tokens (synchronizing). */
int vl_decode_begin(vl_sequence *s, float temperature, uint64_t seed);
int vl_decode_next(vl_sequence *s);
int32_t vl_decode_token(vl_sequence *s, int i);
void vl_decode_tokens(vl_sequence *s, int32_t *out, int n);

/* ---- planner (engine/plan.c) ------------------------------------------------------------- */

/* Everything the plan depends on: the memory's shape, and what the backend and the weights
 * add to it. */
typedef struct {
    vl_dtype act;           /* the backend's activation dtype */
    vl_shape shape;         /* prompt_tokens, max_tokens, chunk, images, formats, sequences */
    vl_weight_plan weights; /* which weights are quantized, and how */
    size_t workspace_bytes; /* what the backend holds itself (vl_backend.workspace_bytes) */
    size_t context_bytes;   /* the CUDA context (0 on the CPU) */
    size_t weights_bytes;   /* > 0: the bound model's weights (a pre-quantized checkpoint's own
                             * size, vl_model_weights_bytes); 0: from `weights` and the config */
} vl_plan_request;

/* The CUDA context (with cuBLAS/cuBLASLt loaded) as measured on an H100 with CUDA 13: the
 * device held 0.698 GiB before any weight, of which 0.114 GiB are the backend's workspaces. */
#define VL_CUDA_CONTEXT_BYTES ((size_t)600 << 20)
/* The driver memory of one recorded batch decode step (vl_batch), reserved in the batch's plan
 * beside the context: an H100 (7B shapes, CUDA 13) showed 60.0 MiB for 64 graphs in bf16 and
 * 338.0 MiB in NF4 (free memory before and after recording, so any kernel code loaded on first
 * use is in it); vl_batch_stats.decode_graph_bytes reports the measured figure. */
#define VL_DECODE_GRAPH_BYTES ((size_t)6 << 20)
void vl_plan_memory(const vl_config *c, const vl_plan_request *rq, vl_mem_plan *out);
/* The weights' bytes of rq's plan: its weights_bytes, else what `weights` make of config c. */
size_t vl_plan_weights_bytes(const vl_config *c, const vl_plan_request *rq);
/* The plan of a context of shape sh with the given weights, backend workspace and CUDA context
 * (what vl_plan_memory computes once it has the weights' bytes). */
void vl_plan_session(const vl_config *c, vl_dtype act, const vl_shape *sh, size_t weights_bytes,
                     size_t backend_workspace_bytes, size_t context_bytes, vl_mem_plan *out);
/* The request of a run with options o on a backend of caps be (context: VL_CUDA_CONTEXT_BYTES
 * unless the backend is the CPU). */
void vl_plan_request_init(vl_plan_request *rq, const vl_engine_config *cfg,
                          const vl_backend_caps *be, int64_t prompt_tokens, int max_tokens,
                          int chunk, int64_t max_patches);
/* The plan of q in the fastest layout whose total fits `room` bytes (0: no limit known), and
 * q's shape set to it. Tried in order: with an int8 cache the dequantized prefill layer
 * (kv_int8_copy), then without; inside each, a chunk of 0 (auto) as VL_CHUNK_LARGE, halved
 * down to VL_CHUNK_SMALL (VL_CHUNK_SMALL alone when room is 0 or for the naive attention, whose
 * scores grow with the chunk times the cache), a chunk > 0 as given. 1 when the plan fits, 0
 * when not even the last does (q and out: that last, smallest layout). */
int vl_plan_choose(const vl_config *c, vl_plan_request *q, size_t room, vl_mem_plan *out);
/* The plan with one more sequence of the request's shape held at once (the server's question:
 * does one more request fit?): rq's n_sequences + 1. */
void vl_plan_add_sequence(const vl_config *c, const vl_plan_request *rq, vl_mem_plan *out);
void vl_plan_print(FILE *f, const vl_mem_plan *p);
/* An image as the planner sees it: patches (vision activations), tokens in the prompt (pads) and
 * M-RoPE positions it advances (max(t, h, w) of its merged grid). */
typedef struct {
    int64_t patches, tokens, positions;
} vl_plan_image;
void vl_plan_image_of(const vl_config *c, const vl_pixels *px, vl_plan_image *out);
/* q's prompt_tokens and max_patches for the first k images (imgs[0..n), then imgs[n-1] again)
 * and text_tokens of other prompt tokens. */
void vl_plan_request_set_images(vl_plan_request *q, int64_t text_tokens, const vl_plan_image *imgs,
                                int n, int k);
/* The largest k <= max_images for which the first k images (imgs[0..n), then imgs[n-1] again)
 * with text_tokens of other prompt tokens plan within budget under q (q's prompt_tokens and
 * max_patches are set for each k). */
int vl_plan_images_that_fit(const vl_config *c, vl_plan_request q, int64_t text_tokens,
                            const vl_plan_image *imgs, int n, int max_images, size_t budget);
/* The largest k <= max_images for which the first k images and max_tokens generated tokens stay
 * within the model's max_position_embeddings (the run's own limit). */
int vl_plan_images_within_context(const vl_config *c, int64_t text_tokens,
                                  const vl_plan_image *imgs, int n, int max_tokens, int max_images);

/* The plan of a batch (engine/batch.c) of bc on engine e with a pool of `blocks` blocks, and its
 * shape (what vl_batch_open lays out). */
void vl_batch_plan(const vl_engine *e, const vl_batch_config *bc, int64_t blocks, vl_shape *sh,
                   vl_mem_plan *out);

/* ---- sampling (engine/sample.c) ------------------------------------------------------------ */

typedef struct {
    int greedy;
    float temperature;
    int top_k;
    float top_p;
    uint64_t state; /* xorshift state from --seed */
} vl_sampler;

void vl_sampler_init(vl_sampler *s, const vl_request *rq);
int32_t vl_sample(vl_sampler *s, const float *logits, int n);
int32_t vl_argmax(const float *x, int n);
/* The backend's sample_token on the host: greedy (temperature <= 0) or the Gumbel-max draw of
 * decode step `step` of seed; the same token from the same float32 logits. */
int32_t vl_sample_token_host(const float *logits, int n, float temperature, uint64_t seed,
                             int step);
/* The repetition penalty over the seen ids, in place (the backend's float32 arithmetic). */
void vl_penalize_host(float *logits, const uint8_t *seen, int n, float penalty);

/* The answer's text from generated tokens (engine/answer.c): special tokens skipped, the text
 * ending at the first end-of-turn token unless keep_after_eos, each piece handed to on_text
 * as it comes (streaming) when set. */
typedef struct {
    const vl_model *m;
    vl_decoder dec;
    char *text; /* [len] + NUL; may hold NUL bytes */
    size_t len, cap;
    int n_tokens;       /* tokens added */
    int eos_at;         /* index of the first end-of-turn token, -1 while none came */
    int keep_after_eos; /* --ignore-eos: the text goes on after the end-of-turn token */
    int (*on_text)(void *ctx, const char *piece, size_t len); /* -1 stops (error set) */
    void *on_text_ctx;
} vl_answer;
void vl_answer_init(vl_answer *a, const vl_model *m, int keep_after_eos,
                    int (*on_text)(void *ctx, const char *piece, size_t len), void *ctx);
int vl_answer_add(vl_answer *a, int32_t tok);
/* Flush held bytes (an incomplete character becomes U+FFFD); text is then non-NULL. */
int vl_answer_finish(vl_answer *a);
void vl_answer_free(vl_answer *a);

/* ---- the engine (engine/pipeline.c, engine/budget.c) ---------------------------------------- */

struct vl_engine {
    vl_engine_config cfg;
    vl_backend *be;
    vl_model m;
    int weights_loaded, weight_loads;
    double open_s;      /* opening the model: counted in the first request's load time */
    size_t device_base; /* device memory in use before any weight (context, workspaces) */
};
/* Over cfg.mem_budget: the one-line refusal with the breakdown, how many of the images would
 * fit, and how many with --quant nf4 and/or --kv int8 where the engine does not use them. */
int vl_refuse_budget(const vl_engine *e, const vl_prompt *p, const vl_pixels *imgs, int n_imgs,
                     const vl_mem_plan *plan, const vl_plan_request *rq);
/* "predicted peak X GiB (weights ... ) exceeds --mem-budget Y GiB; <advice>" (the run's and
 * the chat's refusal). */
int vl_budget_error(const vl_mem_plan *plan, int64_t budget, const char *advice);
/* What a request's run and a batch's job share (engine/pipeline.c). How many tokens the request
 * may generate (*limit), and whether the model's context bounds it (*by_context): -1 with the
 * error set when its prompt leaves no room or max_tokens reaches past the context. */
int vl_generation_limit(const vl_engine *e, const vl_request *rq, const vl_prompt *p, int *limit,
                        int *by_context);
/* The request's images decoded and its prompt built (messages, else system and prompt). */
int vl_request_prompt(vl_engine *e, const vl_request *rq, const vl_callbacks *cb, vl_image_set *is,
                      vl_prompt *p);
/* Does the end-of-turn token stop generation (else only the limit does)? */
int vl_eos_stops(const vl_engine *e, const vl_request *rq);
/* A result's tokens (*gen moves into it), text (moves out of ans) and stop reason. */
void vl_result_set_answer(vl_result *out, const vl_request *rq, int32_t **gen, int n_gen, int limit,
                          int by_context, vl_answer *ans);
/* A result's prompt and image figures (args: the request's images, for their paths; NULL: none)
 * and the engine's weights and device figures. */
int vl_result_set_prompt(vl_result *out, const vl_engine *e, const vl_prompt *p,
                         const vl_image_set *is, const vl_image_arg *args);
/* Place the weights once per engine (vl_engine_run does it for its first request). */
int vl_engine_place_weights(vl_engine *e);
/* The device cannot hold the plan: say so before allocating anything (0 when it can). */
int vl_refuse_device_memory(const vl_engine *e, const vl_mem_plan *plan);
/* The most a plan of request q may total: cfg.mem_budget (if set) and what the device has free
 * plus what the engine already holds of it (the context, the backend's workspaces, the weights
 * once placed); 0 when neither is known (no budget, a backend without mem_info). */
size_t vl_plan_room(const vl_engine *e, const vl_plan_request *q);

/* Deterministic random checkpoint in the HF layout for config `c` (bf16 weights). */
int vl_synth_checkpoint(const vl_config *c, const char *config_src, const char *out_dir,
                        uint64_t seed);

/* Seconds on a monotonic clock (engine/clock.c). */
double vl_now_s(void);

/* ---- a conversation (engine/chat.c): the one behind `vlrun --chat`: one session on an engine,
 * planned once, its KV cache kept between turns, so that each turn prefills only its new
 * tokens. The command-line loop around it is cli/chat_cli.c. ------------------------------- */

/* What the session is planned for. */
typedef struct {
    int64_t ctx;         /* KV cache capacity in tokens (the whole conversation) */
    int max_answer;      /* tokens per answer at most; 0: until the context is full */
    int chunk;           /* prefill chunk in tokens */
    int64_t max_patches; /* the largest image a turn may hold */
} vl_chat_shape;

typedef enum { VL_CHAT_STOP_EOS, VL_CHAT_STOP_MAX_TOKENS, VL_CHAT_STOP_CONTEXT } vl_chat_stop;

typedef struct {
    int prefill_tokens, answer_tokens;
    double vision_s, prefill_s, decode_s;
    vl_chat_stop stop;
} vl_chat_stats;

/* Called with every answer token as it is sampled (end-of-turn tokens excluded). */
typedef int (*vl_chat_token_fn)(void *ctx, int32_t id);

typedef struct {
    vl_model *m;
    vl_session s;
    vl_chat_shape shape;
    const char *system; /* NULL: the template's default system message */
    /* sampling (--greedy, --temperature, --top-k, --top-p, --seed), applied to every turn */
    vl_request sampling;
    int host_sampling; /* top-k / top-p: the host sampler; else sampling on the backend */
    float *logits;     /* host [V] */
    /* The conversation's ids: conv[0 .. s.n_past) are in the KV cache; the rest (the last
     * answer's final token and the closing "<|im_end|>\n") go in with the next turn. */
    int32_t *conv;
    int n_conv, cap_conv;
    int32_t *closing; /* "<|im_end|>\n" */
    int n_closing;
    int turns; /* user turns answered since the start or the last clear */
} vl_chat;

/* The plan of a session of shape sh on engine e (its weights as bound); rq: the sampling. */
void vl_chat_plan(vl_engine *e, const vl_request *rq, const vl_chat_shape *sh, vl_mem_plan *out);
/* e: weights placed (vl_engine_place_weights), a tokenizer present. rq: the system prompt and
 * sampling (copied; its images are not used). */
int vl_chat_start(vl_chat *c, vl_engine *e, const vl_request *rq, const vl_chat_shape *sh);
/* One user message (images first, then text; image_src as in vl_prompt, NULL: all distinct)
 * and the model's answer, streamed through fn.
 * Returns 0; 1 when the message cannot be taken (it does not fit the context, or its text is
 * not UTF-8): error set, the conversation unchanged; -1 when the session failed (unusable). */
int vl_chat_turn(vl_chat *c, const char *text, vl_pixels *images, const int *image_src,
                 int n_images, vl_chat_token_fn fn, void *fn_ctx, vl_chat_stats *st);
/* Forget the conversation (the cache is reused from its start). */
void vl_chat_clear(vl_chat *c);
void vl_chat_free(vl_chat *c);

/* ---- version (engine/version.c) ------------------------------------------------------------ */

const char *vl_version(void);        /* "0.8.0" */
const char *vl_version_commit(void); /* git commit of the build, or "unknown" */
int vl_build_has_cuda(void);         /* 1 when this build has the CUDA backend */
/* "vlrun 0.8.0 (commit 1a2b3c4d5e, CUDA build)" (or "CPU-only build"), what --version prints */
void vl_version_print(FILE *f);

#ifdef __cplusplus
}
#endif
#endif
