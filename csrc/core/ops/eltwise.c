/* eltwise.c - eltwise and prelu: signatures and shape rules. */
#include "ops_util.h"

static const char *const k_acts[] = {"relu",   "leaky_relu", "sigmoid", "tanh", "gelu_erf", "gelu_tanh",
                                     "swish",  "hardswish",  "clip",    "elu",  "exp",      "linear",
                                     "square", "sqrt",       "pow",     "abs",  NULL};
static const msv_eltwise_params eltwise_defaults = {.act = MSV_ACT_RELU};

const msv_signature msv_signature_eltwise = {
    .doc = "y = act(x): relu, leaky_relu (alpha: slope), sigmoid, tanh, gelu_erf, gelu_tanh, swish (x * "
           "sigmoid(alpha * x)), hardswish, clip (to [alpha, beta]), elu (alpha), exp, linear (alpha * x + beta), "
           "square, sqrt, pow (alpha * x^beta), "
           "abs",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {ENUM_FIELD(msv_eltwise_params, act, k_acts, "act", "activation"),
               FIELD(msv_eltwise_params, alpha, MSV_FIELD_FLOAT, "alpha", "first parameter"),
               FIELD(msv_eltwise_params, beta, MSV_FIELD_FLOAT, "beta", "second parameter")},
    .n_fields = 3,
    .params_size = sizeof(msv_eltwise_params),
    .defaults = &eltwise_defaults,
};

const msv_signature msv_signature_prelu = {
    .doc = "PReLU over axis 1: slope is a constant of C values (per channel) or 1 (shared)",
    .inputs = {"x", "slope"},
    .n_inputs = 2,
};

msv_status msv_shape_eltwise(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                             msv_error *err) {
    msv_status st = msv_need_activation(g, n, 0, err);
    if (st != MSV_OK) return st;
    if ((int)n->p.eltwise.act < 0 || n->p.eltwise.act >= MSV_ACT_COUNT)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "unknown activation %d", (int)n->p.eltwise.act);
    if (n->p.eltwise.act == MSV_ACT_CLIP && !(n->p.eltwise.alpha <= n->p.eltwise.beta))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "clip needs alpha <= beta (the bounds), got %g and %g",
                             n->p.eltwise.alpha, n->p.eltwise.beta);
    *out = shapes[n->in[0]];
    return MSV_OK;
}

msv_status msv_shape_prelu(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                           msv_error *err) {
    msv_status st = msv_need_activation(g, n, 0, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    if (!msv_is_const(g, n->in[1]) || x.ndims < 2)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "prelu needs an activation of rank >= 2 and a constant slope");
    const int64_t len = msv_numel(shapes[n->in[1]]);
    if (len != 1 && len != x.dims[1])
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "slope has %lld values for %lld channels", (long long)len,
                             (long long)x.dims[1]);
    *out = x;
    return MSV_OK;
}
