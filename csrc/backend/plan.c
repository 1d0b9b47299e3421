/*
 * plan.c - the oneDNN backend: plans a finalized graph for one set of input shapes and runs it.
 *
 * A plan is made once per input shape and cached (LRU, MAX_PLANS):
 *   - every op becomes a oneDNN primitive, created once, or a C kernel (core/kernels.c);
 *   - activations take the layouts oneDNN picks (format_tag_any); an op is first offered its producer's layout,
 *     and a reorder is inserted only if no optimized implementation accepts it, so reorders stay at the graph
 *     edges (user NCHW in/out) and weight packing;
 *   - weights are reordered once per layout they are asked in and shared by all plans;
 *   - activations and scratchpads live in one arena, placed by liveness (first fit), shared by all plans
 *     (runs are serialised by the graph's lock).
 * This file and build_info.c are the only ones that call oneDNN.
 */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/graph_internal.h"
#include "../core/kernels.h"
#include "../core/winograd.h"

#define MAX_PLANS 8
#define MAX_ARGS (MSV_MAX_NODE_INPUTS + MSV_MAX_POST_OPS + 6)
#define ARENA_ALIGN 64

/* ------------------------------------------------------------------ shared engine */

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t g_engine_status = dnnl_success;

static void engine_init(void) {
    g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    if (g_engine_status == dnnl_success)
        g_engine_status = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags);
}

static int profiling(void) {
    const char *v = getenv("MSVISION_PROFILE");
    return v && *v && *v != '0';
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int verbose_plans(void) {
    const char *v = getenv("MSVISION_VERBOSE");
    return v && *v && *v != '0';
}

/* ------------------------------------------------------------------ plan structures */

typedef enum entry_kind { E_ARENA, E_INPUT, E_OUTPUT, E_FIXED } entry_kind;

typedef struct entry {
    entry_kind kind;
    int index;             /* E_INPUT/E_OUTPUT: which graph input/output */
    dnnl_memory_desc_t md; /* owned */
    size_t bytes;
    int64_t offset; /* E_ARENA */
    void *fixed;    /* E_FIXED: weights/constants (not owned) */
    int def, last;  /* step range during which the arena block is live */
    dnnl_memory_t mem;
} entry;

typedef struct step {
    char what[48]; /* for MSVISION_PROFILE */
    int is_kernel;
    dnnl_primitive_t prim;
    int nargs;
    int arg_kind[MAX_ARGS];
    int arg_entry[MAX_ARGS];
    dnnl_exec_arg_t args[MAX_ARGS];
    /* kernels */
    const msv_node *node;
    int src, dst;
    msv_view vsrc, vdst;
    const float *scale, *shift;
    /* Winograd convolutions: the transforms (core/winograd.c) run around `prim`, a batched matmul, once per
     * chunk of wino_rows tiles; wino_v / wino_m are the chunk's transformed input and products */
    int is_wino;
    msv_wino_geometry wino;
    int64_t wino_rows;
    int wino_v, wino_m, relu;
    const float *bias;
} step;

typedef struct plan {
    msv_shape in_shapes[8];
    int n_inputs;
    entry *entries;
    int n_entries, cap_entries;
    step *steps;
    int n_steps, cap_steps;
    int *tensor_entry;              /* graph tensor -> entry holding it (-1 none) */
    int conv_from[16], conv_to[16]; /* conversions already made (e.g. the input reordered once for two uses) */
    int n_conv;
    size_t arena_bytes;
    void *bound_arena;
    uint64_t last_used;
} plan;

typedef enum weight_form { W_AS_STORED, W_WINOGRAD } weight_form;

typedef struct packed_weight {
    int tensor;
    weight_form form;
    dnnl_memory_desc_t md;
    void *buf;
} packed_weight;

struct msv_plan_cache {
    plan *plans[MAX_PLANS];
    int n_plans;
    uint64_t clock;
    void *arena;
    size_t arena_bytes;
    packed_weight *packed;
    int n_packed, cap_packed;
    int64_t primitives_created;
};

/* ------------------------------------------------------------------ helpers */

static msv_status dnnl_fail(msv_error *err, dnnl_status_t s, const char *what) {
    return msv_set_error(err, s == dnnl_out_of_memory ? MSV_ERR_OUT_OF_MEMORY : MSV_ERR_BACKEND,
                         "oneDNN could not %s (status %d)", what, (int)s);
}

static dnnl_memory_desc_t md_tag(int nd, const int64_t *dims, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md = NULL;
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++)
        d[i] = dims[i];
    if (dnnl_memory_desc_create_with_tag(&md, nd, d, dnnl_f32, tag) != dnnl_success) return NULL;
    return md;
}

static dnnl_memory_desc_t md_strides(int nd, const int64_t *dims, const int64_t *strides) {
    dnnl_memory_desc_t md = NULL;
    dnnl_dims_t d, s;
    for (int i = 0; i < nd; i++) {
        d[i] = dims[i];
        s[i] = strides[i];
    }
    if (dnnl_memory_desc_create_with_strides(&md, nd, d, dnnl_f32, s) != dnnl_success) return NULL;
    return md;
}

static dnnl_memory_desc_t md_clone(const_dnnl_memory_desc_t src) {
    dnnl_memory_desc_t md = NULL;
    if (dnnl_memory_desc_clone(&md, src) != dnnl_success) return NULL;
    return md;
}

static dnnl_memory_desc_t md_nchw(msv_shape s) { return md_tag(4, s.dims, dnnl_nchw); }

static const char *impl_name(const_dnnl_primitive_desc_t pd) {
    const char *name = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
    return name;
}

/* The activation layout offered first to every op (MSVISION_LAYOUT=nhwc|blocked|any; nhwc by default: the
 * brgemm convolutions, depthwise and 1x1 alike, run natively on it, so no reorders are needed between layers). */
static dnnl_format_tag_t preferred_tag(int64_t channels) {
    const char *v = getenv("MSVISION_LAYOUT");
    if (v && strcmp(v, "any") == 0) return dnnl_format_tag_any;
    if (v && strcmp(v, "blocked") == 0) return channels % 16 == 0 ? dnnl_nChw16c : dnnl_format_tag_any;
    return dnnl_nhwc;
}

/* Reference implementations are correct but far from the machine's speed: avoid them when we can. */
static int is_slow_impl(const char *name) { return strstr(name, "ref") != NULL; }

/* Describes an activation md as a channel-blocked view (see kernels.h); returns 0 if it is not one. */
static int md_to_view(const_dnnl_memory_desc_t md, msv_view *v) {
    int nd = 0, nblks = 0;
    dnnl_format_kind_t fk;
    const dnnl_dims_t *dims, *pdims, *strides, *blks, *idxs, *poffs;
    if (dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &nd) != dnnl_success || nd != 4) return 0;
    dnnl_memory_desc_query(md, dnnl_query_format_kind, &fk);
    if (fk != dnnl_blocked) return 0;
    dnnl_memory_desc_query(md, dnnl_query_dims, &dims);
    dnnl_memory_desc_query(md, dnnl_query_padded_dims, &pdims);
    dnnl_memory_desc_query(md, dnnl_query_padded_offsets, &poffs);
    dnnl_memory_desc_query(md, dnnl_query_strides, &strides);
    dnnl_memory_desc_query(md, dnnl_query_inner_nblks_s32, &nblks);
    dnnl_memory_desc_query(md, dnnl_query_inner_blks, &blks);
    dnnl_memory_desc_query(md, dnnl_query_inner_idxs, &idxs);
    for (int i = 0; i < 4; i++)
        if ((*poffs)[i] != 0 || (i != 1 && (*pdims)[i] != (*dims)[i])) return 0;
    memset(v, 0, sizeof *v);
    v->n = (*dims)[0];
    v->c = (*dims)[1];
    v->h = (*dims)[2];
    v->w = (*dims)[3];
    v->c_padded = (*pdims)[1];
    if (nblks == 0) {
        v->block = 1;
    } else if (nblks == 1 && (*idxs)[0] == 1 && (*blks)[0] <= 16) {
        v->block = (*blks)[0];
    } else {
        return 0;
    }
    v->sn = (*strides)[0];
    v->scb = (*strides)[1];
    v->sh = (*strides)[2];
    v->sw = (*strides)[3];
    return 1;
}

/* A short layout name for verbose plans: nchw, nhwc, nChw16c, ... */
static void describe_md(char *buf, size_t cap, const_dnnl_memory_desc_t md) {
    msv_view v;
    if (!md_to_view(md, &v))
        snprintf(buf, cap, "other");
    else if (v.block > 1)
        snprintf(buf, cap, "nChw%lldc", (long long)v.block);
    else
        snprintf(buf, cap, v.scb == 1 ? "nhwc" : v.sw == 1 ? "nchw" : "strided");
}

/* An md with the same layout family as `like` (a view) but other dims. */
static dnnl_memory_desc_t md_like(const msv_view *like, msv_shape s) {
    dnnl_format_tag_t tag = dnnl_nchw;
    if (like->block == 16)
        tag = dnnl_nChw16c;
    else if (like->block == 8)
        tag = dnnl_nChw8c;
    else if (like->block == 4)
        tag = dnnl_nChw4c;
    else if (like->block == 1 && like->scb == 1 && like->c > 1)
        tag = dnnl_nhwc;
    return md_tag(4, s.dims, tag);
}

static dnnl_alg_kind_t eltwise_alg(msv_act act, float *alpha, float *beta) {
    switch (act) {
    case MSV_ACT_RELU: *alpha = 0.f; return dnnl_eltwise_relu;
    case MSV_ACT_LEAKY_RELU: return dnnl_eltwise_relu;
    case MSV_ACT_SIGMOID: return dnnl_eltwise_logistic;
    case MSV_ACT_TANH: return dnnl_eltwise_tanh;
    case MSV_ACT_GELU_ERF: return dnnl_eltwise_gelu_erf;
    case MSV_ACT_GELU_TANH: return dnnl_eltwise_gelu_tanh;
    case MSV_ACT_SWISH: return dnnl_eltwise_swish;
    case MSV_ACT_HARDSWISH:
        *alpha = 1.f / 6.f;
        *beta = 0.5f;
        return dnnl_eltwise_hardswish;
    case MSV_ACT_CLIP: return dnnl_eltwise_clip_v2;
    case MSV_ACT_ELU: return dnnl_eltwise_elu;
    case MSV_ACT_EXP: return dnnl_eltwise_exp;
    case MSV_ACT_LINEAR: return dnnl_eltwise_linear;
    }
    return dnnl_alg_kind_undef;
}

static dnnl_alg_kind_t binary_alg(msv_binop op) {
    switch (op) {
    case MSV_BIN_ADD: return dnnl_binary_add;
    case MSV_BIN_SUB: return dnnl_binary_sub;
    case MSV_BIN_MUL: return dnnl_binary_mul;
    case MSV_BIN_DIV: return dnnl_binary_div;
    case MSV_BIN_MAX: return dnnl_binary_max;
    case MSV_BIN_MIN: return dnnl_binary_min;
    }
    return dnnl_alg_kind_undef;
}

/* ------------------------------------------------------------------ plan building */

typedef struct builder {
    msv_graph *g;
    struct msv_plan_cache *pc;
    plan *p;
    msv_shape *shapes;
    msv_error *err;
} builder;

static int new_entry(builder *b, entry_kind kind, dnnl_memory_desc_t md) {
    plan *p = b->p;
    if (!md) {
        msv_set_error(b->err, MSV_ERR_BACKEND, "oneDNN could not describe a tensor");
        return -1;
    }
    if (p->n_entries == p->cap_entries) {
        int cap = p->cap_entries ? 2 * p->cap_entries : 256;
        entry *es = realloc(p->entries, (size_t)cap * sizeof(*es));
        if (!es) {
            dnnl_memory_desc_destroy(md);
            msv_set_error(b->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
            return -1;
        }
        p->entries = es;
        p->cap_entries = cap;
    }
    entry *e = &p->entries[p->n_entries];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->md = md;
    e->bytes = dnnl_memory_desc_get_size(md);
    e->def = p->n_steps; /* defined by the step about to be added */
    e->last = p->n_steps;
    return p->n_entries++;
}

static step *new_step(builder *b) {
    plan *p = b->p;
    if (p->n_steps == p->cap_steps) {
        int cap = p->cap_steps ? 2 * p->cap_steps : 256;
        step *ss = realloc(p->steps, (size_t)cap * sizeof(*ss));
        if (!ss) {
            msv_set_error(b->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
            return NULL;
        }
        p->steps = ss;
        p->cap_steps = cap;
    }
    step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    return s;
}

static void use_entry(builder *b, int e) {
    if (b->p->entries[e].last < b->p->n_steps - 1) b->p->entries[e].last = b->p->n_steps - 1;
}

static void add_arg(builder *b, step *s, int kind, int e) {
    s->arg_kind[s->nargs] = kind;
    s->arg_entry[s->nargs] = e;
    s->nargs++;
    use_entry(b, e);
}

/* Adds the primitive of `pd` as a step (with a scratchpad entry if it needs one). Destroys pd. */
static step *add_primitive_step(builder *b, dnnl_primitive_desc_t pd, const char *what) {
    dnnl_primitive_t prim = NULL;
    dnnl_status_t s = dnnl_primitive_create(&prim, pd);
    if (s != dnnl_success) {
        dnnl_fail(b->err, s, what);
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    b->pc->primitives_created++;
    if (verbose_plans()) {
        char src_fmt[128] = "-", dst_fmt[128] = "-";
        const_dnnl_memory_desc_t smd_ = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const_dnnl_memory_desc_t dmd_ = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        if (smd_) describe_md(src_fmt, sizeof src_fmt, smd_);
        if (dmd_) describe_md(dst_fmt, sizeof dst_fmt, dmd_);
        fprintf(stderr, "msvision: plan step %d: %s -> %s [%s -> %s]\n", b->p->n_steps, what, impl_name(pd), src_fmt,
                dst_fmt);
    }
    const_dnnl_memory_desc_t smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    step *st = new_step(b);
    if (!st) {
        dnnl_primitive_destroy(prim);
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    st->prim = prim;
    snprintf(st->what, sizeof st->what, "%s %s", what, impl_name(pd));
    if (sbytes > 0) {
        int e = new_entry(b, E_ARENA, md_clone(smd));
        if (e < 0) {
            dnnl_primitive_desc_destroy(pd);
            return NULL;
        }
        b->p->entries[e].def = b->p->entries[e].last = b->p->n_steps - 1; /* live during this step only */
        add_arg(b, st, DNNL_ARG_SCRATCHPAD, e);
    }
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static dnnl_primitive_attr_t new_attr(void) {
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    return attr;
}

/* Entry `e` converted to `want` (a reorder step is added when the layouts differ). Returns the entry to read. */
static int converted(builder *b, int e, const_dnnl_memory_desc_t want) {
    if (dnnl_memory_desc_equal(b->p->entries[e].md, want)) return e;
    plan *p = b->p;
    for (int i = 0; i < p->n_conv; i++)
        if (p->conv_from[i] == e && dnnl_memory_desc_equal(p->entries[p->conv_to[i]].md, want)) return p->conv_to[i];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, b->p->entries[e].md, g_engine, want, g_engine, NULL);
    if (s != dnnl_success) {
        dnnl_fail(b->err, s, "create a reorder");
        return -1;
    }
    int out = new_entry(b, E_ARENA, md_clone(want));
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        return -1;
    }
    step *st = add_primitive_step(b, pd, "reorder");
    if (!st) return -1;
    b->p->entries[out].def = b->p->n_steps - 1;
    add_arg(b, st, DNNL_ARG_FROM, e);
    add_arg(b, st, DNNL_ARG_TO, out);
    if (p->n_conv < 16) {
        p->conv_from[p->n_conv] = e;
        p->conv_to[p->n_conv++] = out;
    }
    return out;
}

/* A constant as a fixed entry in its plain layout. */
static int const_entry(builder *b, int tensor, dnnl_memory_desc_t md) {
    int e = new_entry(b, E_FIXED, md);
    if (e >= 0) {
        b->p->entries[e].fixed = b->g->tensors[tensor].data;
        b->p->entries[e].def = 0;
    }
    return e;
}

/* A fixed entry for weights already packed (tensor, form, layout); NOT_PACKED if there are none yet. */
#define NOT_PACKED (-2)
static int cached_weight_entry(builder *b, int tensor, weight_form form, const_dnnl_memory_desc_t want) {
    struct msv_plan_cache *pc = b->pc;
    for (int i = 0; i < pc->n_packed; i++)
        if (pc->packed[i].tensor == tensor && pc->packed[i].form == form &&
            dnnl_memory_desc_equal(pc->packed[i].md, want)) {
            int e = new_entry(b, E_FIXED, md_clone(want));
            if (e >= 0) b->p->entries[e].fixed = pc->packed[i].buf;
            return e;
        }
    return NOT_PACKED;
}

/* Packs `data` (laid out as `plain`) into the layout `want` once; the copy is shared by all plans. */
static int pack_weights(builder *b, int tensor, weight_form form, const_dnnl_memory_desc_t plain, void *data,
                        const_dnnl_memory_desc_t want) {
    struct msv_plan_cache *pc = b->pc;
    if (pc->n_packed == pc->cap_packed) {
        int cap = pc->cap_packed ? 2 * pc->cap_packed : 64;
        packed_weight *pw = realloc(pc->packed, (size_t)cap * sizeof(*pw));
        if (!pw) {
            msv_set_error(b->err, MSV_ERR_OUT_OF_MEMORY, "out of memory packing weights");
            return -1;
        }
        pc->packed = pw;
        pc->cap_packed = cap;
    }
    size_t bytes = dnnl_memory_desc_get_size(want);
    void *buf = aligned_alloc(ARENA_ALIGN, (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!buf) {
        msv_set_error(b->err, MSV_ERR_OUT_OF_MEMORY, "out of memory packing weights");
        return -1;
    }
    dnnl_memory_t src = NULL, dst = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_status_t s = dnnl_memory_create(&src, plain, g_engine, data);
    if (s == dnnl_success) s = dnnl_memory_create(&dst, want, g_engine, buf);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, plain, g_engine, want, g_engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&prim, pd);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        s = dnnl_primitive_execute(prim, g_stream, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(g_stream);
    }
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(dst);
    if (s != dnnl_success) {
        free(buf);
        dnnl_fail(b->err, s, "pack weights");
        return -1;
    }
    pc->packed[pc->n_packed++] = (packed_weight){tensor, form, md_clone(want), buf};
    int e = new_entry(b, E_FIXED, md_clone(want));
    if (e >= 0) b->p->entries[e].fixed = buf;
    return e;
}

/* Weights in the layout a primitive asks for: reordered once, shared by all plans. */
static int packed_weight_entry(builder *b, int tensor, const_dnnl_memory_desc_t plain, const_dnnl_memory_desc_t want) {
    int e = cached_weight_entry(b, tensor, W_AS_STORED, want);
    return e != NOT_PACKED ? e : pack_weights(b, tensor, W_AS_STORED, plain, b->g->tensors[tensor].data, want);
}

/* The entry holding graph tensor t (activations/inputs), or a fixed entry for a constant. */
static int tensor_entry(builder *b, int t) {
    if (b->p->tensor_entry[t] >= 0) return b->p->tensor_entry[t];
    if (b->g->tensors[t].kind == MSV_T_CONST) {
        msv_shape s = b->g->tensors[t].shape;
        int e = const_entry(b, t, s.ndims == 4 ? md_nchw(s) : md_tag(1, (int64_t[]){s.dims[0]}, dnnl_a));
        b->p->tensor_entry[t] = e;
        return e;
    }
    msv_set_error(b->err, MSV_ERR_BACKEND, "tensor %d used before it is computed", t);
    return -1;
}

/* Like build_post_ops, with the binary operands already chosen (operand_entries). */
static int build_post_ops_with(builder *b, const msv_node *n, dnnl_primitive_attr_t attr, const int *operand_entries) {
    dnnl_post_ops_t po = NULL;
    if (dnnl_post_ops_create(&po) != dnnl_success) return 0;
    for (int k = 0; k < n->n_post; k++) {
        const msv_post_op *op = &n->post[k];
        if (op->kind == MSV_POST_ELTWISE) {
            float alpha = op->alpha, beta = op->beta;
            dnnl_alg_kind_t alg = eltwise_alg(op->act, &alpha, &beta);
            dnnl_post_ops_append_eltwise(po, alg, alpha, beta);
        } else if (op->kind == MSV_POST_PRELU) {
            dnnl_post_ops_append_prelu(po, b->g->tensors[op->tensor].shape.dims[0] > 1 ? 1 << 1 : 0);
        } else {
            dnnl_post_ops_append_binary(po, binary_alg(op->bin), b->p->entries[operand_entries[k]].md);
        }
    }
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    return 1;
}

/* Post-ops of node n into attr, with each binary operand read from where its tensor lives now (recorded in
 * operand_entries; -1 for eltwise post-ops). */
static int build_post_ops(builder *b, const msv_node *n, dnnl_primitive_attr_t attr, int *operand_entries) {
    for (int k = 0; k < n->n_post; k++) {
        const msv_post_op *op = &n->post[k];
        operand_entries[k] = -1;
        if (op->kind == MSV_POST_BINARY) {
            operand_entries[k] = tensor_entry(b, op->tensor);
        } else if (op->kind == MSV_POST_PRELU) { /* slopes as a plain (1, C, 1, 1) tensor */
            int64_t len = 1;
            for (int d = 0; d < b->g->tensors[op->tensor].shape.ndims; d++)
                len *= b->g->tensors[op->tensor].shape.dims[d];
            operand_entries[k] = const_entry(b, op->tensor, md_tag(4, (int64_t[]){1, len, 1, 1}, dnnl_nchw));
        }
        if (op->kind != MSV_POST_ELTWISE && operand_entries[k] < 0) return 0;
    }
    return n->n_post == 0 || build_post_ops_with(b, n, attr, operand_entries);
}

static void add_post_op_args(builder *b, step *st, const msv_node *n, const int *operand_entries) {
    for (int k = 0; k < n->n_post; k++) {
        if (operand_entries[k] < 0) continue;
        const int arg = n->post[k].kind == MSV_POST_PRELU ? DNNL_ARG_WEIGHTS : DNNL_ARG_SRC_1;
        add_arg(b, st, DNNL_ARG_ATTR_MULTIPLE_POST_OP(k) | arg, operand_entries[k]);
    }
}

/* A fresh output entry for node n from the md the primitive chose. */
static int output_entry(builder *b, const msv_node *n, const_dnnl_memory_desc_t md) {
    int e = new_entry(b, E_ARENA, md_clone(md));
    if (e >= 0) b->p->tensor_entry[n->out] = e;
    return e;
}

/* A primitive descriptor for the given layouts if oneDNN has a fast kernel for them. The first slow (reference)
 * one found is kept in *fallback, for shapes no fast kernel covers. */
static dnnl_primitive_desc_t conv_candidate(const msv_node *n, int deconv, const_dnnl_memory_desc_t src,
                                            const_dnnl_memory_desc_t w, const_dnnl_memory_desc_t bias,
                                            const_dnnl_memory_desc_t dst, const dnnl_dims_t strides,
                                            const dnnl_dims_t dil, const dnnl_dims_t pl, const dnnl_dims_t pr,
                                            const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *fallback) {
    (void)n;
    dnnl_primitive_desc_t cand = NULL;
    dnnl_primitive_attr_t own = NULL;
    if (!attr) { /* probes still use a user scratchpad */
        own = new_attr();
        attr = own;
    }
    dnnl_status_t s = deconv ? dnnl_deconvolution_forward_primitive_desc_create(&cand, g_engine, dnnl_forward_inference,
                                                                                dnnl_deconvolution_direct, src, w, bias,
                                                                                dst, strides, dil, pl, pr, attr)
                             : dnnl_convolution_forward_primitive_desc_create(&cand, g_engine, dnnl_forward_inference,
                                                                              dnnl_convolution_direct, src, w, bias,
                                                                              dst, strides, dil, pl, pr, attr);
    if (own) dnnl_primitive_attr_destroy(own);
    if (s != dnnl_success) return NULL;
    if (!is_slow_impl(impl_name(cand))) return cand;
    if (!*fallback)
        *fallback = cand;
    else
        dnnl_primitive_desc_destroy(cand);
    return NULL;
}

/* ------------------------------------------------------------------ Winograd convolutions */

/* Winograd F(4x4, 3x3) replaces oneDNN's direct convolution (this oneDNN build has no fp32 Winograd) for 3x3
 * stride-1 convolutions, dilation 1 or 2, with channel counts in multiples of 16 (the transforms' vector width).
 * Measured on Zen 4 (2 threads, 3 chained convolutions C -> C): 1.6-3x faster from 32 channels at 125x125 to 512
 * channels at 16x16; below 16x16 output pixels per image, or when the 4x4 tiles mostly overhang the output (thin
 * maps, batches of tiny images), reading the 4x larger transformed weights costs more than the multiplies saved.
 * MSVISION_WINOGRAD=0 turns it off (read when a shape is planned, like MSVISION_LAYOUT). */
#define WINO_MIN_PIXELS 256 /* output pixels per image */
#define WINO_MIN_FILL 0.5   /* output pixels / pixels the tiles cover */
/* Tiles per matmul: chunk buffers of 36 x 192 x (I + O) floats (28 MB at 512 channels); MogFace's times were flat
 * from 96 to 768 tiles. */
#define WINO_CHUNK_TILES 192

static int winograd_disabled(void) {
    const char *v = getenv("MSVISION_WINOGRAD");
    return v && strcmp(v, "0") == 0;
}

static int64_t winograd_chunk_tiles(void) {
    const char *v = getenv("MSVISION_WINOGRAD_TILES"); /* for tuning */
    long t = v ? strtol(v, NULL, 10) : 0;
    return t > 0 && t < 100000 ? t : WINO_CHUNK_TILES;
}

static int wants_winograd(const builder *b, const msv_node *n) {
    const msv_conv_params *p = &n->win;
    if (n->op != MSV_OP_CONV || winograd_disabled()) return 0;
    if (p->groups != 1 || p->kh != 3 || p->kw != 3 || p->sh != 1 || p->sw != 1 || p->dh != p->dw || p->dh > 2) return 0;
    const msv_shape xs = b->shapes[n->in[0]], ys = b->shapes[n->out];
    if (xs.dims[1] % 16 || ys.dims[1] % 16) return 0;
    const int64_t pixels = ys.dims[2] * ys.dims[3];
    const msv_wino_geometry geo = msv_wino_plan_tiles(1, ys.dims[2], ys.dims[3], 0, 0, p->dh);
    const double covered = 16.0 * (double)geo.n_tiles; /* 4x4 output pixels per tile */
    if (pixels < WINO_MIN_PIXELS || (double)pixels < WINO_MIN_FILL * covered) return 0;
    if (n->n_post == 0) return 1;
    return n->n_post == 1 && n->post[0].kind == MSV_POST_ELTWISE && n->post[0].act == MSV_ACT_RELU;
}

/* The conv weights of `tensor` Winograd-transformed and packed in the layout the matmul asks for. */
static int winograd_weight_entry(builder *b, int tensor, int64_t I, int64_t O, const_dnnl_memory_desc_t want) {
    int e = cached_weight_entry(b, tensor, W_WINOGRAD, want);
    if (e != NOT_PACKED) return e;
    float *u = malloc(sizeof(float) * MSV_WINO_POSITIONS * (size_t)I * (size_t)O);
    dnnl_memory_desc_t plain = md_tag(3, (int64_t[]){MSV_WINO_POSITIONS, I, O}, dnnl_abc);
    if (!u || !plain) {
        free(u);
        dnnl_memory_desc_destroy(plain);
        msv_set_error(b->err, u ? MSV_ERR_BACKEND : MSV_ERR_OUT_OF_MEMORY,
                      u ? "oneDNN could not describe the Winograd weights" : "out of memory packing weights");
        return -1;
    }
    msv_wino_transform_weights(b->g->tensors[tensor].data, O, I, u);
    e = pack_weights(b, tensor, W_WINOGRAD, plain, u, want);
    free(u);
    dnnl_memory_desc_destroy(plain);
    return e;
}

/* Plans node n as a Winograd convolution; *planned stays 0 (and nothing is added) when oneDNN has no fast matmul
 * for it, so the caller plans a direct convolution instead. */
static msv_status plan_winograd(builder *b, const msv_node *n, int *planned) {
    const msv_shape xs = b->shapes[n->in[0]], ys = b->shapes[n->out];
    const int64_t I = xs.dims[1], O = ys.dims[1];
    *planned = 0;
    int src = tensor_entry(b, n->in[0]);
    if (src < 0) return b->err->status;
    msv_view vs, vd;
    const msv_wino_geometry geo =
        msv_wino_plan_tiles(ys.dims[0], ys.dims[2], ys.dims[3], n->win.pad_t, n->win.pad_l, n->win.dh);
    const int64_t chunk = winograd_chunk_tiles(), n_chunks = (geo.n_tiles + chunk - 1) / chunk;
    const int64_t rows = (geo.n_tiles + n_chunks - 1) / n_chunks; /* even chunks: little work on unused rows */
    dnnl_memory_desc_t vmd = md_tag(3, (int64_t[]){MSV_WINO_POSITIONS, rows, I}, dnnl_abc);
    dnnl_memory_desc_t umd = md_tag(3, (int64_t[]){MSV_WINO_POSITIONS, I, O}, dnnl_format_tag_any);
    dnnl_memory_desc_t mmd = md_tag(3, (int64_t[]){MSV_WINO_POSITIONS, rows, O}, dnnl_abc);
    dnnl_memory_desc_t ymd = md_tag(4, ys.dims, dnnl_nhwc);
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_primitive_desc_t pd = NULL;
    msv_status result = MSV_ERR_BACKEND;
    if (!vmd || !umd || !mmd || !ymd || !attr) {
        msv_set_error(b->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
        goto done;
    }
    if (dnnl_matmul_primitive_desc_create(&pd, g_engine, vmd, umd, NULL, mmd, attr) != dnnl_success ||
        is_slow_impl(impl_name(pd))) {
        result = MSV_OK; /* not planned: a direct convolution it is */
        goto done;
    }
    if (!md_to_view(b->p->entries[src].md, &vs) || !msv_wino_view_ok(&vs)) {
        dnnl_memory_desc_t nhwc = md_tag(4, xs.dims, dnnl_nhwc);
        src = converted(b, src, nhwc);
        dnnl_memory_desc_destroy(nhwc);
        if (src < 0) goto done;
        md_to_view(b->p->entries[src].md, &vs);
    }
    int w = winograd_weight_entry(b, n->weight, I, O, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    int v = new_entry(b, E_ARENA, md_clone(vmd));
    int m = new_entry(b, E_ARENA, md_clone(mmd));
    int out = new_entry(b, E_ARENA, ymd);
    ymd = NULL;
    if (w < 0 || v < 0 || m < 0 || out < 0) goto done;
    b->p->tensor_entry[n->out] = out;
    md_to_view(b->p->entries[out].md, &vd);
    step *st = add_primitive_step(b, pd, "winograd convolution");
    pd = NULL;
    if (!st) goto done;
    st->is_wino = 1;
    st->wino = geo;
    st->wino_rows = rows;
    st->wino_v = v;
    st->wino_m = m;
    st->relu = n->n_post == 1;
    st->bias = n->bias >= 0 ? b->g->tensors[n->bias].data : NULL;
    st->src = src;
    st->dst = out;
    st->vsrc = vs;
    st->vdst = vd;
    add_arg(b, st, DNNL_ARG_SRC, v);
    add_arg(b, st, DNNL_ARG_WEIGHTS, w);
    add_arg(b, st, DNNL_ARG_DST, m);
    use_entry(b, src);
    use_entry(b, out);
    *planned = 1;
    result = MSV_OK;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_destroy(vmd);
    dnnl_memory_desc_destroy(umd);
    dnnl_memory_desc_destroy(mmd);
    dnnl_memory_desc_destroy(ymd);
    if (result != MSV_OK && b->err->status == MSV_OK)
        msv_set_error(b->err, MSV_ERR_BACKEND, "planning a Winograd convolution failed");
    return result != MSV_OK ? b->err->status : MSV_OK;
}

/* Convolution, deconvolution and linear (a convolution whose window is the whole input). */
static msv_status plan_conv(builder *b, const msv_node *n) {
    if (wants_winograd(b, n)) {
        int planned;
        msv_status st = plan_winograd(b, n, &planned);
        if (st != MSV_OK || planned) return st;
    }
    const msv_graph *g = b->g;
    const msv_shape xs = b->shapes[n->in[0]], ys = b->shapes[n->out];
    const msv_shape ws = g->tensors[n->weight].shape;
    msv_conv_params p = n->win;
    const int deconv = n->op == MSV_OP_DECONV;
    if (n->op == MSV_OP_LINEAR) {
        memset(&p, 0, sizeof p);
        p.kh = (int)xs.dims[2];
        p.kw = (int)xs.dims[3];
        p.sh = p.sw = p.dh = p.dw = p.groups = 1;
    }
    const int64_t G = p.groups, O = ys.dims[1], I = xs.dims[1], KH = p.kh, KW = p.kw;
    dnnl_memory_desc_t wplain;
    if (!deconv) {
        if (G == 1) {
            wplain = md_tag(4, (int64_t[]){O, I, KH, KW}, dnnl_oihw);
        } else {
            wplain = md_tag(5, (int64_t[]){G, O / G, I / G, KH, KW}, dnnl_goihw);
        }
    } else { /* torch ConvTranspose2d weights are (I, O/G, kh, kw) */
        const int64_t og = ws.dims[1], ig = I / G;
        if (G == 1)
            wplain = md_strides(4, (int64_t[]){O, I, KH, KW}, (int64_t[]){KH * KW, O * KH * KW, KW, 1});
        else
            wplain = md_strides(5, (int64_t[]){G, og, ig, KH, KW},
                                (int64_t[]){ig * og * KH * KW, KH * KW, og * KH * KW, KW, 1});
    }
    const int wnd = G == 1 ? 4 : 5;
    dnnl_memory_desc_t wany = G == 1 ? md_tag(4, (int64_t[]){O, I, KH, KW}, dnnl_format_tag_any)
                                     : md_tag(5, (int64_t[]){G, O / G, I / G, KH, KW}, dnnl_format_tag_any);
    dnnl_memory_desc_t bmd = n->bias >= 0 ? md_tag(1, (int64_t[]){O}, dnnl_a) : NULL;
    dnnl_memory_desc_t dany = md_tag(4, ys.dims, dnnl_format_tag_any);
    dnnl_memory_desc_t sany = md_tag(4, xs.dims, dnnl_format_tag_any);
    (void)wnd;
    int src = tensor_entry(b, n->in[0]);
    int operand_entries[MSV_MAX_POST_OPS];
    dnnl_primitive_attr_t attr = new_attr();
    msv_status result = MSV_ERR_BACKEND;
    dnnl_primitive_desc_t pd = NULL;
    if (src < 0 || !attr || !build_post_ops(b, n, attr, operand_entries) || !wplain || !wany || !dany || !sany)
        goto done;
    dnnl_dims_t strides = {p.sh, p.sw}, dil = {p.dh - 1, p.dw - 1}, pl = {p.pad_t, p.pad_l},
                pr = {p.pad_b - p.out_pad_h, p.pad_r - p.out_pad_w};
    if (!deconv) {
        pr[0] = p.pad_b;
        pr[1] = p.pad_r;
    }
    /* Candidates, best first: the producer's layout in, the preferred layout (or a full-size fused operand's
     * layout) out; then any layout (a reorder is added where the choice differs). */
    dnnl_memory_desc_t dpref = md_tag(4, ys.dims, preferred_tag(O));
    const_dnnl_memory_desc_t dst_hint = dpref;
    for (int k = 0; k < n->n_post; k++)
        if (operand_entries[k] >= 0 && g->tensors[n->post[k].tensor].kind != MSV_T_CONST &&
            memcmp(b->shapes[n->post[k].tensor].dims, ys.dims, sizeof(int64_t) * 4) == 0)
            dst_hint = b->p->entries[operand_entries[k]].md;
    const_dnnl_memory_desc_t srcs[2] = {b->p->entries[src].md, sany};
    const_dnnl_memory_desc_t dsts[3] = {dst_hint, dpref, dany};
    dnnl_primitive_desc_t fallback = NULL;
    int fallback_entries[MSV_MAX_POST_OPS]; /* the operands the fallback's post-ops were described with */
    for (int j = 0; j < 3 && !pd; j++) /* the output layout matters most: it is what every consumer reads */
        for (int i = 0; i < 2 && !pd; i++)
            pd = conv_candidate(n, deconv, srcs[i], wany, bmd, dsts[j], strides, dil, pl, pr, attr, &fallback);
    memcpy(fallback_entries, operand_entries, sizeof operand_entries);
    if (!pd && n->n_post > 0) {
        /* Fused operands in a layout no fast kernel takes: ask for the natural layout without them, then
         * bring each full-size operand into that layout (an edge reorder, e.g. of the network input). */
        dnnl_primitive_desc_t probe = NULL, unused = NULL;
        for (int i = 0; i < 2 && !probe; i++)
            for (int j = 1; j < 3 && !probe; j++)
                probe = conv_candidate(n, deconv, srcs[i], wany, bmd, dsts[j], strides, dil, pl, pr, NULL, &unused);
        if (unused) dnnl_primitive_desc_destroy(unused);
        if (probe) {
            const_dnnl_memory_desc_t natural = dnnl_primitive_desc_query_md(probe, dnnl_query_dst_md, 0);
            const_dnnl_memory_desc_t natural_src = dnnl_primitive_desc_query_md(probe, dnnl_query_src_md, 0);
            int ok = 1;
            for (int k = 0; k < n->n_post && ok; k++)
                if (operand_entries[k] >= 0 && g->tensors[n->post[k].tensor].kind != MSV_T_CONST &&
                    memcmp(b->shapes[n->post[k].tensor].dims, ys.dims, sizeof(int64_t) * 4) == 0) {
                    operand_entries[k] = converted(b, operand_entries[k], natural);
                    ok = operand_entries[k] >= 0;
                }
            dnnl_primitive_attr_t attr2 = ok ? new_attr() : NULL;
            if (attr2 && build_post_ops_with(b, n, attr2, operand_entries)) {
                dnnl_primitive_attr_destroy(attr);
                attr = attr2;
                const int had_fallback = fallback != NULL;
                pd = conv_candidate(n, deconv, natural_src, wany, bmd, natural, strides, dil, pl, pr, attr, &fallback);
                if (!had_fallback) memcpy(fallback_entries, operand_entries, sizeof operand_entries);
            } else if (attr2) {
                dnnl_primitive_attr_destroy(attr2);
            }
            dnnl_primitive_desc_destroy(probe);
        }
    }
    dnnl_memory_desc_destroy(dpref);
    if (!pd) { /* a reference implementation, whose post-ops read the operands it was described with */
        pd = fallback;
        fallback = NULL;
        memcpy(operand_entries, fallback_entries, sizeof operand_entries);
    }
    if (fallback) dnnl_primitive_desc_destroy(fallback);
    if (!pd) {
        msv_set_error(b->err, MSV_ERR_BACKEND, "oneDNN has no %s for this shape",
                      deconv ? "deconvolution" : "convolution");
        goto done;
    }
    {
        int s_in = converted(b, src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
        int w_in =
            packed_weight_entry(b, n->weight, wplain, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
        int b_in = n->bias >= 0 ? tensor_entry(b, n->bias) : -1;
        int out = output_entry(b, n, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
        if (s_in < 0 || w_in < 0 || (n->bias >= 0 && b_in < 0) || out < 0) goto done;
        step *st = add_primitive_step(b, pd, deconv ? "deconvolution" : "convolution");
        pd = NULL;
        if (!st) goto done;
        b->p->entries[out].def = b->p->n_steps - 1;
        add_arg(b, st, DNNL_ARG_SRC, s_in);
        add_arg(b, st, DNNL_ARG_WEIGHTS, w_in);
        if (b_in >= 0) add_arg(b, st, DNNL_ARG_BIAS, b_in);
        add_arg(b, st, DNNL_ARG_DST, out);
        add_post_op_args(b, st, n, operand_entries);
        result = MSV_OK;
    }
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_destroy(wplain);
    dnnl_memory_desc_destroy(wany);
    dnnl_memory_desc_destroy(bmd);
    dnnl_memory_desc_destroy(dany);
    dnnl_memory_desc_destroy(sany);
    if (result != MSV_OK && b->err && b->err->status == MSV_OK)
        msv_set_error(b->err, MSV_ERR_BACKEND, "planning a convolution failed");
    return result != MSV_OK && b->err ? b->err->status : result;
}

/* Generic single-primitive ops whose dst takes `any` layout. */
static msv_status finish_simple(builder *b, const msv_node *n, dnnl_status_t s, dnnl_primitive_desc_t pd,
                                const char *what, const int *src_entries, const int *src_args, int n_src,
                                const int *operand_entries) {
    if (s != dnnl_success) return dnnl_fail(b->err, s, what);
    int out = output_entry(b, n, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        return b->err->status;
    }
    step *st = add_primitive_step(b, pd, what);
    if (!st) return b->err->status;
    b->p->entries[out].def = b->p->n_steps - 1;
    for (int i = 0; i < n_src; i++)
        add_arg(b, st, src_args[i], src_entries[i]);
    add_arg(b, st, DNNL_ARG_DST, out);
    if (operand_entries) add_post_op_args(b, st, n, operand_entries);
    return MSV_OK;
}

static msv_status plan_primitive_op(builder *b, const msv_node *n) {
    const msv_shape xs = b->shapes[n->in[0]], ys = b->shapes[n->out];
    int src = tensor_entry(b, n->in[0]);
    if (src < 0) return b->err->status;
    const_dnnl_memory_desc_t smd = b->p->entries[src].md;
    dnnl_memory_desc_t dany = md_tag(4, ys.dims, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_success;
    msv_status result;
    if (!dany || !attr) {
        result = msv_set_error(b->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
        goto done;
    }
    switch (n->op) {
    case MSV_OP_ELTWISE: {
        float alpha = n->alpha, beta = n->beta;
        dnnl_alg_kind_t alg = eltwise_alg((msv_act)n->alg, &alpha, &beta);
        s = dnnl_eltwise_forward_primitive_desc_create(&pd, g_engine, dnnl_forward_inference, alg, smd, smd, alpha,
                                                       beta, attr);
        result = finish_simple(b, n, s, pd, "eltwise", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
        break;
    }
    case MSV_OP_BINARY: {
        int other = tensor_entry(b, n->in[1]);
        int operand_entries[MSV_MAX_POST_OPS];
        if (other < 0 || !build_post_ops(b, n, attr, operand_entries)) {
            result = b->err->status ? b->err->status : MSV_ERR_BACKEND;
            break;
        }
        s = dnnl_binary_primitive_desc_create(&pd, g_engine, binary_alg((msv_binop)n->alg), smd,
                                              b->p->entries[other].md, dany, attr);
        result = finish_simple(b, n, s, pd, "binary", (int[]){src, other}, (int[]){DNNL_ARG_SRC_0, DNNL_ARG_SRC_1}, 2,
                               operand_entries);
        break;
    }
    case MSV_OP_PRELU: {
        const msv_shape ss = b->g->tensors[n->weight].shape;
        int64_t len = 1;
        for (int d = 0; d < ss.ndims; d++)
            len *= ss.dims[d];
        dnnl_memory_desc_t wmd = md_tag(4, (int64_t[]){1, len, 1, 1}, dnnl_nchw);
        int w = const_entry(b, n->weight, wmd);
        if (w < 0) {
            result = b->err->status;
            break;
        }
        s = dnnl_prelu_forward_primitive_desc_create(&pd, g_engine, dnnl_forward_inference, smd, b->p->entries[w].md,
                                                     dany, attr);
        result = finish_simple(b, n, s, pd, "prelu", (int[]){src, w}, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS}, 2, NULL);
        break;
    }
    case MSV_OP_POOL: {
        const msv_conv_params *p = &n->win;
        /* ceil_mode: extend the right/bottom padding so oneDNN produces PyTorch's output size */
        int64_t pb = (ys.dims[2] - 1) * p->sh + p->kh - xs.dims[2] - p->pad_t;
        int64_t pr = (ys.dims[3] - 1) * p->sw + p->kw - xs.dims[3] - p->pad_l;
        dnnl_dims_t strides = {p->sh, p->sw}, kernel = {p->kh, p->kw}, dil = {p->dh - 1, p->dw - 1},
                    pl = {p->pad_t, p->pad_l}, prr = {pb, pr};
        int kind = n->alg;
        if (kind == MSV_POOL_AVG_INCLUDE_PAD && (pb > p->pad_b || pr > p->pad_r)) {
            /* ceil-mode overhang: PyTorch counts the zero padding but not the overhang. Without padding that is
             * exclude-padding; with both, oneDNN cannot express it. */
            if (p->pad_t || p->pad_l || p->pad_b || p->pad_r) {
                result = msv_set_error(b->err, MSV_ERR_UNSUPPORTED,
                                       "average pooling with count_include_pad, ceil_mode and padding together "
                                       "(the last window overhangs the padded input)");
                break;
            }
            kind = MSV_POOL_AVG_EXCLUDE_PAD;
        }
        dnnl_alg_kind_t alg = kind == MSV_POOL_MAX               ? dnnl_pooling_max
                              : kind == MSV_POOL_AVG_INCLUDE_PAD ? dnnl_pooling_avg_include_padding
                                                                 : dnnl_pooling_avg_exclude_padding;
        s = dnnl_pooling_forward_primitive_desc_create(&pd, g_engine, dnnl_forward_inference, alg, smd, dany, strides,
                                                       kernel, dil, pl, prr, attr);
        result = finish_simple(b, n, s, pd, "pooling", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
        break;
    }
    case MSV_OP_GLOBAL_AVG_POOL: { /* an average pooling over the whole image (the jit pooling takes any layout) */
        dnnl_dims_t one = {1, 1}, zero = {0, 0}, kernel = {xs.dims[2], xs.dims[3]};
        s = dnnl_pooling_forward_primitive_desc_create(&pd, g_engine, dnnl_forward_inference,
                                                       dnnl_pooling_avg_exclude_padding, smd, dany, one, kernel, zero,
                                                       zero, zero, attr);
        result = finish_simple(b, n, s, pd, "global average pool", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
        break;
    }
    case MSV_OP_SOFTMAX:
        s = dnnl_softmax_forward_primitive_desc_create(&pd, g_engine, dnnl_forward_inference, dnnl_softmax_accurate,
                                                       smd, dany, 1, attr);
        result = finish_simple(b, n, s, pd, "softmax", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
        break;
    case MSV_OP_CONCAT: {
        const_dnnl_memory_desc_t mds[MSV_MAX_NODE_INPUTS];
        int entries[MSV_MAX_NODE_INPUTS], args[MSV_MAX_NODE_INPUTS];
        result = MSV_OK;
        for (int i = 0; i < n->n_in; i++) {
            entries[i] = tensor_entry(b, n->in[i]);
            if (entries[i] < 0) {
                result = b->err->status;
                break;
            }
            mds[i] = b->p->entries[entries[i]].md;
            args[i] = DNNL_ARG_MULTIPLE_SRC + i;
        }
        if (result != MSV_OK) break;
        s = dnnl_concat_primitive_desc_create(&pd, g_engine, dany, n->n_in, 1, mds, attr);
        result = finish_simple(b, n, s, pd, "concat", entries, args, n->n_in, NULL);
        break;
    }
    default: result = msv_set_error(b->err, MSV_ERR_UNSUPPORTED, "op %d is not a oneDNN primitive", (int)n->op);
    }
done:
    dnnl_memory_desc_destroy(dany);
    dnnl_primitive_attr_destroy(attr);
    return result;
}

/* C-kernel ops: the source must be a channel-blocked view; the result keeps its layout family. */
static msv_status plan_kernel_op(builder *b, const msv_node *n) {
    int src = tensor_entry(b, n->in[0]);
    if (src < 0) return b->err->status;
    msv_view vs;
    if (!md_to_view(b->p->entries[src].md, &vs)) {
        dnnl_memory_desc_t plain = md_nchw(b->shapes[n->in[0]]);
        src = converted(b, src, plain);
        dnnl_memory_desc_destroy(plain);
        if (src < 0 || !md_to_view(b->p->entries[src].md, &vs))
            return msv_set_error(b->err, MSV_ERR_BACKEND, "cannot view a tensor for a C kernel");
    }
    dnnl_memory_desc_t ymd = md_like(&vs, b->shapes[n->out]);
    msv_view vd;
    if (!ymd || !md_to_view(ymd, &vd)) {
        dnnl_memory_desc_destroy(ymd);
        return msv_set_error(b->err, MSV_ERR_BACKEND, "cannot lay out a C kernel result");
    }
    int out = new_entry(b, E_ARENA, ymd);
    if (out < 0) return b->err->status;
    b->p->tensor_entry[n->out] = out;
    step *st = new_step(b);
    if (!st) return b->err->status;
    b->p->entries[out].def = b->p->n_steps - 1;
    st->is_kernel = 1;
    snprintf(st->what, sizeof st->what, "C kernel op %d", (int)n->op);
    st->node = n;
    st->src = src;
    st->dst = out;
    st->vsrc = vs;
    st->vdst = vd;
    st->scale = n->scale >= 0 ? b->g->tensors[n->scale].data : NULL;
    st->shift = n->shift >= 0 ? b->g->tensors[n->shift].data : NULL;
    use_entry(b, src);
    use_entry(b, out);
    if (verbose_plans()) fprintf(stderr, "msvision: plan step %d: C kernel for op %d\n", b->p->n_steps - 1, (int)n->op);
    return MSV_OK;
}

/* Places arena entries by liveness, first fit; returns the arena size. */
static int place_arena(plan *p, size_t *total) {
    int n = p->n_entries;
    int *live = malloc(sizeof(int) * (size_t)(n + 1));
    if (!live) return 0;
    int n_live = 0;
    size_t high = 0;
    for (int e = 0; e < n; e++) {
        entry *en = &p->entries[e];
        if (en->kind != E_ARENA) continue;
        /* drop blocks whose last use is before this entry's definition */
        int k = 0;
        for (int i = 0; i < n_live; i++)
            if (p->entries[live[i]].last >= en->def) live[k++] = live[i];
        n_live = k;
        size_t size = (en->bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        if (size == 0) size = ARENA_ALIGN;
        /* live[] is kept sorted by offset: find the first gap that fits */
        size_t at = 0;
        int pos = 0;
        for (; pos < n_live; pos++) {
            const entry *o = &p->entries[live[pos]];
            if ((size_t)o->offset >= at + size) break;
            size_t end = (size_t)o->offset + (o->bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
            if (end > at) at = end;
        }
        en->offset = (int64_t)at;
        memmove(&live[pos + 1], &live[pos], sizeof(int) * (size_t)(n_live - pos));
        live[pos] = e;
        n_live++;
        if (at + size > high) high = at + size;
    }
    free(live);
    *total = high;
    return 1;
}

static void plan_destroy(plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++)
        dnnl_primitive_destroy(p->steps[i].prim);
    for (int i = 0; i < p->n_entries; i++) {
        dnnl_memory_destroy(p->entries[i].mem);
        dnnl_memory_desc_destroy(p->entries[i].md);
    }
    free(p->steps);
    free(p->entries);
    free(p->tensor_entry);
    free(p);
}

static msv_status build_plan(msv_graph *g, struct msv_plan_cache *pc, const msv_shape *in_shapes, plan **out,
                             msv_error *err) {
    plan *p = calloc(1, sizeof(*p));
    msv_shape *shapes = malloc(sizeof(msv_shape) * (size_t)g->n_tensors);
    if (!p || !shapes) {
        free(p);
        free(shapes);
        return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    }
    msv_status st = msv_infer_all(g, in_shapes, shapes, err);
    p->tensor_entry = malloc(sizeof(int) * (size_t)g->n_tensors);
    if (st == MSV_OK && !p->tensor_entry) st = msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    builder b = {g, pc, p, shapes, err};
    if (st == MSV_OK) {
        for (int i = 0; i < g->n_tensors; i++)
            p->tensor_entry[i] = -1;
        p->n_inputs = g->n_inputs;
        for (int i = 0; i < g->n_inputs && st == MSV_OK; i++) {
            p->in_shapes[i] = in_shapes[i];
            int e = new_entry(&b, E_INPUT, md_nchw(in_shapes[i]));
            if (e < 0) {
                st = err->status;
                break;
            }
            p->entries[e].index = i;
            p->tensor_entry[g->inputs[i]] = e;
        }
    }
    for (int i = 0; i < g->n_nodes && st == MSV_OK; i++) {
        const msv_node *n = &g->nodes[i];
        if (n->fused_away) continue;
        switch (n->op) {
        case MSV_OP_CONV:
        case MSV_OP_DECONV:
        case MSV_OP_LINEAR: st = plan_conv(&b, n); break;
        case MSV_OP_LAYER_NORM:
        case MSV_OP_PAD:
        case MSV_OP_SLICE:
        case MSV_OP_PIXEL_SHUFFLE:
        case MSV_OP_PIXEL_UNSHUFFLE:
        case MSV_OP_SIMPLE_GATE:
        case MSV_OP_GROUP_NORM:
        case MSV_OP_RESIZE: st = plan_kernel_op(&b, n); break;
        default: st = plan_primitive_op(&b, n);
        }
    }
    for (int i = 0; i < g->n_outputs && st == MSV_OK; i++) { /* edge reorders into the caller's NCHW buffers */
        int src = p->tensor_entry[g->outputs[i]];
        dnnl_memory_desc_t want = md_nchw(shapes[g->outputs[i]]);
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, p->entries[src].md, g_engine, want, g_engine, NULL);
        if (s != dnnl_success) {
            dnnl_memory_desc_destroy(want);
            st = dnnl_fail(err, s, "create the output reorder");
            break;
        }
        int e = new_entry(&b, E_OUTPUT, want);
        if (e < 0) {
            dnnl_primitive_desc_destroy(pd);
            st = err->status;
            break;
        }
        p->entries[e].index = i;
        step *stp = add_primitive_step(&b, pd, "output reorder");
        if (!stp) {
            st = err->status;
            break;
        }
        add_arg(&b, stp, DNNL_ARG_FROM, src);
        add_arg(&b, stp, DNNL_ARG_TO, e);
    }
    if (st == MSV_OK && !place_arena(p, &p->arena_bytes))
        st = msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    for (int i = 0; i < p->n_entries && st == MSV_OK; i++) {
        dnnl_status_t s = dnnl_memory_create(&p->entries[i].mem, p->entries[i].md, g_engine,
                                             p->entries[i].kind == E_FIXED ? p->entries[i].fixed : DNNL_MEMORY_NONE);
        if (s != dnnl_success) st = dnnl_fail(err, s, "create a memory object");
    }
    for (int i = 0; i < p->n_steps && st == MSV_OK; i++) {
        step *s = &p->steps[i];
        for (int a = 0; a < s->nargs; a++)
            s->args[a] = (dnnl_exec_arg_t){s->arg_kind[a], p->entries[s->arg_entry[a]].mem};
    }
    free(shapes);
    if (st != MSV_OK) {
        plan_destroy(p);
        return st;
    }
    *out = p;
    return MSV_OK;
}

/* ------------------------------------------------------------------ running */

static int same_shapes(const plan *p, const msv_shape *s) {
    for (int i = 0; i < p->n_inputs; i++)
        if (memcmp(p->in_shapes[i].dims, s[i].dims, sizeof(int64_t) * 4) != 0) return 0;
    return 1;
}

void msv_plan_cache_destroy(struct msv_plan_cache *pc) {
    if (!pc) return;
    for (int i = 0; i < pc->n_plans; i++)
        plan_destroy(pc->plans[i]);
    for (int i = 0; i < pc->n_packed; i++) {
        free(pc->packed[i].buf);
        dnnl_memory_desc_destroy(pc->packed[i].md);
    }
    free(pc->packed);
    free(pc->arena);
    free(pc);
}

int64_t msv_backend_primitive_count(const struct msv_plan_cache *pc) { return pc ? pc->primitives_created : 0; }
int64_t msv_backend_arena_bytes(const struct msv_plan_cache *pc) { return pc ? (int64_t)pc->arena_bytes : 0; }

static void *entry_ptr(const plan *p, const entry *e, void *arena, const float *const *inputs, float *const *outputs) {
    switch (e->kind) {
    case E_ARENA: return (char *)arena + e->offset;
    case E_INPUT: return (void *)inputs[e->index];
    case E_OUTPUT: return outputs[e->index];
    case E_FIXED: return e->fixed;
    }
    (void)p;
    return NULL;
}

static void run_kernel(const step *s, void *src, void *dst) {
    msv_view x = s->vsrc, y = s->vdst;
    x.data = src;
    y.data = dst;
    const msv_node *n = s->node;
    switch (n->op) {
    case MSV_OP_LAYER_NORM: msv_kernel_layer_norm_channels(&x, &y, s->scale, s->shift, n->eps); break;
    case MSV_OP_SIMPLE_GATE: msv_kernel_simple_gate(&x, &y); break;
    case MSV_OP_GROUP_NORM: msv_kernel_group_norm(&x, &y, n->ints[0], s->scale, s->shift, n->eps); break;
    case MSV_OP_PAD: msv_kernel_pad(&x, &y, n->ints[0], n->ints[1], n->alpha); break;
    case MSV_OP_SLICE: msv_kernel_slice(&x, &y, n->ints[0], n->ints[2], n->ints[4]); break;
    case MSV_OP_PIXEL_SHUFFLE: msv_kernel_pixel_shuffle(&x, &y, n->ints[0]); break;
    case MSV_OP_PIXEL_UNSHUFFLE: msv_kernel_pixel_unshuffle(&x, &y, n->ints[0]); break;
    case MSV_OP_RESIZE:
        msv_kernel_resize(&x, &y, n->alg, n->ints[0] ? 0 : n->floats[0], n->ints[0] ? 0 : n->floats[1]);
        break;
    default: break;
    }
}

/* A Winograd step: per chunk of tiles, input transform -> the step's matmul (V -> M) -> output transform. */
static msv_status run_winograd(const step *s, int index, int profile, void *src, void *dst, float *v, const float *m,
                               msv_error *err) {
    msv_view x = s->vsrc, y = s->vdst;
    x.data = src;
    y.data = dst;
    double phase_ms[3] = {0, 0, 0}; /* input transform, matmul, output transform (MSVISION_PROFILE) */
    for (int64_t first = 0; first < s->wino.n_tiles; first += s->wino_rows) {
        const int64_t count = s->wino.n_tiles - first < s->wino_rows ? s->wino.n_tiles - first : s->wino_rows;
        const double t1 = profile ? now_ms() : 0;
        msv_wino_transform_input(&x, &s->wino, first, count, s->wino_rows, v);
        const double t2 = profile ? now_ms() : 0;
        dnnl_status_t st = dnnl_primitive_execute(s->prim, g_stream, s->nargs, s->args);
        if (st != dnnl_success) return dnnl_fail(err, st, "execute a primitive");
        const double t3 = profile ? now_ms() : 0;
        msv_wino_transform_output(m, &s->wino, first, count, s->wino_rows, s->bias, s->relu, &y);
        if (profile) {
            phase_ms[0] += t2 - t1;
            phase_ms[1] += t3 - t2;
            phase_ms[2] += now_ms() - t3;
        }
    }
    if (profile)
        fprintf(stderr, "msvision: step %d winograd input %.3f ms, matmul %.3f ms, output %.3f ms\n", index,
                phase_ms[0], phase_ms[1], phase_ms[2]);
    return MSV_OK;
}

msv_status msv_backend_run(msv_graph *g, const msv_shape *in_shapes, const float *const *inputs, float *const *outputs,
                           msv_error *err) {
    pthread_once(&g_engine_once, engine_init);
    if (g_engine_status != dnnl_success) return dnnl_fail(err, g_engine_status, "create a CPU engine");
    if (!g->plans) {
        g->plans = calloc(1, sizeof(*g->plans));
        if (!g->plans) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    struct msv_plan_cache *pc = g->plans;
    plan *p = NULL;
    for (int i = 0; i < pc->n_plans; i++)
        if (same_shapes(pc->plans[i], in_shapes)) p = pc->plans[i];
    if (!p) {
        msv_status st = build_plan(g, pc, in_shapes, &p, err);
        if (st != MSV_OK) return st;
        if (pc->n_plans == MAX_PLANS) { /* evict the least recently used plan */
            int lru = 0;
            for (int i = 1; i < pc->n_plans; i++)
                if (pc->plans[i]->last_used < pc->plans[lru]->last_used) lru = i;
            plan_destroy(pc->plans[lru]);
            pc->plans[lru] = pc->plans[--pc->n_plans];
        }
        pc->plans[pc->n_plans++] = p;
    }
    p->last_used = ++pc->clock;
    if (p->arena_bytes > pc->arena_bytes) {
        free(pc->arena);
        pc->arena_bytes = 0;
        pc->arena = aligned_alloc(ARENA_ALIGN, p->arena_bytes);
        if (!pc->arena)
            return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory: %zu bytes of activations", p->arena_bytes);
        pc->arena_bytes = p->arena_bytes;
    }
    for (int i = 0; i < p->n_entries; i++) {
        entry *e = &p->entries[i];
        if (e->kind == E_FIXED || (e->kind == E_ARENA && p->bound_arena == pc->arena)) continue;
        dnnl_memory_set_data_handle(e->mem, entry_ptr(p, e, pc->arena, inputs, outputs));
    }
    p->bound_arena = pc->arena;
    const int profile = profiling();
    for (int i = 0; i < p->n_steps; i++) {
        const step *s = &p->steps[i];
        double t0 = profile ? now_ms() : 0;
        if (s->is_kernel) {
            run_kernel(s, entry_ptr(p, &p->entries[s->src], pc->arena, inputs, outputs),
                       entry_ptr(p, &p->entries[s->dst], pc->arena, inputs, outputs));
        } else if (s->is_wino) {
            msv_status st = run_winograd(s, i, profile, entry_ptr(p, &p->entries[s->src], pc->arena, inputs, outputs),
                                         entry_ptr(p, &p->entries[s->dst], pc->arena, inputs, outputs),
                                         entry_ptr(p, &p->entries[s->wino_v], pc->arena, inputs, outputs),
                                         entry_ptr(p, &p->entries[s->wino_m], pc->arena, inputs, outputs), err);
            if (st != MSV_OK) return st;
        } else {
            dnnl_status_t st = dnnl_primitive_execute(s->prim, g_stream, s->nargs, s->args);
            if (st != dnnl_success) return dnnl_fail(err, st, "execute a primitive");
        }
        if (profile) {
            dnnl_stream_wait(g_stream);
            fprintf(stderr, "msvision: step %d %.3f ms %s\n", i, now_ms() - t0, s->what);
        }
    }
    dnnl_status_t st = dnnl_stream_wait(g_stream);
    if (st != dnnl_success) return dnnl_fail(err, st, "finish the stream");
    return MSV_OK;
}
