/*
 * mogface.c - MogFace (ModelScope's damo/cv_resnet101_face-detection_cvpr22papermogface, CVPR 2022).
 *
 * Weights: the state dict of ModelScope's MogFace module (backbone.*, fpn.*, pred_net.*).
 * Settings:
 *   layers  (list of 4)  Bottleneck blocks per ResNet stage (default 3, 4, 23, 3: ResNet-101)
 * Input: (1, 3, H, W) normalised RGB. Outputs, per level (strides 4, 8, 16, 32, 64, 128): sigmoid(cls) (1 channel)
 * then loc (4 channels), 12 outputs at the level's resolution.
 *
 * Network (ModelScope models/cv/face_detection/mogface/models/):
 *   ResNet (torchvision v1.5 Bottleneck: stride on the 3x3; BatchNorm eps 1e-5 folded into the convolutions)
 *   -> c2 (256), c3 (512), c4 (1024), c5 (2048)
 *   LFPN: c6 = [1x1 2048->512 + BN + ReLU, 3x3/2 512->512 + BN + ReLU](c5), c7 = [1x1 512->128 ..., 3x3/2 ->256](c6);
 *         c5/c6/c7 laterals: 3x3 -> 256;
 *         p4 = up2(c5_lat)[:h4, :w4] + main_conv(c4) (1x1 -> 256), p3 = up2(p4) + main(c3), p2 = up2(p3) + main(c2),
 *         where up2 is bilinear x2 (align_corners False); then p2/p3/p4 laterals 3x3 256 -> 256.
 *         (The six dsfd_modules convolutions are computed by ModelScope but never used: skipped here.)
 *   MogPredNet, weights shared by the six levels [p2, p3, p4, c5_lat, c6_lat, c7_lat]:
 *     SSH context: cat(relu(3x3 256->256), relu(3x3 (x2)), relu(3x3 dil 2 -> 3x3 (x2))) where
 *                  x2 = relu(3x3 dil 2 256->128): 512 channels;
 *     cls / loc deep heads: 4 x [conv1 (the SAME 3x3 512->512 conv each time, as ModelScope's DeepHead does)
 *                  + GroupNorm(16, 512) gn1..gn4 + ReLU]; conv2..conv4 exist in the checkpoint but are unused;
 *     pred_cls 3x3 512->1 (+ sigmoid), pred_loc 3x3 512->4.
 *
 * Fusion crop: ModelScope crops up2(x) to the finer map's size, which drops one row (column) exactly when that
 * size is odd; msv_resize_like does both in one op, so one graph serves every input size.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/graph_internal.h"
#include "builder_util.h"

#define BN_EPS 1e-5f
#define GN_EPS 1e-5f
#define N_LEVELS 6
#define HEAD_CH 512
#define FPN_CH 256

static msv_conv_params conv_params(int k, int stride, int pad, int dilation) {
    msv_conv_params p = {k, k, stride, stride, pad, pad, pad, pad, dilation, dilation, 1, 0, 0};
    return p;
}

static void record(msv_builder *b, const msv_error *err) {
    if (b->g->first_error.status == MSV_OK) b->g->first_error = *err;
}

/* A weight that the network does not use but the checkpoint carries (ModelScope's module has it): checked for
 * shape and marked as looked up when present, ignored when absent (torch loads such checkpoints with
 * strict=False, and it does not change the output). */
static void optional_unused(msv_builder *b, const char *name, msv_shape expected) {
    if (!msv_weights_has(b->w, name)) return;
    msv_error err = {0};
    if (!msv_weights_get(b->w, name, expected, &err)) record(b, &err);
}

static int relu(msv_graph *g, int x) { return msv_eltwise(g, x, MSV_ACT_RELU, 0.f, 0.f); }

/* conv + BatchNorm (+ ReLU) with the ModelScope names "<prefix>.<conv>" / "<prefix>.<bn>". */
static int conv_bn(msv_builder *b, int x, const char *prefix, const char *conv, const char *bn, int out_ch, int k,
                   int stride, int pad, int has_bias, int with_relu) {
    char cname[256], bname[256];
    snprintf(cname, sizeof cname, "%s.%s", prefix, conv);
    snprintf(bname, sizeof bname, "%s.%s", prefix, bn);
    int y = msv_b_conv_bn(b, x, cname, bname, out_ch, k, stride, pad, 1, 1, has_bias, BN_EPS);
    return with_relu ? relu(b->g, y) : y;
}

/* torchvision-style Bottleneck (expansion 4, stride on the 3x3). The residual add and the final ReLU become
 * post-ops of conv3. */
static int bottleneck(msv_builder *b, int x, const char *prefix, int planes, int stride, int downsample) {
    int y = conv_bn(b, x, prefix, "conv1", "bn1", planes, 1, 1, 0, 0, 1);
    y = conv_bn(b, y, prefix, "conv2", "bn2", planes, 3, stride, 1, 0, 1);
    y = conv_bn(b, y, prefix, "conv3", "bn3", planes * 4, 1, 1, 0, 0, 0);
    int id = downsample ? conv_bn(b, x, prefix, "downsample.0", "downsample.1", planes * 4, 1, stride, 0, 0, 0) : x;
    return relu(b->g, msv_binary(b->g, MSV_BIN_ADD, y, id));
}

/* FeatureFusion: main_conv(main) + up(x2, bilinear) cropped to main's size (odd sizes drop the last row/column). */
static int fuse(msv_builder *b, int up, int main_in, const char *name) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "fpn.%s.main_conv", name);
    int m = msv_b_conv(b, main_in, prefix, FPN_CH, 1, 1, 0, 1, 1, 1);
    int u = msv_resize_like(b->g, up, main_in, MSV_RESIZE_BILINEAR_HALF_PIXEL, 2.f, 2.f);
    return msv_binary(b->g, MSV_BIN_ADD, m, u);
}

/* Shared prediction-net weights (graph constants created once, used by all six levels). */
typedef struct pred_weights {
    int ssh_w[5], ssh_b[5];
    int head_w[2], head_b[2];   /* deep_cls_head.conv1, deep_loc_head.conv1 */
    int gn_w[2][4], gn_b[2][4]; /* gn1..gn4 of each head */
    int pred_w[2], pred_b[2];   /* pred_cls, pred_loc */
} pred_weights;

static void load_pred_weights(msv_builder *b, pred_weights *pw) {
    static const char *ssh_names[5] = {"conv1", "conv2", "conv2_1", "conv2_2", "conv2_2_1"};
    static const int ssh_in[5] = {FPN_CH, FPN_CH, HEAD_CH / 4, HEAD_CH / 4, HEAD_CH / 4};
    static const int ssh_out[5] = {HEAD_CH / 2, HEAD_CH / 4, HEAD_CH / 4, HEAD_CH / 4, HEAD_CH / 4};
    static const char *heads[2] = {"deep_cls_head", "deep_loc_head"};
    static const char *preds[2] = {"pred_cls", "pred_loc"};
    static const int pred_out[2] = {1, 4};
    char name[128];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "pred_net.conv_SSH.%s.weight", ssh_names[i]);
        pw->ssh_w[i] = msv_b_weight(b, name, msv_shape4(ssh_out[i], ssh_in[i], 3, 3));
        snprintf(name, sizeof name, "pred_net.conv_SSH.%s.bias", ssh_names[i]);
        pw->ssh_b[i] = msv_b_weight(b, name, msv_shape1(ssh_out[i]));
    }
    for (int h = 0; h < 2; h++) {
        snprintf(name, sizeof name, "pred_net.%s.conv1.weight", heads[h]);
        pw->head_w[h] = msv_b_weight(b, name, msv_shape4(HEAD_CH, HEAD_CH, 3, 3));
        snprintf(name, sizeof name, "pred_net.%s.conv1.bias", heads[h]);
        pw->head_b[h] = msv_b_weight(b, name, msv_shape1(HEAD_CH));
        for (int k = 2; k <= 4; k++) { /* defined by DeepHead, never called by its forward */
            snprintf(name, sizeof name, "pred_net.%s.conv%d.weight", heads[h], k);
            optional_unused(b, name, msv_shape4(HEAD_CH, HEAD_CH, 3, 3));
            snprintf(name, sizeof name, "pred_net.%s.conv%d.bias", heads[h], k);
            optional_unused(b, name, msv_shape1(HEAD_CH));
        }
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "pred_net.%s.gn%d.weight", heads[h], k + 1);
            pw->gn_w[h][k] = msv_b_weight(b, name, msv_shape1(HEAD_CH));
            snprintf(name, sizeof name, "pred_net.%s.gn%d.bias", heads[h], k + 1);
            pw->gn_b[h][k] = msv_b_weight(b, name, msv_shape1(HEAD_CH));
        }
        snprintf(name, sizeof name, "pred_net.%s.weight", preds[h]);
        pw->pred_w[h] = msv_b_weight(b, name, msv_shape4(pred_out[h], HEAD_CH, 3, 3));
        snprintf(name, sizeof name, "pred_net.%s.bias", preds[h]);
        pw->pred_b[h] = msv_b_weight(b, name, msv_shape1(pred_out[h]));
    }
}

static int conv_shared(msv_graph *g, int x, int w, int bias, int k, int pad, int dilation) {
    if (w < 0 || bias < 0) return -1;
    msv_conv_params p = conv_params(k, 1, pad, dilation);
    return msv_conv2d(g, x, w, bias, &p);
}

/* MogPredNet on one level: marks the level's sigmoid(cls) and loc maps as the next two graph outputs. */
static void predict_level(msv_builder *b, const pred_weights *pw, int x) {
    msv_graph *g = b->g;
    int x1 = relu(g, conv_shared(g, x, pw->ssh_w[0], pw->ssh_b[0], 3, 1, 1));
    int x2 = relu(g, conv_shared(g, x, pw->ssh_w[1], pw->ssh_b[1], 3, 2, 2));
    int x21 = relu(g, conv_shared(g, x2, pw->ssh_w[2], pw->ssh_b[2], 3, 1, 1));
    int x22 = relu(g, conv_shared(g, x2, pw->ssh_w[3], pw->ssh_b[3], 3, 2, 2));
    x22 = relu(g, conv_shared(g, x22, pw->ssh_w[4], pw->ssh_b[4], 3, 1, 1));
    const int parts[3] = {x1, x21, x22};
    const int ctx = msv_concat_channels(g, 3, parts);
    for (int h = 0; h < 2; h++) {
        int y = ctx;
        for (int k = 0; k < 4; k++) {
            y = conv_shared(g, y, pw->head_w[h], pw->head_b[h], 3, 1, 1);
            y = relu(g, msv_group_norm(g, y, 16, pw->gn_w[h][k], pw->gn_b[h][k], GN_EPS));
        }
        y = conv_shared(g, y, pw->pred_w[h], pw->pred_b[h], 3, 1, 1);
        if (h == 0) y = msv_eltwise(g, y, MSV_ACT_SIGMOID, 0.f, 0.f);
        msv_output(g, y);
    }
}

msv_status msv_build_mogface(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

msv_status msv_build_mogface(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    *out = NULL;
    double layers_d[5] = {3, 4, 23, 3, 0};
    int n_layers = msv_settings_get(s, "layers", layers_d, 5);
    if (n_layers == 0) n_layers = 4;
    if (n_layers != 4)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "MogFace setting 'layers' needs 4 block counts, got %d",
                             n_layers);
    int layers[4];
    for (int i = 0; i < 4; i++) {
        if (!(layers_d[i] >= 1 && layers_d[i] <= 100))
            return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "MogFace stage %d has an invalid block count", i + 1);
        layers[i] = (int)layers_d[i];
    }

    msv_graph *g = NULL;
    msv_status st = msv_graph_create(&g, err);
    if (st != MSV_OK) return st;
    msv_builder b = {g, w, {0}};
    char prefix[128], name[128];

    /* ---- ResNet backbone */
    int x = msv_input(g, 3);
    x = msv_b_conv_bn(&b, x, "backbone.conv1", "backbone.bn1", 64, 7, 2, 3, 1, 1, 0, BN_EPS);
    x = relu(g, x);
    msv_conv_params pool = conv_params(3, 2, 1, 1);
    x = msv_pool2d(g, x, MSV_POOL_MAX, &pool, 0);
    int feats[4];
    int inplanes = 64;
    for (int stage = 0; stage < 4; stage++) {
        const int planes = 64 << stage;
        for (int i = 0; i < layers[stage]; i++) {
            snprintf(prefix, sizeof prefix, "backbone.layer%d.%d", stage + 1, i);
            const int stride = (i == 0 && stage > 0) ? 2 : 1;
            const int down = i == 0 && (stride != 1 || inplanes != planes * 4);
            x = bottleneck(&b, x, prefix, planes, stride, down);
        }
        inplanes = planes * 4;
        feats[stage] = x;
    }
    const int c2 = feats[0], c3 = feats[1], c4 = feats[2], c5 = feats[3];

    /* ---- LFPN */
    int c6 = conv_bn(&b, c5, "fpn.c6", "0", "1", 512, 1, 1, 0, 1, 1);
    c6 = conv_bn(&b, c6, "fpn.c6", "3", "4", 512, 3, 2, 1, 1, 1);
    int c7 = conv_bn(&b, c6, "fpn.c7", "0", "1", 128, 1, 1, 0, 1, 1);
    c7 = conv_bn(&b, c7, "fpn.c7", "3", "4", 256, 3, 2, 1, 1, 1);
    const int c5_lat = msv_b_conv(&b, c5, "fpn.c5_lat", FPN_CH, 3, 1, 1, 1, 1, 1);
    const int c6_lat = msv_b_conv(&b, c6, "fpn.c6_lat", FPN_CH, 3, 1, 1, 1, 1, 1);
    const int c7_lat = msv_b_conv(&b, c7, "fpn.c7_lat", FPN_CH, 3, 1, 1, 1, 1, 1);
    static const int dsfd_in[6] = {256, 512, 1024, 2048, 256, 256};
    for (int i = 0; i < 6; i++) { /* computed by ModelScope's LFPN.forward, never used */
        snprintf(name, sizeof name, "fpn.dsfd_modules.%d.weight", i);
        optional_unused(&b, name, msv_shape4(FPN_CH, dsfd_in[i], 3, 3));
        snprintf(name, sizeof name, "fpn.dsfd_modules.%d.bias", i);
        optional_unused(&b, name, msv_shape1(FPN_CH));
    }
    int p4 = fuse(&b, c5_lat, c4, "ff_c5_c4");
    int p3 = fuse(&b, p4, c3, "ff_c4_c3");
    int p2 = fuse(&b, p3, c2, "ff_c3_c2");
    p2 = msv_b_conv(&b, p2, "fpn.p2_lat", FPN_CH, 3, 1, 1, 1, 1, 1);
    p3 = msv_b_conv(&b, p3, "fpn.p3_lat", FPN_CH, 3, 1, 1, 1, 1, 1);
    p4 = msv_b_conv(&b, p4, "fpn.p4_lat", FPN_CH, 3, 1, 1, 1, 1, 1);

    /* ---- MogPredNet, shared by the six levels */
    pred_weights pw;
    load_pred_weights(&b, &pw);
    const int levels[N_LEVELS] = {p2, p3, p4, c5_lat, c6_lat, c7_lat};
    for (int l = 0; l < N_LEVELS; l++)
        predict_level(&b, &pw, levels[l]);

    st = msv_graph_finalize(g, err);
    if (st != MSV_OK) {
        msv_graph_destroy(g);
        return st;
    }
    *out = g;
    return MSV_OK;
}
