/* resize.c - planners of resize and resize_like: C kernels with PyTorch's sampling (kernels.c). */
#include "../planner.h"

static msv_status run_resize(const msv_step *s, msv_exec *x) {
    const msv_view a = msv_exec_view(x, s, 0), y = msv_exec_view(x, s, 1);
    const msv_resize_params *p = &s->node->p.resize;
    const int by_size = s->node->kind == MSV_OP_RESIZE && p->out_h > 0;
    msv_kernel_resize(&a, &y, p->mode, by_size ? 0 : p->scale_h, by_size ? 0 : p->scale_w);
    return MSV_OK;
}

msv_status msv_plan_resize(msv_planner *pl, const msv_node *n) {
    return msv_pl_view_kernel(pl, n, run_resize, "", NULL);
}

msv_status msv_plan_resize_like(msv_planner *pl, const msv_node *n) {
    return msv_pl_view_kernel(pl, n, run_resize, "", NULL);
}
