/*
 * mtcnn.c - MTCNN's three networks (ModelScope's manual-face-detection-mtcnn, from mtcnn-pytorch), three graphs.
 *
 * No settings. Weights: the state-dict names of ModelScope's PNet/RNet/ONet (weights/{pnet,rnet,onet}.npy):
 * features.convK.{weight,bias}, features.preluK.weight, and the heads conv4_x (P-Net), conv5_x (R-Net),
 * conv6_x (O-Net). Input: (N, 3, H, W) images already normalised as (x - 127.5) * 0.0078125.
 *
 * P-Net (fully convolutional, any H, W >= 12):
 *   conv3x3 3->10, PReLU, maxpool 2/2 ceil, conv3x3 10->16, PReLU, conv3x3 16->32, PReLU,
 *   outputs: conv4_2 (N, 4, h, w) box offsets, softmax_c(conv4_1) (N, 2, h, w) face probabilities.
 * R-Net (24x24 crops):
 *   conv3x3 3->28, PReLU, maxpool 3/2 ceil, conv3x3 28->48, PReLU, maxpool 3/2 ceil, conv2x2 48->64, PReLU,
 *   flatten, dense 576->128, PReLU; outputs: conv5_2 (N, 4, 1, 1) offsets, softmax(conv5_1) (N, 2, 1, 1).
 * O-Net (48x48 crops):
 *   conv3x3 3->32, PReLU, maxpool 3/2 ceil, conv3x3 32->64, PReLU, maxpool 3/2 ceil, conv3x3 64->64, PReLU,
 *   maxpool 2/2 ceil, conv2x2 64->128, PReLU, flatten, dense 1152->256, (dropout: identity), PReLU;
 *   outputs: conv6_3 (N, 10, 1, 1) landmarks, conv6_2 (N, 4, 1, 1) offsets, softmax(conv6_1) (N, 2, 1, 1).
 * The output order is the torch modules' return order.
 *
 * Flatten quirk: the reference's Flatten transposes (N, C, H, W) to (N, C, W, H) before flattening (the weights
 * come from a Caffe model); our dense layer flattens in (C, H, W) order, so the first dense weight's columns are
 * permuted at load: ours[o][c][h][w] = theirs[o][c][w][h].
 */
#include <stdlib.h>
#include <string.h>

#include "../core/graph_internal.h"
#include "builder_util.h"

msv_status msv_build_mtcnn_pnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_rnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_onet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

/* features.conv<i> (k x k, stride 1, no padding) followed by features.prelu<i>. */
static int conv_prelu(msv_builder *b, int x, int i, int out_ch, int k) {
    char name[64];
    snprintf(name, sizeof name, "features.conv%d", i);
    x = msv_b_conv(b, x, name, out_ch, k, 1, 0, 1, 1, 1);
    snprintf(name, sizeof name, "features.prelu%d.weight", i);
    return msv_prelu(b->g, x, msv_b_weight(b, name, msv_shape1(out_ch)));
}

static int max_pool_ceil(msv_graph *g, int x, int k, int stride) {
    msv_conv_params p = {k, k, stride, stride, 0, 0, 0, 0, 1, 1, 1, 0, 0};
    return msv_pool2d(g, x, MSV_POOL_MAX, &p, 1);
}

/* "<prefix>.weight" (out, in) and "<prefix>.bias" (out): a dense layer on (N, in, 1, 1). */
static int dense(msv_builder *b, int x, const char *prefix, int out_f, int in_f) {
    char name[64];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int wt = msv_b_weight(b, name, (msv_shape){2, {out_f, in_f, 0, 0, 0}});
    snprintf(name, sizeof name, "%s.bias", prefix);
    int bias = msv_b_weight(b, name, msv_shape1(out_f));
    return msv_linear(b->g, x, wt, bias);
}

/* The first dense layer after the (C, W, H)-order Flatten: weight columns permuted to (C, H, W) order. */
static int dense_after_flatten(msv_builder *b, int x, const char *prefix, int out_f, int c, int h, int w) {
    char name[64];
    const int in_f = c * h * w;
    snprintf(name, sizeof name, "%s.weight", prefix);
    msv_error e = {0};
    const float *src = msv_weights_get(b->w, name, (msv_shape){2, {out_f, in_f, 0, 0, 0}}, &e);
    if (!src) {
        if (b->g->first_error.status == MSV_OK) b->g->first_error = e;
        return -1;
    }
    float *dst = malloc(sizeof(float) * (size_t)out_f * (size_t)in_f);
    if (!dst) {
        msv_set_error(&b->g->first_error, MSV_ERR_OUT_OF_MEMORY, "out of memory");
        return -1;
    }
    for (int o = 0; o < out_f; o++)
        for (int ci = 0; ci < c; ci++)
            for (int hi = 0; hi < h; hi++)
                for (int wi = 0; wi < w; wi++)
                    dst[(size_t)o * in_f + ((size_t)ci * h + hi) * w + wi] =
                        src[(size_t)o * in_f + ((size_t)ci * w + wi) * h + hi];
    int wt = msv_const(b->g, (msv_shape){2, {out_f, in_f, 0, 0, 0}}, dst);
    free(dst);
    snprintf(name, sizeof name, "%s.bias", prefix);
    int bias = msv_b_weight(b, name, msv_shape1(out_f));
    return msv_linear(b->g, x, wt, bias);
}

static int dense_prelu(msv_builder *b, int x, int i, int out_f) {
    char name[64];
    snprintf(name, sizeof name, "features.prelu%d.weight", i);
    return msv_prelu(b->g, x, msv_b_weight(b, name, msv_shape1(out_f)));
}

static msv_status finish(msv_graph *g, msv_graph **out, msv_error *err) {
    msv_status st = msv_graph_finalize(g, err);
    if (st != MSV_OK) {
        msv_graph_destroy(g);
        return st;
    }
    *out = g;
    return MSV_OK;
}

msv_status msv_build_mtcnn_pnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    (void)s;
    msv_graph *g = NULL;
    msv_status st = msv_graph_create(&g, err);
    if (st != MSV_OK) return st;
    msv_builder b = {g, w, {0}};
    int x = msv_input(g, 3);
    x = conv_prelu(&b, x, 1, 10, 3);
    x = max_pool_ceil(g, x, 2, 2);
    x = conv_prelu(&b, x, 2, 16, 3);
    x = conv_prelu(&b, x, 3, 32, 3);
    int prob = msv_b_conv(&b, x, "conv4_1", 2, 1, 1, 0, 1, 1, 1);
    int offsets = msv_b_conv(&b, x, "conv4_2", 4, 1, 1, 0, 1, 1, 1);
    msv_output(g, offsets);
    msv_output(g, msv_softmax_channels(g, prob));
    return finish(g, out, err);
}

msv_status msv_build_mtcnn_rnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    (void)s;
    msv_graph *g = NULL;
    msv_status st = msv_graph_create(&g, err);
    if (st != MSV_OK) return st;
    msv_builder b = {g, w, {0}};
    int x = msv_input(g, 3);         /* 24 x 24 */
    x = conv_prelu(&b, x, 1, 28, 3); /* 22 */
    x = max_pool_ceil(g, x, 3, 2);   /* 11 */
    x = conv_prelu(&b, x, 2, 48, 3); /* 9 */
    x = max_pool_ceil(g, x, 3, 2);   /* 4 */
    x = conv_prelu(&b, x, 3, 64, 2); /* 3 */
    x = dense_after_flatten(&b, x, "features.conv4", 128, 64, 3, 3);
    x = dense_prelu(&b, x, 4, 128);
    int prob = dense(&b, x, "conv5_1", 2, 128);
    int offsets = dense(&b, x, "conv5_2", 4, 128);
    msv_output(g, offsets);
    msv_output(g, msv_softmax_channels(g, prob));
    return finish(g, out, err);
}

msv_status msv_build_mtcnn_onet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    (void)s;
    msv_graph *g = NULL;
    msv_status st = msv_graph_create(&g, err);
    if (st != MSV_OK) return st;
    msv_builder b = {g, w, {0}};
    int x = msv_input(g, 3);          /* 48 x 48 */
    x = conv_prelu(&b, x, 1, 32, 3);  /* 46 */
    x = max_pool_ceil(g, x, 3, 2);    /* 23 */
    x = conv_prelu(&b, x, 2, 64, 3);  /* 21 */
    x = max_pool_ceil(g, x, 3, 2);    /* 10 */
    x = conv_prelu(&b, x, 3, 64, 3);  /* 8 */
    x = max_pool_ceil(g, x, 2, 2);    /* 4 */
    x = conv_prelu(&b, x, 4, 128, 2); /* 3 */
    x = dense_after_flatten(&b, x, "features.conv5", 256, 128, 3, 3);
    x = dense_prelu(&b, x, 5, 256);
    int prob = dense(&b, x, "conv6_1", 2, 256);
    int offsets = dense(&b, x, "conv6_2", 4, 256);
    int landmarks = dense(&b, x, "conv6_3", 10, 256);
    msv_output(g, landmarks);
    msv_output(g, offsets);
    msv_output(g, msv_softmax_channels(g, prob));
    return finish(g, out, err);
}
