/* common.c - helpers the shape rules share (graph.h). */
#include "../graph.h"

int msv_is_const(const msv_graph *g, int t) { return t >= 0 && t < g->n_tensors && g->tensors[t].kind == MSV_T_CONST; }

int msv_is_activation(const msv_graph *g, int t) {
    return t >= 0 && t < g->n_tensors && g->tensors[t].kind != MSV_T_CONST;
}

int64_t msv_numel(msv_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.ndims; i++) {
        if (s.dims[i] < 0) return MSV_DYNAMIC;
        if (s.dims[i] > 0 && n > INT64_MAX / s.dims[i]) return INT64_MAX;
        n *= s.dims[i];
    }
    return n;
}

msv_shape msv_shape4(int64_t n, int64_t c, int64_t h, int64_t w) { return (msv_shape){4, {n, c, h, w, 0}}; }

msv_status msv_check_vector(const msv_graph *g, int t, int64_t len, const char *what, msv_error *err) {
    if (t < 0) return MSV_OK;
    if (!msv_is_const(g, t) || (len >= 0 && msv_numel(g->shapes[t]) != len))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "%s must be a constant of %lld values", what,
                             (long long)len);
    return MSV_OK;
}

msv_window msv_conv_window(const msv_graph *g, const msv_node *n) {
    msv_window w = n->p.conv.win;
    const msv_shape ws = g->shapes[n->in[1]];
    w.kh = (int)ws.dims[2];
    w.kw = (int)ws.dims[3];
    return w;
}

#include <stdio.h>

#include "ops_util.h"

msv_status msv_need_activation(const msv_graph *g, const msv_node *n, int i, msv_error *err) {
    if (!msv_is_activation(g, n->in[i]))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "input %d needs an activation, not a constant", i);
    return MSV_OK;
}

msv_status msv_need_rank(const msv_graph *g, const msv_node *n, const msv_shape *shapes, int i, int rank,
                         msv_error *err) {
    msv_status st = msv_need_activation(g, n, i, err);
    if (st == MSV_OK && shapes[n->in[i]].ndims != rank)
        st = msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "input %d must have %d dimensions, it has %d", i, rank,
                           shapes[n->in[i]].ndims);
    return st;
}

static int in_range(int v, int lo) { return v >= lo && v <= MSV_MAX_WINDOW; }

msv_status msv_check_window(const msv_window *w, int with_kernel, msv_error *err) {
    if ((with_kernel && (!in_range(w->kh, 1) || !in_range(w->kw, 1))) || !in_range(w->sh, 1) || !in_range(w->sw, 1) ||
        !in_range(w->dh, 1) || !in_range(w->dw, 1) || !in_range(w->pad_t, 0) || !in_range(w->pad_l, 0) ||
        !in_range(w->pad_b, 0) || !in_range(w->pad_r, 0))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "invalid window parameters (kernel, stride and dilation 1..%d, padding 0..%d)",
                             MSV_MAX_WINDOW, MSV_MAX_WINDOW);
    return MSV_OK;
}

int64_t msv_window_out(int64_t in, int k, int stride, int pad0, int pad1, int dilation, int ceil_mode) {
    if (!msv_known(in)) return MSV_DYNAMIC;
    const int64_t span = (int64_t)dilation * (k - 1) + 1, padded = in + pad0 + pad1;
    if (padded < span) return 0;
    int64_t o = (ceil_mode ? padded - span + stride - 1 : padded - span) / stride + 1;
    if (ceil_mode && (o - 1) * stride >= in + pad0) o--; /* the last window must start inside the input */
    return o;
}
