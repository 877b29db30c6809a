/* chat.h: the conversation behind `vlrun --chat` (engine/chat.c): one session on an engine,
 * planned once, its KV cache kept between turns, so that each turn prefills only its new
 * tokens. The command-line loop around it is cli/chat_cli.c. */
#ifndef VL_CHAT_H
#define VL_CHAT_H

#include "engine/engine.h"

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

#endif
