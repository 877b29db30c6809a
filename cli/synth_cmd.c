/* synth_cmd.c: `vlrun synth --config FILE --out DIR [--seed S]`: a random checkpoint in the
 * Hugging Face layout (engine/synth.c writes it). */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>

static const char synth_usage[] =
    "usage: vlrun synth --config FILE --out DIR [--seed S]\n"
    "  a random checkpoint with the shapes of config.json FILE, in the Hugging Face layout\n"
    "  (DIR/config.json + DIR/model.safetensors, bf16): the weights --random-weights uses\n"
    "  --seed S     the weights' seed (default 0)\n"
    "  -h, --help   this text; --version: vlrun's version\n";

int vl_cmd_synth(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "--version") == 0) {
            if (a[2] == 'v')
                vl_version_print(stdout);
            else
                fputs(synth_usage, stdout);
            return 0;
        }
        if (!v &&
            (strcmp(a, "--config") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--seed") == 0))
            return vl_error_set("vlrun synth: option %s needs a value", a);
        if (strcmp(a, "--config") == 0)
            config = argv[++i];
        else if (strcmp(a, "--out") == 0)
            out = argv[++i];
        else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || *end || v[0] == '-')
                return vl_error_set("vlrun synth: --seed expects a non-negative integer, got "
                                    "'%s'",
                                    v);
            i++;
        } else if (a[0] == '-')
            return vl_error_set("vlrun synth: unknown option %s (see vlrun synth --help)", a);
        else
            return vl_error_set("vlrun synth: unexpected argument '%s' (see vlrun synth --help)",
                                a);
    }
    if (!config || !out)
        return vl_error_set(
            "vlrun synth: --config FILE and --out DIR needed (see vlrun synth --help)");
    vl_config c;
    if (vl_config_load(&c, config)) return -1;
    return vl_synth_checkpoint(&c, config, out, seed);
}
