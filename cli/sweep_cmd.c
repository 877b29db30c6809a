/* sweep_cmd.c: `vlrun sweep IMAGE --counts 1,10,28,...`: one run per image count, each a child
 * process of this same binary (`vlrun IMAGE xN ... --json`), so every count starts from an empty
 * device and its measured peak is its own. Writes PREFIX.csv (images, prompt tokens, measured
 * and predicted peak, TTFT, decode speed) and PREFIX.svg: measured peaks as points, the plan
 * (plan_input.c, the same figures as `vlrun plan`) as a line, and the --gpu budget as a line.
 * Measured peak: cudaMemGetInfo's on CUDA (context included), tracked bytes on the CPU. */
#include "cli/cli.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_COUNTS 64

typedef struct {
    vl_options o;
    int counts[MAX_COUNTS], n_counts;
    const char *out;
    const char *from_csv; /* --from-csv FILE: plot a sweep's CSV again, no run */
    vl_gpu_budget gpu;
    int have_gpu;
    char **rest; /* the run's arguments (image and options) for the children */
    int n_rest, image_at;
} sweep_args;

/* One count's run, from its JSON report. */
typedef struct {
    int images, ok;
    double prompt_tokens, measured, predicted, ttft_s, decode_tok_s;
    int chunk; /* the prefill chunk the run took (its report's options.chunk; 0: not said) */
    char device[128];
} sweep_point;

static void sweep_usage(FILE *f) {
    fprintf(f, "usage: vlrun sweep IMAGE --counts N,N,... [--out PREFIX] [--gpu CARD|SIZE]\n"
               "                  [run options: --model DIR | --random-weights --config FILE,\n"
               "                  --tokenizer FILE, --quant Q, --kv K, --max-tokens N, ...]\n"
               "Runs IMAGE xN for each N (a fresh process each) and writes PREFIX.csv and\n"
               "PREFIX.svg (memory against image count: measured, predicted, the --gpu budget).\n"
               "  --counts N,...     image counts, ascending (at most 64)\n"
               "  --out PREFIX       output files' prefix (default: sweep)\n"
               "  --gpu CARD|SIZE    the budget line: A10, L4, A100-40G, A100-80G, H100, or 24G\n"
               "                     (--budget SIZE is the same)\n"
               "  --from-csv FILE    no runs: plot the points of an earlier sweep's CSV (give the\n"
               "                     same run options for the prediction line)\n");
}

static int parse_counts(sweep_args *sa, const char *v) {
    const char *s = v;
    while (*s) {
        char *end;
        errno = 0;
        long n = strtol(s, &end, 10);
        if (errno || end == s || n < 1 || n > 100000 || (*end && *end != ',') ||
            sa->n_counts == MAX_COUNTS || (sa->n_counts > 0 && n <= sa->counts[sa->n_counts - 1]))
            return vl_error_set("--counts %s: expected up to %d ascending image counts in [1, "
                                "100000] separated by commas, like 1,10,28,60",
                                v, MAX_COUNTS);
        sa->counts[sa->n_counts++] = (int)n;
        s = *end ? end + 1 : end;
    }
    if (sa->n_counts == 0) return vl_error_set("--counts: no count given (e.g. --counts 1,10,28)");
    return 0;
}

static int parse_sweep_args(sweep_args *sa, int argc, char **argv) {
    memset(sa, 0, sizeof *sa);
    vl_options_default(&sa->o);
    sa->out = "sweep";
    sa->rest = calloc((size_t)argc + 1, sizeof *sa->rest);
    if (!sa->rest) return vl_error_set("out of host memory");
    sa->rest[sa->n_rest++] = "vlrun sweep";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (vl_option_takes_value(a) && v) { /* a run option and its value, whatever it is */
            sa->rest[sa->n_rest++] = argv[i++];
            sa->rest[sa->n_rest++] = argv[i];
            continue;
        }
        int counts = !strcmp(a, "--counts"), out = !strcmp(a, "--out");
        int csv = !strcmp(a, "--from-csv");
        int gpu = !strcmp(a, "--gpu") || !strcmp(a, "--budget");
        if ((counts || out || gpu || csv) && !v)
            return vl_error_set("vlrun sweep: option %s needs a value", a);
        if (counts && parse_counts(sa, v)) return -1;
        if (gpu && vl_gpu_budget_parse(v, &sa->gpu)) return -1;
        if (out) sa->out = v;
        if (csv) sa->from_csv = v;
        sa->have_gpu |= gpu;
        if (counts || out || gpu || csv)
            i++;
        else
            sa->rest[sa->n_rest++] = argv[i];
    }
    if (vl_options_parse(&sa->o, sa->n_rest, sa->rest)) return -1;
    if (sa->o.n_image_args != 1 || sa->o.images[0].repeat != 1)
        return vl_error_set("vlrun sweep: give one IMAGE (without xN): --counts sets how many");
    if (sa->n_counts == 0 && !sa->from_csv)
        return vl_error_set("vlrun sweep: --counts N,N,... is required");
    if (!sa->out[0]) return vl_error_set("vlrun sweep: --out needs a file name prefix");
    for (int i = 1; i < sa->n_rest; i++)
        if (sa->rest[i] == sa->o.images[0].path) sa->image_at = i;
    return 0;
}

/* Path of this program, for the children. */
static void self_path(char *buf, size_t cap, const char *argv0) {
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n > 0)
        buf[n] = 0;
    else
        snprintf(buf, cap, "%s", argv0);
}

/* Runs argv with stdout into a growing buffer; stderr stays ours. *status: its exit status. */
static int run_child(char *const *argv, char **out, int *status) {
    int fd[2];
    if (pipe(fd) != 0) return vl_error_set("vlrun sweep: pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return vl_error_set("vlrun sweep: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    ssize_t r = 1;
    while (buf && r > 0) {
        if (len + 4096 > cap) {
            char *t = realloc(buf, cap * 2);
            if (!t) break;
            buf = t;
            cap *= 2;
        }
        r = read(fd[0], buf + len, cap - len - 1);
        if (r > 0)
            len += (size_t)r;
        else if (r < 0 && errno == EINTR)
            r = 1;
    }
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (!buf) return vl_error_set("out of host memory");
    buf[len] = 0;
    *out = buf;
    return 0;
}

static double num_at(const cJSON *o, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* The child's JSON report -> a point. */
static int read_report(const char *text, sweep_point *pt) {
    cJSON *r = NULL;
    if (vl_json_parse(text, strlen(text), "the run's --json report", &r)) return -1;
    pt->prompt_tokens = num_at(r, "prompt_tokens", NULL);
    pt->predicted = num_at(r, "memory", "predicted_peak");
    double device_total = num_at(r, "memory", "device_total");
    pt->measured = num_at(r, "memory", device_total > 0 ? "peak_device" : "peak_tracked");
    pt->ttft_s = num_at(r, "timings", "ttft_s");
    pt->decode_tok_s = num_at(r, "timings", "decode_tok_s");
    const double chunk = num_at(r, "options", "chunk");
    pt->chunk = chunk >= 1 && chunk <= (1 << 20) ? (int)chunk : 0;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(r, "device");
    snprintf(pt->device, sizeof pt->device, "%s", cJSON_IsString(dev) ? dev->valuestring : "?");
    cJSON_Delete(r);
    if (isnan(pt->measured) || isnan(pt->predicted) || isnan(pt->prompt_tokens))
        return vl_error_set("vlrun sweep: the run's report lacks memory or prompt figures");
    return 0;
}

/* Runs IMAGE xN with the sweep's run options, --json --quiet. */
static int run_count(const sweep_args *sa, const char *self, int n, sweep_point *pt) {
    char **argv = calloc((size_t)sa->n_rest + 5, sizeof *argv);
    if (!argv) return vl_error_set("out of host memory");
    char repeat[32];
    snprintf(repeat, sizeof repeat, "x%d", n);
    int k = 0;
    argv[k++] = (char *)self;
    for (int i = 1; i < sa->n_rest; i++) {
        argv[k++] = sa->rest[i];
        if (i == sa->image_at) argv[k++] = repeat;
    }
    argv[k++] = "--json";
    argv[k++] = "--quiet";
    char *out = NULL;
    int status = 0;
    memset(pt, 0, sizeof *pt);
    pt->images = n;
    int rc = run_child(argv, &out, &status);
    free(argv);
    if (rc) return -1;
    if (status == 0 && read_report(out, pt) == 0)
        pt->ok = 1;
    else if (status != 0)
        fprintf(stderr, "vlrun sweep: %d images: the run failed (exit %d, its error is above)\n", n,
                status);
    else
        fprintf(stderr, "vlrun sweep: %d images: %s\n", n, vl_error_get());
    free(out);
    return 0;
}

/* PATH written through PATH.tmp (vl_create_fresh) and renamed into place. */
typedef int (*write_fn)(FILE *f, const void *ctx);
static int write_output(const char *path, write_fn fn, const void *ctx) {
    char tmp[4200];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (len < 0 || (size_t)len >= sizeof tmp)
        return vl_error_set("vlrun sweep --out %.64s...: path too long", path);
    if (vl_output_target_check(path, "vlrun sweep --out")) return -1;
    FILE *f = vl_create_fresh(tmp, "vlrun sweep --out");
    if (!f) return -1;
    int bad = fn(f, ctx) != 0;
    bad |= ferror(f) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return vl_error_set("vlrun sweep: cannot write %s (disk full?)", path);
    }
    return 0;
}

typedef struct {
    const sweep_point *pts;
    int n;
} csv_data;

static int write_csv(FILE *f, const void *ctx) {
    const csv_data *d = ctx;
    const double gib = 1024.0 * 1024 * 1024;
    fprintf(f, "images,prompt_tokens,peak_measured_bytes,peak_predicted_bytes,"
               "peak_measured_gib,peak_predicted_gib,ttft_s,decode_tok_s,status,device\n");
    for (int i = 0; i < d->n; i++) {
        const sweep_point *p = &d->pts[i];
        if (p->ok)
            fprintf(f, "%d,%.0f,%.0f,%.0f,%.4f,%.4f,%.4f,%.2f,ok,%s\n", p->images, p->prompt_tokens,
                    p->measured, p->predicted, p->measured / gib, p->predicted / gib, p->ttft_s,
                    p->decode_tok_s, p->device);
        else
            fprintf(f, "%d,,,,,,,,failed,\n", p->images);
    }
    return 0;
}

/* What the plot needs beyond the points. */
typedef struct {
    const sweep_args *sa;
    const vl_plan_input *in;
    const vl_backend_caps *be;
    const sweep_point *pts;
    int n_pts;
    const char *device;
} plot_data;

static const char *quant_label(vl_quant q) {
    return q == VL_QUANT_NF4 ? "NF4" : q == VL_QUANT_INT8 ? "int8" : "bf16";
}

static int write_svg(FILE *f, const void *ctx) {
    const plot_data *d = ctx;
    const sweep_args *sa = d->sa;
    const vl_options *o = &sa->o;
    /* the line runs past the last count to where the budget is reached (up to 4x further) */
    int fit = 0, by_pos = 0, last = d->pts[d->n_pts - 1].images, x_end = last;
    if (sa->have_gpu) {
        fit = vl_plan_input_max_images(d->in, o, d->be, o->engine.quant, o->engine.kv_int8,
                                       sa->gpu.total, &by_pos);
        int want = fit + fit / 10 + 1;
        if (want > x_end) x_end = want < 4 * last ? want : 4 * last;
    }
    int step = x_end > 400 ? (x_end + 399) / 400 : 1, n_line = 0;
    double *lx = malloc(sizeof(double) * (size_t)(x_end / step + 2) * 2), *ly;
    double *px = malloc(sizeof(double) * (size_t)d->n_pts * 2), *py;
    if (!lx || !px) {
        free(lx);
        free(px);
        return vl_error_set("out of host memory");
    }
    ly = lx + x_end / step + 2;
    py = px + d->n_pts;
    double top = sa->have_gpu ? (double)sa->gpu.total : 0;
    for (int k = 1;; k = k + step < x_end ? k + step : x_end) { /* every step-th, and x_end */
        vl_mem_plan mp;
        vl_plan_input_plan(d->in, o, d->be, o->engine.quant, o->engine.kv_int8, k,
                           sa->have_gpu ? (size_t)sa->gpu.total : 0, &mp);
        lx[n_line] = k;
        ly[n_line++] = (double)mp.total;
        if ((double)mp.total > top) top = (double)mp.total;
        if (k == x_end) break;
    }
    int n_pts = 0;
    for (int i = 0; i < d->n_pts; i++)
        if (d->pts[i].ok) {
            px[n_pts] = d->pts[i].images;
            py[n_pts++] = d->pts[i].measured;
            if (d->pts[i].measured > top) top = d->pts[i].measured;
        }
    const int gib_units = top >= 1024.0 * 1024 * 1024;
    const double unit = gib_units ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
    for (int i = 0; i < n_line; i++) ly[i] /= unit;
    for (int i = 0; i < n_pts; i++) py[i] /= unit;
    double budget = sa->have_gpu ? (double)sa->gpu.total / unit : 0;
    const int cpu = d->be->kind == VL_BACKEND_CPU;
    char title[512], subtitle[512], xlabel[256], ylabel[64], lbl_budget[160], lbl_meas[96];
    snprintf(title, sizeof title, "%s: %s weights, %s KV cache, %s", d->in->model_name,
             quant_label(o->engine.quant), o->engine.kv_int8 ? "int8" : "bf16", d->device);
    snprintf(subtitle, sizeof subtitle,
             "each image %dx%d after smart_resize (%lld tokens), %d generated tokens, %s",
             d->in->page_rw, d->in->page_rh, (long long)d->in->imgs[0].tokens,
             vl_options_max_tokens(o),
             o->engine.random_weights ? "random weights" : "checkpoint weights");
    snprintf(xlabel, sizeof xlabel, "images in the prompt");
    snprintf(ylabel, sizeof ylabel, "%s memory (%s)", cpu ? "host" : "device",
             gib_units ? "GiB" : "MiB");
    snprintf(lbl_meas, sizeof lbl_meas, "measured peak (%s)",
             cpu ? "tracked bytes" : "cudaMemGetInfo, context included");
    if (sa->gpu.card)
        snprintf(lbl_budget, sizeof lbl_budget, "%s (%.2f %s): %d image%s fit%s", sa->gpu.label,
                 budget, gib_units ? "GiB" : "MiB", fit, fit == 1 ? "" : "s",
                 by_pos ? " (positions limit)" : "");
    else
        snprintf(lbl_budget, sizeof lbl_budget, "budget %.2f %s: %d image%s fit%s", budget,
                 gib_units ? "GiB" : "MiB", fit, fit == 1 ? "" : "s",
                 by_pos ? " (positions limit)" : "");
    vl_svg_series series[3] = {
        {VL_SVG_LINE, "predicted (vlrun plan)", "#1f77b4", lx, ly, n_line},
        {VL_SVG_POINTS, lbl_meas, "#ff7f0e", px, py, n_pts},
        {VL_SVG_HLINE, lbl_budget, "#d62728", &budget, &budget, 1},
    };
    vl_svg_plot plot = {title, subtitle, xlabel, ylabel, 0, 0, 0, 0, series, sa->have_gpu ? 3 : 2};
    int rc = vl_svg_plot_write(f, &plot);
    free(lx);
    free(px);
    return rc;
}

/* bytes as "x.xxx GiB", or MiB under 1 GiB */
static const char *human(char *buf, size_t cap, double bytes) {
    const double gib = 1024.0 * 1024 * 1024;
    if (bytes >= gib)
        snprintf(buf, cap, "%.3f GiB", bytes / gib);
    else
        snprintf(buf, cap, "%.3f MiB", bytes / (1024.0 * 1024));
    return buf;
}

/* The summary on stdout: one line per count. */
static void print_point(const sweep_point *p, size_t planned) {
    char a[32], b[32];
    if (!p->ok) {
        printf("%4d images: failed\n", p->images);
        return;
    }
    printf("%4d images, %6.0f prompt tokens: peak %s, predicted %s (measured / predicted "
           "%.4f), TTFT %.3f s, decode %.1f tok/s\n",
           p->images, p->prompt_tokens, human(a, sizeof a, p->measured),
           human(b, sizeof b, p->predicted), p->measured / p->predicted, p->ttft_s,
           p->decode_tok_s);
    if ((double)planned != p->predicted)
        printf("      note: vlrun plan says %s here (the plan assumes a bf16 checkpoint)\n",
               human(a, sizeof a, (double)planned));
    fflush(stdout);
}

/* The points of a CSV written by write_csv (its columns, in its order). */
static int read_csv(const char *path, sweep_point *pts, int *n) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(path, 1 << 20, &text, &len)) return -1;
    *n = 0;
    int rc = 0;
    char *line = strchr(text, '\n'); /* after the header */
    while (!rc && line && *++line) {
        sweep_point *p = &pts[*n];
        memset(p, 0, sizeof *p);
        char status[16] = "";
        int got = sscanf(line, "%d,%lf,%lf,%lf,%*f,%*f,%lf,%lf,%15[^,],%127[^\n]", &p->images,
                         &p->prompt_tokens, &p->measured, &p->predicted, &p->ttft_s,
                         &p->decode_tok_s, status, p->device);
        p->ok = got == 8 && strcmp(status, "ok") == 0;
        /* what a sweep writes: finite, non-negative, below a petabyte of memory */
        const double v[5] = {p->prompt_tokens, p->measured, p->predicted, p->ttft_s,
                             p->decode_tok_s};
        for (int k = 0; k < 5 && p->ok; k++) p->ok = v[k] >= 0 && v[k] <= 1e15;
        if (*n == MAX_COUNTS || got < 1 || p->images < 1 || p->images > 100000 ||
            (!p->ok && !strstr(line, ",failed,")))
            rc = vl_error_set("--from-csv %s: line %d is not a vlrun sweep row", path, *n + 2);
        else
            (*n)++;
        line = strchr(line, '\n');
    }
    free(text);
    if (!rc && *n == 0) rc = vl_error_set("--from-csv %s: no rows", path);
    return rc;
}

/* Run every count (or read them from --from-csv). */
static int collect(const sweep_args *sa, const vl_plan_input *in, const vl_backend_caps *be,
                   const char *argv0, sweep_point *pts, int *n) {
    if (sa->from_csv) return read_csv(sa->from_csv, pts, n);
    char self[4096];
    self_path(self, sizeof self, argv0);
    for (int i = 0; i < sa->n_counts; i++) {
        if (run_count(sa, self, sa->counts[i], &pts[i])) return -1;
        *n = i + 1;
        if (!pts[i].ok) continue;
        /* planned with the chunk the run took: it chose by the device's free memory */
        vl_options o = sa->o;
        if (pts[i].chunk > 0) o.engine.chunk = pts[i].chunk;
        vl_mem_plan mp;
        vl_plan_input_plan(in, &o, be, o.engine.quant, o.engine.kv_int8, sa->counts[i],
                           sa->have_gpu ? (size_t)sa->gpu.total : 0, &mp);
        print_point(&pts[i], mp.total);
    }
    return 0;
}

static int sweep(const sweep_args *sa, const char *argv0) {
    char csv[4200], svg[4200];
    snprintf(csv, sizeof csv, "%s.csv", sa->out);
    snprintf(svg, sizeof svg, "%s.svg", sa->out);
    /* outputs that would be refused are refused before the runs, not after them */
    if ((!sa->from_csv && vl_output_target_check(csv, "vlrun sweep --out")) ||
        vl_output_target_check(svg, "vlrun sweep --out"))
        return -1;
    vl_plan_input in;
    if (vl_plan_input_load(&in, &sa->o, 0, 0)) return -1;
    const vl_backend_caps *be = vl_backend_caps_of(sa->o.engine.backend);
    sweep_point pts[MAX_COUNTS];
    int n = 0, n_ok = 0;
    int rc = collect(sa, &in, be, argv0, pts, &n);
    const char *device = "?";
    for (int i = 0; i < n; i++)
        if (pts[i].ok) device = pts[i].device, n_ok++;
    csv_data cd = {pts, n};
    plot_data pd = {sa, &in, be, pts, n, device};
    if (!rc && n_ok == 0) rc = vl_error_set("vlrun sweep: no run succeeded (see the errors above)");
    if (!rc && !sa->from_csv) rc = write_output(csv, write_csv, &cd);
    if (!rc) rc = write_output(svg, write_svg, &pd);
    if (!rc) fprintf(stderr, "vlrun sweep: wrote %s\n", sa->from_csv ? svg : csv);
    if (!rc && !sa->from_csv) fprintf(stderr, "vlrun sweep: wrote %s\n", svg);
    vl_plan_input_free(&in);
    return rc;
}

int vl_cmd_sweep(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            sweep_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            vl_version_print(stdout);
            return 0;
        }
    sweep_args sa;
    int rc = parse_sweep_args(&sa, argc, argv);
    if (!rc) rc = sweep(&sa, argv[0]);
    vl_options_free(&sa.o);
    free(sa.rest);
    return rc;
}
