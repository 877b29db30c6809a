/* arena.c: the one device arena. A single backend block, sized by the planner, carved in
 * 256-byte aligned slices. Every slice is tagged with a memory group so the report can say
 * where the bytes went; peaks are tracked per group and in total. Release is LIFO (a mark),
 * which matches how a forward pass uses scratch memory. No allocation happens after the plan. */
#include "engine/engine.h"

#include <stdint.h>
#include <stdlib.h>

#define VL_ARENA_ALIGN 256

static const char *group_names[VL_MEM_GROUPS] = {"weights", "kv_cache", "activations", "workspace"};

const char *vl_mem_group_name(vl_mem_group g) {
    return (g >= 0 && g < VL_MEM_GROUPS) ? group_names[g] : "?";
}

int vl_arena_init(vl_arena *a, vl_backend *be, size_t cap_bytes) {
    memset(a, 0, sizeof *a);
    a->be = be;
    a->cap = cap_bytes;
    if (cap_bytes == 0) return 0;
    a->base = be->mem_alloc(be, cap_bytes);
    if (!a->base)
        return vl_error_set("out of %s memory: could not allocate the %.2f GiB arena; use fewer "
                            "images, fewer --max-tokens or --quant nf4",
                            be->name, (double)cap_bytes / (1 << 30));
    return 0;
}

void vl_arena_free(vl_arena *a) {
    if (a->base) a->be->mem_free(a->be, a->base);
    memset(a, 0, sizeof *a);
}

void *vl_arena_alloc(vl_arena *a, size_t bytes, vl_mem_group g) {
    size_t start = (a->used + VL_ARENA_ALIGN - 1) & ~(size_t)(VL_ARENA_ALIGN - 1);
    size_t size = (bytes + VL_ARENA_ALIGN - 1) & ~(size_t)(VL_ARENA_ALIGN - 1);
    if (start > a->cap || size > a->cap - start) {
        vl_error_set("internal: arena plan too small (%zu bytes asked, %zu of %zu used)", bytes,
                     a->used, a->cap);
        return NULL;
    }
    a->live[g] += size + (start - a->used);
    a->used = start + size;
    if (a->live[g] > a->peak[g]) a->peak[g] = a->live[g];
    if (a->used > a->peak_total) a->peak_total = a->used;
    if (!a->base) return (void *)(uintptr_t)(start + VL_ARENA_ALIGN); /* counting only */
    return a->base + start;
}

vl_arena_mark vl_arena_get_mark(const vl_arena *a) {
    vl_arena_mark m;
    m.used = a->used;
    memcpy(m.live, a->live, sizeof m.live);
    return m;
}

void vl_arena_release(vl_arena *a, vl_arena_mark m) {
    a->used = m.used;
    memcpy(a->live, m.live, sizeof m.live);
}

void vl_arena_seal(vl_arena *a) {
    a->used = a->peak_total;
    memcpy(a->live, a->peak, sizeof a->live);
}
