/*
 * builder_util.h - helpers shared by the architecture builders: weights by name with expected shapes, and
 * common layer shapes. A failed lookup records the error in the graph (sticky) and yields -1, so a builder
 * reads as a plain description of the network and msv_graph_finalize() reports the first problem.
 */
#ifndef MSV_BUILDER_UTIL_H
#define MSV_BUILDER_UTIL_H

#include <stdio.h>

#include "../core/msv.h"

typedef struct msv_builder {
    msv_graph *g;
    const msv_weights *w;
    msv_error err; /* first weight error */
} msv_builder;

/* A named weight as a graph constant; dims < 0 match anything. */
int msv_b_weight(msv_builder *b, const char *name, msv_shape expected);
/* "<prefix>.weight" (O, I/groups, k, k) and "<prefix>.bias" (O) when has_bias. */
int msv_b_conv(msv_builder *b, int x, const char *prefix, int out_ch, int k, int stride, int pad, int dilation,
               int groups, int has_bias);
/* Convolution "<conv>" followed by BatchNorm "<bn>" (weight, bias, running_mean, running_var), folded at load:
 * w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta. */
int msv_b_conv_bn(msv_builder *b, int x, const char *conv, const char *bn, int out_ch, int k, int stride, int pad,
                  int dilation, int groups, int conv_has_bias, float eps);
msv_shape msv_shape1(int64_t a);
msv_shape msv_shape4(int64_t a, int64_t b, int64_t c, int64_t d);
/* Integer setting with a default; list settings through msv_settings_get. */
int msv_b_setting_int(const msv_settings *s, const char *name, int fallback);

#endif
