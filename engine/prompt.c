/* prompt.c: token ids and M-RoPE positions of a request.
 *
 * The chat template of Qwen2-VL (its tokenizer_config.json's chat_template) is built piecewise: the
 * text parts go through the tokenizer, the image parts are appended as ids (<|vision_start|>,
 * <|image_pad|> x tokens,
 * <|vision_end|>), which is what tokenizing the processor's expanded text gives, since added
 * tokens always split the text.
 *
 * Positions follow transformers' get_rope_index: a text token advances a counter on
 * all three rows; an image of H x W merged tokens places token (i, j) at (cur, cur+i, cur+j)
 * and then advances the counter by max(H, W). The decode position of token p is p + rope_delta.
 * Videos are out of scope. */
#include "engine/engine.h"

#include <stdlib.h>

static const char *k_system_prompt = "You are a helpful assistant.";

void vl_prompt_free(vl_prompt *p) {
    free(p->ids);
    free(p->pos);
    free(p->image_at);
    free(p->image_src);
    free(p->image_key);
    memset(p, 0, sizeof *p);
}

static int64_t image_tokens(const vl_pixels *px, int merge) {
    return (int64_t)px->grid_t * px->grid_h * px->grid_w / ((int64_t)merge * merge);
}

int vl_prompt_from_ids(vl_prompt *p, const vl_config *c, const int32_t *ids, int n,
                       vl_pixels *images, const int *image_src, int n_images) {
    memset(p, 0, sizeof *p);
    if (n <= 0) return vl_error_set("prompt: no tokens");
    p->n = n;
    p->ids = malloc((size_t)n * sizeof *p->ids);
    p->pos = malloc((size_t)n * 3 * sizeof *p->pos);
    p->image_at = calloc((size_t)(n_images > 0 ? n_images : 1), sizeof *p->image_at);
    p->image_src = calloc((size_t)(n_images > 0 ? n_images : 1), sizeof *p->image_src);
    if (!p->ids || !p->pos || !p->image_at || !p->image_src) {
        vl_prompt_free(p);
        return vl_error_set("out of host memory for a prompt of %d tokens", n);
    }
    memcpy(p->ids, ids, (size_t)n * sizeof *ids);
    p->images = images;
    p->n_images = n_images;
    for (int i = 0; i < n_images; i++) p->image_src[i] = image_src ? image_src[i] : i;

    int32_t *pt = p->pos, *ph = p->pos + n, *pw = p->pos + 2 * (int64_t)n;
    int64_t cur = 0;
    int img = 0;
    for (int64_t i = 0; i < n;) {
        if (ids[i] < 0 || ids[i] >= c->vocab) {
            vl_prompt_free(p);
            return vl_error_set("prompt: token id %d at position %lld is outside the vocabulary "
                                "of %d",
                                ids[i], (long long)i, c->vocab);
        }
        if (ids[i] != c->image_id) {
            pt[i] = ph[i] = pw[i] = (int32_t)cur;
            cur++;
            i++;
            continue;
        }
        if (img >= n_images) {
            vl_prompt_free(p);
            return vl_error_set("prompt: more image pad tokens than the %d image(s) need",
                                n_images);
        }
        const vl_pixels *px = &images[img];
        int64_t nt = image_tokens(px, c->merge);
        int64_t H = px->grid_h / c->merge, W = px->grid_w / c->merge, HW = H * W;
        for (int64_t k = 0; k < nt; k++) {
            if (i + k >= n || ids[i + k] != c->image_id) {
                vl_prompt_free(p);
                return vl_error_set("prompt: image %d needs %lld pad tokens (grid %dx%dx%d) but "
                                    "its run has %lld",
                                    img + 1, (long long)nt, px->grid_t, px->grid_h, px->grid_w,
                                    (long long)k);
            }
            int64_t ti = k / HW, r = k % HW;
            pt[i + k] = (int32_t)(cur + ti);
            ph[i + k] = (int32_t)(cur + r / W);
            pw[i + k] = (int32_t)(cur + r % W);
        }
        int64_t adv = H > W ? H : W;
        if (px->grid_t > adv) adv = px->grid_t;
        p->image_at[img] = i;
        cur += adv;
        i += nt;
        img++;
    }
    if (img != n_images) {
        vl_prompt_free(p);
        return vl_error_set("prompt: %d image(s) given but the prompt has pad tokens for %d",
                            n_images, img);
    }
    p->rope_delta = cur - n;
    return 0;
}

/* Append src[0..k) to the growing array *dst (length *n, capacity *cap). */
static int append_ids(int32_t **dst, int *n, int *cap, const int32_t *src, int k) {
    if (*n + k > *cap) {
        int ncap = (*n + k) * 2 + 64;
        int32_t *t = realloc(*dst, (size_t)ncap * sizeof *t);
        if (!t) return vl_error_set("out of host memory building the prompt");
        *dst = t;
        *cap = ncap;
    }
    memcpy(*dst + *n, src, (size_t)k * sizeof *src);
    *n += k;
    return 0;
}

/* One image's block: <|vision_start|>, one <|image_pad|> per merged token, <|vision_end|>. */
static int append_image(const vl_config *c, int32_t **dst, int *n, int *cap, const vl_pixels *px,
                        int index) {
    int64_t nt = image_tokens(px, c->merge);
    if (nt > (1 << 24))
        return vl_error_set("image %d is too large (%lld tokens)", index + 1, (long long)nt);
    int rc = append_ids(dst, n, cap, &c->vision_start_id, 1);
    for (int64_t k = 0; k < nt && !rc; k++) rc = append_ids(dst, n, cap, &c->image_id, 1);
    return rc ? rc : append_ids(dst, n, cap, &c->vision_end_id, 1);
}

static int append_text(const vl_tokenizer *tok, int32_t **dst, int *n, int *cap, const char *text) {
    int32_t *ids = NULL;
    int k = 0;
    if (vl_tokenizer_encode(tok, text, &ids, &k)) return -1;
    int rc = append_ids(dst, n, cap, ids, k);
    free(ids);
    return rc;
}

int vl_prompt_build(vl_prompt *p, const vl_model *m, const char *text, vl_pixels *images,
                    const int *image_src, int n_images) {
    return vl_prompt_build_system(p, m, NULL, text, NULL, images, image_src, n_images);
}

/* transformers' template writes a system message's text as it is (an empty one included) and
 * adds the default system turn only when the conversation does not start with one. */
int vl_prompt_build_system(vl_prompt *p, const vl_model *m, const char *system, const char *text,
                           const char *assistant_prefix, vl_pixels *images, const int *image_src,
                           int n_images) {
    const vl_config *c = &m->cfg;
    if (!system) system = k_system_prompt;
    if (!m->tok)
        return vl_error_set("no tokenizer: %s has no tokenizer.json; pass --tokenizer FILE",
                            m->model_path[0] ? m->model_path : "the model");
    int32_t *ids = NULL;
    int n = 0, cap = 0, rc = 0;
    size_t head_len = strlen(system) + 128;
    char *head = malloc(head_len);
    if (!head) return vl_error_set("out of host memory building the prompt");
    snprintf(head, head_len, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n", system);
    rc = append_text(m->tok, &ids, &n, &cap, head);
    free(head);
    for (int i = 0; i < n_images && !rc; i++) rc = append_image(c, &ids, &n, &cap, &images[i], i);
    if (!rc) {
        /* the answer's start is tokenized with the header, as the whole template text is */
        const char *answer = assistant_prefix ? assistant_prefix : "";
        size_t tl = strlen(text ? text : "") + strlen(answer) + 64;
        char *tail = malloc(tl);
        if (!tail) {
            free(ids);
            return vl_error_set("out of host memory building the prompt");
        }
        snprintf(tail, tl, "%s<|im_end|>\n<|im_start|>assistant\n%s", text ? text : "", answer);
        rc = append_text(m->tok, &ids, &n, &cap, tail);
        free(tail);
    }
    if (!rc) rc = vl_prompt_from_ids(p, c, ids, n, images, image_src, n_images);
    free(ids);
    return rc;
}

/* ---- a whole conversation (vl_request.messages) --------------------------------------------
 * The template's text is collected between images and tokenized in one piece at each image
 * (and at the end): added tokens split the text anyway, so this is what tokenizing the whole
 * template text gives, with each image's single <|image_pad|> expanded to its tokens. */

typedef struct {
    int32_t *ids;
    int n, cap;
    char *text; /* the template text since the last image */
    size_t len, text_cap;
} conv_ids;

static int conv_text(conv_ids *cv, const char *s) {
    size_t k = strlen(s);
    if (cv->len + k + 1 > cv->text_cap) {
        size_t ncap = (cv->len + k + 1) * 2 + 256;
        char *t = realloc(cv->text, ncap);
        if (!t) return vl_error_set("out of host memory building the prompt");
        cv->text = t;
        cv->text_cap = ncap;
    }
    memcpy(cv->text + cv->len, s, k + 1);
    cv->len += k;
    return 0;
}

static int conv_flush(const vl_tokenizer *tok, conv_ids *cv) {
    if (cv->len == 0) return 0;
    cv->len = 0;
    return append_text(tok, &cv->ids, &cv->n, &cv->cap, cv->text);
}

static const char *role_name(vl_role r) {
    return r == VL_ROLE_SYSTEM ? "system" : r == VL_ROLE_USER ? "user" : "assistant";
}

/* The roles the template takes: system only first, a known role, a user message last. */
static int check_roles(const vl_message *msgs, int n_msgs) {
    if (n_msgs < 1) return vl_error_set("messages: none given; send at least one user message");
    for (int i = 0; i < n_msgs; i++) {
        vl_role r = msgs[i].role;
        if (r != VL_ROLE_SYSTEM && r != VL_ROLE_USER && r != VL_ROLE_ASSISTANT)
            return vl_error_set("messages[%d]: unknown role %d; use system, user or assistant", i,
                                (int)r);
        if (r == VL_ROLE_SYSTEM && i > 0)
            return vl_error_set("messages[%d]: a system message may only come first", i);
        if (msgs[i].n_parts < 0 || (msgs[i].n_parts > 0 && !msgs[i].parts))
            return vl_error_set("messages[%d]: no parts array for its %d parts", i,
                                msgs[i].n_parts);
    }
    if (msgs[n_msgs - 1].role != VL_ROLE_USER)
        return vl_error_set("messages: the last message is a %s message; it must be the user's",
                            role_name(msgs[n_msgs - 1].role));
    return 0;
}

/* Image part `image` of message mi: every copy of that image (list entries whose src is it),
 * which must be the next image of the request. *next: the next image's index; *at: its first
 * list entry. */
static int conv_image(const vl_model *m, conv_ids *cv, int mi, int image, const vl_pixels *list,
                      const int *src, int n_list, int *next, int *at) {
    if (image != *next)
        return vl_error_set("messages[%d]: image part %d where image %d comes next (each image "
                            "once, in order of appearance)",
                            mi, image, *next);
    if (*at >= n_list || (src ? src[*at] : *at) != image)
        return vl_error_set("messages[%d]: image part %d is not among the request's images", mi,
                            image);
    if (conv_flush(m->tok, cv)) return -1;
    for (; *at < n_list && (src ? src[*at] : *at) == image; ++*at)
        if (append_image(&m->cfg, &cv->ids, &cv->n, &cv->cap, &list[*at], *at)) return -1;
    ++*next;
    return 0;
}

/* Every message's "<|im_start|>ROLE\n" parts "<|im_end|>\n" into cv. */
static int conv_messages(const vl_model *m, conv_ids *cv, const vl_message *msgs, int n_msgs,
                         const char *assistant_prefix, const vl_pixels *list, const int *src,
                         int n_list, int *next) {
    int at = 0;
    if (msgs[0].role != VL_ROLE_SYSTEM &&
        conv_text(cv, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"))
        return -1;
    for (int i = 0; i < n_msgs; i++) {
        if (conv_text(cv, "<|im_start|>") || conv_text(cv, role_name(msgs[i].role)) ||
            conv_text(cv, "\n"))
            return -1;
        for (int k = 0; k < msgs[i].n_parts; k++) {
            const vl_part *pt = &msgs[i].parts[k];
            if (pt->text ? conv_text(cv, pt->text)
                         : conv_image(m, cv, i, pt->image, list, src, n_list, next, &at))
                return -1;
        }
        if (conv_text(cv, "<|im_end|>\n")) return -1;
    }
    return conv_text(cv, "<|im_start|>assistant\n") ||
           conv_text(cv, assistant_prefix ? assistant_prefix : "") || conv_flush(m->tok, cv);
}

int vl_prompt_build_messages(vl_prompt *p, const vl_model *m, const vl_message *msgs, int n_msgs,
                             const char *assistant_prefix, vl_pixels *images, const int *image_src,
                             int n_images) {
    memset(p, 0, sizeof *p);
    if (!m->tok)
        return vl_error_set("no tokenizer: %s has no tokenizer.json; pass --tokenizer FILE",
                            m->model_path[0] ? m->model_path : "the model");
    if (check_roles(msgs, n_msgs)) return -1;
    conv_ids cv = {0};
    int next = 0;
    int rc =
        conv_messages(m, &cv, msgs, n_msgs, assistant_prefix, images, image_src, n_images, &next);
    int n_args = n_images > 0 ? (image_src ? image_src[n_images - 1] : n_images - 1) + 1 : 0;
    if (!rc && next != n_args)
        rc = vl_error_set("messages: %d of the request's %d images appear in no message; refer "
                          "to each image once",
                          n_args - next, n_args);
    if (!rc) rc = vl_prompt_from_ids(p, &m->cfg, cv.ids, cv.n, images, image_src, n_images);
    free(cv.ids);
    free(cv.text);
    return rc;
}

/* ---- a conversation, turn by turn (engine/chat.c) ----------------------------------------- */

/* Tokenize `a` + `b` as one text: the tokenizer must see the whole span between two added
 * tokens at once (its pre-tokenizer joins "\n\n" across a split, for one). */
static int append_text2(const vl_tokenizer *tok, int32_t **dst, int *n, int *cap, const char *a,
                        const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) return vl_error_set("out of host memory building the prompt");
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    int rc = append_text(tok, dst, n, cap, s);
    free(s);
    return rc;
}

int vl_prompt_user_turn(const vl_model *m, int first, const char *system, const char *text,
                        const vl_pixels *images, int n_images, int32_t **ids, int *n) {
    const vl_config *c = &m->cfg;
    *ids = NULL;
    *n = 0;
    if (!m->tok)
        return vl_error_set("no tokenizer: %s has no tokenizer.json; pass --tokenizer FILE",
                            m->model_path[0] ? m->model_path : "the model");
    const char *sys = system ? system : k_system_prompt;
    size_t hl = strlen(sys) + 64;
    char *head = malloc(hl);
    if (!head) return vl_error_set("out of host memory building the prompt");
    if (first)
        snprintf(head, hl, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n", sys);
    else
        snprintf(head, hl, "<|im_start|>user\n");
    static const char tail[] = "<|im_end|>\n<|im_start|>assistant\n";
    size_t tl = strlen(text) + sizeof tail;
    char *body = malloc(tl);
    int cap = 0, rc = 0;
    if (body) snprintf(body, tl, "%s%s", text, tail);
    if (!body) rc = vl_error_set("out of host memory building the prompt");
    /* images come first in the user's message (the template's order of content items) */
    else if (n_images == 0)
        rc = append_text2(m->tok, ids, n, &cap, head, body);
    else
        rc = append_text(m->tok, ids, n, &cap, head);
    for (int i = 0; i < n_images && !rc; i++) rc = append_image(c, ids, n, &cap, &images[i], i);
    if (!rc && n_images > 0) rc = append_text(m->tok, ids, n, &cap, body);
    free(head);
    free(body);
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int vl_prompt_continue(vl_prompt *p, const vl_config *c, const int32_t *ids, int n,
                       vl_pixels *images, const int *image_src, int n_images, int64_t n_past,
                       int64_t pos0) {
    if (vl_prompt_from_ids(p, c, ids, n, images, image_src, n_images)) return -1;
    /* the counter starts at pos0 instead of 0: every position moves by pos0 (get_rope_index
     * over the whole conversation gives the same, since it only ever adds to the counter) */
    if (pos0 + (p->n + p->rope_delta) > INT32_MAX) {
        vl_prompt_free(p);
        return vl_error_set("prompt: positions beyond 2^31");
    }
    for (int64_t i = 0; i < 3 * (int64_t)n; i++) p->pos[i] += (int32_t)pos0;
    p->rope_delta += pos0 - n_past;
    return 0;
}
