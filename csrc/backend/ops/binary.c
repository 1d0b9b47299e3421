/* binary.c - planners of binary (a oneDNN primitive, or the C kernel where oneDNN has only its reference one)
 * and simple_gate (a C kernel). Operands keep their order, so sub and div need no care: a constant a has the
 * output's shape and is src0 (a plain fixed entry), b broadcasts against it as src1. */
#include <stdlib.h>

#include "../planner.h"

static msv_status run_binary(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), b = msv_exec_view(x, s, 1), y = msv_exec_view(x, s, 2);
    msv_kernel_binary(&a, &b, &y, s->node->p.binary.op);
    return MSV_OK;
}

/* y = a (op) b on views (4-D), then the node's post-ops. */
static msv_status plan_binary_kernel(msv_planner *pl, const msv_node *n) {
    msv_view va, vb, vy;
    const int a = msv_pl_view(pl, n->in[0], &va);
    const int b = a >= 0 ? msv_pl_view(pl, n->in[1], &vb) : -1;
    dnnl_memory_desc_t ymd = b >= 0 ? msv_md_like(&va, pl->shapes[n->out]) : NULL;
    const int out = ymd ? msv_pl_output(pl, n, ymd) : -1;
    dnnl_memory_desc_destroy(ymd);
    msv_step *s = out >= 0 && msv_md_to_view(pl->p->entries[out].md, &vy) ? msv_pl_kernel(pl, run_binary, n, "") : NULL;
    if (!s)
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_BACKEND, "cannot plan a binary op");
    pl->p->entries[out].def = pl->p->n_steps - 1;
    msv_pl_kernel_view(pl, s, a, &va);
    msv_pl_kernel_view(pl, s, b, &vb);
    msv_pl_kernel_view(pl, s, out, &vy);
    return n->n_post ? msv_pl_post_ops_kernel(pl, n, 0, out) : MSV_OK;
}

msv_status msv_plan_binary(msv_planner *pl, const msv_node *n) {
    const msv_shape ys = pl->shapes[n->out];
    const int a = msv_pl_entry(pl, n->in[0]);
    const int b = a >= 0 ? msv_pl_entry(pl, n->in[1]) : -1;
    int operands[MSV_MAX_POST_OPS];
    dnnl_memory_desc_t dany = msv_md(ys.ndims, ys.dims, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = msv_new_attr();
    msv_status st = MSV_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_success;
    if (b < 0 || !dany || !attr || !msv_pl_post_op_operands(pl, n, operands) ||
        !msv_pl_post_ops(pl, n, attr, operands)) {
        st = pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_BACKEND, "planning a binary op failed");
    } else {
        s = dnnl_binary_primitive_desc_create(&pd, pl->engine, msv_binary_alg(n->p.binary.op), pl->p->entries[a].md,
                                              pl->p->entries[b].md, dany, attr);

        if (s == dnnl_success && (msv_is_ref(pd) || pl->env->fallback_kernels) && ys.ndims == 4) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
            st = plan_binary_kernel(pl, n);
        } else {
            st = s == dnnl_success && msv_is_ref(pd) ? msv_pl_allow_ref(pl, n, pd) : MSV_OK;
            if (st == MSV_OK) {
                st = msv_pl_simple(pl, n, s, pd, "binary", (int[]){a, b}, (int[]){DNNL_ARG_SRC_0, DNNL_ARG_SRC_1}, 2,
                                   operands);
                pd = NULL;
            }
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_memory_desc_destroy(dany);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static msv_status run_simple_gate(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    msv_kernel_simple_gate(&a, &y);
    return MSV_OK;
}

static msv_status run_simple_gate_bf16(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    msv_kernel_simple_gate_nhwc_bf16(&a, &y);
    return MSV_OK;
}

msv_status msv_plan_simple_gate(msv_planner *pl, const msv_node *n) {
    if (pl->env->bf16 && pl->bf16_result[n->out]) { /* NHWC in, bf16 out */
        msv_view vx, vy;
        const int src = msv_pl_view(pl, n->in[0], &vx);
        const int out = src >= 0 ? msv_pl_bf16_output(pl, n, &vx, &vy) : -1;
        if (out >= 0) return msv_pl_unary_kernel(pl, n, run_simple_gate_bf16, "bf16 result", NULL, src, &vx, out, &vy);
        if (pl->err->status != MSV_OK) return pl->err->status;
    }
    return msv_pl_view_kernel(pl, n, run_simple_gate, "", NULL);
}
