/*
 * graph.c - building the graph, the op table, and shape inference.
 *
 * Nodes are appended in execution order; every builder call validates its node with the op's shape rule on the
 * static shapes (MSV_DYNAMIC where they depend on the inputs), so most mistakes surface while building, naming
 * the op. msv_infer_shapes() re-runs the rules on concrete input shapes when a session plans the graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

const msv_op_info msv_ops[MSV_OP_COUNT] = {
#define MSV_OP(kind, name, family) [MSV_OP_##kind] = {#name, &msv_signature_##name, msv_shape_##name},
#include "ops.def"
#undef MSV_OP
};

const char *msv_op_name(msv_op_kind kind) { return (int)kind >= 0 && kind < MSV_OP_COUNT ? msv_ops[kind].name : NULL; }

const msv_signature *msv_op_signature(msv_op_kind kind) {
    return (int)kind >= 0 && kind < MSV_OP_COUNT ? msv_ops[kind].signature : NULL;
}

/* ---------------------------------------------------------------- creation */

msv_status msv_graph_create(msv_graph **out, msv_error *err) {
    msv_graph *g = calloc(1, sizeof(*g));
    if (!g) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory creating a graph");
    *out = g;
    return MSV_OK;
}

void msv_graph_destroy(msv_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].data);
    free(g->tensors);
    free(g->shapes);
    free(g->nodes);
    free(g->uses);
    free(g);
}

static int failed(const msv_graph *g) { return g->first_error.status != MSV_OK; }

/* Records the first builder error and returns -1 (the id builders return on failure). */
static int fail(msv_graph *g, msv_status status, const char *op, const char *message) {
    if (!failed(g)) {
        if (op)
            msv_set_error(&g->first_error, status, "%s: %s", op, message);
        else
            msv_set_error(&g->first_error, status, "%s", message);
    }
    return -1;
}

static int add_tensor(msv_graph *g, msv_tensor t, msv_shape shape) {
    if (g->finalized) return fail(g, MSV_ERR_INVALID_ARGUMENT, NULL, "graph already finalized");
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 256;
        msv_tensor *ts = realloc(g->tensors, (size_t)cap * sizeof(*ts));
        if (ts) g->tensors = ts;
        msv_shape *ss = ts ? realloc(g->shapes, (size_t)cap * sizeof(*ss)) : NULL;
        if (ss) g->shapes = ss;
        if (!ts || !ss) return fail(g, MSV_ERR_OUT_OF_MEMORY, NULL, "out of memory growing the graph");
        g->cap_tensors = cap;
    }
    g->tensors[g->n_tensors] = t;
    g->shapes[g->n_tensors] = shape;
    return g->n_tensors++;
}

static int valid_shape(msv_shape s, int allow_dynamic) {
    if (s.ndims < 1 || s.ndims > MSV_MAX_DIMS) return 0;
    for (int i = 0; i < s.ndims; i++)
        if (!(s.dims[i] > 0 || (allow_dynamic && s.dims[i] == MSV_DYNAMIC)) || s.dims[i] > MSV_MAX_DIM_SIZE) return 0;
    return 1;
}

int msv_input(msv_graph *g, msv_shape shape) {
    if (failed(g)) return -1;
    if (g->n_inputs >= MSV_MAX_GRAPH_INPUTS) return fail(g, MSV_ERR_INVALID_ARGUMENT, "input", "too many inputs");
    if (!valid_shape(shape, 1))
        return fail(g, MSV_ERR_INVALID_ARGUMENT, "input",
                    "the shape needs 1 to 5 dimensions, each positive or dynamic (-1) and below 2**31");
    int id = add_tensor(g, (msv_tensor){MSV_T_INPUT, NULL, -1}, shape);
    if (id >= 0) g->inputs[g->n_inputs++] = id;
    return id;
}

int msv_const(msv_graph *g, msv_shape shape, const float *data) {
    if (failed(g)) return -1;
    if (g->finalized) return fail(g, MSV_ERR_INVALID_ARGUMENT, "const", "graph already finalized");
    if (!data || !valid_shape(shape, 0) || msv_numel(shape) > MSV_MAX_ELEMENTS)
        return fail(g, MSV_ERR_INVALID_ARGUMENT, "const",
                    "a constant needs data and 1 to 5 positive dimensions, at most 2**32 values");
    const size_t bytes = (size_t)msv_numel(shape) * sizeof(float);
    float *copy = malloc(bytes);
    if (!copy) return fail(g, MSV_ERR_OUT_OF_MEMORY, "const", "out of memory copying a constant");
    memcpy(copy, data, bytes);
    int id = add_tensor(g, (msv_tensor){MSV_T_CONST, copy, -1}, shape);
    if (id < 0) free(copy);
    return id;
}

msv_status msv_output(msv_graph *g, int t) {
    if (failed(g)) return g->first_error.status;
    if (g->finalized)
        return fail(g, MSV_ERR_INVALID_ARGUMENT, "output", "graph already finalized"), MSV_ERR_INVALID_ARGUMENT;
    if (!msv_is_activation(g, t) || g->n_outputs >= MSV_MAX_OUTPUTS) {
        char msg[96];
        snprintf(msg, sizeof msg, "invalid graph output %d", t);
        fail(g, MSV_ERR_INVALID_ARGUMENT, "output", msg);
        return MSV_ERR_INVALID_ARGUMENT;
    }
    g->outputs[g->n_outputs++] = t;
    return MSV_OK;
}

/* Output dims must be positive (where known) and the tensor at most MSV_MAX_ELEMENTS values. */
static msv_status check_result(msv_shape s, msv_error *err) {
    for (int d = 0; d < s.ndims; d++) {
        if (s.dims[d] == MSV_DYNAMIC) continue;
        if (s.dims[d] <= 0) return msv_set_error(err, MSV_ERR_SHAPE, "the result would be empty");
        if (s.dims[d] > MSV_MAX_DIM_SIZE)
            return msv_set_error(err, MSV_ERR_SHAPE, "a result dimension would exceed 2**31 - 1");
    }
    if (msv_numel(s) > MSV_MAX_ELEMENTS) return msv_set_error(err, MSV_ERR_SHAPE, "the result would exceed 16 GiB");
    return MSV_OK;
}

int msv_add_op(msv_graph *g, msv_op_kind kind, const int *inputs, int n_inputs, const void *params) {
    if (failed(g)) return -1;
    /* before anything grows: plans of running sessions point into g->nodes */
    if (g->finalized) return fail(g, MSV_ERR_INVALID_ARGUMENT, NULL, "graph already finalized");
    if ((int)kind < 0 || kind >= MSV_OP_COUNT) return fail(g, MSV_ERR_INVALID_ARGUMENT, NULL, "unknown op kind");
    const msv_op_info *op = &msv_ops[kind];
    const msv_signature *sig = op->signature;
    const int variadic = sig->n_inputs == 1 && strchr(sig->inputs[0], '*') != NULL;
    int required = 0;
    for (int i = 0; i < sig->n_inputs; i++)
        required += strchr(sig->inputs[i], '?') == NULL;
    if (n_inputs < (variadic ? 1 : required) || n_inputs > (variadic ? MSV_MAX_INPUTS : sig->n_inputs) ||
        (n_inputs > 0 && !inputs))
        return fail(g, MSV_ERR_INVALID_ARGUMENT, op->name, "wrong number of inputs");
    msv_node n;
    memset(&n, 0, sizeof n);
    n.kind = kind;
    n.n_in = variadic ? n_inputs : sig->n_inputs;
    for (int i = 0; i < n.n_in; i++) {
        n.in[i] = i < n_inputs ? inputs[i] : -1;
        const int optional = !variadic && strchr(sig->inputs[i], '?') != NULL;
        if (n.in[i] == -1 && optional) continue;
        if (n.in[i] < 0 || n.in[i] >= g->n_tensors) {
            char msg[128];
            snprintf(msg, sizeof msg, "input %d (%.40s) is not a tensor of this graph", i,
                     sig->inputs[variadic ? 0 : i]);
            return fail(g, MSV_ERR_INVALID_ARGUMENT, op->name, msg);
        }
    }
    if (sig->params_size > 0) memcpy(&n.p, params ? params : sig->defaults, sig->params_size);
    msv_error err = {0};
    msv_shape out;
    memset(&out, 0, sizeof out);
    msv_status st = op->shape(g, &n, g->shapes, &out, &err);
    if (st == MSV_OK) st = check_result(out, &err);
    if (st != MSV_OK) return fail(g, st, op->name, err.message);
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        msv_node *ns = realloc(g->nodes, (size_t)cap * sizeof(*ns));
        if (!ns) return fail(g, MSV_ERR_OUT_OF_MEMORY, op->name, "out of memory growing the graph");
        g->nodes = ns;
        g->cap_nodes = cap;
    }
    int id = add_tensor(g, (msv_tensor){MSV_T_ACT, NULL, g->n_nodes}, out);
    if (id < 0) return -1;
    n.out = id;
    g->nodes[g->n_nodes++] = n;
    return id;
}

msv_status msv_graph_error(const msv_graph *g, msv_error *err) {
    if (err) *err = g->first_error;
    return g->first_error.status;
}

msv_status msv_graph_finalize(msv_graph *g, msv_error *err) {
    if (failed(g)) return msv_graph_error(g, err);
    if (g->finalized) return MSV_OK;
    if (g->n_inputs == 0 || g->n_outputs == 0)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "a graph needs at least one input and one output");
    g->uses = calloc((size_t)g->n_tensors, sizeof(int));
    if (!g->uses) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory finalizing the graph");
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0) g->uses[g->nodes[i].in[k]]++;
    for (int i = 0; i < g->n_outputs; i++)
        g->uses[g->outputs[i]]++;
    msv_fuse_post_ops(g);
    g->finalized = 1;
    return MSV_OK;
}

int msv_graph_num_inputs(const msv_graph *g) { return g->n_inputs; }
int msv_graph_num_outputs(const msv_graph *g) { return g->n_outputs; }

msv_shape msv_graph_input_shape(const msv_graph *g, int i) {
    return i >= 0 && i < g->n_inputs ? g->shapes[g->inputs[i]] : msv_tensor_shape(g, -1);
}

msv_shape msv_tensor_shape(const msv_graph *g, int t) {
    msv_shape none;
    memset(&none, 0, sizeof none);
    return t >= 0 && t < g->n_tensors ? g->shapes[t] : none;
}

/* ---------------------------------------------------------------- shape inference */

/* b broadcasts against a: same rank, each dim equal or 1 (unknown dims pass). */
static int broadcasts(msv_shape a, msv_shape b) {
    if (a.ndims != b.ndims) return 0;
    for (int d = 0; d < a.ndims; d++)
        if (b.dims[d] != 1 && a.dims[d] >= 0 && b.dims[d] >= 0 && b.dims[d] != a.dims[d]) return 0;
    return 1;
}

msv_status msv_infer_shapes(const msv_graph *g, const msv_shape *in_shapes, msv_shape *shapes, msv_error *err) {
    memcpy(shapes, g->shapes, (size_t)g->n_tensors * sizeof(msv_shape));
    for (int i = 0; i < g->n_inputs; i++) {
        const msv_shape want = g->shapes[g->inputs[i]], s = in_shapes[i];
        int ok = s.ndims == want.ndims;
        for (int d = 0; ok && d < s.ndims; d++)
            ok = s.dims[d] > 0 && s.dims[d] <= MSV_MAX_DIM_SIZE &&
                 (want.dims[d] == MSV_DYNAMIC || want.dims[d] == s.dims[d]);
        if (!ok) {
            char buf[128] = "";
            size_t used = 0;
            for (int d = 0; d < want.ndims && used < sizeof buf; d++)
                used += (size_t)snprintf(buf + used, sizeof buf - used, d ? " x %s" : "%s",
                                         want.dims[d] == MSV_DYNAMIC ? "any" : "");
            for (int d = 0; d < s.ndims; d++)
                if (s.dims[d] <= 0) return msv_set_error(err, MSV_ERR_SHAPE, "input %d has an empty dimension", i);
            if (want.ndims == 4 && want.dims[0] == MSV_DYNAMIC && want.dims[2] == MSV_DYNAMIC)
                return msv_set_error(err, MSV_ERR_SHAPE, "input %d must be N x %lld x H x W", i,
                                     (long long)want.dims[1]);
            return msv_set_error(err, MSV_ERR_SHAPE, "input %d has the wrong shape (rank %d expected)", i, want.ndims);
        }
        if (msv_numel(s) > MSV_MAX_ELEMENTS) return msv_set_error(err, MSV_ERR_SHAPE, "input %d exceeds 16 GiB", i);
        shapes[g->inputs[i]] = s;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const msv_node *n = &g->nodes[i];
        if (n->fused_away) continue;
        const msv_op_info *op = &msv_ops[n->kind];
        msv_error e = {0};
        msv_status st = op->shape(g, n, shapes, &shapes[n->out], &e);
        if (st == MSV_OK) st = check_result(shapes[n->out], &e);
        for (int k = 0; k < n->n_post && st == MSV_OK; k++)
            if (n->post[k].kind == MSV_POST_BINARY && !broadcasts(shapes[n->out], shapes[n->post[k].tensor]))
                st = msv_set_error(&e, MSV_ERR_SHAPE, "a fused binary operand does not broadcast");
        if (st != MSV_OK) return msv_set_error(err, st, "%s: %s", op->name, e.message);
    }
    return MSV_OK;
}
