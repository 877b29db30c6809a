/* svg_plot.c: a small line plot written as SVG text (vlrun sweep's memory against image count):
 * axes with round ticks and light grid lines, axis titles with units, series drawn as points,
 * a polyline or a dashed horizontal line, a legend in the corner the data leaves free, and a
 * title. SVG is a few elements of XML, so no library: the layout is fixed (engine.h's VL_SVG_*),
 * the data is mapped linearly onto the plot area. */
#include "cli/cli.h"

#include <math.h>

#define PLOT_W (VL_SVG_WIDTH - VL_SVG_LEFT - VL_SVG_RIGHT)
#define PLOT_H (VL_SVG_HEIGHT - VL_SVG_TOP - VL_SVG_BOTTOM)
#define FONT   "font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\""

typedef struct {
    double lo, hi, step; /* range and tick spacing */
} axis;

/* A round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving about `target` ticks. */
static double nice_step(double range, int target) {
    double raw = range / target;
    double p = pow(10.0, floor(log10(raw)));
    const double m[] = {1, 2, 2.5, 5, 10};
    for (int i = 0; i < 5; i++)
        if (raw <= m[i] * p * (1 + 1e-9)) return m[i] * p;
    return 10 * p;
}

/* The given range, or one from 0 (or the data's minimum if negative) to a tick above the data. */
static axis make_axis(double lo, double hi, double dmin, double dmax) {
    axis a;
    if (hi > lo) {
        a.lo = lo;
        a.hi = hi;
        a.step = nice_step(hi - lo, 6);
        return a;
    }
    a.lo = dmin < 0 ? dmin : 0;
    a.hi = dmax > a.lo ? dmax : a.lo + 1;
    a.step = nice_step((a.hi - a.lo) * 1.04, 6);
    a.lo = floor(a.lo / a.step) * a.step;
    a.hi = ceil(a.hi * 1.04 / a.step - 1e-9) * a.step;
    return a;
}

/* The ticks after the first: (hi - lo) / step, at most 100 whatever the range (a range given by
 * the caller may be any size). */
static int tick_count(const axis *a) {
    double n = (a->hi - a->lo) / a->step;
    return n >= 0 && n <= 100 ? (int)(n + 1e-6) : 100;
}

static double map_x(const axis *a, double x) {
    return VL_SVG_LEFT + (x - a->lo) / (a->hi - a->lo) * PLOT_W;
}

static double map_y(const axis *a, double y) {
    return VL_SVG_TOP + PLOT_H - (y - a->lo) / (a->hi - a->lo) * PLOT_H;
}

/* Text content with XML's special characters escaped. */
static void put_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static void data_range(const vl_svg_plot *p, double *xmin, double *xmax, double *ymin,
                       double *ymax) {
    *xmin = *ymin = INFINITY;
    *xmax = *ymax = -INFINITY;
    for (int s = 0; s < p->n_series; s++) {
        const vl_svg_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            if (se->kind != VL_SVG_HLINE) {
                *xmin = fmin(*xmin, se->x[i]);
                *xmax = fmax(*xmax, se->x[i]);
            }
            *ymin = fmin(*ymin, se->y[i]);
            *ymax = fmax(*ymax, se->y[i]);
            if (se->kind == VL_SVG_HLINE) break;
        }
    }
    if (!isfinite(*xmin)) *xmin = *xmax = 0;
    if (!isfinite(*ymin)) *ymin = *ymax = 0;
}

/* Grid lines, ticks and their labels, the frame and the axis titles. */
static void write_axes(FILE *f, const vl_svg_plot *p, const axis *ax, const axis *ay) {
    const int x0 = VL_SVG_LEFT, x1 = VL_SVG_WIDTH - VL_SVG_RIGHT;
    const int y0 = VL_SVG_TOP, y1 = VL_SVG_HEIGHT - VL_SVG_BOTTOM;
    fprintf(f, "<g stroke=\"#dddddd\" stroke-width=\"1\">\n");
    for (int k = 0, nk = tick_count(ax); k <= nk; k++) {
        double v = ax->lo + k * ax->step;
        fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n", map_x(ax, v), y0,
                map_x(ax, v), y1);
    }
    for (int k = 0, nk = tick_count(ay); k <= nk; k++) {
        double v = ay->lo + k * ay->step;
        fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", x0, map_y(ay, v), x1,
                map_y(ay, v));
    }
    fprintf(f,
            "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#333333\" stroke-width=\"1.2\"/>\n",
            x0, y0, PLOT_W, PLOT_H);
    fprintf(f, "<g %s font-size=\"14\" fill=\"#222222\">\n", FONT);
    for (int k = 0, nk = tick_count(ax); k <= nk; k++) {
        double v = ax->lo + k * ax->step;
        fprintf(f,
                "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#333333\"/>"
                "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                map_x(ax, v), y1, map_x(ax, v), y1 + 6, map_x(ax, v), y1 + 22,
                fabs(v) < ax->step * 1e-6 ? 0.0 : v);
    }
    for (int k = 0, nk = tick_count(ay); k <= nk; k++) {
        double v = ay->lo + k * ay->step;
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#333333\"/>"
                "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%g</text>\n",
                x0 - 6, map_y(ay, v), x0, map_y(ay, v), x0 - 10, map_y(ay, v) + 5,
                fabs(v) < ay->step * 1e-6 ? 0.0 : v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"15\">", x0 + PLOT_W / 2,
            VL_SVG_HEIGHT - 22);
    put_text(f, p->x_label);
    fprintf(f,
            "</text>\n<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\" "
            "font-size=\"15\">",
            24, y0 + PLOT_H / 2);
    put_text(f, p->y_label);
    fprintf(f, "</text>\n</g>\n");
}

static void write_series(FILE *f, const vl_svg_series *se, const axis *ax, const axis *ay) {
    if (se->n < 1) return;
    if (se->kind == VL_SVG_HLINE) {
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"2\" stroke-dasharray=\"8 5\"/>\n",
                VL_SVG_LEFT, map_y(ay, se->y[0]), VL_SVG_WIDTH - VL_SVG_RIGHT, map_y(ay, se->y[0]),
                se->color);
    } else if (se->kind == VL_SVG_LINE) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", se->color);
        for (int i = 0; i < se->n; i++)
            fprintf(f, "%s%.2f,%.2f", i ? " " : "", map_x(ax, se->x[i]), map_y(ay, se->y[i]));
        fprintf(f, "\"/>\n");
    } else {
        fprintf(f, "<g fill=\"%s\" stroke=\"#ffffff\" stroke-width=\"1\">\n", se->color);
        for (int i = 0; i < se->n; i++)
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"5\"/>\n", map_x(ax, se->x[i]),
                    map_y(ay, se->y[i]));
        fprintf(f, "</g>\n");
    }
}

/* How many of the data's points (lines: sampled densely) fall in the box. */
static int points_in(const vl_svg_plot *p, const axis *ax, const axis *ay, double bx, double by,
                     double bw, double bh) {
    int n = 0;
    for (int s = 0; s < p->n_series; s++) {
        const vl_svg_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            int steps = se->kind == VL_SVG_POINTS ? 1 : 40;
            for (int k = 0; k < steps; k++) {
                double t = (double)k / steps, x, y;
                if (se->kind == VL_SVG_HLINE) {
                    x = VL_SVG_LEFT + t * PLOT_W;
                    y = map_y(ay, se->y[0]);
                } else {
                    int j = i + 1 < se->n ? i + 1 : i;
                    x = map_x(ax, se->x[i] + t * (se->x[j] - se->x[i]));
                    y = map_y(ay, se->y[i] + t * (se->y[j] - se->y[i]));
                }
                n += x >= bx && x <= bx + bw && y >= by && y <= by + bh;
            }
            if (se->kind == VL_SVG_HLINE) break;
        }
    }
    return n;
}

/* The legend in the plot corner with the least data under it. */
static void write_legend(FILE *f, const vl_svg_plot *p, const axis *ax, const axis *ay) {
    size_t longest = 0;
    for (int s = 0; s < p->n_series; s++)
        if (p->series[s].label && strlen(p->series[s].label) > longest)
            longest = strlen(p->series[s].label);
    const double w = 52 + 8.0 * (double)longest, h = 12 + 22.0 * p->n_series, pad = 10;
    double best_x = 0, best_y = 0;
    int best = -1;
    for (int c = 0; c < 4; c++) {
        double x = c & 1 ? VL_SVG_WIDTH - VL_SVG_RIGHT - pad - w : VL_SVG_LEFT + pad;
        double y = c & 2 ? VL_SVG_HEIGHT - VL_SVG_BOTTOM - pad - h : VL_SVG_TOP + pad;
        int n = points_in(p, ax, ay, x, y, w, h);
        if (best < 0 || n < best) best = n, best_x = x, best_y = y;
    }
    fprintf(f,
            "<g %s font-size=\"14\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\" fill=\"#ffffff\" fill-opacity=\"0.92\" stroke=\"#999999\"/>\n",
            FONT, best_x, best_y, w, h);
    for (int s = 0; s < p->n_series; s++) {
        const vl_svg_series *se = &p->series[s];
        double y = best_y + 22 + 22.0 * s, x = best_x + 10;
        if (se->kind == VL_SVG_POINTS)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>\n", x + 13, y - 5,
                    se->color);
        else
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"2\"%s/>\n",
                    x, y - 5, x + 26, y - 5, se->color,
                    se->kind == VL_SVG_HLINE ? " stroke-dasharray=\"8 5\"" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#222222\">", x + 34, y);
        put_text(f, se->label);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</g>\n");
}

int vl_svg_plot_write(FILE *f, const vl_svg_plot *p) {
    for (int s = 0; s < p->n_series; s++) {
        const vl_svg_series *se = &p->series[s];
        for (int i = 0; i < (se->kind == VL_SVG_HLINE && se->n ? 1 : se->n); i++)
            if (!(fabs(se->y[i]) <= 1e15) ||
                (se->kind != VL_SVG_HLINE && !(fabs(se->x[i]) <= 1e15)))
                return vl_error_set("plot: a value is not a finite number below 1e15");
    }
    if (!isfinite(p->x_min) || !isfinite(p->x_max) || !isfinite(p->y_min) || !isfinite(p->y_max))
        return vl_error_set("plot: an axis bound is not a finite number");
    double xmin, xmax, ymin, ymax;
    data_range(p, &xmin, &xmax, &ymin, &ymax);
    axis ax = make_axis(p->x_min, p->x_max, xmin, xmax);
    axis ay = make_axis(p->y_min, p->y_max, ymin, ymax);
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            VL_SVG_WIDTH, VL_SVG_HEIGHT, VL_SVG_WIDTH, VL_SVG_HEIGHT);
    fprintf(f,
            "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" %s font-size=\"18\" "
            "font-weight=\"bold\" fill=\"#111111\">",
            VL_SVG_WIDTH / 2, FONT);
    put_text(f, p->title);
    fprintf(f,
            "</text>\n<text x=\"%d\" y=\"50\" text-anchor=\"middle\" %s font-size=\"14\" "
            "fill=\"#444444\">",
            VL_SVG_WIDTH / 2, FONT);
    put_text(f, p->subtitle);
    fprintf(f, "</text>\n");
    write_axes(f, p, &ax, &ay);
    fprintf(f,
            "<svg x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" viewBox=\"%d %d %d %d\" "
            "overflow=\"hidden\">\n",
            VL_SVG_LEFT, VL_SVG_TOP, PLOT_W, PLOT_H, VL_SVG_LEFT, VL_SVG_TOP, PLOT_W, PLOT_H);
    for (int s = 0; s < p->n_series; s++) write_series(f, &p->series[s], &ax, &ay);
    fprintf(f, "</svg>\n");
    write_legend(f, p, &ax, &ay);
    fprintf(f, "</svg>\n");
    return ferror(f) ? -1 : 0;
}
