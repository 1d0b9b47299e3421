/* builder_util.c - see builder_util.h. */
#include "builder_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/graph_internal.h"

msv_shape msv_shape1(int64_t a) {
    msv_shape s = {1, {a, 0, 0, 0, 0}};
    return s;
}

msv_shape msv_shape4(int64_t a, int64_t b, int64_t c, int64_t d) {
    msv_shape s = {4, {a, b, c, d, 0}};
    return s;
}

int msv_b_weight(msv_builder *b, const char *name, msv_shape expected) {
    msv_error err = {0};
    const float *data = msv_weights_get(b->w, name, expected, &err);
    if (!data) {
        if (b->err.status == MSV_OK) b->err = err;
        if (b->g->first_error.status == MSV_OK) b->g->first_error = err;
        return -1;
    }
    msv_shape actual = expected;
    for (int i = 0; i < actual.ndims; i++)
        if (actual.dims[i] < 0) return -1; /* builders always know the full shape; wildcards are for lookups */
    return msv_const(b->g, actual, data);
}

int msv_b_conv(msv_builder *b, int x, const char *prefix, int out_ch, int k, int stride, int pad, int dilation,
               int groups, int has_bias) {
    char name[256];
    if (x < 0) return -1;
    int in_ch = (int)b->g->tensors[x].shape.dims[1];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int w = msv_b_weight(b, name, msv_shape4(out_ch, in_ch / groups, k, k));
    int bias = -1;
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        bias = msv_b_weight(b, name, msv_shape1(out_ch));
    }
    if (w < 0 || (has_bias && bias < 0)) return -1;
    msv_conv_params p = {k, k, stride, stride, pad, pad, pad, pad, dilation, dilation, groups, 0, 0};
    return msv_conv2d(b->g, x, w, bias, &p);
}

int msv_b_setting_int(const msv_settings *s, const char *name, int fallback) {
    double v;
    return msv_settings_get(s, name, &v, 1) >= 1 ? (int)v : fallback;
}

/* Looks a weight up; on failure records the error in the graph and returns NULL. */
static const float *lookup(msv_builder *b, const char *name, msv_shape expected) {
    msv_error err = {0};
    const float *data = msv_weights_get(b->w, name, expected, &err);
    if (!data && b->g->first_error.status == MSV_OK) b->g->first_error = err;
    return data;
}

int msv_b_conv_bn(msv_builder *b, int x, const char *conv, const char *bn, int out_ch, int k, int stride, int pad,
                  int dilation, int groups, int conv_has_bias, float eps) {
    char name[256];
    if (x < 0) return -1;
    const int in_ch = (int)b->g->tensors[x].shape.dims[1];
    snprintf(name, sizeof name, "%s.weight", conv);
    const float *w = lookup(b, name, msv_shape4(out_ch, in_ch / groups, k, k));
    const float *cb = NULL;
    if (conv_has_bias) {
        snprintf(name, sizeof name, "%s.bias", conv);
        cb = lookup(b, name, msv_shape1(out_ch));
    }
    const char *parts[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *bnp[4];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", bn, parts[i]);
        bnp[i] = lookup(b, name, msv_shape1(out_ch));
    }
    snprintf(name, sizeof name, "%s.num_batches_tracked", bn); /* a counter, not used for inference */
    if (msv_weights_has(b->w, name)) lookup(b, name, msv_shape1(1));
    if (!w || (conv_has_bias && !cb) || !bnp[0] || !bnp[1] || !bnp[2] || !bnp[3]) return -1;
    const size_t per_out = (size_t)(in_ch / groups) * k * k;
    float *wf = malloc(sizeof(float) * per_out * (size_t)out_ch), *bf = malloc(sizeof(float) * (size_t)out_ch);
    if (!wf || !bf) {
        free(wf);
        free(bf);
        msv_set_error(&b->g->first_error, MSV_ERR_OUT_OF_MEMORY, "out of memory folding batch norm");
        return -1;
    }
    for (int o = 0; o < out_ch; o++) {
        const float scale = bnp[0][o] / sqrtf(bnp[3][o] + eps);
        for (size_t i = 0; i < per_out; i++)
            wf[o * per_out + i] = w[o * per_out + i] * scale;
        bf[o] = ((cb ? cb[o] : 0.f) - bnp[2][o]) * scale + bnp[1][o];
    }
    int wt = msv_const(b->g, msv_shape4(out_ch, in_ch / groups, k, k), wf);
    int bt = msv_const(b->g, msv_shape1(out_ch), bf);
    free(wf);
    free(bf);
    msv_conv_params p = {k, k, stride, stride, pad, pad, pad, pad, dilation, dilation, groups, 0, 0};
    return msv_conv2d(b->g, x, wt, bt, &p);
}
