/* engine.h: the public face of engine/: the Qwen2-VL model, its memory, prompts, generation
 * and the vlrun command line.
 *
 * Flow of one run (design.md):
 *   options -> model (config + weights on a backend) -> prompt (chat template, image pads,
 *   M-RoPE positions) -> session (arena: KV cache + activations) -> streamed prefill (vision
 *   encoder per image, just before the chunk that holds its pads) -> decode loop -> report.
 */
#ifndef VL_ENGINE_H
#define VL_ENGINE_H

#include "kernels/kernels.h"
#include "loader/loader.h"

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options (engine/options.c) ----------------------------------------------------------- */

typedef enum { VL_QUANT_BF16, VL_QUANT_NF4, VL_QUANT_INT8 } vl_quant;

typedef struct {
    const char *path; /* image file */
    int repeat;       /* IMAGE xN */
} vl_image_arg;

typedef struct {
    const char *model_dir;    /* --model DIR (default $VLRUN_MODEL) */
    const char *config;       /* --config FILE (with --random-weights) */
    const char *tokenizer;    /* --tokenizer FILE (default MODEL/tokenizer.json) */
    int random_weights;       /* --random-weights */
    const char *prompt;       /* --prompt TEXT */
    int max_tokens;           /* --max-tokens N; 512 for the fixed-length modes without it */
    int stop_at_eos;          /* --stop-at-eos */
    int ignore_eos;           /* --ignore-eos: never stop at an end-of-turn token */
    int max_tokens_set;       /* --max-tokens given: exactly N tokens are generated */
    const char *prompt_file;  /* --prompt-file FILE ("-": standard input) */
    const char *system;       /* --system TEXT (NULL: the template's default system prompt) */
    vl_quant quant;           /* --quant */
    int quant_double;         /* NF4 double quantization (--double-quant; default 0) */
    int quant_lm_head;        /* --quant-lm-head */
    int embed_on_host;        /* --embed-on-host */
    int kv_int8;              /* --kv int8 */
    int attn_naive;           /* --attn naive */
    vl_backend_kind backend;  /* --backend */
    int greedy;               /* --greedy (also when temperature == 0) */
    float temperature;        /* --temperature, default 1.0 */
    int top_k;                /* --top-k, default 0 (off) */
    float top_p;              /* --top-p, default 1.0 (off) */
    uint64_t seed;            /* --seed, default 0 */
    float repetition_penalty; /* --repetition-penalty P > 0; 0 = the model's default */
    int chunk;                /* --chunk N prefill chunk in tokens, default 2048 */
    int64_t mem_budget;       /* --mem-budget SIZE in bytes, 0 = none */
    int json;                 /* --json */
    const char *dump_logits;  /* --dump-logits FILE */
    int chat;                 /* --chat: interactive session (engine/chat_cli.c) */
    int ctx;                  /* --ctx N: the chat's KV cache in tokens, 0 = default */
    int quiet;                /* --quiet: no streamed text on stdout */
    int64_t min_pixels;       /* --min-pixels N, 0 = preprocessor_config.json's */
    int64_t max_pixels;       /* --max-pixels N, 0 = preprocessor_config.json's */
    vl_image_arg *images;
    int n_image_args;
    int show_help;    /* --help / -h: print the usage and run nothing */
    int show_version; /* --version: print the version and run nothing */
} vl_options;

void vl_options_default(vl_options *o);
/* Parse the run command's argv (argv[0] is the program). Returns 0, or -1 with the error set. */
int vl_options_parse(vl_options *o, int argc, char **argv);
void vl_options_free(vl_options *o);
void vl_usage(FILE *f);
/* "24G", "800M", "1.5G", "1048576" -> bytes; -1 when malformed. */
int64_t vl_parse_size(const char *s);

/* ---- progress on a terminal (engine/progress.c) -------------------------------------------- */

/* One status line on stderr, rewritten in place (\r) during the long phases: loading weights
 * (bytes), prefill (tokens, with the images the vision encoder has done) and decode (tokens),
 * each with its rate and elapsed seconds. Library code reports through the pointer the model
 * holds (vl_model.progress; NULL = silent, the default) and never prints by itself; every
 * function below does nothing when given NULL. Redrawn at most 10 times a second. */
typedef struct {
    FILE *out;
    const char *phase;             /* "prefill"; NULL between phases */
    const char *unit;              /* "bytes" (shown in MiB/GiB), "tokens", ... */
    double done, total;            /* in units */
    int images_done, images_total; /* shown beside the phase when images_total > 0 */
    double start_s, last_draw_s;   /* vl_now_s() */
    int width;                     /* characters of the line on the terminal now */
    int stale;                     /* counts changed since the last draw */
} vl_progress;

/* p when stderr is a terminal and not --quiet (then vl_progress_* draw on it), else NULL. */
vl_progress *vl_progress_open(vl_progress *p, const vl_options *o);
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
void vl_weight_plan_from_options(vl_weight_plan *wp, const vl_options *o);

typedef struct {
    vl_vec norm1_w, norm1_b, norm2_w, norm2_b; /* [Ev] */
    vl_weight qkv;                             /* [3 Ev, Ev] */
    vl_vec qkv_b;                              /* [3 Ev] */
    vl_weight proj;                            /* [Ev, Ev] */
    vl_vec proj_b;
    vl_weight fc1; /* [Fv, Ev] */
    vl_vec fc1_b;
    vl_weight fc2; /* [Ev, Fv] */
    vl_vec fc2_b;
} vl_vision_block;

typedef struct {
    vl_vec in_norm, post_norm; /* [E] */
    vl_weight q, k, v, o;      /* [H D, E], [Hkv D, E] x2, [E, H D] */
    vl_vec q_b, k_b, v_b;
    vl_weight gate, up, down; /* [F, E] x2, [E, F] */
    /* Views set by vl_weights_place when q/k/v (gate/up) lie back to back on the backend: one
     * [HD + 2 KD, E] (and [2F, E]) GEMV per decode step instead of three (two). data NULL: no. */
    vl_weight qkv, gate_up;
    vl_vec qkv_b;
} vl_decoder_layer;

typedef struct {
    vl_weight patch_embed; /* [Ev, C*T*P*P] (Conv3d weight viewed as a matrix) */
    vl_vision_block *blocks;
    vl_vec merger_ln_w, merger_ln_b; /* [Ev] */
    vl_weight merger_fc1;            /* [4 Ev, 4 Ev] */
    vl_vec merger_fc1_b;
    vl_weight merger_fc2; /* [E, 4 Ev] */
    vl_vec merger_fc2_b;
    vl_weight embed; /* [V, E] */
    vl_decoder_layer *layers;
    vl_vec final_norm;
    vl_weight lm_head; /* [V, E] (the embedding table when tied) */
    int lm_head_is_embed;
} vl_weights;

typedef struct {
    vl_config cfg;
    vl_preproc_config pre;
    vl_backend *be;
    vl_checkpoint ck; /* mmapped files (CPU backend reads weights in place) */
    int have_ck;
    vl_weights w;
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
int vl_model_load(vl_model *m, const vl_options *o, vl_backend *be);
int vl_model_open(vl_model *m, const vl_options *o);
int vl_model_load_weights(vl_model *m, const vl_options *o, vl_backend *be);
int vl_model_bind_shapes(vl_model *m); /* m->cfg set, blocks/layers allocated */
void vl_model_free(vl_model *m);
/* The backend --backend names (the CUDA device opened); NULL with the error set. */
vl_backend *vl_backend_open(const vl_options *o);
/* Does token `id` end the assistant's turn (config eos, generation_config's eos_token_id list,
 * <|im_end|>, <|endoftext|>)? */
int vl_model_is_eos(const vl_model *m, int32_t id);
/* The repetition penalty a run applies: --repetition-penalty when given, else the checkpoint's
 * generation_config.json value (as transformers' generate), 1 (off) with --random-weights. */
float vl_model_repetition_penalty(const vl_model *m, const vl_options *o);

/* Call fn on every parameter in a fixed order, with its published name ("visual.blocks.0...",
 * "model.layers.0...", "lm_head.weight"); kind is one of "linear", "embed", "lm_head",
 * "patch_embed", "norm", "bias". Exactly one of w (matrices) and v (vectors) is set; fn may
 * change them. */
typedef int (*vl_weight_fn)(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v);
int vl_weights_visit(vl_model *m, vl_weight_fn fn, void *ctx);

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
int vl_image_set_load(vl_image_set *is, const vl_options *o, const vl_preproc_config *pre);
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
                     const vl_preproc_config *pre);
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
} vl_prompt;

/* The Qwen2-VL chat template: default system prompt, one user turn holding the images (each
 * <|vision_start|> <|image_pad|> x tokens <|vision_end|>) then the text, then the assistant
 * header. */
int vl_prompt_build(vl_prompt *p, const vl_model *m, const char *text, vl_pixels *images,
                    const int *image_src, int n_images);
/* The same with a system prompt (NULL: the template's "You are a helpful assistant."). */
int vl_prompt_build_system(vl_prompt *p, const vl_model *m, const char *system, const char *text,
                           vl_pixels *images, const int *image_src, int n_images);
/* The user's text (engine/prompt_text.c): --prompt, or --prompt-file FILE, or standard input
 * for "-"; checked to be UTF-8 without NUL. *text is malloc'ed. */
int vl_prompt_text_read(const vl_options *o, char **text);
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

typedef enum {
    VL_MEM_WEIGHTS,
    VL_MEM_KV,
    VL_MEM_ACT,
    VL_MEM_WORKSPACE,
    VL_MEM_GROUPS
} vl_mem_group;
const char *vl_mem_group_name(vl_mem_group g);

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

/* A memory plan by group (engine/plan.c). */
typedef struct {
    size_t weights, kv, act, workspace, context, total;
} vl_mem_plan;

/* ---- session: KV cache, prefill, decode (engine/forward.c, engine/vision.c) ------------- */

typedef struct {
    double load_s, vision_s, prefill_s, ttft_s, decode_s;
    int64_t prefill_tokens, decode_tokens;
} vl_timings;

typedef struct {
    vl_model *m;
    vl_arena arena;
    int64_t max_ctx; /* KV cache capacity in tokens */
    int chunk;
    void *kv;        /* [layers][2][Hkv][max_ctx][D]: act dtype, or int8 with kv_int8 */
    int kv_int8;     /* --kv int8 */
    float *kv_scale; /* kv_int8: [layers][2][Hkv][max_ctx], one scale per cached row */
    void *kv_tmp;    /* kv_int8: [2][Hkv][max_ctx][D] act: one layer's K, V for a prefill chunk */
    int64_t n_past;
    int64_t rope_delta;
    /* per-chunk buffers (act dtype) */
    void *x, *xn, *q, *k, *v, *att, *gate, *up, *logits;
    int32_t *ids_dev, *pos_dev;
    /* vision (one image at a time) */
    int64_t max_patches;
    void *img_feats; /* [max_patches / merge^2, E]: the current image */
    void *vpix, *vx, *vxn, *vqkv, *vatt,
        *vfc;                     /* [P, 1176], [P, Ev] x2, [P, 3Ev], [P, Ev], [P, Fv] */
    int32_t *vpos_dev, *vseg_dev; /* [2, P], [grid_t + 1] */
    /* decode on the backend (vl_decode_begin / vl_decode_next) */
    vl_decode_state *st_dev; /* backend memory */
    int32_t *tokens_dev;     /* [max_tokens] sampled tokens */
    int max_tokens, n_sampled;
    float temperature;
    uint64_t seed;
    /* the repetition penalty (1: off, and seen / pen_scores are NULL) */
    float rep_penalty;
    uint8_t *seen;     /* [V]: 1 for each token id of the sequence so far (backend memory) */
    float *pen_scores; /* [V] float32: the penalized logits the sampler reads (backend memory) */
    void *graph;       /* the recorded decode step, when the backend records graphs */
    int no_graph;      /* run the step eagerly (the backend has no graphs: no_graphs=1) */
    int attn_naive;
    float *scores;         /* --attn naive: fp32 score matrix of the largest attention call */
    float *logits_host;    /* [V] */
    size_t predicted_peak; /* the planner's figure for this run */
    vl_mem_plan plan;      /* ... and its breakdown */
    size_t device_base;    /* device memory in use before the weights (context, workspaces) */
    size_t peak_device, device_total; /* total - min free seen (cudaMemGetInfo); 0 on cpu */
    vl_timings t;
} vl_session;

/* What a session is sized for. */
typedef struct {
    int64_t max_ctx;     /* KV cache capacity in tokens */
    int chunk;           /* prefill chunk in tokens */
    int64_t max_patches; /* the largest image */
    int max_tokens;      /* tokens the decode loop may sample */
    int attn_naive;      /* --attn naive: room for a materialized score matrix */
    int kv_int8;         /* --kv int8: int8 cache + scales, and one layer's dequantized K/V */
    float rep_penalty;   /* repetition penalty; 0 or 1: off (no seen-token set, no scores) */
} vl_session_shape;
int vl_session_start(vl_session *s, vl_model *m, const vl_session_shape *sh);
/* Forget the cached tokens (and the repetition penalty's seen set): a new conversation. */
int vl_session_reset(vl_session *s);
size_t vl_session_plan_shape(const vl_config *c, vl_dtype act, const vl_session_shape *sh,
                             size_t group_bytes[VL_MEM_GROUPS]);

/* Bytes the session needs for a context of max_ctx tokens with prefill chunks of `chunk`
 * tokens and images of at most max_patches patches; vl_session_plan also splits them by group. */
size_t vl_session_bytes(const vl_config *c, vl_dtype act, int64_t max_ctx, int chunk,
                        int64_t max_patches);
size_t vl_session_plan(const vl_config *c, vl_dtype act, int64_t max_ctx, int chunk,
                       int64_t max_patches, size_t group_bytes[VL_MEM_GROUPS]);

/* ---- planner (engine/plan.c) ------------------------------------------------------------- */

/* Everything the plan depends on. */
typedef struct {
    vl_dtype act;          /* the backend's activation dtype */
    int64_t prompt_tokens; /* KV cache = prompt_tokens + max_tokens */
    int max_tokens;
    int chunk;
    int64_t max_patches; /* the largest image */
    int attn_naive;
    int kv_int8;
    float rep_penalty;      /* the run's repetition penalty (0 or 1: off) */
    vl_weight_plan weights; /* which weights are quantized, and how */
    size_t workspace_bytes; /* what the backend holds itself (vl_backend.workspace_bytes) */
    size_t context_bytes;   /* the CUDA context (0 on the CPU) */
} vl_plan_request;

/* The CUDA context (with cuBLAS/cuBLASLt loaded) as measured on an H100 with CUDA 13: the
 * device held 0.698 GiB before any weight, of which 0.114 GiB are the backend's workspaces. */
#define VL_CUDA_CONTEXT_BYTES ((size_t)600 << 20)
void vl_plan_memory(const vl_config *c, const vl_plan_request *rq, vl_mem_plan *out);
/* The plan of a session of shape sh with the given weights, backend workspace and context
 * (what vl_plan_memory computes once it has the shape; the chat plans its own shape). */
void vl_plan_session(const vl_config *c, vl_dtype act, const vl_session_shape *sh,
                     size_t weights_bytes, size_t backend_workspace_bytes, size_t context_bytes,
                     vl_mem_plan *out);
/* The request of a run with options o on backend be (context: VL_CUDA_CONTEXT_BYTES unless the
 * backend is the CPU). */
void vl_plan_request_init(vl_plan_request *rq, const vl_options *o, const vl_backend *be,
                          int64_t prompt_tokens, int max_tokens, int chunk, int64_t max_patches);
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

/* ---- capacity planning without a device (engine/gpu_table.c, engine/plan_input.c,
 * engine/plan_cmd.c, engine/sweep_cmd.c, engine/svg_plot.c) ---------------------------------- */

/* A card `--gpu NAME` knows: nvidia-smi's memory.total, and cudaMemGetInfo's total where we
 * measured it (0: nvidia-smi's less the driver reserve measured on the H100). */
typedef struct {
    const char *name;    /* "A10", "L4", "A100-40G", "A100-80G", "H100" */
    const char *product; /* as nvidia-smi names it */
    int smi_total_mib;
    int cuda_total_mib;
} vl_gpu_card;
const vl_gpu_card *vl_gpu_cards(int *n);
const vl_gpu_card *vl_gpu_find(const char *name); /* NULL when unknown */
int vl_gpu_driver_reserve_mib(void);              /* nvidia-smi total - cudaMemGetInfo total */

/* What `--gpu A10|24G` means for a plan: bytes a run may use in all (context included). */
typedef struct {
    char label[64];
    size_t total;            /* cudaMemGetInfo's total for a card, or the size given */
    const vl_gpu_card *card; /* NULL for a plain size */
    int measured;            /* the card's total was measured (H100) */
} vl_gpu_budget;
int vl_gpu_budget_parse(const char *arg, vl_gpu_budget *out);

/* The request a plan is made for, without weights or a device: the config, the prompt's text
 * tokens (counted with the tokenizer when there is one, else an upper bound), the requested
 * images and the page size used for "how many fit" (--image-size, else the last image). */
typedef struct {
    vl_config cfg;
    char model_name[256];
    int64_t text_tokens; /* every prompt token but the images' pads and markers */
    int text_exact;      /* 1: counted with the tokenizer */
    vl_plan_image *imgs; /* the requested images, then the page as the last entry */
    int n_requested;     /* images given (IMAGE xN counted N times) */
    int page_w, page_h;  /* the page before and after smart_resize */
    int page_rw, page_rh;
} vl_plan_input;
/* o: run options (--random-weights is implied: only the config is read); page_w/h > 0: the
 * --image-size page. */
int vl_plan_input_load(vl_plan_input *in, const vl_options *o, int page_w, int page_h);
void vl_plan_input_free(vl_plan_input *in);
/* The backend a plan assumes: the CPU's, or the CUDA backend's dtype and workspaces without
 * starting a device. */
void vl_plan_backend(vl_backend *be, vl_backend_kind kind);
/* The plan of the first k images (past the requested ones: pages) with weights `quant` and the
 * KV cache int8 or not; other settings from o. */
void vl_plan_input_plan(const vl_plan_input *in, const vl_options *o, const vl_backend *be,
                        vl_quant quant, int kv_int8, int k, vl_mem_plan *out);
/* How many pages fit budget (memory) and the model's positions; *by_positions set when the
 * positions are the limit. */
int vl_plan_input_max_images(const vl_plan_input *in, const vl_options *o, const vl_backend *be,
                             vl_quant quant, int kv_int8, size_t budget, int *by_positions);

int vl_cmd_plan(int argc, char **argv);
int vl_cmd_sweep(int argc, char **argv);

/* A line plot as SVG (engine/svg_plot.c). Layout in user units: the plot area spans
 * [VL_SVG_LEFT, VL_SVG_WIDTH - VL_SVG_RIGHT] x [VL_SVG_TOP, VL_SVG_HEIGHT - VL_SVG_BOTTOM]. */
#define VL_SVG_WIDTH  900
#define VL_SVG_HEIGHT 560
#define VL_SVG_LEFT   90
#define VL_SVG_RIGHT  40
#define VL_SVG_TOP    70
#define VL_SVG_BOTTOM 70
typedef enum { VL_SVG_POINTS, VL_SVG_LINE, VL_SVG_HLINE } vl_svg_kind;
typedef struct {
    vl_svg_kind kind;
    const char *label;   /* legend text */
    const char *color;   /* "#1f77b4" */
    const double *x, *y; /* n points (HLINE: y[0] only) */
    int n;
} vl_svg_series;
typedef struct {
    const char *title, *subtitle, *x_label, *y_label;
    double x_min, x_max, y_min, y_max; /* axis ranges; x_max <= x_min: from the data */
    const vl_svg_series *series;
    int n_series;
} vl_svg_plot;
/* Ticks and ranges (from the data unless given), then the SVG text to f. */
int vl_svg_plot_write(FILE *f, const vl_svg_plot *p);
int vl_session_init(vl_session *s, vl_model *m, int64_t max_ctx, int chunk, int64_t max_patches);
void vl_session_free(vl_session *s);

/* Prefill the whole prompt (streamed in chunks). logits_last: host [V] float32 of the last
 * position. argmax_all (optional, host [n]): argmax of the logits at every position (runs the
 * LM head on every position: tests only). */
int vl_prefill(vl_session *s, const vl_prompt *p, float *logits_last, int32_t *argmax_all);
/* Prefill that hands the float32 logits of every prompt position to fn, in order (the LM head
 * on every position: tests and teacher-forced comparisons). fn returns 0, or -1 to stop. */
typedef int (*vl_logits_fn)(void *ctx, int64_t pos, const float *logits, int n);
int vl_prefill_each(vl_session *s, const vl_prompt *p, vl_logits_fn fn, void *ctx);
/* Feed one token at position n_past; logits (host [V] float32) of that position. The host
 * path: tests, and top-k / top-p sampling on the host. */
int vl_decode_step(vl_session *s, int32_t token, float *logits);
/* The host path's repetition penalty: logits (host [V] float32) = the last logits computed
 * (prefill's last position or vl_decode_step's), penalized over the session's seen tokens.
 * Does nothing when the session has no penalty. */
void vl_penalize_logits(vl_session *s, float *logits);

/* Decode on the backend: after vl_prefill, vl_decode_begin samples the first token from the
 * last prompt logits (sample_token: greedy when temperature <= 0); each vl_decode_next feeds
 * the last sampled token and samples the next, without the host (one CUDA graph per step on
 * the GPU). vl_decode_token(i) / vl_decode_tokens read the sampled tokens (synchronizing). */
int vl_decode_begin(vl_session *s, float temperature, uint64_t seed);
int vl_decode_next(vl_session *s);
int32_t vl_decode_token(vl_session *s, int i);
void vl_decode_tokens(vl_session *s, int32_t *out, int n);

/* Carve the vision scratch for images of at most max_patches patches from the session arena. */
int vl_vision_alloc(vl_session *s, int64_t max_patches);
/* Vision encoder + merger for one image: out[tokens, E] (act dtype, backend memory). */
int vl_vision_encode(vl_session *s, const vl_pixels *px, void *out);

/* ---- sampling (engine/sample.c) ------------------------------------------------------------ */

typedef struct {
    int greedy;
    float temperature;
    int top_k;
    float top_p;
    uint64_t state; /* xorshift state from --seed */
} vl_sampler;

void vl_sampler_init(vl_sampler *s, const vl_options *o);
int32_t vl_sample(vl_sampler *s, const float *logits, int n);
int32_t vl_argmax(const float *x, int n);

/* ---- commands (engine/run.c, engine/commands.c, engine/synth.c) --------------------------- */

int vl_cmd_run(int argc, char **argv);
int vl_cmd_tokenize(int argc, char **argv);
int vl_cmd_preprocess(int argc, char **argv);
int vl_cmd_synth(int argc, char **argv);
int vl_cmd_logits(int argc, char **argv);
/* Flush stdout; a failed write there (disk full, a closed stdout) becomes the error (one line
 * naming the reason) and -1, so that no command ends 0 with its output lost. */
int vl_stdout_flush(void);

/* The answer's text from generated tokens (engine/answer.c): special tokens skipped, the text
 * ending at the first end-of-turn token unless keep_after_eos, streamed to stdout when asked. */
typedef struct {
    const vl_model *m;
    vl_decoder dec;
    char *text; /* [len] + NUL; may hold NUL bytes */
    size_t len, cap;
    int n_tokens;       /* tokens added */
    int eos_at;         /* index of the first end-of-turn token, -1 while none came */
    int stream;         /* write each piece to stdout as it comes */
    int keep_after_eos; /* --ignore-eos: the text goes on after the end-of-turn token */
} vl_answer;
void vl_answer_init(vl_answer *a, const vl_model *m, int stream, int keep_after_eos);
int vl_answer_add(vl_answer *a, int32_t tok);
/* Flush held bytes (an incomplete character becomes U+FFFD); text is then non-NULL. */
int vl_answer_finish(vl_answer *a);
void vl_answer_free(vl_answer *a);

/* What a run produced, for its report. */
typedef struct {
    const vl_options *o;
    const vl_prompt *p;
    const vl_image_set *is;
    int64_t img_tokens;
    const int32_t *gen; /* [n_gen] every generated token */
    int n_gen;
    int token_limit;         /* the most tokens the run could generate (--max-tokens, context) */
    int answer_tokens;       /* tokens before the first end-of-turn token (n_gen: none came) */
    const char *stop_reason; /* where the text ends: "eos", "max_tokens" or "context" */
    const char *text;        /* the answer's text: UTF-8, may hold NUL bytes */
    size_t text_len;
    double total_s; /* the run's wall time, from the options to the last token */
} vl_run_result;

/* The end-of-run report (engine/report.c): text on stderr, or one JSON object on stdout. */
void vl_report_text(const vl_session *s, const vl_model *m, const vl_run_result *r);
void vl_report_json(const vl_session *s, const vl_model *m, const vl_run_result *r);
/* s[0..n) as a JSON string literal (quotes included), malloc'ed: control characters (NUL
 * too) escaped, invalid UTF-8 replaced by U+FFFD as Python's errors="replace" does
 * (engine/json_text.c). NULL when out of memory. */
char *vl_json_string(const char *s, size_t n);

/* Deterministic random checkpoint in the HF layout for config `c` (bf16 weights). */
int vl_synth_checkpoint(const vl_config *c, const char *config_src, const char *out_dir,
                        uint64_t seed);

double vl_now_s(void);

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
