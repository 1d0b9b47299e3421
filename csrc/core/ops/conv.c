/* conv.c - conv2d, deconv2d, linear: signatures and shape rules. */
#include <stdio.h>

#include "ops_util.h"

#define CONV_FIELDS(doc_kernel)                                                                                     \
    FIELD(msv_conv_params, win.kh, MSV_FIELD_PAIR, "kernel", doc_kernel),                                           \
        FIELD(msv_conv_params, win.sh, MSV_FIELD_PAIR, "stride", "stride (h, w)"),                                  \
        FIELD(msv_conv_params, win.pad_t, MSV_FIELD_PADDING, "padding", "zero padding (top, left, bottom, right)"), \
        FIELD(msv_conv_params, win.dh, MSV_FIELD_PAIR, "dilation", "dilation (h, w)"),                              \
        FIELD(msv_conv_params, groups, MSV_FIELD_INT, "groups", "groups")

static const msv_conv_params conv_defaults = {.win = {.sh = 1, .sw = 1, .dh = 1, .dw = 1}, .groups = 1};

const msv_signature msv_signature_conv2d = {
    .doc = "2-D convolution: x (N, C, H, W), weight (O, C/groups, kh, kw) constant, bias (O) constant",
    .inputs = {"x", "weight", "bias?"},
    .n_inputs = 3,
    .fields = {CONV_FIELDS("kernel size (h, w): optional, must match the weight")},
    .n_fields = 5,
    .params_size = sizeof(msv_conv_params),
    .defaults = &conv_defaults,
};

const msv_signature msv_signature_deconv2d = {
    .doc = "2-D transposed convolution (torch ConvTranspose2d): weight (C, O/groups, kh, kw) constant",
    .inputs = {"x", "weight", "bias?"},
    .n_inputs = 3,
    .fields = {CONV_FIELDS("kernel size (h, w): optional, must match the weight"),
               FIELD(msv_conv_params, out_pad_h, MSV_FIELD_PAIR, "output_padding", "torch's output_padding (h, w)")},
    .n_fields = 6,
    .params_size = sizeof(msv_conv_params),
    .defaults = &conv_defaults,
};

const msv_signature msv_signature_linear = {
    .doc = "dense layer: x flattened to (N, F), weight (O, F) constant, bias (O) constant; (N, O, 1, 1) for 4-D x",
    .inputs = {"x", "weight", "bias?"},
    .n_inputs = 3,
};

/* The checks conv2d and deconv2d share; *w gets the effective window. */
static msv_status check_conv(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_window *w,
                             msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st != MSV_OK) return st;
    if (!msv_is_const(g, n->in[1]) || shapes[n->in[1]].ndims != 4)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "the weight must be a constant with 4 dimensions");
    const msv_shape ws = shapes[n->in[1]];
    *w = msv_conv_window(g, n);
    const msv_window given = n->p.conv.win;
    if ((given.kh || given.kw) && (given.kh != w->kh || given.kw != w->kw))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "weight (%lld, %lld, %lld, %lld) does not fit kernel %dx%d",
                             (long long)ws.dims[0], (long long)ws.dims[1], (long long)ws.dims[2], (long long)ws.dims[3],
                             given.kh, given.kw);
    if (n->p.conv.groups < 1 || n->p.conv.groups > MSV_MAX_DIM_SIZE)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "groups must be positive");
    return msv_check_window(w, 1, err);
}

msv_status msv_shape_conv2d(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                            msv_error *err) {
    msv_window w;
    msv_status st = check_conv(g, n, shapes, &w, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]], ws = shapes[n->in[1]];
    const int groups = n->p.conv.groups;
    if (ws.dims[1] * groups != x.dims[1] || ws.dims[0] % groups)
        return msv_set_error(
            err, MSV_ERR_INVALID_ARGUMENT,
            "weight (%lld, %lld, %lld, %lld) does not fit %lld input channels, groups %d, kernel %dx%d",
            (long long)ws.dims[0], (long long)ws.dims[1], (long long)ws.dims[2], (long long)ws.dims[3],
            (long long)x.dims[1], groups, w.kh, w.kw);
    st = msv_check_vector(g, n->in[2], ws.dims[0], "bias", err);
    if (st != MSV_OK) return st;
    const int64_t oh = msv_window_out(x.dims[2], w.kh, w.sh, w.pad_t, w.pad_b, w.dh, 0);
    const int64_t ow = msv_window_out(x.dims[3], w.kw, w.sw, w.pad_l, w.pad_r, w.dw, 0);
    if (oh == 0 || ow == 0)
        return msv_set_error(err, MSV_ERR_SHAPE, "input %lldx%lld is smaller than a %dx%d convolution window",
                             (long long)x.dims[2], (long long)x.dims[3], w.kh, w.kw);
    *out = msv_shape4(x.dims[0], ws.dims[0], oh, ow);
    return MSV_OK;
}

static int64_t deconv_out(int64_t in, int k, int stride, int pad0, int pad1, int dilation, int out_pad) {
    return msv_known(in) ? (in - 1) * stride - pad0 - pad1 + (int64_t)dilation * (k - 1) + out_pad + 1 : MSV_DYNAMIC;
}

msv_status msv_shape_deconv2d(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                              msv_error *err) {
    msv_window w;
    msv_status st = check_conv(g, n, shapes, &w, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]], ws = shapes[n->in[1]];
    const msv_conv_params *p = &n->p.conv;
    if (ws.dims[0] != x.dims[1] || ws.dims[0] % p->groups)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "weight (%lld, ...) does not fit %lld input channels, groups %d", (long long)ws.dims[0],
                             (long long)x.dims[1], p->groups);
    if (p->out_pad_h < 0 || p->out_pad_w < 0 || (p->out_pad_h >= w.sh && p->out_pad_h >= w.dh) ||
        (p->out_pad_w >= w.sw && p->out_pad_w >= w.dw))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "output padding must be smaller than stride or dilation");
    const int64_t o = ws.dims[1] * p->groups;
    st = msv_check_vector(g, n->in[2], o, "bias", err);
    if (st != MSV_OK) return st;
    const int64_t oh = deconv_out(x.dims[2], w.kh, w.sh, w.pad_t, w.pad_b, w.dh, p->out_pad_h);
    const int64_t ow = deconv_out(x.dims[3], w.kw, w.sw, w.pad_l, w.pad_r, w.dw, p->out_pad_w);
    if ((msv_known(oh) && oh <= 0) || (msv_known(ow) && ow <= 0))
        return msv_set_error(err, MSV_ERR_SHAPE, "the output would be empty");
    *out = msv_shape4(x.dims[0], o, oh, ow);
    return MSV_OK;
}

msv_status msv_shape_linear(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                            msv_error *err) {
    msv_status st = msv_need_activation(g, n, 0, err);
    if (st != MSV_OK) return st;
    const msv_shape x = shapes[n->in[0]];
    if (!msv_is_const(g, n->in[1]) || shapes[n->in[1]].ndims != 2 || (x.ndims != 2 && x.ndims != 4))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "linear needs a 2-D or 4-D input and a 2-D weight");
    const msv_shape ws = shapes[n->in[1]];
    st = msv_check_vector(g, n->in[2], ws.dims[0], "bias", err);
    if (st != MSV_OK) return st;
    msv_shape features = x;
    features.dims[0] = 1;
    const int64_t f = msv_numel(features);
    if (msv_known(f) && f != ws.dims[1])
        return msv_set_error(err, MSV_ERR_SHAPE, "linear layer expects %lld features, got %lld", (long long)ws.dims[1],
                             (long long)f);
    *out = x.ndims == 4 ? msv_shape4(x.dims[0], ws.dims[0], 1, 1) : (msv_shape){2, {x.dims[0], ws.dims[0]}};
    return MSV_OK;
}
