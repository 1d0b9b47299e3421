/* binary.c - binary and simple_gate: signatures and shape rules. */
#include "ops_util.h"

static const char *const k_binops[] = {"add", "sub", "mul", "div", "max", "min", NULL};
static const msv_binary_params binary_defaults = {.op = MSV_BIN_ADD};

const msv_signature msv_signature_binary = {
    .doc = "y = a (op) b, b broadcasting against a (same rank, each dim equal or 1); either may be a constant (a "
           "constant a: b must broadcast against it with its shape known)",
    .inputs = {"a", "b"},
    .n_inputs = 2,
    .fields = {ENUM_FIELD(msv_binary_params, op, k_binops, "op", "binary op")},
    .n_fields = 1,
    .params_size = sizeof(msv_binary_params),
    .defaults = &binary_defaults,
};

const msv_signature msv_signature_simple_gate = {
    .doc = "NAFNet's SimpleGate: x[:, :C/2] * x[:, C/2:]",
    .inputs = {"x"},
    .n_inputs = 1,
};

/* a (op) b: b broadcasts against a. Either operand may be a constant: a constant a fixes the output shape, so
 * b must broadcast against it for every shape b can take (its broadcast dims known). */
msv_status msv_shape_binary(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                            msv_error *err) {
    const int a_const = !msv_is_activation(g, n->in[0]);
    if (a_const && !msv_is_activation(g, n->in[1]))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "input 0 or input 1 needs an activation, not a constant");
    if ((int)n->p.binary.op < 0 || n->p.binary.op >= MSV_BIN_COUNT)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "unknown binary op %d", (int)n->p.binary.op);
    const msv_shape a = shapes[n->in[0]], b = shapes[n->in[1]];
    if (b.ndims != a.ndims)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "operand b has %d dimensions, a has %d (a constant operand "
                             "must have the other's rank)",
                             b.ndims, a.ndims);
    for (int d = 0; d < a.ndims; d++) {
        if (a_const && !msv_known(b.dims[d]))
            return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                                 "input 0 needs an activation, not a constant, unless operand b broadcasts against it "
                                 "(b's dimension %d is dynamic)",
                                 d);
        if (a_const && b.dims[d] != 1 && b.dims[d] != a.dims[d])
            return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                                 "input 0 needs an activation, not a constant, unless operand b broadcasts against it "
                                 "(dimension %d: %lld vs %lld)",
                                 d, (long long)b.dims[d], (long long)a.dims[d]);
        if (b.dims[d] != 1 && msv_known(a.dims[d]) && msv_known(b.dims[d]) && b.dims[d] != a.dims[d])
            return msv_set_error(err, MSV_ERR_SHAPE,
                                 "operand b does not broadcast against a in dimension %d (%lld vs %lld)", d,
                                 (long long)b.dims[d], (long long)a.dims[d]);
    }
    *out = a;
    return MSV_OK;
}

msv_status msv_shape_simple_gate(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                 msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    if (x.dims[1] % 2) return msv_set_error(err, MSV_ERR_SHAPE, "simple gate needs an even channel count");
    *out = msv_shape4(x.dims[0], x.dims[1] / 2, x.dims[2], x.dims[3]);
    return MSV_OK;
}
