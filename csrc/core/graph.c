/*
 * graph.c - building the op graph, static checks, shape inference and post-op fusion.
 *
 * Tensors are 4-D NCHW. While building, activation shapes carry the channel count and -1 for batch and
 * spatial sizes; msv_infer_all() fills those in per run. Nodes are appended in execution order.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

/* ---------------------------------------------------------------- creation */

msv_status msv_graph_create(msv_graph **out, msv_error *err) {
    msv_graph *g = calloc(1, sizeof(*g));
    if (!g) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory creating a graph");
    if (pthread_mutex_init(&g->run_lock, NULL) != 0) {
        free(g);
        return msv_set_error(err, MSV_ERR_BACKEND, "cannot create the graph lock");
    }
    *out = g;
    return MSV_OK;
}

void msv_graph_destroy(msv_graph *g) {
    if (!g) return;
    msv_plan_cache_destroy(g->plans);
    for (int i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].data);
    free(g->tensors);
    free(g->nodes);
    pthread_mutex_destroy(&g->run_lock);
    free(g);
}

static int failed(const msv_graph *g) { return g->first_error.status != MSV_OK; }

#define BUILD_FAIL(g, status, ...)                                             \
    do {                                                                       \
        if (!failed(g)) msv_set_error(&(g)->first_error, status, __VA_ARGS__); \
        return -1;                                                             \
    } while (0)

static msv_shape shape4(int64_t n, int64_t c, int64_t h, int64_t w) {
    msv_shape s = {4, {n, c, h, w, 0}};
    return s;
}

static int add_tensor(msv_graph *g, msv_tensor t) {
    if (g->finalized) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "graph already finalized");
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 256;
        msv_tensor *ts = realloc(g->tensors, (size_t)cap * sizeof(*ts));
        if (!ts) BUILD_FAIL(g, MSV_ERR_OUT_OF_MEMORY, "out of memory growing the graph");
        g->tensors = ts;
        g->cap_tensors = cap;
    }
    g->tensors[g->n_tensors] = t;
    return g->n_tensors++;
}

static int valid_tensor(const msv_graph *g, int t) { return t >= 0 && t < g->n_tensors; }
static int is_act(const msv_graph *g, int t) { return valid_tensor(g, t) && g->tensors[t].kind != MSV_T_CONST; }
static int is_const(const msv_graph *g, int t) { return valid_tensor(g, t) && g->tensors[t].kind == MSV_T_CONST; }

int msv_input(msv_graph *g, int channels) {
    if (failed(g)) return -1;
    if (channels <= 0 || g->n_inputs >= 8) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "invalid graph input");
    msv_tensor t = {MSV_T_INPUT, shape4(-1, channels, -1, -1), NULL, -1, channels};
    int id = add_tensor(g, t);
    if (id >= 0) g->inputs[g->n_inputs++] = id;
    return id;
}

msv_status msv_output(msv_graph *g, int t) {
    if (failed(g)) return g->first_error.status;
    if (g->finalized) return msv_set_error(&g->first_error, MSV_ERR_INVALID_ARGUMENT, "graph already finalized");
    if (!is_act(g, t) || g->n_outputs >= MSV_MAX_OUTPUTS)
        return msv_set_error(&g->first_error, MSV_ERR_INVALID_ARGUMENT, "invalid graph output %d", t);
    g->outputs[g->n_outputs++] = t;
    return MSV_OK;
}

static int64_t numel(msv_shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.ndims; i++)
        n *= s.dims[i];
    return n;
}

int msv_const(msv_graph *g, msv_shape shape, const float *data) {
    if (failed(g)) return -1;
    if (!data || shape.ndims < 1 || shape.ndims > MSV_MAX_DIMS)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "invalid constant");
    for (int i = 0; i < shape.ndims; i++)
        if (shape.dims[i] <= 0) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "constant with a non-positive dimension");
    size_t bytes = (size_t)numel(shape) * sizeof(float);
    float *copy = malloc(bytes);
    if (!copy) BUILD_FAIL(g, MSV_ERR_OUT_OF_MEMORY, "out of memory copying a constant of %zu bytes", bytes);
    memcpy(copy, data, bytes);
    msv_tensor t = {MSV_T_CONST, shape, copy, -1, 0};
    int id = add_tensor(g, t);
    if (id < 0) free(copy);
    return id;
}

/* ---------------------------------------------------------------- shape inference */

static int64_t conv_out(int64_t in, int k, int s, int p0, int p1, int d) {
    if (in < 0) return -1;
    int64_t span = (int64_t)d * (k - 1) + 1;
    int64_t padded = in + p0 + p1;
    return padded < span ? 0 : (padded - span) / s + 1;
}

static int64_t pool_out(int64_t in, int k, int s, int p0, int p1, int ceil_mode) {
    if (in < 0) return -1;
    int64_t padded = in + p0 + p1;
    if (padded < k) return 0;
    int64_t o = ceil_mode ? (padded - k + s - 1) / s + 1 : (padded - k) / s + 1;
    if (ceil_mode && (o - 1) * s >= in + p0) o--; /* last window must start inside the input */
    return o;
}

static int64_t resize_out(int64_t in, int out, float scale) {
    if (in < 0) return -1;
    return out > 0 ? out : (int64_t)floor((double)in * scale);
}

/* Infers node `n`'s output shape from its input shapes (spatial dims may be -1 while building). */
static msv_status infer_node(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                             msv_error *err) {
    const msv_shape x = shapes[n->in[0]];
    const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
    const msv_conv_params *p = &n->win;
    switch (n->op) {
    case MSV_OP_CONV: {
        const msv_shape ws = g->tensors[n->weight].shape;
        int64_t oh = conv_out(H, p->kh, p->sh, p->pad_t, p->pad_b, p->dh);
        int64_t ow = conv_out(W, p->kw, p->sw, p->pad_l, p->pad_r, p->dw);
        if (oh == 0 || ow == 0)
            return msv_set_error(err, MSV_ERR_SHAPE, "input %lldx%lld is smaller than a %dx%d convolution window",
                                 (long long)H, (long long)W, p->kh, p->kw);
        *out = shape4(N, ws.dims[0], oh, ow);
        return MSV_OK;
    }
    case MSV_OP_DECONV: {
        const msv_shape ws = g->tensors[n->weight].shape;
        int64_t oh =
            H < 0 ? -1 : (H - 1) * p->sh - p->pad_t - p->pad_b + (int64_t)p->dh * (p->kh - 1) + p->out_pad_h + 1;
        int64_t ow =
            W < 0 ? -1 : (W - 1) * p->sw - p->pad_l - p->pad_r + (int64_t)p->dw * (p->kw - 1) + p->out_pad_w + 1;
        if (oh == 0 || ow == 0) return msv_set_error(err, MSV_ERR_SHAPE, "deconvolution output would be empty");
        *out = shape4(N, ws.dims[1] * p->groups, oh, ow);
        return MSV_OK;
    }
    case MSV_OP_LINEAR: {
        const msv_shape ws = g->tensors[n->weight].shape;
        if (H >= 0 && W >= 0 && C * H * W != ws.dims[1])
            return msv_set_error(err, MSV_ERR_SHAPE, "linear layer expects %lld features, got %lld",
                                 (long long)ws.dims[1], (long long)(C * H * W));
        *out = shape4(N, ws.dims[0], 1, 1);
        return MSV_OK;
    }
    case MSV_OP_ELTWISE:
    case MSV_OP_PRELU:
    case MSV_OP_LAYER_NORM:
    case MSV_OP_SOFTMAX:
    case MSV_OP_BINARY: *out = x; return MSV_OK;
    case MSV_OP_POOL: {
        int64_t oh = pool_out(H, p->kh, p->sh, p->pad_t, p->pad_b, n->ints[0]);
        int64_t ow = pool_out(W, p->kw, p->sw, p->pad_l, p->pad_r, n->ints[0]);
        if (oh == 0 || ow == 0) return msv_set_error(err, MSV_ERR_SHAPE, "input is smaller than the pooling window");
        *out = shape4(N, C, oh, ow);
        return MSV_OK;
    }
    case MSV_OP_GLOBAL_AVG_POOL: *out = shape4(N, C, 1, 1); return MSV_OK;
    case MSV_OP_RESIZE: {
        int64_t oh = resize_out(H, n->ints[0], n->floats[0]), ow = resize_out(W, n->ints[1], n->floats[1]);
        if (n->n_in == 2) { /* resize_like: the scaled image's top-left part, of the reference's size */
            const msv_shape like = shapes[n->in[1]];
            if (oh >= 0 && like.dims[2] >= 0 && (like.dims[2] > oh || like.dims[3] > ow))
                return msv_set_error(err, MSV_ERR_SHAPE,
                                     "resize_like: the reference (%lld x %lld) is larger than the resized input "
                                     "(%lld x %lld)",
                                     (long long)like.dims[2], (long long)like.dims[3], (long long)oh, (long long)ow);
            oh = like.dims[2];
            ow = like.dims[3];
        }
        if (oh == 0 || ow == 0) return msv_set_error(err, MSV_ERR_SHAPE, "resize to an empty image");
        *out = shape4(N, C, oh, ow);
        return MSV_OK;
    }
    case MSV_OP_CONCAT: {
        int64_t c = 0;
        for (int i = 0; i < n->n_in; i++) {
            msv_shape s = shapes[n->in[i]];
            for (int d = 0; d < 4; d++)
                if (d != 1 && s.dims[d] >= 0 && x.dims[d] >= 0 && s.dims[d] != x.dims[d])
                    return msv_set_error(err, MSV_ERR_SHAPE, "concat inputs differ in dimension %d", d);
            c += s.dims[1];
        }
        *out = shape4(N, c, H, W);
        return MSV_OK;
    }
    case MSV_OP_PAD:
        *out = shape4(N, C, H < 0 ? -1 : H + n->ints[0] + n->ints[2], W < 0 ? -1 : W + n->ints[1] + n->ints[3]);
        return MSV_OK;
    case MSV_OP_SLICE: {
        int64_t lim[3] = {C, H, W}, ext[3];
        for (int d = 0; d < 3; d++) {
            int64_t b = n->ints[2 * d], e = n->ints[2 * d + 1];
            if (lim[d] < 0) {
                ext[d] = (e >= 0) ? e - b : -1;
                continue;
            }
            if (e < 0 || e > lim[d]) e = lim[d];
            if (b < 0 || b >= e) return msv_set_error(err, MSV_ERR_SHAPE, "empty slice");
            ext[d] = e - b;
        }
        *out = shape4(N, ext[0], ext[1], ext[2]);
        return MSV_OK;
    }
    case MSV_OP_PIXEL_SHUFFLE: {
        int r = n->ints[0];
        *out = shape4(N, C / (r * r), H < 0 ? -1 : H * r, W < 0 ? -1 : W * r);
        return MSV_OK;
    }
    case MSV_OP_PIXEL_UNSHUFFLE: {
        int r = n->ints[0];
        if ((H >= 0 && H % r) || (W >= 0 && W % r))
            return msv_set_error(err, MSV_ERR_SHAPE, "pixel unshuffle needs sizes divisible by %d, got %lldx%lld", r,
                                 (long long)H, (long long)W);
        *out = shape4(N, C * r * r, H < 0 ? -1 : H / r, W < 0 ? -1 : W / r);
        return MSV_OK;
    }
    case MSV_OP_SIMPLE_GATE: *out = shape4(N, C / 2, H, W); return MSV_OK;
    case MSV_OP_GROUP_NORM: *out = x; return MSV_OK;
    }
    return msv_set_error(err, MSV_ERR_UNSUPPORTED, "unknown op %d", (int)n->op);
}

static int broadcastable(msv_shape a, msv_shape b) {
    for (int d = 0; d < 4; d++)
        if (b.dims[d] != 1 && a.dims[d] >= 0 && b.dims[d] >= 0 && b.dims[d] != a.dims[d]) return 0;
    return 1;
}

msv_status msv_infer_all(const msv_graph *g, const msv_shape *in_shapes, msv_shape *shapes, msv_error *err) {
    for (int i = 0; i < g->n_tensors; i++)
        shapes[i] = g->tensors[i].shape;
    for (int i = 0; i < g->n_inputs; i++) {
        msv_shape s = in_shapes[i];
        const msv_tensor *t = &g->tensors[g->inputs[i]];
        if (s.ndims != 4 || s.dims[1] != t->channels)
            return msv_set_error(err, MSV_ERR_SHAPE, "input %d must be N x %d x H x W", i, t->channels);
        for (int d = 0; d < 4; d++)
            if (s.dims[d] <= 0) return msv_set_error(err, MSV_ERR_SHAPE, "input %d has an empty dimension", i);
        shapes[g->inputs[i]] = s;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const msv_node *n = &g->nodes[i];
        if (n->fused_away) continue;
        msv_status st = infer_node(g, n, shapes, &shapes[n->out], err);
        if (st != MSV_OK) return st;
        for (int k = 0; k < n->n_post; k++) /* post-ops keep the shape; check broadcasting */
            if (n->post[k].kind == MSV_POST_BINARY && !broadcastable(shapes[n->out], shapes[n->post[k].tensor]))
                return msv_set_error(err, MSV_ERR_SHAPE, "fused binary operand does not broadcast");
        if (n->op == MSV_OP_BINARY && !broadcastable(shapes[n->in[0]], shapes[n->in[1]]))
            return msv_set_error(err, MSV_ERR_SHAPE, "binary operand does not broadcast");
        for (int d = 0; d < 4; d++)
            if (shapes[n->out].dims[d] <= 0)
                return msv_set_error(err, MSV_ERR_SHAPE, "op %d produces an empty tensor", (int)n->op);
        int64_t elems = numel(shapes[n->out]);
        if (elems > ((int64_t)1 << 34) / 4)
            return msv_set_error(err, MSV_ERR_SHAPE, "an intermediate tensor would exceed 16 GiB");
    }
    return MSV_OK;
}

/* ---------------------------------------------------------------- node builders */

static msv_node new_node(msv_op op, int x) {
    msv_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.in[0] = x;
    n.n_in = 1;
    n.weight = n.bias = n.scale = n.shift = -1;
    return n;
}

/* Appends a node, infers its static (channel) shape and creates its output tensor. */
static int add_node(msv_graph *g, msv_node n) {
    if (failed(g)) return -1;
    for (int i = 0; i < n.n_in; i++)
        if (!is_act(g, n.in[i]) && !(n.op == MSV_OP_BINARY && i == 1 && is_const(g, n.in[i])))
            BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "op %d: input %d is not a tensor of this graph", (int)n.op, i);
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        msv_node *ns = realloc(g->nodes, (size_t)cap * sizeof(*ns));
        if (!ns) BUILD_FAIL(g, MSV_ERR_OUT_OF_MEMORY, "out of memory growing the graph");
        g->nodes = ns;
        g->cap_nodes = cap;
    }
    msv_shape *shapes = malloc((size_t)g->n_tensors * sizeof(msv_shape));
    if (!shapes) BUILD_FAIL(g, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_tensors; i++)
        shapes[i] = g->tensors[i].shape;
    msv_shape out;
    msv_error err = {0};
    msv_status st = infer_node(g, &n, shapes, &out, &err);
    if (st == MSV_OK && n.op == MSV_OP_BINARY && !broadcastable(shapes[n.in[0]], shapes[n.in[1]]))
        st = msv_set_error(&err, MSV_ERR_SHAPE, "binary operand does not broadcast");
    free(shapes);
    if (st != MSV_OK) BUILD_FAIL(g, st, "%s", err.message);
    msv_tensor t = {MSV_T_ACT, out, NULL, g->n_nodes, 0};
    int id = add_tensor(g, t);
    if (id < 0) return -1;
    n.out = id;
    g->nodes[g->n_nodes++] = n;
    return id;
}

static int channels_of(const msv_graph *g, int t) { return (int)g->tensors[t].shape.dims[1]; }

static int check_vector(msv_graph *g, int t, int64_t len, const char *what) {
    if (t < 0) return 1;
    if (!is_const(g, t) || numel(g->tensors[t].shape) != len) {
        msv_set_error(&g->first_error, MSV_ERR_WEIGHT_SHAPE, "%s must be a constant of %lld values", what,
                      (long long)len);
        return 0;
    }
    return 1;
}

/* What every normalisation checks ("<what> needs an activation", "<what> scale" ...): x an activation, scale and
 * shift (C) constants or -1, eps > 0. Sets the builder error and returns 0 otherwise. */
static int check_norm(msv_graph *g, int x, int scale, int shift, float eps, const char *what) {
    char name[64];
    if (!is_act(g, x)) {
        msv_set_error(&g->first_error, MSV_ERR_INVALID_ARGUMENT, "%s needs an activation", what);
        return 0;
    }
    snprintf(name, sizeof name, "%s scale", what);
    if (!check_vector(g, scale, channels_of(g, x), name)) return 0;
    snprintf(name, sizeof name, "%s shift", what);
    if (!check_vector(g, shift, channels_of(g, x), name)) return 0;
    if (!(eps > 0)) {
        msv_set_error(&g->first_error, MSV_ERR_INVALID_ARGUMENT, "%s eps must be positive", what);
        return 0;
    }
    return 1;
}

static int check_window(msv_graph *g, const msv_conv_params *p) {
    if (!p || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0 || p->dh <= 0 || p->dw <= 0 || p->pad_t < 0 ||
        p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0 || p->groups <= 0 || p->out_pad_h < 0 || p->out_pad_w < 0) {
        if (!failed(g)) msv_set_error(&g->first_error, MSV_ERR_INVALID_ARGUMENT, "invalid window parameters");
        return 0;
    }
    return 1;
}

int msv_conv2d(msv_graph *g, int x, int weight, int bias, const msv_conv_params *p) {
    if (failed(g) || !check_window(g, p)) return -1;
    if (!is_act(g, x) || !is_const(g, weight) || g->tensors[weight].shape.ndims != 4)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "conv2d needs an activation and a 4-D weight");
    const msv_shape ws = g->tensors[weight].shape;
    if (ws.dims[1] * p->groups != channels_of(g, x) || ws.dims[0] % p->groups || ws.dims[2] != p->kh ||
        ws.dims[3] != p->kw)
        BUILD_FAIL(g, MSV_ERR_WEIGHT_SHAPE,
                   "conv2d weight (%lld, %lld, %lld, %lld) does not fit %d input channels, groups %d, kernel %dx%d",
                   (long long)ws.dims[0], (long long)ws.dims[1], (long long)ws.dims[2], (long long)ws.dims[3],
                   channels_of(g, x), p->groups, p->kh, p->kw);
    if (!check_vector(g, bias, ws.dims[0], "conv2d bias")) return -1;
    msv_node n = new_node(MSV_OP_CONV, x);
    n.weight = weight;
    n.bias = bias;
    n.win = *p;
    return add_node(g, n);
}

int msv_deconv2d(msv_graph *g, int x, int weight, int bias, const msv_conv_params *p) {
    if (failed(g) || !check_window(g, p)) return -1;
    if (!is_act(g, x) || !is_const(g, weight) || g->tensors[weight].shape.ndims != 4)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "deconv2d needs an activation and a 4-D weight");
    const msv_shape ws = g->tensors[weight].shape;
    if (ws.dims[0] != channels_of(g, x) || ws.dims[0] % p->groups || ws.dims[2] != p->kh || ws.dims[3] != p->kw)
        BUILD_FAIL(g, MSV_ERR_WEIGHT_SHAPE, "deconv2d weight does not fit %d input channels", channels_of(g, x));
    if ((p->out_pad_h >= p->sh && p->out_pad_h >= p->dh) || (p->out_pad_w >= p->sw && p->out_pad_w >= p->dw))
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "output padding must be smaller than stride or dilation");
    if (!check_vector(g, bias, ws.dims[1] * p->groups, "deconv2d bias")) return -1;
    msv_node n = new_node(MSV_OP_DECONV, x);
    n.weight = weight;
    n.bias = bias;
    n.win = *p;
    return add_node(g, n);
}

int msv_linear(msv_graph *g, int x, int weight, int bias) {
    if (failed(g)) return -1;
    if (!is_act(g, x) || !is_const(g, weight) || g->tensors[weight].shape.ndims != 2)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "linear needs an activation and a 2-D weight");
    if (!check_vector(g, bias, g->tensors[weight].shape.dims[0], "linear bias")) return -1;
    msv_node n = new_node(MSV_OP_LINEAR, x);
    n.weight = weight;
    n.bias = bias;
    return add_node(g, n);
}

int msv_eltwise(msv_graph *g, int x, msv_act act, float alpha, float beta) {
    if (failed(g)) return -1;
    if ((int)act < 0 || act > MSV_ACT_LINEAR) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "unknown activation %d", act);
    msv_node n = new_node(MSV_OP_ELTWISE, x);
    n.alg = act;
    n.alpha = alpha;
    n.beta = beta;
    return add_node(g, n);
}

int msv_binary(msv_graph *g, msv_binop op, int a, int b) {
    if (failed(g)) return -1;
    if ((int)op < 0 || op > MSV_BIN_MIN) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "unknown binary op %d", op);
    if (is_const(g, b) && g->tensors[b].shape.ndims != 4)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "a constant binary operand must be 4-D");
    msv_node n = new_node(MSV_OP_BINARY, a);
    n.in[1] = b;
    n.n_in = 2;
    n.alg = op;
    return add_node(g, n);
}

int msv_prelu(msv_graph *g, int x, int slope) {
    if (failed(g)) return -1;
    if (!is_act(g, x) || !is_const(g, slope))
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "prelu needs an activation and a constant slope");
    int64_t len = numel(g->tensors[slope].shape);
    if (len != 1 && len != channels_of(g, x))
        BUILD_FAIL(g, MSV_ERR_WEIGHT_SHAPE, "prelu slope has %lld values for %d channels", (long long)len,
                   channels_of(g, x));
    msv_node n = new_node(MSV_OP_PRELU, x);
    n.weight = slope;
    return add_node(g, n);
}

int msv_layer_norm_channels(msv_graph *g, int x, int scale, int shift, float eps) {
    if (failed(g) || !check_norm(g, x, scale, shift, eps, "layer norm")) return -1;
    msv_node n = new_node(MSV_OP_LAYER_NORM, x);
    n.scale = scale;
    n.shift = shift;
    n.eps = eps;
    return add_node(g, n);
}

int msv_pool2d(msv_graph *g, int x, msv_pool_kind kind, const msv_conv_params *window, int ceil_mode) {
    if (failed(g) || !check_window(g, window)) return -1;
    if (window->pad_t * 2 > window->kh || window->pad_l * 2 > window->kw || window->pad_b * 2 > window->kh ||
        window->pad_r * 2 > window->kw)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "pooling padding must be at most half the window");
    msv_node n = new_node(MSV_OP_POOL, x);
    n.alg = kind;
    n.win = *window;
    n.ints[0] = ceil_mode != 0;
    return add_node(g, n);
}

int msv_global_avg_pool(msv_graph *g, int x) { return add_node(g, new_node(MSV_OP_GLOBAL_AVG_POOL, x)); }
int msv_softmax_channels(msv_graph *g, int x) { return add_node(g, new_node(MSV_OP_SOFTMAX, x)); }

#define MAX_SCALE 1024.0 /* resize factors beyond this are certainly mistakes (and would overflow sizes) */
static int valid_scale(float s) { return s > 0 && s <= MAX_SCALE; }

int msv_resize(msv_graph *g, int x, msv_resize_mode mode, int out_h, int out_w, float scale_h, float scale_w) {
    if (failed(g)) return -1;
    if ((out_h > 0) != (out_w > 0) || (out_h <= 0 && !(valid_scale(scale_h) && valid_scale(scale_w))) ||
        (int)mode < 0 || mode > MSV_RESIZE_BILINEAR_ALIGN_CORNERS)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "resize needs an output size or scale factors in (0, %g]", MAX_SCALE);
    msv_node n = new_node(MSV_OP_RESIZE, x);
    n.alg = mode;
    n.ints[0] = out_h > 0 ? out_h : 0;
    n.ints[1] = out_w > 0 ? out_w : 0;
    n.floats[0] = scale_h;
    n.floats[1] = scale_w;
    return add_node(g, n);
}

int msv_resize_like(msv_graph *g, int x, int like, msv_resize_mode mode, float scale_h, float scale_w) {
    if (failed(g)) return -1;
    if (!(valid_scale(scale_h) && valid_scale(scale_w)) ||
        (mode != MSV_RESIZE_NEAREST && mode != MSV_RESIZE_BILINEAR_HALF_PIXEL))
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT,
                   "resize_like needs scale factors in (0, %g] and mode nearest or bilinear (with align_corners the "
                   "sampling depends on the uncropped size)",
                   MAX_SCALE);
    msv_node n = new_node(MSV_OP_RESIZE, x);
    n.in[1] = like; /* read for its shape only */
    n.n_in = 2;
    n.alg = mode;
    n.floats[0] = scale_h;
    n.floats[1] = scale_w;
    return add_node(g, n);
}

int msv_concat_channels(msv_graph *g, int count, const int *xs) {
    if (failed(g)) return -1;
    if (count < 1 || count > MSV_MAX_NODE_INPUTS)
        BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "concat of %d tensors", count);
    msv_node n = new_node(MSV_OP_CONCAT, xs[0]);
    for (int i = 0; i < count; i++)
        n.in[i] = xs[i];
    n.n_in = count;
    return add_node(g, n);
}

int msv_pad(msv_graph *g, int x, int top, int left, int bottom, int right, float value) {
    if (failed(g)) return -1;
    if (top < 0 || left < 0 || bottom < 0 || right < 0) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "negative padding");
    msv_node n = new_node(MSV_OP_PAD, x);
    n.ints[0] = top;
    n.ints[1] = left;
    n.ints[2] = bottom;
    n.ints[3] = right;
    n.alpha = value;
    return add_node(g, n);
}

int msv_slice(msv_graph *g, int x, int c0, int c1, int h0, int h1, int w0, int w1) {
    if (failed(g)) return -1;
    msv_node n = new_node(MSV_OP_SLICE, x);
    int v[6] = {c0, c1, h0, h1, w0, w1};
    memcpy(n.ints, v, sizeof v);
    return add_node(g, n);
}

static int shuffle(msv_graph *g, msv_op op, int x, int r) {
    if (failed(g)) return -1;
    if (r < 1) BUILD_FAIL(g, MSV_ERR_INVALID_ARGUMENT, "shuffle factor must be >= 1");
    if (op == MSV_OP_PIXEL_SHUFFLE && is_act(g, x) && channels_of(g, x) % (r * r))
        BUILD_FAIL(g, MSV_ERR_SHAPE, "pixel shuffle needs channels divisible by %d", r * r);
    msv_node n = new_node(op, x);
    n.ints[0] = r;
    return add_node(g, n);
}

int msv_pixel_shuffle(msv_graph *g, int x, int r) { return shuffle(g, MSV_OP_PIXEL_SHUFFLE, x, r); }
int msv_pixel_unshuffle(msv_graph *g, int x, int r) { return shuffle(g, MSV_OP_PIXEL_UNSHUFFLE, x, r); }

int msv_simple_gate(msv_graph *g, int x) {
    if (failed(g)) return -1;
    if (is_act(g, x) && channels_of(g, x) % 2) BUILD_FAIL(g, MSV_ERR_SHAPE, "simple gate needs an even channel count");
    return add_node(g, new_node(MSV_OP_SIMPLE_GATE, x));
}

int msv_group_norm(msv_graph *g, int x, int groups, int scale, int shift, float eps) {
    if (failed(g) || !check_norm(g, x, scale, shift, eps, "group norm")) return -1;
    if (groups < 1 || channels_of(g, x) % groups)
        BUILD_FAIL(g, MSV_ERR_SHAPE, "group norm: %d channels are not divisible into %d groups", channels_of(g, x),
                   groups);
    msv_node n = new_node(MSV_OP_GROUP_NORM, x);
    n.scale = scale;
    n.shift = shift;
    n.eps = eps;
    n.ints[0] = groups;
    return add_node(g, n);
}

/* ---------------------------------------------------------------- fusion */

static int count_uses(const msv_graph *g, int t) {
    int uses = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const msv_node *n = &g->nodes[i];
        if (n->fused_away) continue;
        for (int k = 0; k < n->n_in; k++)
            uses += n->in[k] == t;
        for (int k = 0; k < n->n_post; k++)
            uses += n->post[k].kind == MSV_POST_BINARY && n->post[k].tensor == t;
    }
    for (int i = 0; i < g->n_outputs; i++)
        uses += g->outputs[i] == t;
    return uses;
}

static int accepts_post_ops(msv_op op) {
    return op == MSV_OP_CONV || op == MSV_OP_DECONV || op == MSV_OP_LINEAR || op == MSV_OP_BINARY;
}

/* Folds elementwise ops, PReLU, and binary ops whose first operand is a conv/deconv/linear/binary result into that
 * producer as oneDNN post-ops. The fused node takes the consumer's place in the order, so every operand it
 * reads is ready by then. */
static void fuse_post_ops(msv_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        msv_node *c = &g->nodes[i];
        if (c->fused_away || (c->op != MSV_OP_ELTWISE && c->op != MSV_OP_BINARY && c->op != MSV_OP_PRELU)) continue;
        int t = c->in[0];
        int pi = g->tensors[t].producer;
        if (pi < 0) continue;
        msv_node *p = &g->nodes[pi];
        if (p->fused_away || !accepts_post_ops(p->op) || p->n_post >= MSV_MAX_POST_OPS || count_uses(g, t) != 1)
            continue;
        if (c->op == MSV_OP_BINARY && c->in[1] == t) continue; /* x op x */
        msv_post_op po;
        memset(&po, 0, sizeof po);
        if (c->op == MSV_OP_ELTWISE) {
            po.kind = MSV_POST_ELTWISE;
            po.act = (msv_act)c->alg;
            po.alpha = c->alpha;
            po.beta = c->beta;
        } else if (c->op == MSV_OP_PRELU) {
            po.kind = MSV_POST_PRELU;
            po.tensor = c->weight;
        } else {
            po.kind = MSV_POST_BINARY;
            po.bin = (msv_binop)c->alg;
            po.tensor = c->in[1];
        }
        msv_node fused = *p;
        fused.post[fused.n_post++] = po;
        fused.out = c->out;
        p->fused_away = 1;
        *c = fused;
        g->tensors[c->out].producer = i;
    }
}

msv_status msv_graph_finalize(msv_graph *g, msv_error *err) {
    if (failed(g)) {
        if (err) *err = g->first_error;
        return g->first_error.status;
    }
    if (g->n_inputs == 0 || g->n_outputs == 0)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "a graph needs at least one input and one output");
    if (!g->finalized) fuse_post_ops(g);
    g->finalized = 1;
    return MSV_OK;
}

/* ---------------------------------------------------------------- running */

int msv_graph_num_inputs(const msv_graph *g) { return g->n_inputs; }
int msv_graph_num_outputs(const msv_graph *g) { return g->n_outputs; }

msv_status msv_graph_infer(msv_graph *g, const msv_shape *in_shapes, msv_shape *out_shapes, msv_error *err) {
    if (!g->finalized) return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "graph is not finalized");
    msv_shape *shapes = malloc((size_t)g->n_tensors * sizeof(msv_shape));
    if (!shapes) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    msv_status st = msv_infer_all(g, in_shapes, shapes, err);
    if (st == MSV_OK)
        for (int i = 0; i < g->n_outputs; i++)
            out_shapes[i] = shapes[g->outputs[i]];
    free(shapes);
    return st;
}

#ifdef _OPENMP
#include <omp.h>
#endif

msv_status msv_graph_run(msv_graph *g, const msv_shape *in_shapes, const float *const *inputs, float *const *outputs,
                         int threads, msv_error *err) {
    if (!g->finalized) return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "graph is not finalized");
#ifdef _OPENMP
    if (threads > 0) {
        msv_status st = msv_check_threads(threads, err);
        if (st != MSV_OK) return st;
        omp_set_num_threads(threads);
    }
#else
    (void)threads;
#endif
    pthread_mutex_lock(&g->run_lock);
    msv_status st = msv_backend_run(g, in_shapes, inputs, outputs, err);
    pthread_mutex_unlock(&g->run_lock);
    return st;
}

int64_t msv_graph_primitive_count(const msv_graph *g) { return msv_backend_primitive_count(g->plans); }
int64_t msv_graph_arena_bytes(const msv_graph *g) { return msv_backend_arena_bytes(g->plans); }
