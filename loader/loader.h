/* loader.h: the public face of loader/: files in, tensors, token ids and pixels out.
 *
 *   errors        user-facing failures: one message, returned up to main
 *   checkpoint    safetensors (single file or sharded index), mmapped and validated
 *                 (loader/safetensors.c, safetensors_folder.c, safetensors_write.c)
 *   config        config.json (flat Qwen2-VL layout and nested transformers-5 layout),
 *                 preprocessor_config.json
 *   tokenizer     tokenizer.json byte-level BPE (Qwen2), encode (tokenizer.c, pretokenize.c,
 *                 added_tokens.c) / streaming decode (detokenize.c)
 *   image         decode (image.c, image_<format>.c: libpng, libjpeg-turbo, giflib, libwebp,
 *                 libtiff, our BMP reader) -> PIL-exact 8-bit RGB, EXIF orientation
 *                 (image_orient.c, exif.c), smart_resize, PIL-exact bicubic resize (resize.c),
 *                 normalization and the Qwen2-VL patch order (preprocess.c)
 *   bitsandbytes  pre-quantized NF4 / int8 Linear weights of a checkpoint (bnb.c)
 *
 * Every function that can fail because of user input returns 0 on success and non-zero on
 * failure, after vl_error_set() has recorded one line naming the file/tensor/option and what to
 * do. Nothing here prints or exits.
 */
#ifndef VL_LOADER_H
#define VL_LOADER_H

#include "kernels/kernels.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors (loader/error.c) --------------------------------------------------------------- */

#if defined(__GNUC__)
#define VL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VL_PRINTF(a, b)
#endif

/* Record the failure (the first one wins until vl_error_clear); always returns -1 so that
 * `return vl_error_set(...)` reads naturally. */
int vl_error_set(const char *fmt, ...) VL_PRINTF(1, 2);
const char *vl_error_get(void); /* "" when no error */
void vl_error_clear(void);

/* ---- files and JSON (loader/file.c, loader/json.c) ---------------------------------------- */

/* Open `path` for reading without blocking on a FIFO or device, and refuse anything that is not
 * a regular file; `what` names the file's role in messages ("image", "shard"). On success *fd
 * is open (close it) and *size (if not NULL) holds the file's size in bytes. */
int vl_open_regular(const char *path, const char *what, int *fd, int64_t *size);
/* Read exactly `size` bytes from fd; a short read is an error naming path. */
int vl_read_fd(int fd, const char *path, void *buf, size_t size);
/* Whole file into memory, NUL-terminated (for JSON). max_bytes guards against absurd files. */
int vl_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len);

/* Create `path` afresh for writing: whatever has that name is unlinked first and O_EXCL makes a
 * new file, so a FIFO there cannot block and a symlink there cannot redirect the write. NULL
 * (error recorded, starting with `what`: the option or file role) on failure. For NAME.tmp
 * files renamed over NAME once complete. */
FILE *vl_create_fresh(const char *path, const char *what);
/* An output's final path may be replaced only when it is absent or a regular file: a FIFO, a
 * device, a directory, a socket or a symbolic link there is refused with one line naming it
 * (the output is then never written through it nor over it). Returns 0 or -1 (error set). */
int vl_output_target_check(const char *path, const char *what);
/* data[n] as the file `path`: checked by vl_output_target_check, written to PATH.tmp created
 * afresh, renamed over PATH when complete (removed on any failure). Returns 0 or -1. */
int vl_write_whole_file(const char *path, const char *what, const void *data, size_t n);

/* Parse text[0, len) (it need not be NUL-terminated) as one JSON value, strictly: only
 * whitespace may follow it, it may hold no NUL byte, and no object may repeat a key. `what`
 * names the file or tensor in messages. *out is freed with cJSON_Delete. */
struct cJSON;
int vl_json_parse(const char *text, size_t len, const char *what, struct cJSON **out);
/* s[0..n) as a JSON string literal (quotes included), malloc'ed: control characters (NUL
 * too) escaped, invalid UTF-8 replaced by U+FFFD as Python's errors="replace" does
 * (loader/json_text.c). NULL when out of memory. */
char *vl_json_string(const char *s, size_t n);

/* ---- checkpoint (loader/safetensors*.c) --------------------------------------------------- */

#define VL_MAX_DIMS 8

typedef struct {
    char *name;
    vl_dtype dtype;
    int ndim;
    int64_t shape[VL_MAX_DIMS];
    int64_t numel;
    const void *data; /* inside the mmapped file */
    size_t nbytes;
    int file; /* index into vl_checkpoint.files */
} vl_tensor;

typedef struct {
    char *path;
    void *map;
    size_t size;
} vl_mapped_file;

typedef struct {
    vl_mapped_file *files;
    int n_files;
    vl_tensor *tensors; /* sorted by name */
    int n_tensors;
} vl_checkpoint;

/* Open `path`: a directory (model.safetensors, or model.safetensors.index.json and its shards)
 * or a single .safetensors file. Only regular files are opened (a FIFO is refused, never
 * blocks). Validates header length, strict JSON, dtypes, shapes, byte lengths, offsets (the
 * tensors must tile the data area exactly, as the reference loader requires), duplicate names;
 * for an index, shard names must be plain file names and every tensor must be in the shard the
 * index names. Files of a directory must resolve inside it (a symlink leading out is refused;
 * a Hugging Face cache snapshot may link into its blobs/). */
int vl_checkpoint_open(vl_checkpoint *ck, const char *path);
void vl_checkpoint_close(vl_checkpoint *ck);
/* NULL if absent (no error recorded). */
const vl_tensor *vl_checkpoint_find(const vl_checkpoint *ck, const char *name);
/* Like find, but records "tensor NAME is missing from DIR" when absent. */
const vl_tensor *vl_checkpoint_get(const vl_checkpoint *ck, const char *name);

/* Write one safetensors file (for `vlrun synth` and tests; loader/safetensors_write.c). Tensors
 * are written back to back in the order given; data is copied as is. Writes to PATH.tmp
 * (created afresh, so a FIFO or symlink there is replaced, not written through) and renames at
 * the end, so a failed write leaves nothing half-written. */
typedef struct {
    const char *name;
    vl_dtype dtype;
    int ndim;
    int64_t shape[VL_MAX_DIMS];
    const void *data;
} vl_tensor_out;
int vl_safetensors_write(const char *path, const vl_tensor_out *tensors, int n);

/* ---- config (loader/config.c) -------------------------------------------------------------- */

#define VL_MAX_FULLATT 64 /* full-attention blocks a windowed vision tower may list */

typedef struct {
    char model_type[32]; /* the architecture (config.json's model_type; "qwen2_vl" if absent) */
    /* decoder */
    int hidden;       /* E */
    int intermediate; /* F */
    int n_layers;
    int n_heads, n_kv_heads, head_dim;
    int vocab;
    float rope_theta;
    float rms_eps;
    int mrope_section[3]; /* Qwen2-VL (loader/config_qwen2_vl.c) */
    int max_positions;
    int tie_embeddings;
    /* vision (Qwen2-VL: loader/config_qwen2_vl.c) */
    int v_depth;
    int v_embed; /* vision width */
    int v_heads, v_head_dim;
    int v_mlp; /* vision MLP width = embed * mlp_ratio */
    int v_out; /* merger output = decoder hidden */
    int patch, temporal_patch, merge, in_channels;
    float v_rope_theta;
    int v_act_quick_gelu; /* 1: quick_gelu (Qwen2-VL), 0: exact gelu */
    /* Qwen2.5-VL's tower (loader/config_qwen2_5_vl.c; 0 for Qwen2-VL): RMSNorm, a SwiGLU MLP
     * of width v_mlp (intermediate_size) and attention inside windows of v_window x v_window
     * pixels, except in the blocks v_fullatt[0..v_n_fullatt) (ascending, each < v_depth). */
    int v_window; /* window_size in pixels, a multiple of patch * merge; 0: no windows */
    int v_n_fullatt;
    int v_fullatt[VL_MAX_FULLATT];
    /* special token ids */
    int bos_id, eos_id, vision_start_id, vision_end_id, vision_pad_id, image_id, video_id;
} vl_config;

/* Parse config.json text (flat or nested layout; strict JSON); `name` is used in error messages.
 * Vision sizes are held to the Qwen-VL family's (patch 14 or 16, temporal 2, merge 2); special
 * token ids, given or defaulted to Qwen2-VL's, must be below vocab_size. */
int vl_config_parse(vl_config *c, const char *json_text, const char *name);
int vl_config_load(vl_config *c, const char *path);

typedef struct {
    int64_t min_pixels, max_pixels;
    float mean[3], std[3];
    int patch, temporal_patch, merge;
} vl_preproc_config;

/* The Qwen2-VL-7B-Instruct values (min 3136, max 12845056, CLIP mean/std, 14/2/2). */
void vl_preproc_config_default(vl_preproc_config *p);
/* preprocessor_config.json; keys absent from the file keep the defaults. Sizes are held to the
 * Qwen-VL family's: patch_size 14 or 16, temporal_patch_size 2, merge_size 2, 1 <= min_pixels
 * <= max_pixels <= 12845056 (also spelled size {shortest_edge, longest_edge}). */
int vl_preproc_config_load(vl_preproc_config *p, const char *path);
/* A loaded preprocessor_config.json (path, for messages) must agree with config.json on
 * patch_size, temporal_patch_size and merge_size: transformers cuts pixels with the former and
 * builds the patch embedding and merger from the latter. Call it after loading both. */
int vl_preproc_config_check(const vl_preproc_config *p, const vl_config *c, const char *path);

/* ---- generation_config.json (loader/generation_config.c) ---------------------------------- */

#define VL_GEN_MAX_EOS 16
/* What transformers' generate starts from for a checkpoint. Absent keys keep the defaults
 * (transformers' GenerationConfig: repetition_penalty 1, temperature 1, top_k 50, top_p 1, no
 * sampling, no eos ids). */
typedef struct {
    int present;              /* read from a file */
    float repetition_penalty; /* finite, > 0; 1 = off */
    int32_t eos_ids[VL_GEN_MAX_EOS];
    int n_eos;
    float temperature; /* validated, not applied (the command line decides sampling) */
    int top_k;
    float top_p;
    int do_sample;
} vl_generation_config;
void vl_generation_config_default(vl_generation_config *g);
/* path: a regular file of strict JSON; eos ids must lie in [0, vocab). */
int vl_generation_config_load(vl_generation_config *g, const char *path, int vocab);
/* The same from text[len] (what names it in messages). */
int vl_generation_config_parse(vl_generation_config *g, const char *text, size_t len,
                               const char *what, int vocab);

/* ---- tokenizer (loader/tokenizer.c, detokenize.c) ----------------------------------------- */

typedef struct vl_tokenizer vl_tokenizer;

/* path: a regular file (a FIFO or device is refused) of strict JSON (vl_json_parse). */
int vl_tokenizer_load(vl_tokenizer **out, const char *path);
void vl_tokenizer_free(vl_tokenizer *t);
/* Encode UTF-8 text exactly as HF tokenizers does for the Qwen2 tokenizer.json: added tokens
 * split out first, NFC, the Qwen2 split pattern, byte-level mapping, BPE merges by rank.
 * *ids is malloc'ed. Invalid UTF-8 is an error. Time is linear in the text whatever the added
 * tokens, but for BPE's n log n within one pre-tokenized word. */
int vl_tokenizer_encode(const vl_tokenizer *t, const char *text, int32_t **ids, int *n);
/* Id of a token given by its content ("<|im_start|>", "\n" as the vocab spells it after the
 * byte mapping is NOT accepted: pass added tokens only), or -1. */
int vl_tokenizer_token_id(const vl_tokenizer *t, const char *content);
int vl_tokenizer_vocab_size(const vl_tokenizer *t); /* highest id + 1 */
/* 1 when id is an added token marked "special" in tokenizer.json (<|im_end|>, <|image_pad|>...:
 * what decode(skip_special_tokens=True) drops), else 0. */
int vl_tokenizer_is_special(const vl_tokenizer *t, int id);
/* Raw bytes of one token (after undoing the byte-level mapping); NULL for an unknown id. */
const char *vl_tokenizer_token_bytes(const vl_tokenizer *t, int id, int *len);

/* Streaming decode: feed ids one at a time, get the UTF-8 text that is complete so far;
 * bytes of a character split across tokens are held back until it is whole. Zero it before
 * use; skip_special = 1 drops special tokens as transformers' decode(skip_special_tokens=True)
 * does (the text a user reads), 0 keeps them (the default; the tests use it). */
typedef struct {
    char pending[8];
    int n_pending;
    int skip_special;
} vl_decoder;
/* Appends at most out_cap-1 bytes + NUL to out; returns the number of bytes written. */
int vl_decoder_feed(vl_decoder *d, const vl_tokenizer *t, int id, char *out, int out_cap);
/* Whatever is still held (an incomplete character) as U+FFFD replacement(s). */
int vl_decoder_flush(vl_decoder *d, char *out, int out_cap);
/* One step of a lossy UTF-8 decode (loader/pretokenize.c): the length of the sequence at
 * s[0..n) when complete and valid (1..4); 0 when a valid start is cut short by the end; -k when
 * its first k bytes are a maximal invalid subpart, which becomes one U+FFFD as in Python's
 * errors="replace" and Rust's from_utf8_lossy. */
int vl_utf8_next(const unsigned char *s, size_t n);

/* ---- images (loader/image*.c, loader/resize.c, loader/preprocess.c) ----------------------- */

typedef struct {
    int w, h;
    uint8_t *rgb; /* h * w * 3, row-major, interleaved RGB */
} vl_image;

/* Decode PNG, JPEG, GIF (first frame), BMP, WebP (first frame) or TIFF (first page) to 8-bit
 * RGB exactly as transformers' load_image does: PIL's exif_transpose(Image.open(path))
 * .convert("RGB") (EXIF/XMP orientation applied, grey replicated, alpha dropped without
 * compositing, palettes expanded, CMYK converted as PIL does). Refuses, before decoding,
 * headers over VL_IMAGE_MAX_PIXELS, aspect ratio > 200 and GIF/RLE-BMP canvases far larger than
 * the file; truncated or corrupt data is an error. The file is read with vl_open_regular. */
#define VL_IMAGE_MAX_PIXELS (178956970LL) /* PIL's decompression-bomb error threshold */
int vl_image_load(vl_image *img, const char *path);
/* The same from an encoded file in memory (bytes[n]; name: the image's name in messages). */
int vl_image_load_bytes(vl_image *img, const char *name, const uint8_t *bytes, size_t n);
void vl_image_free(vl_image *img);

/* Qwen2-VL smart_resize: dimensions multiple of `factor`, pixels within [min, max]. */
int vl_smart_resize(int h, int w, int factor, int64_t min_pixels, int64_t max_pixels, int *out_h,
                    int *out_w);
/* PIL Image.resize((w, h), BICUBIC) on 8-bit RGB, bit-exact (area-aware when downscaling). */
int vl_image_resize_bicubic(const vl_image *src, int w, int h, vl_image *dst);

typedef struct {
    int grid_t, grid_h, grid_w; /* patches; merged tokens = t*h*w / merge^2 */
    int resized_w, resized_h;
    int64_t n_patches; /* grid_t * grid_h * grid_w */
    int patch_dim;     /* in_channels * temporal_patch * patch * patch (1176 for Qwen2-VL) */
    float *pixels;     /* [n_patches, patch_dim] in the Qwen2-VL patch order (preprocess.c) */
} vl_pixels;

/* smart_resize + bicubic + rescale/normalize + temporal duplication + patch order. */
int vl_preprocess_image(const vl_image *img, const vl_preproc_config *p, vl_pixels *out);
void vl_pixels_free(vl_pixels *px);

/* ---- pre-quantized bitsandbytes tensors (loader/bnb.c) ------------------------------------ */

/* Is the Linear weight `name` (the full tensor name, "....q_proj.weight") stored by
 * bitsandbytes in `ck`? rows, cols: the shape the config expects ([out, in]).
 *   1   yes, and valid: *out describes it (dtype VL_DTYPE_NF4 or VL_DTYPE_Q8ROW, rows, cols,
 *       and pointers into the mmapped file: HOST memory, valid while ck is open; the float
 *       buffers may be unaligned: copy them or read them with memcpy). NF4 with double
 *       quantization sets absmax_code / absmax_map / absmax_offset too.
 *   0   no bitsandbytes tensor by that name (a plain tensor, or none): the caller goes on
 *   -1  a bitsandbytes tensor that is broken or unsupported (fp4, wrong shape, missing or
 *       mis-sized absmax, bad quant-state JSON, ...): the error names the tensor.
 * 4-bit: NAME (U8 packed) + NAME.quant_state.bitsandbytes__nf4 + NAME.quant_map + NAME.absmax
 * [+ NAME.nested_absmax + NAME.nested_quant_map]; 8-bit: NAME (I8) + PREFIX.SCB
 * [+ PREFIX.weight_format], PREFIX being NAME without ".weight". */
int vl_bnb_weight(const vl_checkpoint *ck, const char *name, int64_t rows, int64_t cols,
                  vl_weight *out);

#ifdef __cplusplus
}
#endif
#endif
