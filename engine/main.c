/* main.c: vlrun's entry point. The only place that prints an error and picks the exit code:
 * every failure below returns up here with one message (vl_error_get). */
#include "engine/engine.h"

#include <stdlib.h>

int main(int argc, char **argv) {
    int rc;
    const char *cmd = argc > 1 ? argv[1] : "";
    if (strcmp(cmd, "tokenize") == 0) rc = vl_cmd_tokenize(argc, argv);
    else if (strcmp(cmd, "preprocess") == 0) rc = vl_cmd_preprocess(argc, argv);
    else if (strcmp(cmd, "synth") == 0) rc = vl_cmd_synth(argc, argv);
    else if (strcmp(cmd, "logits") == 0) rc = vl_cmd_logits(argc, argv);
    else if (strcmp(cmd, "plan") == 0) rc = vl_cmd_plan(argc, argv);
    else if (strcmp(cmd, "sweep") == 0) rc = vl_cmd_sweep(argc, argv);
    else if (argc == 1) {
        vl_usage(stderr);
        return 2;
    } else rc = vl_cmd_run(argc, argv);
    if (rc != 0) {
        const char *msg = vl_error_get();
        fprintf(stderr, "vlrun: error: %s\n", msg[0] ? msg : "failed");
        return 1;
    }
    return 0;
}
