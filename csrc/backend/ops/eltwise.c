/* eltwise.c - planners of eltwise and prelu: oneDNN primitives on the producer's layout, the C post-op kernel
 * where oneDNN would run its reference implementation (prelu on small channel counts; an activation that does not
 * map 0 to 0, such as sigmoid, on a blocked layout whose channels are padded). */
#include <stdlib.h>

#include "../planner.h"

static msv_status run_post_op(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    msv_kernel_post_ops(&a, &y, s->state, 1);
    return MSV_OK;
}

static msv_status plan_eltwise_kernel(msv_planner *pl, const msv_node *n) {
    msv_kernel_post *op = calloc(1, sizeof(*op));
    if (!op) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    op->kind = MSV_KPOST_ELTWISE;
    op->act = n->p.eltwise.act;
    op->alpha = n->p.eltwise.alpha;
    op->beta = n->p.eltwise.beta;
    return msv_pl_view_kernel(pl, n, run_post_op, "", op);
}

static msv_status plan_prelu_kernel(msv_planner *pl, const msv_node *n) {
    msv_kernel_post *op = calloc(1, sizeof(*op));
    if (!op) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    op->kind = MSV_KPOST_PRELU;
    op->operand = (msv_view){.data = pl->g->tensors[n->in[1]].data,
                             .n = 1,
                             .c = msv_numel(pl->shapes[n->in[1]]),
                             .h = 1,
                             .w = 1,
                             .block = 1,
                             .scb = 1};
    op->operand.c_padded = op->operand.c;
    return msv_pl_view_kernel(pl, n, run_post_op, "", op);
}

msv_status msv_plan_eltwise(msv_planner *pl, const msv_node *n) {
    const int src = msv_pl_entry(pl, n->in[0]);
    dnnl_primitive_attr_t attr = msv_new_attr();
    if (src < 0 || !attr) {
        dnnl_primitive_attr_destroy(attr);
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    const_dnnl_memory_desc_t md = pl->p->entries[src].md;
    float alpha = n->p.eltwise.alpha, beta = n->p.eltwise.beta;
    const dnnl_alg_kind_t alg = msv_eltwise_alg(n->p.eltwise.act, &alpha, &beta);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_eltwise_forward_primitive_desc_create(&pd, pl->engine, dnnl_forward_inference, alg, md, md,
                                                                 alpha, beta, attr);
    dnnl_primitive_attr_destroy(attr);
    if (s == dnnl_success && msv_is_ref(pd) && pl->shapes[n->in[0]].ndims == 4) {
        dnnl_primitive_desc_destroy(pd);
        return plan_eltwise_kernel(pl, n);
    }
    msv_status st = s == dnnl_success && msv_is_ref(pd) ? msv_pl_allow_ref(pl, n, pd) : MSV_OK;
    if (st != MSV_OK) {
        dnnl_primitive_desc_destroy(pd);
        return st;
    }
    return msv_pl_simple(pl, n, s, pd, "eltwise", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
}

msv_status msv_plan_prelu(msv_planner *pl, const msv_node *n) {
    const int src = msv_pl_entry(pl, n->in[0]);
    const int64_t len = msv_numel(pl->shapes[n->in[1]]);
    const msv_shape xs = pl->shapes[n->in[0]];
    msv_shape ws = xs; /* slopes broadcast over every axis but 1 */
    for (int d = 0; d < ws.ndims; d++)
        ws.dims[d] = d == 1 ? len : 1;
    const int w = msv_pl_new_entry(pl, MSV_E_FIXED, msv_md_plain(ws));
    dnnl_memory_desc_t dany = msv_md(xs.ndims, xs.dims, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = msv_new_attr();
    msv_status st = MSV_OK;
    if (src < 0 || w < 0 || !dany || !attr) {
        st = pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
        pl->p->entries[w].fixed = pl->g->tensors[n->in[1]].data;
        pl->p->entries[w].def = 0;
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t s = dnnl_prelu_forward_primitive_desc_create(
            &pd, pl->engine, dnnl_forward_inference, pl->p->entries[src].md, pl->p->entries[w].md, dany, attr);
        if (s == dnnl_success && (msv_is_ref(pd) || pl->env->fallback_kernels) && xs.ndims == 4) {
            dnnl_primitive_desc_destroy(pd);
            st = plan_prelu_kernel(pl, n);
        } else {
            st = s == dnnl_success && msv_is_ref(pd) ? msv_pl_allow_ref(pl, n, pd) : MSV_OK;
            if (st == MSV_OK)
                st = msv_pl_simple(pl, n, s, pd, "prelu", (int[]){src, w}, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS}, 2,
                                   NULL);
            else
                dnnl_primitive_desc_destroy(pd);
        }
    }
    dnnl_memory_desc_destroy(dany);
    dnnl_primitive_attr_destroy(attr);
    return st;
}
