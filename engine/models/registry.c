/* registry.c: the architectures this build runs, keyed by config.json's model_type (which
 * loader/config.c has already checked against its own table of config readers). Adding one is
 * a row here (and its files in engine/models/). */
#include "engine/models/models.h"

static const vl_arch archs[] = {
    {"qwen2_vl", &vl_qwen2_vl_vision, &vl_qwen2_vl_text},
    {"qwen2_5_vl", &vl_qwen2_5_vl_vision, &vl_qwen2_vl_text}, /* Qwen2-VL's decoder */
};
#define N_ARCHS ((int)(sizeof archs / sizeof archs[0]))

const vl_arch *vl_arch_find(const char *model_type) {
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(archs[i].model_type, model_type) == 0) return &archs[i];
    char known[256] = "";
    for (int i = 0, len = 0; i < N_ARCHS && len < (int)sizeof known; i++)
        len += snprintf(known + len, sizeof known - (size_t)len, "%s\"%s\"", i ? ", " : "",
                        archs[i].model_type);
    vl_error_set("model_type \"%s\" has no implementation in this build (known: %s)", model_type,
                 known);
    return NULL;
}
