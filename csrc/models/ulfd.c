/*
 * ulfd.c - ULFD "slim" face detector (Ultra-Light-Fast-Generic-Face-Detector-1MB, ModelScope's
 * damo/cv_manual_face-detection_ulfd, modelscope/models/cv/face_detection/ulfd_slim/).
 *
 * Settings (optional): base_channel (16), num_classes (2). ModelScope always uses the defaults.
 * Weights (ModelScope/torch names, BatchNorm eps 1e-5):
 *   base_net.0.{0,1}                  conv_bn: 3x3 stride 2 conv (no bias) + BN + ReLU, 3 -> b
 *   base_net.i.{0,1,3,4}, i = 1..12   conv_dw: 3x3 depthwise (stride s, no bias) + BN + ReLU,
 *                                     1x1 (no bias) + BN + ReLU
 *   extras.0.0, extras.0.2.{0,2}      1x1 (16b -> 4b) + ReLU, then a separable 3x3 stride 2 (depthwise + ReLU +
 *                                     1x1 4b -> 16b) + ReLU
 *   {classification,regression}_headers.i.{0,2}, i = 0..2   separable 3x3 heads: depthwise 3x3 + ReLU + 1x1
 *   {classification,regression}_headers.3                   plain 3x3 conv heads on the extras output
 * Widths (b = base_channel): layer outputs b, 2b, 2b, 2b, 4b, 4b, 4b, 4b, 8b, 8b, 8b, 16b, 16b; strides 2 at layers
 * 0, 2, 4, 8, 11. The four detection levels read layer 7 (4b ch, stride 8), layer 10 (8b, stride 16),
 * layer 12 (16b, stride 32) and the extras output (16b, stride 64), with 3, 2, 2, 3 anchors per cell.
 *
 * Input: (N, 3, H, W) BGR, (x - 127) / 128 (ModelScope feeds 640x480; the graph takes any size).
 * Outputs, 8 in this order, raw head outputs in NCHW:
 *   cls0, loc0, cls1, loc1, cls2, loc2, cls3, loc3
 *   cls_i: (N, A_i * num_classes, H_i, W_i), channel a * num_classes + c (class c of anchor a)
 *   loc_i: (N, A_i * 4, H_i, W_i),           channel a * 4 + k (k = dx, dy, dw, dh of anchor a)
 * i.e. torch's permute(0, 2, 3, 1).view(N, -1, num_classes / 4) rows are (row, col, anchor) in that order; the
 * caller does that reshape, the softmax over classes and the prior decoding.
 */
#include <stdio.h>

#include "../core/graph_internal.h"
#include "builder_util.h"

#define BN_EPS 1e-5f
#define N_LAYERS 13
#define N_LEVELS 4

static int relu(msv_graph *g, int x) { return msv_eltwise(g, x, MSV_ACT_RELU, 0.f, 0.f); }

/* base_net.0: Conv2d(3, out, 3, stride, 1, bias=False) + BatchNorm2d + ReLU. */
static int conv_bn(msv_builder *b, int x, int idx, int out, int stride) {
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "base_net.%d.0", idx);
    snprintf(bn, sizeof bn, "base_net.%d.1", idx);
    return relu(b->g, msv_b_conv_bn(b, x, conv, bn, out, 3, stride, 1, 1, 1, 0, BN_EPS));
}

/* base_net.i: depthwise 3x3 (stride) + BN + ReLU, pointwise 1x1 + BN + ReLU, convolutions without bias. */
static int conv_dw(msv_builder *b, int x, int idx, int in, int out, int stride) {
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "base_net.%d.0", idx);
    snprintf(bn, sizeof bn, "base_net.%d.1", idx);
    x = relu(b->g, msv_b_conv_bn(b, x, conv, bn, in, 3, stride, 1, 1, in, 0, BN_EPS));
    snprintf(conv, sizeof conv, "base_net.%d.3", idx);
    snprintf(bn, sizeof bn, "base_net.%d.4", idx);
    return relu(b->g, msv_b_conv_bn(b, x, conv, bn, out, 1, 1, 0, 1, 1, 0, BN_EPS));
}

/* SeperableConv2d(in, out, 3, stride, padding 1) at "<prefix>": "<prefix>.0" depthwise 3x3 with bias, ReLU,
 * "<prefix>.2" 1x1 with bias (no activation after it). */
static int separable(msv_builder *b, int x, const char *prefix, int in, int out, int stride) {
    char name[96];
    snprintf(name, sizeof name, "%s.0", prefix);
    x = relu(b->g, msv_b_conv(b, x, name, in, 3, stride, 1, 1, in, 1));
    snprintf(name, sizeof name, "%s.2", prefix);
    return msv_b_conv(b, x, name, out, 1, 1, 0, 1, 1, 1);
}

msv_status msv_build_ulfd(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

msv_status msv_build_ulfd(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    const int bc = msv_b_setting_int(s, "base_channel", 16);
    const int ncls = msv_b_setting_int(s, "num_classes", 2);
    *out = NULL;
    if (bc <= 0 || bc > 4096 || ncls < 1 || ncls > 1024)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "invalid ULFD settings: base_channel %d (1..4096), num_classes %d (1..1024)", bc, ncls);

    /* Mb_Tiny's backbone (layer 0 is conv_bn, the others conv_dw) */
    static const int mult[N_LAYERS] = {1, 2, 2, 2, 4, 4, 4, 4, 8, 8, 8, 16, 16};
    static const int stride[N_LAYERS] = {2, 1, 2, 1, 2, 1, 1, 1, 2, 1, 1, 2, 1};
    /* detection levels: the backbone layer they read (-1: the extras output) and their anchors per cell */
    static const int source_layer[N_LEVELS] = {7, 10, 12, -1};
    static const int anchors[N_LEVELS] = {3, 2, 2, 3};

    msv_graph *g = NULL;
    msv_status st = msv_graph_create(&g, err);
    if (st != MSV_OK) return st;
    msv_builder b = {g, w, {0}};
    char prefix[96];

    int feats[N_LEVELS] = {-1, -1, -1, -1};
    int x = msv_input(g, 3);
    x = conv_bn(&b, x, 0, bc * mult[0], stride[0]);
    for (int i = 1; i < N_LAYERS; i++) {
        x = conv_dw(&b, x, i, bc * mult[i - 1], bc * mult[i], stride[i]);
        for (int l = 0; l < N_LEVELS; l++)
            if (source_layer[l] == i) feats[l] = x;
    }
    /* extras.0: Conv2d(16b, 4b, 1) + ReLU + SeperableConv2d(4b, 16b, 3, stride 2, padding 1) + ReLU */
    x = relu(g, msv_b_conv(&b, x, "extras.0.0", bc * 4, 1, 1, 0, 1, 1, 1));
    feats[3] = relu(g, separable(&b, x, "extras.0.2", bc * 4, bc * 16, 2));

    const int level_ch[N_LEVELS] = {bc * 4, bc * 8, bc * 16, bc * 16};
    for (int l = 0; l < N_LEVELS; l++) {
        for (int head = 0; head < 2; head++) {
            const char *kind = head == 0 ? "classification_headers" : "regression_headers";
            const int oc = anchors[l] * (head == 0 ? ncls : 4);
            int y;
            snprintf(prefix, sizeof prefix, "%s.%d", kind, l);
            if (l < N_LEVELS - 1)
                y = separable(&b, feats[l], prefix, level_ch[l], oc, 1);
            else
                y = msv_b_conv(&b, feats[l], prefix, oc, 3, 1, 1, 1, 1, 1);
            msv_output(g, y);
        }
    }
    st = msv_graph_finalize(g, err);
    if (st != MSV_OK) {
        msv_graph_destroy(g);
        return st;
    }
    *out = g;
    return MSV_OK;
}
