/* vlbench_report.c: vlbench's output: markdown tables (one per benchmark family) and one JSON
 * object, both written row by row as cases finish, plus a progress line per row on stderr.
 *
 * Derived columns: rate = bytes / time (GB/s) for memory-bound rows (GEMV, decode attention),
 * flops / time (TFLOP/s) otherwise; "% of ceiling" compares it with the copy bandwidth or the
 * bf16 peak measured at start; speedup = anchor time / time (> 1: vlrun is faster).
 * Leaves out: comparisons across runs (the lead reads the JSON files side by side).
 */
#include "bench/vlbench.h"

#include <math.h>
#include <string.h>

static double rate_of(const vlb_row *r, double ms) {
    return r->memory_bound ? r->bytes / (ms * 1e-3) / 1e9 : r->flops / (ms * 1e-3) / 1e12;
}

static double ceiling_of(const vlb_run *run, const vlb_row *r) {
    return r->memory_bound ? run->copy_gbps : run->peak_tflops;
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void json_begin(vlb_run *run) {
    FILE *f = run->json;
    const vlb_options *o = run->opt;
    fputs("{\"tool\": \"vlbench\", \"device\": ", f);
    json_str(f, run->device);
    fprintf(f,
            ", \"sm_count\": %d, \"compute_capability\": \"%d.%d\", \"l2_bytes\": %zu, "
            "\"device_bytes\": %zu,\n \"copy_GBps\": ",
            run->sm_count, run->cc_major, run->cc_minor, run->l2_bytes, run->device_bytes);
    json_num(f, run->copy_gbps);
    fputs(", \"bf16_peak_TFLOPs\": ", f);
    json_num(f, run->peak_tflops);
    fputs(", \"peak_gemm_mnk\": ", f);
    json_str(f, run->peak_shape);
    fputs(", \"launch_floor_us\": ", f);
    json_num(f, run->floor_us);
    fprintf(f,
            ",\n \"iters\": %d, \"warmup\": %d, \"l2_flush\": %s, \"ref_rows\": %d, "
            "\"double_quant\": %s,\n \"rows\": [",
            o->iters, o->warmup, o->flush_l2 ? "true" : "false", o->ref ? VLB_REF_ROWS : 0,
            o->double_quant ? "true" : "false");
    fflush(f);
}

static void json_row(vlb_run *run, const vlb_row *r) {
    FILE *f = run->json;
    fputs(run->json_rows++ ? ",\n  {" : "\n  {", f);
    fputs("\"bench\": ", f);
    json_str(f, r->bench);
    fputs(", \"case\": ", f);
    json_str(f, r->name);
    fprintf(f, ", %s, \"shape\": ", r->dims_json);
    json_str(f, r->shape);
    fputs(", \"quant\": ", f);
    json_str(f, r->quant);
    fputs(", \"status\": ", f);
    json_str(f, r->status[0] ? r->status : "ok");
    fputs(",\n   \"ms\": ", f);
    json_num(f, r->ms);
    fputs(", \"min_ms\": ", f);
    json_num(f, r->min_ms);
    fputs(", \"flops\": ", f);
    json_num(f, r->flops);
    fputs(", \"bytes\": ", f);
    json_num(f, r->bytes);
    fputs(", \"TFLOPs\": ", f);
    json_num(f, r->flops / (r->ms * 1e-3) / 1e12);
    fputs(", \"GBps\": ", f);
    json_num(f, r->bytes / (r->ms * 1e-3) / 1e9);
    fprintf(f, ", \"ceiling\": \"%s\", \"pct_of_ceiling\": ", r->memory_bound ? "copy" : "bf16");
    json_num(f, 100.0 * rate_of(r, r->ms) / ceiling_of(run, r));
    fputs(",\n   \"max_abs_err\": ", f);
    json_num(f, r->max_abs_err);
    fputs(", \"max_rel_err\": ", f);
    json_num(f, r->max_rel_err);
    fputs(", \"anchor\": ", f);
    if (r->anchor)
        json_str(f, r->anchor);
    else
        fputs("null", f);
    fputs(", \"anchor_ms\": ", f);
    json_num(f, r->anchor_ms);
    fputs(", \"anchor_TFLOPs\": ", f);
    json_num(f, r->flops / (r->anchor_ms * 1e-3) / 1e12);
    fputs(", \"anchor_GBps\": ", f);
    json_num(f, r->bytes / (r->anchor_ms * 1e-3) / 1e9);
    fputs(", \"anchor_max_abs_err\": ", f);
    json_num(f, r->anchor_max_abs_err);
    fputs(", \"speedup_vs_anchor\": ", f);
    json_num(f, r->anchor_ms / r->ms);
    fputc('}', f);
    fflush(f);
}

/* ---- markdown ------------------------------------------------------------------------------- */

static void md_begin(vlb_run *run) {
    FILE *f = run->md;
    const vlb_options *o = run->opt;
    fprintf(f, "# vlbench: %s\n\n", run->device);
    fprintf(f,
            "%d SMs, sm_%d%d, %.0f MiB L2, %.1f GiB. Ceilings measured at start: copy %.0f GB/s "
            "(1 GiB device-to-device cudaMemcpyAsync, bytes read + written), bf16 peak %.0f "
            "TFLOP/s (cuBLAS, best of 4 GEMMs: %s m x n x k), launch floor %.1f us (an empty "
            "kernel timed as every case: part of every time below).\n",
            run->sm_count, run->cc_major, run->cc_minor, (double)run->l2_bytes / (1 << 20),
            (double)run->device_bytes / (1 << 30), run->copy_gbps, run->peak_tflops,
            run->peak_shape, run->floor_us);
    fprintf(f, "Time: median of %d runs after %d warm-up runs (CUDA events)%s. ", o->iters,
            o->warmup, o->flush_l2 ? ", L2 evicted before each run" : "");
    if (o->ref)
        fprintf(f,
                "Errors: %d sampled rows against the CPU backend (fp32); rel = max |err| / "
                "max |ref|.\n",
                VLB_REF_ROWS);
    else
        fprintf(f, "Errors: not computed (--no-ref).\n");
    fflush(f);
}

static void md_cell_num(FILE *f, const char *fmt, double v) {
    fputs(" | ", f);
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fputs("-", f);
}

static void md_row(vlb_run *run, const vlb_row *r) {
    FILE *f = run->md;
    if (!run->md_section || strcmp(run->md_section, r->bench) != 0) {
        run->md_section = r->bench;
        const char *title = strcmp(r->bench, "gemv") == 0   ? "GEMV (m = 1, decode)"
                            : strcmp(r->bench, "gemm") == 0 ? "GEMM (prefill)"
                                                            : "Attention";
        fprintf(f, "\n## %s\n\n", title);
        fputs("| case | shape | weights | time (us) | rate | % of ceiling | max abs err | max rel "
              "err | anchor | anchor time (us) | anchor rate | speedup |\n",
              f);
        fputs("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n", f);
    }
    const char *unit = r->memory_bound ? "GB/s" : "TFLOP/s";
    fprintf(f, "| %s | %s | %s", r->name, r->shape, r->quant);
    if (r->status[0]) {
        fprintf(f, " | %s | | | | | | | | |\n", r->status);
        fflush(f);
        return;
    }
    md_cell_num(f, "%.1f", r->ms * 1e3);
    fprintf(f, " | %.*f %s", r->memory_bound ? 0 : 1, rate_of(r, r->ms), unit);
    if (isfinite(ceiling_of(run, r)))
        fprintf(f, " | %.0f%% %s", 100.0 * rate_of(r, r->ms) / ceiling_of(run, r),
                r->memory_bound ? "copy" : "bf16");
    else /* --no-ceilings */
        fputs(" | n/a", f);
    md_cell_num(f, "%.3g", r->max_abs_err);
    md_cell_num(f, "%.3g", r->max_rel_err);
    fprintf(f, " | %s", r->anchor ? r->anchor : "-");
    md_cell_num(f, "%.1f", r->anchor_ms * 1e3);
    if (r->anchor && isfinite(r->anchor_ms))
        fprintf(f, " | %.*f %s", r->memory_bound ? 0 : 1, rate_of(r, r->anchor_ms), unit);
    else
        fputs(" | -", f);
    if (r->anchor && isfinite(r->anchor_ms))
        fprintf(f, " | %.2fx |\n", r->anchor_ms / r->ms);
    else
        fputs(" | - |\n", f);
    fflush(f);
}

/* ---- the interface ----------------------------------------------------------------------------
 */

void vlb_report_begin(vlb_run *run) {
    if (run->md) md_begin(run);
    if (run->json) json_begin(run);
}

void vlb_report_row(vlb_run *run, const vlb_row *r) {
    if (r->status[0]) run->failures++;
    if (r->status[0])
        fprintf(stderr, "vlbench: %s %s %s %s: %s\n", r->bench, r->name, r->shape, r->quant,
                r->status);
    else
        fprintf(stderr, "vlbench: %s %s %s %s: %.1f us, %.1f %s, max abs err %.3g\n", r->bench,
                r->name, r->shape, r->quant, r->ms * 1e3, rate_of(r, r->ms),
                r->memory_bound ? "GB/s" : "TFLOP/s", r->max_abs_err);
    if (run->md) md_row(run, r);
    if (run->json) json_row(run, r);
}

void vlb_report_end(vlb_run *run) {
    if (run->json) {
        fprintf(run->json, "\n ],\n \"failures\": %d}\n", run->failures);
        fflush(run->json);
    }
}
