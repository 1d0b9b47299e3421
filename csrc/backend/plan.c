/*
 * plan.c - building a plan for one set of input shapes, and executing it (see planner.h for the model).
 *
 *   - every node becomes steps through its op's planner (backend/ops/, dispatched by core/ops.def);
 *   - activations take the layouts oneDNN picks; a reorder is added only where a consumer cannot read its
 *     producer's layout (memoised: an input reordered once serves every consumer);
 *   - graph outputs are written straight into the caller's buffers when the producing step's layout is the
 *     caller's (no copy at that edge), else reordered into them;
 *   - arena blocks are placed by liveness (first fit); the session owns the arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "planner.h"

static const msv_planner_fn k_planners[MSV_OP_COUNT] = {
#define MSV_OP(kind, name, family) [MSV_OP_##kind] = msv_plan_##name,
#include "../core/ops.def"
#undef MSV_OP
};

/* ------------------------------------------------------------------ entries and steps */

int msv_pl_new_entry(msv_planner *pl, msv_entry_kind kind, dnnl_memory_desc_t md) {
    msv_plan *p = pl->p;
    if (!md) {
        msv_set_error(pl->err, MSV_ERR_BACKEND, "oneDNN could not describe a tensor");
        return -1;
    }
    if (p->n_entries == p->cap_entries) {
        int cap = p->cap_entries ? 2 * p->cap_entries : 256;
        msv_entry *es = realloc(p->entries, (size_t)cap * sizeof(*es));
        if (!es) {
            dnnl_memory_desc_destroy(md);
            msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
            return -1;
        }
        p->entries = es;
        p->cap_entries = cap;
    }
    msv_entry *e = &p->entries[p->n_entries];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->md = md;
    e->bytes = dnnl_memory_desc_get_size(md);
    e->def = e->last = p->n_steps; /* defined by the step about to be added */
    return p->n_entries++;
}

/* Step pointers stay valid until the next step is added. */
static msv_step *new_step(msv_planner *pl, const msv_node *n, const char *what) {
    msv_plan *p = pl->p;
    if (p->n_steps == p->cap_steps) {
        int cap = p->cap_steps ? 2 * p->cap_steps : 256;
        msv_step *ss = realloc(p->steps, (size_t)cap * sizeof(*ss));
        if (!ss) {
            msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
            return NULL;
        }
        p->steps = ss;
        p->cap_steps = cap;
    }
    msv_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->node = n;
    if (n)
        snprintf(s->what, sizeof s->what, "%s: %s", msv_op_name(n->kind), what);
    else
        snprintf(s->what, sizeof s->what, "%s", what);
    return s;
}

static void use_entry(msv_planner *pl, int e) {
    msv_entry *en = &pl->p->entries[e];
    if (en->last < pl->p->n_steps - 1) en->last = pl->p->n_steps - 1;
}

void msv_pl_arg(msv_planner *pl, msv_step *s, int dnnl_arg, int e) {
    s->arg_kind[s->nargs] = dnnl_arg;
    s->arg_entry[s->nargs] = e;
    s->nargs++;
    use_entry(pl, e);
}

int msv_pl_output(msv_planner *pl, const msv_node *n, const_dnnl_memory_desc_t md) {
    int e = msv_pl_new_entry(pl, MSV_E_ARENA, msv_md_clone(md));
    if (e >= 0) {
        pl->p->tensor_entry[n->out] = e;
        pl->p->entries[e].defined_by_step = 1;
    }
    return e;
}

static void verbose_step(const msv_planner *pl, const msv_step *s) {
    if (pl->env->verbose) fprintf(stderr, "msvision: plan step %d: %s\n", pl->p->n_steps - 1, s->what);
}

msv_step *msv_pl_primitive(msv_planner *pl, dnnl_primitive_desc_t pd, const msv_node *n, const char *what) {
    dnnl_primitive_t prim = NULL;
    dnnl_status_t st = dnnl_primitive_create(&prim, pd);
    if (st != dnnl_success) {
        msv_dnnl_fail(pl->err, st, what);
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    pl->primitives_created++;
    char src[32] = "-", dst[32] = "-", label[96];
    const_dnnl_memory_desc_t smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (smd) msv_describe_md(src, sizeof src, smd);
    if (dmd) msv_describe_md(dst, sizeof dst, dmd);
    snprintf(label, sizeof label, "%s%s%s [%s -> %s]", what, *what ? " " : "", msv_impl_name(pd), src, dst);
    const_dnnl_memory_desc_t scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const size_t scratch_bytes = scratch ? dnnl_memory_desc_get_size(scratch) : 0;
    int scratch_entry = -1;
    if (scratch_bytes > 0) scratch_entry = msv_pl_new_entry(pl, MSV_E_ARENA, msv_md_clone(scratch));
    dnnl_primitive_desc_destroy(pd);
    msv_step *s = scratch_bytes > 0 && scratch_entry < 0 ? NULL : new_step(pl, n, label);
    if (!s) {
        dnnl_primitive_destroy(prim);
        return NULL;
    }
    s->prim = prim;
    if (scratch_entry >= 0) msv_pl_arg(pl, s, DNNL_ARG_SCRATCHPAD, scratch_entry); /* live during this step only */
    verbose_step(pl, s);
    return s;
}

msv_step *msv_pl_kernel(msv_planner *pl, msv_step_run run, const msv_node *n, const char *what) {
    char label[96];
    snprintf(label, sizeof label, *what ? "C kernel (%s)" : "C kernel", what);
    msv_step *s = new_step(pl, n, label);
    if (s) {
        s->run = run;
        verbose_step(pl, s);
    }
    return s;
}

int msv_pl_kernel_view(msv_planner *pl, msv_step *s, int e, const msv_view *v) {
    const int i = s->n_views++;
    s->view_entry[i] = e;
    s->views[i] = *v;
    use_entry(pl, e);
    return i;
}

int msv_pl_converted(msv_planner *pl, int e, const_dnnl_memory_desc_t want) {
    msv_plan *p = pl->p;
    if (dnnl_memory_desc_equal(p->entries[e].md, want)) return e;
    for (int i = 0; i < p->n_conv; i++)
        if (p->conv_from[i] == e && dnnl_memory_desc_equal(p->entries[p->conv_to[i]].md, want)) return p->conv_to[i];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, p->entries[e].md, pl->engine, want, pl->engine, NULL);
    if (st != dnnl_success) {
        msv_dnnl_fail(pl->err, st, "create a reorder");
        return -1;
    }
    const int out = msv_pl_new_entry(pl, MSV_E_ARENA, msv_md_clone(want));
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        return -1;
    }
    msv_step *s = msv_pl_primitive(pl, pd, NULL, "reorder");
    if (!s) return -1;
    p->entries[out].def = p->n_steps - 1;
    p->entries[out].defined_by_step = 1;
    msv_pl_arg(pl, s, DNNL_ARG_FROM, e);
    msv_pl_arg(pl, s, DNNL_ARG_TO, out);
    if (p->n_conv < (int)(sizeof p->conv_from / sizeof p->conv_from[0])) {
        p->conv_from[p->n_conv] = e;
        p->conv_to[p->n_conv++] = out;
    }
    return out;
}

void msv_pl_defer(msv_planner *pl, const msv_node *n) { pl->deferred[n->out] = n; }

const msv_node *msv_pl_deferred(const msv_planner *pl, int t) {
    return pl->p->tensor_entry[t] < 0 ? pl->deferred[t] : NULL;
}

int msv_pl_entry(msv_planner *pl, int t) {
    msv_plan *p = pl->p;
    if (p->tensor_entry[t] >= 0) return p->tensor_entry[t];
    if (pl->deferred[t]) {
        const msv_node *n = pl->deferred[t];
        pl->deferred[t] = NULL;
        pl->materializing = 1;
        const msv_status st = k_planners[n->kind](pl, n);
        pl->materializing = 0;
        if (st != MSV_OK) return -1;
        if (p->tensor_entry[t] >= 0) return p->tensor_entry[t];
    }
    if (pl->g->tensors[t].kind == MSV_T_CONST) {
        const int e = msv_pl_new_entry(pl, MSV_E_FIXED, msv_md_plain(pl->g->shapes[t]));
        if (e >= 0) {
            p->entries[e].fixed = pl->g->tensors[t].data;
            p->entries[e].def = 0;
            p->tensor_entry[t] = e;
        }
        return e;
    }
    msv_set_error(pl->err, MSV_ERR_BACKEND, "tensor %d used before it is computed", t);
    return -1;
}

int msv_pl_view(msv_planner *pl, int t, msv_view *v) {
    int e = msv_pl_entry(pl, t);
    if (e < 0) return -1;
    if (msv_md_to_view(pl->p->entries[e].md, v)) return e;
    if (pl->shapes[t].ndims != 4) {
        msv_set_error(pl->err, MSV_ERR_UNSUPPORTED, "C kernels take 4-D tensors");
        return -1;
    }
    dnnl_memory_desc_t plain = msv_md_plain(pl->shapes[t]);
    if (!plain) {
        msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory describing a tensor");
        return -1;
    }
    e = msv_pl_converted(pl, e, plain);
    dnnl_memory_desc_destroy(plain);
    if (e >= 0 && !msv_md_to_view(pl->p->entries[e].md, v)) {
        msv_set_error(pl->err, MSV_ERR_BACKEND, "cannot view a tensor for a C kernel");
        return -1;
    }
    return e;
}

int msv_pl_packed_weights(msv_planner *pl, int tensor, msv_weight_form form, const_dnnl_memory_desc_t plain,
                          const void *data, const_dnnl_memory_desc_t want) {
    void *buf = msv_weight_store_find(pl->weights, tensor, form, want);
    if (!buf) {
        const size_t bytes = dnnl_memory_desc_get_size(want);
        buf = aligned_alloc(MSV_ARENA_ALIGN, (bytes + MSV_ARENA_ALIGN - 1) / MSV_ARENA_ALIGN * MSV_ARENA_ALIGN);
        if (!buf) {
            msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory packing weights");
            return -1;
        }
        dnnl_memory_t src = NULL, dst = NULL;
        dnnl_primitive_desc_t pd = NULL;
        dnnl_primitive_t prim = NULL;
        dnnl_stream_t stream = NULL;
        dnnl_status_t st = dnnl_memory_create(&src, plain, pl->engine, (void *)data);
        if (st == dnnl_success) st = dnnl_memory_create(&dst, want, pl->engine, buf);
        if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, plain, pl->engine, want, pl->engine, NULL);
        if (st == dnnl_success) st = dnnl_primitive_create(&prim, pd);
        if (st == dnnl_success) st = dnnl_stream_create(&stream, pl->engine, dnnl_stream_default_flags);
        if (st == dnnl_success) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
            st = dnnl_primitive_execute(prim, stream, 2, args);
            if (st == dnnl_success) st = dnnl_stream_wait(stream);
        }
        dnnl_stream_destroy(stream);
        dnnl_primitive_destroy(prim);
        dnnl_primitive_desc_destroy(pd);
        dnnl_memory_destroy(src);
        dnnl_memory_destroy(dst);
        if (st != dnnl_success) {
            free(buf);
            msv_dnnl_fail(pl->err, st, "pack weights");
            return -1;
        }
        if (pl->env->verbose)
            fprintf(stderr, "msvision: packed the weights of tensor %d (%zu bytes)\n", tensor,
                    dnnl_memory_desc_get_size(want));
        buf = msv_weight_store_add(pl->weights, tensor, form, want, buf);
        if (!buf) {
            msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory packing weights");
            return -1;
        }
    }
    const int e = msv_pl_new_entry(pl, MSV_E_FIXED, msv_md_clone(want));
    if (e >= 0) {
        pl->p->entries[e].fixed = buf;
        pl->p->entries[e].def = 0;
    }
    return e;
}

/* ------------------------------------------------------------------ post-ops */

/* A PReLU slope constant as a fixed (1, len, 1, 1) entry: what oneDNN's prelu post-op reads. */
static int slope_entry(msv_planner *pl, int tensor) {
    const int64_t len = msv_numel(pl->g->shapes[tensor]);
    const int e = msv_pl_new_entry(pl, MSV_E_FIXED, msv_md(4, (int64_t[]){1, len, 1, 1}, dnnl_nchw));
    if (e >= 0) {
        pl->p->entries[e].fixed = pl->g->tensors[tensor].data;
        pl->p->entries[e].def = 0;
    }
    return e;
}

int msv_pl_post_op_operands(msv_planner *pl, const msv_node *n, int *operand_entries) {
    for (int k = 0; k < n->n_post; k++) {
        const msv_post_op *op = &n->post[k];
        operand_entries[k] = -1;
        if (op->kind == MSV_POST_BINARY) operand_entries[k] = msv_pl_entry(pl, op->tensor);
        if (op->kind == MSV_POST_PRELU) operand_entries[k] = slope_entry(pl, op->tensor);
        if (op->kind != MSV_POST_ELTWISE && operand_entries[k] < 0) return 0;
    }
    return 1;
}

int msv_pl_post_ops(msv_planner *pl, const msv_node *n, dnnl_primitive_attr_t attr, const int *operand_entries) {
    if (n->n_post == 0) return 1;
    dnnl_post_ops_t po = NULL;
    if (dnnl_post_ops_create(&po) != dnnl_success) return 0;
    for (int k = 0; k < n->n_post; k++) {
        const msv_post_op *op = &n->post[k];
        if (op->kind == MSV_POST_ELTWISE) {
            float alpha = op->eltwise.alpha, beta = op->eltwise.beta;
            const dnnl_alg_kind_t alg = msv_eltwise_alg(op->eltwise.act, &alpha, &beta);
            dnnl_post_ops_append_eltwise(po, alg, alpha, beta);
        } else if (op->kind == MSV_POST_PRELU) {
            dnnl_post_ops_append_prelu(po, msv_numel(pl->g->shapes[op->tensor]) > 1 ? 1 << 1 : 0);
        } else {
            dnnl_post_ops_append_binary(po, msv_binary_alg(op->op), pl->p->entries[operand_entries[k]].md);
        }
    }
    const int ok = dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    dnnl_post_ops_destroy(po);
    return ok;
}

void msv_pl_post_op_args(msv_planner *pl, msv_step *s, const msv_node *n, const int *operand_entries) {
    for (int k = 0; k < n->n_post; k++) {
        if (operand_entries[k] < 0) continue;
        const int arg = n->post[k].kind == MSV_POST_PRELU ? DNNL_ARG_WEIGHTS : DNNL_ARG_SRC_1;
        msv_pl_arg(pl, s, DNNL_ARG_ATTR_MULTIPLE_POST_OP(k) | arg, operand_entries[k]);
    }
}

typedef struct post_ops_state {
    int n;
    msv_kernel_post ops[MSV_MAX_POST_OPS];
    int operand_view[MSV_MAX_POST_OPS]; /* view index of each operand (-1: none) */
} post_ops_state;

static msv_status run_post_ops(const msv_step *s, msv_exec *x) {
    const post_ops_state *st = s->state;
    msv_kernel_post ops[MSV_MAX_POST_OPS];
    for (int k = 0; k < st->n; k++) {
        ops[k] = st->ops[k];
        if (st->operand_view[k] >= 0) ops[k].operand = msv_exec_view(x, s, st->operand_view[k]);
    }
    const msv_view y = msv_exec_view(x, s, 0);
    msv_kernel_post_ops(&y, &y, ops, st->n);
    return MSV_OK;
}

msv_status msv_pl_post_ops_kernel(msv_planner *pl, const msv_node *n, int first, int y) {
    post_ops_state *st = calloc(1, sizeof(*st));
    if (!st) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    msv_view operand_views[MSV_MAX_POST_OPS];
    int operand_entries[MSV_MAX_POST_OPS];
    msv_view vy;
    if (!msv_md_to_view(pl->p->entries[y].md, &vy)) {
        free(st);
        return msv_set_error(pl->err, MSV_ERR_BACKEND, "cannot view a result for its post-ops");
    }
    for (int k = first; k < n->n_post; k++) { /* operands first: viewing one may add a reorder step */
        const msv_post_op *op = &n->post[k];
        msv_kernel_post *kp = &st->ops[st->n];
        st->operand_view[st->n] = -1;
        kp->kind = op->kind == MSV_POST_ELTWISE  ? MSV_KPOST_ELTWISE
                   : op->kind == MSV_POST_BINARY ? MSV_KPOST_BINARY
                                                 : MSV_KPOST_PRELU;
        kp->act = op->eltwise.act;
        kp->alpha = op->eltwise.alpha;
        kp->beta = op->eltwise.beta;
        kp->op = op->op;
        operand_entries[st->n] = -1;
        if (op->kind == MSV_POST_BINARY) {
            operand_entries[st->n] = msv_pl_view(pl, op->tensor, &operand_views[st->n]);
        } else if (op->kind == MSV_POST_PRELU) {
            operand_entries[st->n] = slope_entry(pl, op->tensor);
            if (operand_entries[st->n] >= 0)
                msv_md_to_view(pl->p->entries[operand_entries[st->n]].md, &operand_views[st->n]);
        }
        if (op->kind != MSV_POST_ELTWISE && operand_entries[st->n] < 0) {
            free(st);
            return pl->err->status;
        }
        st->n++;
    }
    msv_step *s = msv_pl_kernel(pl, run_post_ops, n, "post-ops");
    if (!s) {
        free(st);
        return pl->err->status;
    }
    s->state = st;
    s->free_state = free;
    msv_pl_kernel_view(pl, s, y, &vy);
    for (int k = 0; k < st->n; k++)
        if (operand_entries[k] >= 0)
            st->operand_view[k] = msv_pl_kernel_view(pl, s, operand_entries[k], &operand_views[k]);
    return MSV_OK;
}

/* ------------------------------------------------------------------ helpers for op planners */

msv_status msv_pl_simple(msv_planner *pl, const msv_node *n, dnnl_status_t created, dnnl_primitive_desc_t pd,
                         const char *what, const int *src_entries, const int *src_args, int n_src,
                         const int *operand_entries) {
    if (created != dnnl_success) return msv_dnnl_fail(pl->err, created, what);
    const int out = msv_pl_output(pl, n, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        return pl->err->status;
    }
    msv_step *s = msv_pl_primitive(pl, pd, n, "");
    if (!s) return pl->err->status;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    for (int i = 0; i < n_src; i++)
        msv_pl_arg(pl, s, src_args[i], src_entries[i]);
    msv_pl_arg(pl, s, DNNL_ARG_DST, out);
    if (operand_entries) msv_pl_post_op_args(pl, s, n, operand_entries);
    return MSV_OK;
}

msv_status msv_pl_unary_kernel(msv_planner *pl, const msv_node *n, msv_step_run run, const char *what, void *state,
                               int src, const msv_view *vx, int out, const msv_view *vy) {
    msv_step *s = src >= 0 && out >= 0 ? msv_pl_kernel(pl, run, n, what) : NULL;
    if (!s) {
        free(state);
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    s->state = state;
    s->free_state = state ? free : NULL;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    msv_pl_kernel_view(pl, s, src, vx);
    msv_pl_kernel_view(pl, s, out, vy);
    return n->n_post ? msv_pl_post_ops_kernel(pl, n, 0, out) : MSV_OK;
}

int msv_pl_bf16_output(msv_planner *pl, const msv_node *n, const msv_view *vx, msv_view *vy) {
    const msv_shape ys = pl->shapes[n->out];
    if (!pl->env->bf16 || !pl->bf16_result[n->out] || n->n_post || ys.ndims != 4 || !msv_view_is_nhwc(vx)) return -1;
    dnnl_memory_desc_t md = msv_md_dt(4, ys.dims, dnnl_nhwc, dnnl_bf16);
    const int out = md ? msv_pl_output(pl, n, md) : -1;
    dnnl_memory_desc_destroy(md);
    if (out >= 0 && !msv_md_layout_view(pl->p->entries[out].md, vy)) {
        msv_set_error(pl->err, MSV_ERR_BACKEND, "cannot lay out a bf16 result");
        return -1;
    }
    if (out < 0 && pl->err->status == MSV_OK) msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    return out;
}

msv_status msv_pl_view_kernel(msv_planner *pl, const msv_node *n, msv_step_run run, const char *what, void *state) {
    msv_view vx, vy;
    const int src = msv_pl_view(pl, n->in[0], &vx);
    dnnl_memory_desc_t ymd = src >= 0 ? msv_md_like(&vx, pl->shapes[n->out]) : NULL;
    int out = ymd ? msv_pl_output(pl, n, ymd) : -1;
    dnnl_memory_desc_destroy(ymd);
    if (out >= 0 && !msv_md_to_view(pl->p->entries[out].md, &vy)) {
        msv_set_error(pl->err, MSV_ERR_BACKEND, "cannot lay out a C kernel result");
        out = -1;
    }
    return msv_pl_unary_kernel(pl, n, run, what, state, src, &vx, out, &vy);
}

static msv_view axis_view(msv_shape s, int axis) {
    msv_view v;
    memset(&v, 0, sizeof v);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= s.dims[d];
    for (int d = axis + 1; d < s.ndims; d++)
        inner *= s.dims[d];
    v.n = outer;
    v.c = v.c_padded = s.dims[axis];
    v.h = 1;
    v.w = inner;
    v.block = 1;
    v.sn = s.dims[axis] * inner;
    v.scb = inner;
    v.sh = 0;
    v.sw = 1;
    return v;
}

int msv_pl_axis_view(msv_planner *pl, int t, int axis, msv_view *v) {
    int e = msv_pl_entry(pl, t);
    dnnl_memory_desc_t plain = e >= 0 ? msv_md_plain(pl->shapes[t]) : NULL;
    if (plain) e = msv_pl_converted(pl, e, plain);
    dnnl_memory_desc_destroy(plain);
    *v = axis_view(pl->shapes[t], axis);
    return plain ? e : -1;
}

int msv_pl_axis_output(msv_planner *pl, const msv_node *n, int axis, msv_view *v) {
    dnnl_memory_desc_t md = msv_md_plain(pl->shapes[n->out]);
    const int e = md ? msv_pl_output(pl, n, md) : -1;
    dnnl_memory_desc_destroy(md);
    *v = axis_view(pl->shapes[n->out], axis);
    return e;
}

msv_status msv_pl_allow_ref(msv_planner *pl, const msv_node *n, const_dnnl_primitive_desc_t pd) {
    if (!pl->env->refuse_ref) return MSV_OK;
    return msv_set_error(pl->err, MSV_ERR_UNSUPPORTED,
                         "%s: only oneDNN's reference implementation (%s) runs this shape and layout, and "
                         "MSVISION_REFUSE_REF is set",
                         msv_op_name(n->kind), msv_impl_name(pd));
}

dnnl_format_tag_t msv_pl_preferred_tag(const msv_planner *pl, int64_t channels) {
    switch (pl->env->layout) {
    case MSV_PREFER_ANY: return dnnl_format_tag_any;
    case MSV_PREFER_BLOCKED: return channels % 16 == 0 ? dnnl_nChw16c : dnnl_format_tag_any;
    default: return dnnl_nhwc;
    }
}

/* ------------------------------------------------------------------ the plan */

/* Under bf16, whether node n's planner can write its result as bf16: a bf16 convolution, the layer_norm and
 * simple_gate C kernels (NHWC, no post-ops; msv_pl_bf16_output) and a per-channel multiply (binary.c; oneDNN 3.2's
 * binary primitive has no fp32 -> bf16 kernel). The planner decides: where its kernel does not apply (another
 * layout), it writes fp32, which every reader of a marked result also takes. */
static int may_write_bf16(const msv_planner *pl, const msv_node *n) {
    switch (n->kind) {
    case MSV_OP_CONV2D: return msv_conv_runs_bf16(pl, n);
    case MSV_OP_BINARY: return n->p.binary.op == MSV_BIN_MUL && n->n_post == 0 && pl->shapes[n->out].ndims == 4;
    case MSV_OP_LAYER_NORM:
        return n->n_post == 0 && pl->shapes[n->in[0]].ndims == 4 && n->p.norm.axis == 1 &&
               pl->shapes[n->in[0]].dims[1] <= MSV_BF16_LAYER_NORM_MAX_C;
    case MSV_OP_SIMPLE_GATE: return n->n_post == 0;
    default: return 0;
    }
}

/* Under bf16, the results every consumer of which reads bf16 (a bf16 convolution as its input or a post-op
 * operand; a simple_gate) and whose producer can write bf16: those are stored as bf16, halving the traffic. A
 * convolution rounds its input to bf16 anyway; a fused residual operand, and a gate's input, are rounded only
 * because they are stored so. Graph outputs stay fp32. */
static void mark_bf16_results(msv_planner *pl, unsigned char *bf16) {
    const msv_graph *g = pl->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const msv_node *n = &g->nodes[i];
        if (!n->fused_away && may_write_bf16(pl, n)) bf16[n->out] = 1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const msv_node *n = &g->nodes[i];
        if (n->fused_away) continue;
        const int conv = n->kind == MSV_OP_CONV2D && msv_conv_runs_bf16(pl, n);
        const int reads_bf16 = conv || n->kind == MSV_OP_SIMPLE_GATE; /* in[0] */
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && !(reads_bf16 && k == 0)) bf16[n->in[k]] = 0;
        for (int k = 0; k < n->n_post; k++)
            if (n->post[k].kind != MSV_POST_ELTWISE && !conv) bf16[n->post[k].tensor] = 0;
    }
    for (int i = 0; i < g->n_outputs; i++)
        bf16[g->outputs[i]] = 0;
}

/* Places arena entries by liveness, first fit; returns 0 when out of memory. */
static int place_arena(msv_plan *p) {
    const int n = p->n_entries;
    int *live = malloc(sizeof(int) * (size_t)(n + 1));
    if (!live) return 0;
    int n_live = 0;
    size_t high = 0;
    for (int e = 0; e < n; e++) {
        msv_entry *en = &p->entries[e];
        if (en->kind != MSV_E_ARENA) continue;
        int k = 0; /* drop blocks whose last use is before this entry's definition */
        for (int i = 0; i < n_live; i++)
            if (p->entries[live[i]].last >= en->def) live[k++] = live[i];
        n_live = k;
        size_t size = (en->bytes + MSV_ARENA_ALIGN - 1) / MSV_ARENA_ALIGN * MSV_ARENA_ALIGN;
        if (size == 0) size = MSV_ARENA_ALIGN;
        size_t at = 0; /* live[] is kept sorted by offset: find the first gap that fits */
        int pos = 0;
        for (; pos < n_live; pos++) {
            const msv_entry *o = &p->entries[live[pos]];
            if ((size_t)o->offset >= at + size) break;
            const size_t end = (size_t)o->offset + (o->bytes + MSV_ARENA_ALIGN - 1) / MSV_ARENA_ALIGN * MSV_ARENA_ALIGN;
            if (end > at) at = end;
        }
        en->offset = (int64_t)at;
        memmove(&live[pos + 1], &live[pos], sizeof(int) * (size_t)(n_live - pos));
        live[pos] = e;
        n_live++;
        if (at + size > high) high = at + size;
    }
    free(live);
    p->arena_bytes = high;
    return 1;
}

void msv_plan_destroy(msv_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) {
        dnnl_primitive_destroy(p->steps[i].prim);
        if (p->steps[i].free_state) p->steps[i].free_state(p->steps[i].state);
    }
    for (int i = 0; i < p->n_entries; i++) {
        dnnl_memory_destroy(p->entries[i].mem);
        dnnl_memory_desc_destroy(p->entries[i].md);
    }
    free(p->steps);
    free(p->entries);
    free(p->tensor_entry);
    free(p);
}

/* A 4-D shape given in the caller's layout as NCHW dims, and back. */
static msv_shape from_caller(msv_shape s, msv_layout layout) {
    if (layout == MSV_LAYOUT_NHWC && s.ndims == 4) return msv_shape4(s.dims[0], s.dims[3], s.dims[1], s.dims[2]);
    return s;
}

static msv_shape to_caller(msv_shape s, msv_layout layout) {
    if (layout == MSV_LAYOUT_NHWC && s.ndims == 4) return msv_shape4(s.dims[0], s.dims[2], s.dims[3], s.dims[1]);
    return s;
}

/* The md of a caller buffer holding a tensor of (NCHW) shape s. */
static dnnl_memory_desc_t caller_md(msv_shape s, msv_layout layout) {
    return layout == MSV_LAYOUT_NHWC && s.ndims == 4 ? msv_md_shape(s, dnnl_nhwc) : msv_md_plain(s);
}

/* Graph output i into the caller's buffer: the producing entry itself when its layout is the caller's and a step
 * writes it (no copy), else a reorder. */
static msv_status plan_output(msv_planner *pl, int i, msv_layout layout) {
    msv_plan *p = pl->p;
    const int t = pl->g->outputs[i];
    const int src = p->tensor_entry[t];
    if (src < 0) return msv_set_error(pl->err, MSV_ERR_BACKEND, "graph output %d was never computed", i);
    dnnl_memory_desc_t want = caller_md(pl->shapes[t], layout);
    if (!want) return msv_set_error(pl->err, MSV_ERR_BACKEND, "oneDNN could not describe an output");
    msv_entry *e = &p->entries[src];
    if (e->kind == MSV_E_ARENA && e->defined_by_step && dnnl_memory_desc_equal(e->md, want)) {
        e->kind = MSV_E_OUTPUT;
        e->index = i;
        dnnl_memory_desc_destroy(want);
        return MSV_OK;
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, e->md, pl->engine, want, pl->engine, NULL);
    if (st != dnnl_success) {
        dnnl_memory_desc_destroy(want);
        return msv_dnnl_fail(pl->err, st, "create the output reorder");
    }
    const int out = msv_pl_new_entry(pl, MSV_E_OUTPUT, want);
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        return pl->err->status;
    }
    p->entries[out].index = i;
    msv_step *s = msv_pl_primitive(pl, pd, NULL, "output reorder");
    if (!s) return pl->err->status;
    msv_pl_arg(pl, s, DNNL_ARG_FROM, src);
    msv_pl_arg(pl, s, DNNL_ARG_TO, out);
    return MSV_OK;
}

msv_status msv_plan_build(const msv_graph *g, msv_weight_store *weights, const msv_env *env, msv_layout io_layout,
                          const msv_shape *in_shapes, msv_plan **out, int64_t *primitives_created, msv_error *err) {
    msv_plan *p = calloc(1, sizeof(*p));
    msv_shape *shapes = malloc(sizeof(msv_shape) * (size_t)g->n_tensors);
    const msv_node **deferred = calloc((size_t)g->n_tensors, sizeof(*deferred));
    unsigned char *bf16_result = calloc((size_t)g->n_tensors, 1);
    msv_shape logical[MSV_MAX_GRAPH_INPUTS];
    msv_status st = MSV_OK;
    if (p) p->tensor_entry = malloc(sizeof(int) * (size_t)g->n_tensors);
    if (!p || !shapes || !deferred || !bf16_result || !p->tensor_entry) {
        msv_plan_destroy(p);
        free(shapes);
        free(deferred);
        free(bf16_result);
        return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    }
    p->profile = env->profile;
    msv_planner pl = {g, p, weights, shapes, env, msv_engine(err), 0, err, deferred, 0, bf16_result};
    if (!pl.engine) st = err->status;
    for (int i = 0; i < g->n_inputs && st == MSV_OK; i++) {
        const msv_shape want = g->shapes[g->inputs[i]];
        logical[i] = from_caller(in_shapes[i], io_layout);
        if (io_layout == MSV_LAYOUT_NHWC && want.ndims == 4 && in_shapes[i].ndims == 4 && want.dims[1] != MSV_DYNAMIC &&
            in_shapes[i].dims[3] != want.dims[1])
            st = msv_set_error(err, MSV_ERR_SHAPE, "input %d must be N x H x W x %lld", i, (long long)want.dims[1]);
    }
    if (st == MSV_OK) st = msv_infer_shapes(g, logical, shapes, err);
    if (st == MSV_OK && env->bf16) mark_bf16_results(&pl, bf16_result);
    for (int i = 0; i < g->n_tensors; i++)
        p->tensor_entry[i] = -1;
    p->n_inputs = g->n_inputs;
    p->n_outputs = g->n_outputs;
    for (int i = 0; i < g->n_inputs && st == MSV_OK; i++) {
        p->in_shapes[i] = in_shapes[i];
        const int e = msv_pl_new_entry(&pl, MSV_E_INPUT, caller_md(logical[i], io_layout));
        if (e < 0) {
            st = err->status;
            break;
        }
        p->entries[e].index = i;
        p->entries[e].def = 0;
        p->tensor_entry[g->inputs[i]] = e;
    }
    for (int i = 0; i < g->n_nodes && st == MSV_OK; i++) {
        const msv_node *n = &g->nodes[i];
        if (!n->fused_away) st = k_planners[n->kind](&pl, n);
    }
    for (int i = 0; i < g->n_outputs && st == MSV_OK; i++) {
        st = plan_output(&pl, i, io_layout);
        p->out_shapes[i] = to_caller(shapes[g->outputs[i]], io_layout);
    }
    if (st == MSV_OK && !place_arena(p)) st = msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    for (int i = 0; i < p->n_entries && st == MSV_OK; i++) {
        msv_entry *e = &p->entries[i];
        dnnl_status_t s =
            dnnl_memory_create(&e->mem, e->md, pl.engine, e->kind == MSV_E_FIXED ? e->fixed : DNNL_MEMORY_NONE);
        if (s != dnnl_success) st = msv_dnnl_fail(err, s, "create a memory object");
    }
    for (int i = 0; i < p->n_steps && st == MSV_OK; i++) {
        msv_step *s = &p->steps[i];
        for (int a = 0; a < s->nargs; a++)
            s->args[a] = (dnnl_exec_arg_t){s->arg_kind[a], p->entries[s->arg_entry[a]].mem};
    }
    free(shapes);
    free(deferred);
    free(bf16_result);
    *primitives_created += pl.primitives_created;
    if (st != MSV_OK) {
        msv_plan_destroy(p);
        return st;
    }
    *out = p;
    return MSV_OK;
}

/* ------------------------------------------------------------------ running */

void *msv_exec_ptr(const msv_exec *x, int entry) {
    const msv_entry *e = &x->plan->entries[entry];
    switch (e->kind) {
    case MSV_E_ARENA: return (char *)x->arena + e->offset;
    case MSV_E_INPUT: return (void *)x->inputs[e->index];
    case MSV_E_OUTPUT: return x->outputs[e->index];
    case MSV_E_FIXED: return e->fixed;
    }
    return NULL;
}

msv_view msv_exec_view(const msv_exec *x, const msv_step *s, int i) {
    msv_view v = s->views[i];
    v.data = msv_exec_ptr(x, s->view_entry[i]);
    return v;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

msv_status msv_plan_execute(msv_plan *p, void *arena, const float *const *inputs, float *const *outputs,
                            dnnl_stream_t stream, msv_error *err) {
    msv_exec x = {p, arena, inputs, outputs, stream, p->profile, 0, err};
    for (int i = 0; i < p->n_entries; i++) {
        msv_entry *e = &p->entries[i];
        if (e->kind == MSV_E_FIXED || (e->kind == MSV_E_ARENA && p->bound_arena == arena)) continue;
        dnnl_memory_set_data_handle(e->mem, msv_exec_ptr(&x, i));
    }
    p->bound_arena = arena;
    for (int i = 0; i < p->n_steps; i++) {
        const msv_step *s = &p->steps[i];
        const double t0 = x.profile ? now_ms() : 0;
        x.step = i;
        if (s->run) {
            msv_status st = s->run(s, &x);
            if (st != MSV_OK) return st;
        } else {
            dnnl_status_t st = dnnl_primitive_execute(s->prim, stream, s->nargs, s->args);
            if (st != dnnl_success) return msv_dnnl_fail(err, st, "execute a primitive");
        }
        if (x.profile) {
            dnnl_stream_wait(stream);
            fprintf(stderr, "msvision: step %d %.3f ms %s\n", i, now_ms() - t0, s->what);
        }
    }
    dnnl_status_t st = dnnl_stream_wait(stream);
    return st == dnnl_success ? MSV_OK : msv_dnnl_fail(err, st, "finish the stream");
}
