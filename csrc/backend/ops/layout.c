/* layout.c - planners of concat (oneDNN; a C kernel where oneDNN has only its reference one), pad, slice and the
 * pixel shuffles (C kernels). */
#include <stdlib.h>
#include <string.h>

#include "../planner.h"

typedef struct concat_state {
    int n_in, axis;
} concat_state;

static msv_status run_concat(const msv_step *s, msv_exec *x) {
    const concat_state *st = s->state;
    const msv_view y = msv_exec_view(x, s, st->n_in);
    int64_t at = 0;
    for (int i = 0; i < st->n_in; i++) {
        const msv_view a = msv_exec_view(x, s, i);
        const int64_t off[4] = {st->axis == 0 ? at : 0, st->axis == 1 ? at : 0, st->axis == 2 ? at : 0,
                                st->axis == 3 ? at : 0};
        msv_kernel_copy_into(&a, &y, off[0], off[1], off[2], off[3]);
        at += st->axis == 0 ? a.n : st->axis == 1 ? a.c : st->axis == 2 ? a.h : a.w;
    }
    return MSV_OK;
}

/* 4-D concatenation as copies into an NHWC result, for inputs oneDNN would concatenate on its reference kernel
 * (channel counts such as 3 + 1, or layouts that differ). */
static msv_status plan_concat_kernel(msv_planner *pl, const msv_node *n) {
    msv_view views[MSV_MAX_INPUTS + 1];
    int entries[MSV_MAX_INPUTS + 1];
    for (int i = 0; i < n->n_in; i++) {
        entries[i] = msv_pl_view(pl, n->in[i], &views[i]);
        if (entries[i] < 0) return pl->err->status;
    }
    dnnl_memory_desc_t ymd = msv_md(4, pl->shapes[n->out].dims, dnnl_nhwc);
    const int out = ymd ? msv_pl_output(pl, n, ymd) : -1;
    dnnl_memory_desc_destroy(ymd);
    if (out < 0 || !msv_md_to_view(pl->p->entries[out].md, &views[n->n_in]))
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_BACKEND, "cannot lay out concat");
    concat_state *state = malloc(sizeof *state);
    msv_step *s = state ? msv_pl_kernel(pl, run_concat, n, "") : NULL;
    if (!s) {
        free(state);
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    *state = (concat_state){.n_in = n->n_in, .axis = n->p.concat.axis};
    s->state = state;
    s->free_state = free;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    for (int i = 0; i < n->n_in; i++)
        msv_pl_kernel_view(pl, s, entries[i], &views[i]);
    msv_pl_kernel_view(pl, s, out, &views[n->n_in]);
    return n->n_post ? msv_pl_post_ops_kernel(pl, n, 0, out) : MSV_OK;
}

/* Whether concat n can be left to its consumers: a channel concat of 4-D tensors, not a graph output, read only
 * as the input of convolutions that take it in place (Winograd ones, which transform each input into its range
 * of channels: the concatenated tensor is never written). */
static int read_in_place(const msv_planner *pl, const msv_node *n) {
    const msv_graph *g = pl->g;
    const int t = n->out;
    _Static_assert(MSV_MAX_INPUTS + 2 <= MSV_MAX_STEP_VIEWS, "a Winograd step views every input, y and a residual");
    if (pl->materializing || n->p.concat.axis != 1 || pl->shapes[t].ndims != 4) return 0;
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == t) return 0;
    for (int i = 0; i < n->n_in; i++)
        if (pl->shapes[n->in[i]].ndims != 4 || pl->shapes[n->in[i]].dims[1] % 16) return 0; /* the transform's runs */
    int consumers = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const msv_node *c = &g->nodes[i];
        if (c->fused_away || c == n) continue;
        int reads = 0;
        for (int k = 0; k < c->n_in; k++)
            reads += c->in[k] == t;
        for (int k = 0; k < c->n_post; k++)
            reads += c->post[k].kind != MSV_POST_ELTWISE && c->post[k].tensor == t;
        if (!reads) continue;
        if (reads != 1 || c->kind != MSV_OP_CONV2D || c->in[0] != t || !msv_conv_reads_concat_in_place(pl, c)) return 0;
        consumers++;
    }
    return consumers > 0;
}

msv_status msv_plan_concat(msv_planner *pl, const msv_node *n) {
    if (read_in_place(pl, n)) {
        msv_pl_defer(pl, n);
        return MSV_OK;
    }
    const msv_shape ys = pl->shapes[n->out];
    const_dnnl_memory_desc_t mds[MSV_MAX_INPUTS];
    int entries[MSV_MAX_INPUTS], args[MSV_MAX_INPUTS];
    for (int i = 0; i < n->n_in; i++) {
        entries[i] = msv_pl_entry(pl, n->in[i]);
        if (entries[i] < 0) return pl->err->status;
        mds[i] = pl->p->entries[entries[i]].md;
        args[i] = DNNL_ARG_MULTIPLE_SRC + i;
    }
    dnnl_memory_desc_t dany = msv_md(ys.ndims, ys.dims, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = msv_new_attr();
    msv_status st;
    if (!dany || !attr) {
        st = msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    } else {
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t s =
            dnnl_concat_primitive_desc_create(&pd, pl->engine, dany, n->n_in, n->p.concat.axis, mds, attr);
        if (s == dnnl_success && msv_is_ref(pd) && ys.ndims == 4) {
            dnnl_primitive_desc_destroy(pd);
            dnnl_memory_desc_destroy(dany);
            dnnl_primitive_attr_destroy(attr);
            return plan_concat_kernel(pl, n);
        }
        st = s == dnnl_success && msv_is_ref(pd) ? msv_pl_allow_ref(pl, n, pd) : MSV_OK;
        if (st == MSV_OK)
            st = msv_pl_simple(pl, n, s, pd, "concat", entries, args, n->n_in, NULL);
        else
            dnnl_primitive_desc_destroy(pd);
    }
    dnnl_memory_desc_destroy(dany);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static msv_status run_pad(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const msv_pad_params *p = &s->node->p.pad;
    msv_kernel_pad(&a, &y, p->top, p->left, p->value, p->mode);
    return MSV_OK;
}

msv_status msv_plan_pad(msv_planner *pl, const msv_node *n) { return msv_pl_view_kernel(pl, n, run_pad, "", NULL); }

static msv_status run_slice(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const int64_t *b = s->node->p.slice.begin;
    msv_kernel_slice(&a, &y, b[0], b[1], b[2], b[3]);
    return MSV_OK;
}

typedef struct slice_plain_state {
    int rank;
    int64_t xdims[MSV_MAX_DIMS], ydims[MSV_MAX_DIMS];
} slice_plain_state;

static msv_status run_slice_plain(const msv_step *s, msv_exec *x) {
    const slice_plain_state *st = s->state;
    msv_kernel_slice_plain(msv_exec_ptr(x, s->view_entry[0]), st->xdims, msv_exec_ptr(x, s->view_entry[1]), st->ydims,
                           s->node->p.slice.begin, st->rank);
    return MSV_OK;
}

msv_status msv_plan_slice(msv_planner *pl, const msv_node *n) {
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    if (xs.ndims == 4) return msv_pl_view_kernel(pl, n, run_slice, "", NULL);
    msv_view vx, vy; /* other ranks: row-major in and out (the views carry nothing but the entries) */
    slice_plain_state *st = calloc(1, sizeof(*st));
    if (!st) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    st->rank = xs.ndims;
    memcpy(st->xdims, xs.dims, sizeof st->xdims);
    memcpy(st->ydims, ys.dims, sizeof st->ydims);
    const int src = msv_pl_axis_view(pl, n->in[0], 0, &vx);
    const int out = src >= 0 ? msv_pl_axis_output(pl, n, 0, &vy) : -1;
    return msv_pl_unary_kernel(pl, n, run_slice_plain, "", st, src, &vx, out, &vy);
}

static msv_status run_pixel_shuffle(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    msv_kernel_pixel_shuffle(&a, &y, s->node->p.shuffle.factor);
    return MSV_OK;
}

static msv_status run_pixel_unshuffle(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    msv_kernel_pixel_unshuffle(&a, &y, s->node->p.shuffle.factor);
    return MSV_OK;
}

msv_status msv_plan_pixel_shuffle(msv_planner *pl, const msv_node *n) {
    return msv_pl_view_kernel(pl, n, run_pixel_shuffle, "", NULL);
}

msv_status msv_plan_pixel_unshuffle(msv_planner *pl, const msv_node *n) {
    return msv_pl_view_kernel(pl, n, run_pixel_unshuffle, "", NULL);
}
