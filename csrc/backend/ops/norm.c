/* norm.c - planners of layer_norm and group_norm (C kernels) and softmax (oneDNN, or the C kernel where oneDNN
 * has only its reference implementation). */
#include <stdlib.h>

#include "../planner.h"

static const float *const_data(const msv_planner *pl, int t) { return t >= 0 ? pl->g->tensors[t].data : NULL; }

static msv_status run_layer_norm(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const float *const *affine = s->state;
    msv_kernel_layer_norm_channels(&a, &y, affine[0], affine[1], s->node->p.norm.eps);
    return MSV_OK;
}

/* A kernel over the "channels" of views 0 -> 1: of any layout for a 4-D tensor normalised over axis 1, else of
 * the row-major layout viewed as (outer, axis, 1, inner). */
static msv_status plan_axis_kernel(msv_planner *pl, const msv_node *n, int axis, msv_step_run run, const char *what,
                                   void *state) {
    if (pl->shapes[n->in[0]].ndims == 4 && axis == 1) return msv_pl_view_kernel(pl, n, run, what, state);
    msv_view vx, vy;
    const int src = msv_pl_axis_view(pl, n->in[0], axis, &vx);
    const int out = src >= 0 ? msv_pl_axis_output(pl, n, axis, &vy) : -1;
    return msv_pl_unary_kernel(pl, n, run, what, state, src, &vx, out, &vy);
}

static msv_status run_layer_norm_bf16(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const float *const *affine = s->state;
    msv_kernel_layer_norm_nhwc_bf16(&a, &y, affine[0], affine[1], s->node->p.norm.eps);
    return MSV_OK;
}

msv_status msv_plan_layer_norm(msv_planner *pl, const msv_node *n) {
    const float **affine = malloc(2 * sizeof(float *));
    if (!affine) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    affine[0] = const_data(pl, n->in[1]);
    affine[1] = const_data(pl, n->in[2]);
    if (pl->env->bf16 && pl->bf16_result[n->out] && n->p.norm.axis == 1) { /* NHWC in, bf16 out */
        msv_view vx, vy;
        const int src = msv_pl_view(pl, n->in[0], &vx);
        const int out = src >= 0 ? msv_pl_bf16_output(pl, n, &vx, &vy) : -1;
        if (out >= 0) return msv_pl_unary_kernel(pl, n, run_layer_norm_bf16, "bf16 result", affine, src, &vx, out, &vy);
        if (pl->err->status != MSV_OK) {
            free(affine);
            return pl->err->status;
        }
    }
    return plan_axis_kernel(pl, n, n->p.norm.axis, run_layer_norm, "", affine);
}

static msv_status run_group_norm(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const float *const *affine = s->state;
    msv_kernel_group_norm(&a, &y, s->node->p.norm.groups, affine[0], affine[1], s->node->p.norm.eps);
    return MSV_OK;
}

msv_status msv_plan_group_norm(msv_planner *pl, const msv_node *n) {
    const float **affine = malloc(2 * sizeof(float *));
    if (!affine) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    affine[0] = const_data(pl, n->in[1]);
    affine[1] = const_data(pl, n->in[2]);
    return msv_pl_view_kernel(pl, n, run_group_norm, "", affine);
}

static msv_status run_softmax(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    msv_kernel_softmax_channels(&a, &y);
    return MSV_OK;
}

msv_status msv_plan_softmax(msv_planner *pl, const msv_node *n) {
    const msv_shape ys = pl->shapes[n->out];
    const int src = msv_pl_entry(pl, n->in[0]);
    dnnl_memory_desc_t dany = msv_md(ys.ndims, ys.dims, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = msv_new_attr();
    dnnl_primitive_desc_t pd = NULL;
    msv_status st;
    if (src < 0 || !dany || !attr) {
        st = pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
        dnnl_status_t s =
            dnnl_softmax_forward_primitive_desc_create(&pd, pl->engine, dnnl_forward_inference, dnnl_softmax_accurate,
                                                       pl->p->entries[src].md, dany, n->p.norm.axis, attr);
        if (s == dnnl_success && (msv_is_ref(pd) || pl->env->fallback_kernels)) { /* e.g. 2 channels of NCHW */
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
            st = plan_axis_kernel(pl, n, n->p.norm.axis, run_softmax, "", NULL);
        } else {
            st = msv_pl_simple(pl, n, s, pd, "softmax", &src, (int[]){DNNL_ARG_SRC}, 1, NULL);
            pd = NULL;
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_memory_desc_destroy(dany);
    dnnl_primitive_attr_destroy(attr);
    return st;
}
