/* pool.c - planners of pool2d and global_avg_pool: oneDNN pooling on the producer's layout. */
#include "../planner.h"

static msv_status pooling(msv_planner *pl, const msv_node *n, dnnl_alg_kind_t alg, const int64_t *kernel,
                          const int64_t *stride, const int64_t *pad_l, const int64_t *pad_r) {
    const msv_shape ys = pl->shapes[n->out];
    const int src = msv_pl_entry(pl, n->in[0]);
    dnnl_memory_desc_t dany = msv_md(4, ys.dims, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = msv_new_attr();
    msv_status st;
    if (src < 0 || !dany || !attr) {
        st = pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
        dnnl_dims_t k = {kernel[0], kernel[1]}, s = {stride[0], stride[1]}, l = {pad_l[0], pad_l[1]},
                    r = {pad_r[0], pad_r[1]}, dil = {0, 0};
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t ds = dnnl_pooling_forward_primitive_desc_create(
            &pd, pl->engine, dnnl_forward_inference, alg, pl->p->entries[src].md, dany, s, k, dil, l, r, attr);
        st = ds == dnnl_success && msv_is_ref(pd) ? msv_pl_allow_ref(pl, n, pd) : MSV_OK;
        if (st == MSV_OK)
            st = msv_pl_simple(pl, n, ds, pd, "pooling", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
        else
            dnnl_primitive_desc_destroy(pd);
    }
    dnnl_memory_desc_destroy(dany);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

msv_status msv_plan_pool2d(msv_planner *pl, const msv_node *n) {
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    const msv_window *w = &n->p.pool.win;
    /* ceil_mode: extend the bottom/right padding so oneDNN produces PyTorch's output size */
    const int64_t pb = (ys.dims[2] - 1) * w->sh + w->kh - xs.dims[2] - w->pad_t;
    const int64_t pr = (ys.dims[3] - 1) * w->sw + w->kw - xs.dims[3] - w->pad_l;
    msv_pool_kind kind = n->p.pool.kind;
    if (kind == MSV_POOL_AVG_INCLUDE_PAD && (pb > w->pad_b || pr > w->pad_r)) {
        /* ceil-mode overhang: PyTorch counts the zero padding but not the overhang. Without padding that is
         * exclude-padding; with both, oneDNN cannot express it. */
        if (w->pad_t || w->pad_l || w->pad_b || w->pad_r)
            return msv_set_error(pl->err, MSV_ERR_UNSUPPORTED,
                                 "pool2d: average pooling with count_include_pad, ceil_mode and padding together (the "
                                 "last window overhangs the padded input)");
        kind = MSV_POOL_AVG_EXCLUDE_PAD;
    }
    const dnnl_alg_kind_t alg = kind == MSV_POOL_MAX               ? dnnl_pooling_max
                                : kind == MSV_POOL_AVG_INCLUDE_PAD ? dnnl_pooling_avg_include_padding
                                                                   : dnnl_pooling_avg_exclude_padding;
    return pooling(pl, n, alg, (int64_t[]){w->kh, w->kw}, (int64_t[]){w->sh, w->sw}, (int64_t[]){w->pad_t, w->pad_l},
                   (int64_t[]){pb, pr});
}

msv_status msv_plan_global_avg_pool(msv_planner *pl, const msv_node *n) {
    const msv_shape xs = pl->shapes[n->in[0]];
    return pooling(pl, n, dnnl_pooling_avg_exclude_padding, (int64_t[]){xs.dims[2], xs.dims[3]}, (int64_t[]){1, 1},
                   (int64_t[]){0, 0}, (int64_t[]){0, 0});
}
