/* test_svg_plot.c: the SVG writer of vlrun sweep (cli/svg_plot.c).
 *
 *   - the output is well-formed XML (python3's xml.etree parses it) with an <svg> root;
 *   - with axis ranges given (x 0..100, y 0..25), points, the polyline and the budget line land
 *     where the layout of engine.h puts them: x = LEFT + x / 100 * plot width, y = TOP + plot
 *     height - y / 25 * plot height (expected values computed here by hand from those constants);
 *   - ranges from the data start at 0 and end on a round tick above the largest value: data up
 *     to 23.4 gives ticks 0, 5, ..., 25 on y (so 25 maps to the top), x up to 87 ticks to 100;
 *   - text is escaped (a label with & and < stays well-formed) and every label appears.
 * The checks read the file back through xml.etree (tests/svg_points.py prints what it found). */
#include "cli/cli.h"
#include "vltest.h"
#include "vltest_fs.h"

#define PW (VL_SVG_WIDTH - VL_SVG_LEFT - VL_SVG_RIGHT)
#define PH (VL_SVG_HEIGHT - VL_SVG_TOP - VL_SVG_BOTTOM)

static const char *script_path;

/* Writes the plot to `name`, runs the reader on it; its report lands in *report (static). */
static int write_and_read(const vl_svg_plot *p, const char *name, char *report, size_t cap) {
    const char *path = vt_tpath(name);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int rc = vl_svg_plot_write(f, p);
    fclose(f);
    if (rc) return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s'", script_path, path);
    FILE *pipe = popen(cmd, "r");
    if (!pipe) return -1;
    size_t n = fread(report, 1, cap - 1, pipe);
    report[n] = 0;
    return pclose(pipe) == 0 ? 0 : -1;
}

static int has_line(const char *report, const char *line) {
    char want[300];
    snprintf(want, sizeof want, "%s\n", line);
    return strstr(report, want) != NULL;
}

static void test_given_ranges(void) {
    const double x[3] = {0, 50, 100}, y[3] = {5, 12.5, 25};
    const double lx[2] = {0, 100}, ly[2] = {0, 25};
    const double budget = 20;
    vl_svg_series s[3] = {
        {VL_SVG_POINTS, "measured & <peak>", "#ff7f0e", x, y, 3},
        {VL_SVG_LINE, "predicted", "#1f77b4", lx, ly, 2},
        {VL_SVG_HLINE, "A10 budget", "#d62728", &budget, &budget, 1},
    };
    vl_svg_plot p = {
        "title <7B> & more", "sub", "images", "device memory (GiB)", 0, 100, 0, 25, s, 3};
    static char rep[65536];
    VT_CHECK(write_and_read(&p, "given.svg", rep, sizeof rep) == 0);
    char line[256];
    /* points: x 0, 50, 100 -> LEFT, LEFT + PW/2, LEFT + PW; y 5, 12.5, 25 of 25 */
    const double cx[3] = {VL_SVG_LEFT, VL_SVG_LEFT + PW / 2.0, VL_SVG_LEFT + PW};
    const double cy[3] = {VL_SVG_TOP + PH - PH * 0.2, VL_SVG_TOP + PH * 0.5, VL_SVG_TOP};
    for (int i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "circle %.2f %.2f", cx[i], cy[i]);
        VT_CHECKF(has_line(rep, line), "want '%s' in\n%s", line, rep);
    }
    snprintf(line, sizeof line, "polyline %.2f,%.2f %.2f,%.2f", (double)VL_SVG_LEFT,
             (double)(VL_SVG_TOP + PH), (double)(VL_SVG_LEFT + PW), (double)VL_SVG_TOP);
    VT_CHECKF(has_line(rep, line), "want '%s' in\n%s", line, rep);
    snprintf(line, sizeof line, "dashed %.2f", VL_SVG_TOP + PH - PH * 0.8);
    VT_CHECKF(has_line(rep, line), "want '%s' in\n%s", line, rep);
    VT_CHECK(has_line(rep, "text measured & <peak>"));
    VT_CHECK(has_line(rep, "text title <7B> & more"));
    VT_CHECK(has_line(rep, "text device memory (GiB)"));
    VT_CHECK(has_line(rep, "text A10 budget"));
    VT_CHECK(has_line(rep, "root svg"));
}

static void test_ranges_from_data(void) {
    const double x[3] = {1, 28, 87}, y[3] = {16.4, 18.4, 23.4};
    vl_svg_series s[1] = {{VL_SVG_POINTS, "m", "#000000", x, y, 3}};
    vl_svg_plot p = {"t", "s", "x", "y", 0, 0, 0, 0, s, 1};
    static char rep[65536];
    VT_CHECK(write_and_read(&p, "auto.svg", rep, sizeof rep) == 0);
    /* y ticks 0..25 by 5, x ticks 0..100 by 20: the labels, and 23.4 GiB at 23.4 / 25 */
    const char *ticks[] = {"text 0", "text 5", "text 25", "text 20", "text 100"};
    for (int i = 0; i < 5; i++) VT_CHECKF(has_line(rep, ticks[i]), "tick %s", ticks[i]);
    VT_CHECK(!has_line(rep, "text 30") && !has_line(rep, "text 120"));
    char line[256];
    snprintf(line, sizeof line, "circle %.2f %.2f", VL_SVG_LEFT + PW * 0.87,
             VL_SVG_TOP + PH - PH * (23.4 / 25));
    VT_CHECKF(has_line(rep, line), "want '%s' in\n%s", line, rep);
}

/* Values a hostile CSV could bring: refused (not a NaN axis or an endless tick loop); a given
 * range of any size draws at most 101 ticks. */
static void test_hostile_values(void) {
    const double bad[4] = {NAN, INFINITY, -INFINITY, 1e300};
    for (int k = 0; k < 4; k++) {
        const double x[2] = {1, 2}, y[2] = {1, bad[k]};
        vl_svg_series s[1] = {{VL_SVG_POINTS, "m", "#000000", x, y, 2}};
        vl_svg_plot p = {"t", "s", "x", "y", 0, 0, 0, 0, s, 1};
        FILE *f = tmpfile();
        VT_CHECKF(f && vl_svg_plot_write(f, &p) != 0, "value %g accepted", bad[k]);
        if (f) fclose(f);
        vl_error_clear();
    }
    const double x[2] = {1, 2}, y[2] = {1, 2};
    vl_svg_series s[1] = {{VL_SVG_POINTS, "m", "#000000", x, y, 2}};
    vl_svg_plot p = {"t", "s", "x", "y", 0, 1e14, 0, 1e-9, s, 1}; /* ranges of any scale */
    FILE *f = tmpfile();
    VT_CHECK(f && vl_svg_plot_write(f, &p) == 0);
    long size = f ? ftell(f) : 0;
    VT_CHECKF(size > 0 && size < 200000, "%ld bytes", size);
    if (f) fclose(f);
}

int main(void) {
    static char script[1024];
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    snprintf(script, sizeof script, "%.*s/svg_points.py", slash ? (int)(slash - src) : 1,
             slash ? src : ".");
    script_path = script;
    vt_tmp_init("vl_svg");
    test_given_ranges();
    test_ranges_from_data();
    test_hostile_values();
    vt_rm_tree(vt_tmp_root);
    printf("%d passed, %d failed\n", vt_passed, vt_failed);
    return vt_failed ? 1 : 0;
}
