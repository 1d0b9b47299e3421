/* pool.c - pool2d, global_avg_pool: signatures and shape rules. */
#include "ops_util.h"

static const char *const k_pools[] = {"max", "avg_include_pad", "avg_exclude_pad", NULL};
static const msv_pool_params pool_defaults = {.kind = MSV_POOL_MAX, .win = {.sh = 1, .sw = 1, .dh = 1, .dw = 1}};

const msv_signature msv_signature_pool2d = {
    .doc = "2-D pooling with PyTorch's output size: max, or average counting the zero padding "
           "(avg_include_pad, torch's count_include_pad=True) or not",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {ENUM_FIELD(msv_pool_params, kind, k_pools, "kind", "pooling kind"),
               FIELD(msv_pool_params, win.kh, MSV_FIELD_PAIR, "kernel", "window (h, w)"),
               FIELD(msv_pool_params, win.sh, MSV_FIELD_PAIR, "stride", "stride (h, w)"),
               FIELD(msv_pool_params, win.pad_t, MSV_FIELD_PADDING, "padding", "padding (top, left, bottom, right)"),
               FIELD(msv_pool_params, ceil_mode, MSV_FIELD_BOOL, "ceil_mode", "torch's ceil_mode")},
    .n_fields = 5,
    .params_size = sizeof(msv_pool_params),
    .defaults = &pool_defaults,
};

const msv_signature msv_signature_global_avg_pool = {
    .doc = "the mean over H and W: (N, C, 1, 1)",
    .inputs = {"x"},
    .n_inputs = 1,
};

msv_status msv_shape_pool2d(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                            msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st != MSV_OK) return st;
    const msv_pool_params *p = &n->p.pool;
    const msv_window *w = &p->win;
    if ((int)p->kind < 0 || p->kind >= MSV_POOL_COUNT)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "unknown pooling kind %d", (int)p->kind);
    st = msv_check_window(w, 1, err);
    if (st != MSV_OK) return st;
    if (w->dh != 1 || w->dw != 1)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "dilated pooling is not supported");
    if (w->pad_t * 2 > w->kh || w->pad_l * 2 > w->kw || w->pad_b * 2 > w->kh || w->pad_r * 2 > w->kw)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "pooling padding must be at most half the window");
    const msv_shape x = shapes[n->in[0]];
    const int64_t oh = msv_window_out(x.dims[2], w->kh, w->sh, w->pad_t, w->pad_b, 1, p->ceil_mode);
    const int64_t ow = msv_window_out(x.dims[3], w->kw, w->sw, w->pad_l, w->pad_r, 1, p->ceil_mode);
    if (oh == 0 || ow == 0) return msv_set_error(err, MSV_ERR_SHAPE, "input is smaller than the pooling window");
    *out = msv_shape4(x.dims[0], x.dims[1], oh, ow);
    return MSV_OK;
}

msv_status msv_shape_global_avg_pool(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                     msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    const msv_shape x = shapes[n->in[0]];
    *out = msv_shape4(x.dims[0], x.dims[1], 1, 1);
    return st;
}
