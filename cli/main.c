/* main.c: vlrun's entry point. The only place that prints an error and picks the exit code:
 * every failure below returns up here with one message (vl_error_get). It also tells a
 * mistyped command from an image path, and checks that what went to stdout got there. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} command;

static const command commands[] = {
    {"tokenize", vl_cmd_tokenize}, {"preprocess", vl_cmd_preprocess},
    {"synth", vl_cmd_synth},       {"logits", vl_cmd_logits},
    {"plan", vl_cmd_plan},         {"sweep", vl_cmd_sweep},
    {"serve", vl_cmd_serve},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

/* A first argument that is no option, no command, names nothing on disk and has neither a '.'
 * nor a '/' is a mistyped command rather than an image: image files have an extension, and a
 * path without one exists or is written with a directory (./scan). */
static int is_unknown_command(const char *a) {
    struct stat st;
    return a[0] && a[0] != '-' && !strchr(a, '.') && !strchr(a, '/') && lstat(a, &st) != 0;
}

static int unknown_command(const char *a) {
    char names[256] = "";
    size_t used = 0;
    for (int i = 0; i < N_COMMANDS && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 commands[i].name);
    return vl_error_set("unknown command '%s'; the commands are %s (vlrun COMMAND --help); to "
                        "run on an image give its path (vlrun ./%s)",
                        a, names, a);
}

/* A closed standard stream (vlrun >&-) would lend its number to the next file opened, and
 * printf would write into that file: hold it with /dev/null opened read-only instead, so that
 * writes to it fail and are reported. */
static void hold_closed_std_streams(void) {
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            int h = open("/dev/null", O_RDONLY); /* the lowest free number: fd */
            if (h >= 0 && h != fd) close(h);
        }
}

static int dispatch(int argc, char **argv) {
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0) {
        vl_version_print(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].fn(argc, argv);
    if (is_unknown_command(cmd)) return unknown_command(cmd);
    return vl_cmd_run(argc, argv);
}

int main(int argc, char **argv) {
    hold_closed_std_streams();
    if (argc < 2) {
        vl_usage(stderr);
        return 2;
    }
    int rc = dispatch(argc, argv);
    if (rc == 0) rc = vl_stdout_flush();
    if (rc != 0) {
        const char *msg = vl_error_get();
        fprintf(stderr, "vlrun: error: %s\n", msg[0] ? msg : "failed");
        return 1;
    }
    return 0;
}
