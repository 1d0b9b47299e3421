/* layout.c - concat, pad, slice, pixel_shuffle, pixel_unshuffle: signatures and shape rules. */
#include "ops_util.h"

static const msv_concat_params concat_defaults = {.axis = 1};
static const char *const k_pad_modes[] = {"constant", "reflect", "symmetric", NULL};
static const msv_pad_params pad_defaults = {.mode = MSV_PAD_CONSTANT};
static const msv_slice_params slice_defaults = {
    .end = {MSV_SLICE_END, MSV_SLICE_END, MSV_SLICE_END, MSV_SLICE_END, MSV_SLICE_END}};
static const msv_shuffle_params shuffle_defaults = {.factor = 1};

#define MAX_PAD (1 << 20)
#define MAX_SHUFFLE 1024

const msv_signature msv_signature_concat = {
    .doc = "concatenation of 1 to 16 tensors along an axis",
    .inputs = {"inputs*"},
    .n_inputs = 1,
    .fields = {FIELD(msv_concat_params, axis, MSV_FIELD_INT, "axis", "the axis")},
    .n_fields = 1,
    .params_size = sizeof(msv_concat_params),
    .defaults = &concat_defaults,
};

const msv_signature msv_signature_pad = {
    .doc = "spatial padding of a 4-D tensor: with a constant `value`, or the border mirrored (reflect: without "
           "the edge row, symmetric: with it; TF MirrorPad)",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {FIELD(msv_pad_params, top, MSV_FIELD_PADDING, "padding", "(top, left, bottom, right)"),
               FIELD(msv_pad_params, value, MSV_FIELD_FLOAT, "value", "the fill value"),
               ENUM_FIELD(msv_pad_params, mode, k_pad_modes, "mode", "constant, reflect or symmetric")},
    .n_fields = 3,
    .params_size = sizeof(msv_pad_params),
    .defaults = &pad_defaults,
};

const msv_signature msv_signature_slice = {
    .doc = "x[begin[0]:end[0], begin[1]:end[1], ...]: one entry per axis (None or missing: the whole axis)",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {DIMS_FIELD(msv_slice_params, begin, 0, "begin", "first index per axis"),
               DIMS_FIELD(msv_slice_params, end, MSV_SLICE_END, "end", "end index (exclusive) per axis")},
    .n_fields = 2,
    .params_size = sizeof(msv_slice_params),
    .defaults = &slice_defaults,
};

const msv_signature msv_signature_pixel_shuffle = {
    .doc = "torch PixelShuffle: (N, C r^2, H, W) -> (N, C, H r, W r)",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {FIELD(msv_shuffle_params, factor, MSV_FIELD_INT, "factor", "r")},
    .n_fields = 1,
    .params_size = sizeof(msv_shuffle_params),
    .defaults = &shuffle_defaults,
};

const msv_signature msv_signature_pixel_unshuffle = {
    .doc = "torch PixelUnshuffle: (N, C, H r, W r) -> (N, C r^2, H, W)",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {FIELD(msv_shuffle_params, factor, MSV_FIELD_INT, "factor", "r")},
    .n_fields = 1,
    .params_size = sizeof(msv_shuffle_params),
    .defaults = &shuffle_defaults,
};

msv_status msv_shape_concat(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                            msv_error *err) {
    const msv_shape x = shapes[n->in[0]];
    const int axis = n->p.concat.axis;
    if (axis < 0 || axis >= x.ndims)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "axis %d is outside the %d dimensions", axis, x.ndims);
    *out = x;
    int64_t total = 0;
    for (int i = 0; i < n->n_in; i++) {
        msv_status st = msv_need_activation(g, n, i, err);
        if (st != MSV_OK) return st;
        const msv_shape s = shapes[n->in[i]];
        if (s.ndims != x.ndims) return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "concat inputs differ in rank");
        for (int d = 0; d < x.ndims; d++)
            if (d != axis && msv_known(s.dims[d]) && msv_known(x.dims[d]) && s.dims[d] != x.dims[d])
                return msv_set_error(err, MSV_ERR_SHAPE, "concat inputs differ in dimension %d", d);
        total = msv_known(total) && msv_known(s.dims[axis]) ? total + s.dims[axis] : MSV_DYNAMIC;
    }
    out->dims[axis] = total;
    return MSV_OK;
}

msv_status msv_shape_pad(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                         msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st != MSV_OK) return st;
    const msv_pad_params *p = &n->p.pad;
    const int pads[4] = {p->top, p->left, p->bottom, p->right};
    for (int i = 0; i < 4; i++)
        if (pads[i] < 0 || pads[i] > MAX_PAD)
            return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "padding must lie in 0..%d", MAX_PAD);
    if ((int)p->mode < 0 || p->mode >= MSV_PAD_COUNT)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "unknown pad mode %d", (int)p->mode);
    const msv_shape x = shapes[n->in[0]];
    if (p->mode != MSV_PAD_CONSTANT) {
        /* a mirror reaches at most size - 1 (reflect) or size (symmetric) rows beyond each edge */
        const int64_t slack = p->mode == MSV_PAD_REFLECT ? 1 : 0;
        const int64_t h = x.dims[2], w = x.dims[3];
        if ((msv_known(h) && (p->top > h - slack || p->bottom > h - slack)) ||
            (msv_known(w) && (p->left > w - slack || p->right > w - slack)))
            return msv_set_error(err, MSV_ERR_SHAPE, "%s padding (%d, %d, %d, %d) exceeds the %s of a %lldx%lld input",
                                 k_pad_modes[p->mode], p->top, p->left, p->bottom, p->right,
                                 slack ? "size - 1" : "size", (long long)h, (long long)w);
    }
    *out = msv_shape4(x.dims[0], x.dims[1], msv_known(x.dims[2]) ? x.dims[2] + p->top + p->bottom : MSV_DYNAMIC,
                      msv_known(x.dims[3]) ? x.dims[3] + p->left + p->right : MSV_DYNAMIC);
    return MSV_OK;
}

msv_status msv_shape_slice(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                           msv_error *err) {
    msv_status st = msv_need_activation(g, n, 0, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    const msv_slice_params *p = &n->p.slice;
    *out = x;
    for (int d = 0; d < x.ndims; d++) {
        const int64_t b = p->begin[d], e = p->end[d];
        if (b < 0 || e < 0) return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "slice bounds must be non-negative");
        if (!msv_known(x.dims[d])) {
            out->dims[d] = e == MSV_SLICE_END ? MSV_DYNAMIC : e - b;
            if (e != MSV_SLICE_END && e <= b) return msv_set_error(err, MSV_ERR_SHAPE, "empty slice");
            continue;
        }
        const int64_t end = e > x.dims[d] ? x.dims[d] : e;
        if (b >= end) return msv_set_error(err, MSV_ERR_SHAPE, "empty slice");
        out->dims[d] = end - b;
    }
    return MSV_OK;
}

static msv_status check_factor(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st == MSV_OK && (n->p.shuffle.factor < 1 || n->p.shuffle.factor > MAX_SHUFFLE))
        st = msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "shuffle factor must lie in 1..%d", MAX_SHUFFLE);
    return st;
}

msv_status msv_shape_pixel_shuffle(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                   msv_error *err) {
    msv_status st = check_factor(g, n, shapes, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    const int64_t r = n->p.shuffle.factor;
    if (x.dims[1] % (r * r))
        return msv_set_error(err, MSV_ERR_SHAPE, "pixel shuffle needs channels divisible by %lld", (long long)(r * r));
    *out = msv_shape4(x.dims[0], x.dims[1] / (r * r), msv_known(x.dims[2]) ? x.dims[2] * r : MSV_DYNAMIC,
                      msv_known(x.dims[3]) ? x.dims[3] * r : MSV_DYNAMIC);
    return MSV_OK;
}

msv_status msv_shape_pixel_unshuffle(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                     msv_error *err) {
    msv_status st = check_factor(g, n, shapes, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    const int64_t r = n->p.shuffle.factor;
    if ((msv_known(x.dims[2]) && x.dims[2] % r) || (msv_known(x.dims[3]) && x.dims[3] % r))
        return msv_set_error(err, MSV_ERR_SHAPE, "pixel unshuffle needs sizes divisible by %lld, got %lldx%lld",
                             (long long)r, (long long)x.dims[2], (long long)x.dims[3]);
    *out = msv_shape4(x.dims[0], x.dims[1] * r * r, msv_known(x.dims[2]) ? x.dims[2] / r : MSV_DYNAMIC,
                      msv_known(x.dims[3]) ? x.dims[3] / r : MSV_DYNAMIC);
    return MSV_OK;
}
