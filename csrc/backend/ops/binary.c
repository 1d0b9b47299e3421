/* binary.c - planners of binary (a oneDNN primitive, or the C kernel where oneDNN has only its reference one)
 * and simple_gate (a C kernel). Operands keep their order, so sub and div need no care: a constant a has the
 * output's shape and is src0 (a plain fixed entry), b broadcasts against it as src1. */
#include <stdlib.h>
#include <string.h>

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

static msv_status run_channel_mul_bf16(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), b = msv_exec_view(x, s, 1), y = msv_exec_view(x, s, 2);
    msv_kernel_channel_mul_nhwc_bf16(&a, &b, &y);
    return MSV_OK;
}

/* Under bf16: a * b with b one value per (sample, channel), a an NHWC fp32 tensor, into a bf16 result plan.c marked
 * (oneDNN's binary primitive has no fp32 -> bf16 kernel): NAFNet's channel attention before its 1x1 convolution.
 * *planned stays 0 where that does not apply. */
static msv_status plan_channel_mul_bf16(msv_planner *pl, const msv_node *n, int *planned) {
    *planned = 0;
    const msv_shape as = pl->shapes[n->in[0]], bs = pl->shapes[n->in[1]], ys = pl->shapes[n->out];
    if (n->p.binary.op != MSV_BIN_MUL || n->n_post || ys.ndims != 4 || bs.ndims != 4 ||
        memcmp(as.dims, ys.dims, sizeof(int64_t) * 4) != 0 || bs.dims[0] != ys.dims[0] || bs.dims[1] != ys.dims[1] ||
        bs.dims[2] != 1 || bs.dims[3] != 1)
        return MSV_OK;
    const int a = msv_pl_entry(pl, n->in[0]);
    msv_view va, vb, vy;
    if (a < 0) return pl->err->status;
    if (!msv_md_to_view(pl->p->entries[a].md, &va) || !msv_view_is_nhwc(&va)) return MSV_OK;
    const int b = msv_pl_view(pl, n->in[1], &vb);
    if (b < 0) return pl->err->status;
    if (vb.block > 1 ? vb.scb != vb.block : vb.scb != 1) return MSV_OK; /* its channels must be contiguous */
    const int out = msv_pl_bf16_output(pl, n, &va, &vy);
    if (out < 0) return pl->err->status;
    msv_step *s = msv_pl_kernel(pl, run_channel_mul_bf16, n, "channel multiply, bf16 result");
    if (!s) return pl->err->status;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    msv_pl_kernel_view(pl, s, a, &va);
    msv_pl_kernel_view(pl, s, b, &vb);
    msv_pl_kernel_view(pl, s, out, &vy);
    *planned = 1;
    return MSV_OK;
}

msv_status msv_plan_binary(msv_planner *pl, const msv_node *n) {
    const msv_shape ys = pl->shapes[n->out];
    if (pl->env->bf16 && pl->bf16_result[n->out]) {
        int planned;
        const msv_status st = plan_channel_mul_bf16(pl, n, &planned);
        if (st != MSV_OK || planned) return st;
    }
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

typedef struct gate_types {
    int x_bf16, y_bf16;
} gate_types;

static msv_status run_simple_gate_nhwc(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const gate_types *t = s->state;
    msv_kernel_simple_gate_nhwc(&a, t->x_bf16, &y, t->y_bf16);
    return MSV_OK;
}

/* Under bf16: an NHWC input (a bf16 convolution's bf16 result read as is) and a bf16 result where plan.c marked
 * it, else an NHWC fp32 one. *planned stays 0 when neither side is bf16 or the input is not NHWC. */
static msv_status plan_simple_gate_nhwc(msv_planner *pl, const msv_node *n, int *planned) {
    *planned = 0;
    int src = msv_pl_entry(pl, n->in[0]);
    if (src < 0) return pl->err->status;
    msv_view vx, vy;
    const int x_bf16 = msv_md_data_type(pl->p->entries[src].md) == dnnl_bf16;
    if (!x_bf16 && !pl->bf16_result[n->out]) return MSV_OK; /* fp32 in and out: the usual kernel */
    if (!(x_bf16 ? msv_md_layout_view(pl->p->entries[src].md, &vx) : msv_md_to_view(pl->p->entries[src].md, &vx)) ||
        !msv_view_is_nhwc(&vx))
        return MSV_OK;
    int out = msv_pl_bf16_output(pl, n, &vx, &vy);
    const int y_bf16 = out >= 0;
    if (out < 0 && pl->err->status != MSV_OK) return pl->err->status;
    if (out < 0) {
        dnnl_memory_desc_t md = msv_md(4, pl->shapes[n->out].dims, dnnl_nhwc);
        out = md ? msv_pl_output(pl, n, md) : -1;
        dnnl_memory_desc_destroy(md);
        if (out < 0 || !msv_md_to_view(pl->p->entries[out].md, &vy))
            return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    gate_types *t = malloc(sizeof *t);
    if (t)
        *t = (gate_types){x_bf16, y_bf16};
    else
        return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    *planned = 1;
    return msv_pl_unary_kernel(pl, n, run_simple_gate_nhwc, x_bf16 || y_bf16 ? "bf16" : "", t, src, &vx, out, &vy);
}

msv_status msv_plan_simple_gate(msv_planner *pl, const msv_node *n) {
    if (pl->env->bf16) {
        int planned;
        const msv_status st = plan_simple_gate_nhwc(pl, n, &planned);
        if (st != MSV_OK || planned) return st;
    }
    return msv_pl_view_kernel(pl, n, run_simple_gate, "", NULL);
}
