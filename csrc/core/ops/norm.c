/* norm.c - layer_norm, group_norm, softmax: signatures and shape rules. */
#include "ops_util.h"

static const msv_norm_params layer_norm_defaults = {.axis = 1, .groups = 1, .eps = 1e-5f};
static const msv_norm_params softmax_defaults = {.axis = 1};

const msv_signature msv_signature_layer_norm = {
    .doc = "LayerNorm over one axis (1: the channels of NCHW data, as NAFNet's LayerNorm2d): (x - mean) / "
           "sqrt(var + eps) * scale + shift, scale and shift constants of that axis's extent",
    .inputs = {"x", "scale?", "shift?"},
    .n_inputs = 3,
    .fields = {FIELD(msv_norm_params, axis, MSV_FIELD_INT, "axis", "the normalised axis"),
               FIELD(msv_norm_params, eps, MSV_FIELD_FLOAT, "eps", "added to the variance")},
    .n_fields = 2,
    .params_size = sizeof(msv_norm_params),
    .defaults = &layer_norm_defaults,
};

const msv_signature msv_signature_group_norm = {
    .doc = "GroupNorm: statistics over (C/groups, H, W) per sample and group; scale and shift (C) constants",
    .inputs = {"x", "scale?", "shift?"},
    .n_inputs = 3,
    .fields = {FIELD(msv_norm_params, groups, MSV_FIELD_INT, "groups", "channel groups"),
               FIELD(msv_norm_params, eps, MSV_FIELD_FLOAT, "eps", "added to the variance")},
    .n_fields = 2,
    .params_size = sizeof(msv_norm_params),
    .defaults = &layer_norm_defaults,
};

const msv_signature msv_signature_softmax = {
    .doc = "softmax over one axis (1: the channels of NCHW data)",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {FIELD(msv_norm_params, axis, MSV_FIELD_INT, "axis", "the axis")},
    .n_fields = 1,
    .params_size = sizeof(msv_norm_params),
    .defaults = &softmax_defaults,
};

static msv_status check_axis(const msv_shape x, int axis, msv_error *err) {
    if (axis < 0 || axis >= x.ndims)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "axis %d is outside the %d dimensions", axis, x.ndims);
    return MSV_OK;
}

/* x an activation, eps > 0, scale and shift constants of `len` values or absent. */
static msv_status check_norm(const msv_graph *g, const msv_node *n, int64_t len, msv_error *err) {
    msv_status st = msv_check_vector(g, n->in[1], len, "scale", err);
    if (st == MSV_OK) st = msv_check_vector(g, n->in[2], len, "shift", err);
    if (st == MSV_OK && !(n->p.norm.eps > 0)) st = msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "eps must be positive");
    return st;
}

msv_status msv_shape_layer_norm(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                msv_error *err) {
    msv_status st = msv_need_activation(g, n, 0, err);
    const msv_shape x = shapes[n->in[0]];
    if (st == MSV_OK) st = check_axis(x, n->p.norm.axis, err);
    if (st == MSV_OK) st = check_norm(g, n, x.dims[n->p.norm.axis], err);
    *out = x;
    return st;
}

msv_status msv_shape_group_norm(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    const int groups = n->p.norm.groups;
    if (groups < 1 || x.dims[1] % groups)
        return msv_set_error(err, MSV_ERR_SHAPE, "%lld channels are not divisible into %d groups", (long long)x.dims[1],
                             groups);
    *out = x;
    return check_norm(g, n, x.dims[1], err);
}

msv_status msv_shape_softmax(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                             msv_error *err) {
    msv_status st = msv_need_activation(g, n, 0, err);
    *out = shapes[n->in[0]];
    return st == MSV_OK ? check_axis(*out, n->p.norm.axis, err) : st;
}
