/*
 * nafnet.c - NAFNet (image restoration; ModelScope's image-denoising / image-deblurring models).
 *
 * Settings: img_channel, width, enc_blk_nums (list), middle_blk_num, dec_blk_nums (list).
 * Weights (ModelScope/BasicSR names): intro, encoders.i.j.*, downs.i, middle_blks.j.*, ups.i.0, decoders.i.j.*,
 * ending. Input: the image padded to a multiple of 2**len(enc_blk_nums) (the caller pads and crops).
 * Output: clamp(net(x) + x, 0, 1), the clamp fused into the last convolution.
 *
 * NAFBlock(c):  x = LN(inp) -> 1x1 c->2c -> dw3x3 -> SimpleGate -> x * conv1x1(avgpool(x)) -> 1x1 -> y = inp + x*beta
 *               x = LN(y) -> 1x1 c->2c -> SimpleGate -> 1x1 -> out = y + x*gamma
 * beta/gamma multiplies and residual adds become post-ops of the 1x1 convolutions. The decoder's
 * 1x1 conv + PixelShuffle(2) is rewritten as one 2x2 stride-2 deconvolution (same arithmetic per output pixel:
 * each output pixel is one dot product over the input channels), with the skip add fused.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/graph_internal.h"
#include "builder_util.h"

#define MAX_LEVELS 8

static int naf_block(msv_builder *b, int inp, const char *prefix, int c) {
    char name[256];
    msv_graph *g = b->g;
#define W(suffix) (snprintf(name, sizeof name, "%s.%s", prefix, suffix), name)
    int ln1_w = msv_b_weight(b, W("norm1.weight"), msv_shape1(c));
    int ln1_b = msv_b_weight(b, W("norm1.bias"), msv_shape1(c));
    int x = msv_layer_norm_channels(g, inp, ln1_w, ln1_b, 1e-6f);
    char conv[256];
#define CONV(x, which, out, k, pad, groups) \
    (snprintf(conv, sizeof conv, "%s.%s", prefix, which), msv_b_conv(b, x, conv, out, k, 1, pad, 1, groups, 1))
    x = CONV(x, "conv1", 2 * c, 1, 0, 1);
    x = CONV(x, "conv2", 2 * c, 3, 1, 2 * c);
    x = msv_simple_gate(g, x);
    int s = msv_global_avg_pool(g, x);
    s = CONV(s, "sca.1", c, 1, 0, 1);
    x = msv_binary(g, MSV_BIN_MUL, x, s);
    x = CONV(x, "conv3", c, 1, 0, 1);
    x = msv_binary(g, MSV_BIN_MUL, x, msv_b_weight(b, W("beta"), msv_shape4(1, c, 1, 1)));
    int y = msv_binary(g, MSV_BIN_ADD, x, inp);

    int ln2_w = msv_b_weight(b, W("norm2.weight"), msv_shape1(c));
    int ln2_b = msv_b_weight(b, W("norm2.bias"), msv_shape1(c));
    x = msv_layer_norm_channels(g, y, ln2_w, ln2_b, 1e-6f);
    x = CONV(x, "conv4", 2 * c, 1, 0, 1);
    x = msv_simple_gate(g, x);
    x = CONV(x, "conv5", c, 1, 0, 1);
    x = msv_binary(g, MSV_BIN_MUL, x, msv_b_weight(b, W("gamma"), msv_shape4(1, c, 1, 1)));
    return msv_binary(g, MSV_BIN_ADD, x, y);
#undef CONV
#undef W
}

/* ups.i: Conv2d(c, 2c, 1, bias=False) + PixelShuffle(2) as ConvTranspose2d(c, c/2, 2, stride 2):
 * deconv weight [k][co][i][j] = conv weight [co*4 + i*2 + j][k]. */
static int up_block(msv_builder *b, int x, int level, int c) {
    char name[64];
    snprintf(name, sizeof name, "ups.%d.0.weight", level);
    msv_error err = {0};
    const float *w = msv_weights_get(b->w, name, msv_shape4(2 * c, c, 1, 1), &err);
    if (!w) {
        if (b->g->first_error.status == MSV_OK) b->g->first_error = err;
        return -1;
    }
    const int co_n = c / 2;
    float *wd = malloc(sizeof(float) * (size_t)c * (size_t)co_n * 4);
    if (!wd) {
        msv_set_error(&b->g->first_error, MSV_ERR_OUT_OF_MEMORY, "out of memory");
        return -1;
    }
    for (int k = 0; k < c; k++)
        for (int co = 0; co < co_n; co++)
            for (int ij = 0; ij < 4; ij++)
                wd[((size_t)k * co_n + co) * 4 + ij] = w[(size_t)(co * 4 + ij) * c + k];
    int wt = msv_const(b->g, msv_shape4(c, co_n, 2, 2), wd);
    free(wd);
    msv_conv_params p = {2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, 0, 0};
    return msv_deconv2d(b->g, x, wt, -1, &p);
}

msv_status msv_build_nafnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

msv_status msv_build_nafnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    const int img_ch = msv_b_setting_int(s, "img_channel", 3);
    const int width = msv_b_setting_int(s, "width", 16);
    const int middle = msv_b_setting_int(s, "middle_blk_num", 1);
    double enc_d[MAX_LEVELS + 1], dec_d[MAX_LEVELS + 1];
    const int n_enc = msv_settings_get(s, "enc_blk_nums", enc_d, MAX_LEVELS + 1);
    const int n_dec = msv_settings_get(s, "dec_blk_nums", dec_d, MAX_LEVELS + 1);
    if (img_ch <= 0 || width <= 0 || middle < 0 || n_enc > MAX_LEVELS || n_dec > MAX_LEVELS || n_enc != n_dec)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "invalid NAFNet settings: img_channel %d, width %d, %d encoder and %d decoder levels "
                             "(at most %d, and as many decoders as encoders)",
                             img_ch, width, n_enc, n_dec, MAX_LEVELS);
    for (int i = 0; i < n_enc; i++)
        if (enc_d[i] < 0 || dec_d[i] < 0 || enc_d[i] > 1000 || dec_d[i] > 1000)
            return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "invalid NAFNet block count");
    if (((long long)width << n_enc) > (1 << 20))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "NAFNet width %d is too large", width);

    msv_graph *g = NULL;
    msv_status st = msv_graph_create(&g, err);
    if (st != MSV_OK) return st;
    msv_builder b = {g, w, {0}};
    char prefix[128];

    const int inp = msv_input(g, img_ch);
    int x = msv_b_conv(&b, inp, "intro", width, 3, 1, 1, 1, 1, 1);
    int skips[MAX_LEVELS];
    int c = width;
    for (int i = 0; i < n_enc; i++) {
        for (int j = 0; j < (int)enc_d[i]; j++) {
            snprintf(prefix, sizeof prefix, "encoders.%d.%d", i, j);
            x = naf_block(&b, x, prefix, c);
        }
        skips[i] = x;
        snprintf(prefix, sizeof prefix, "downs.%d", i);
        x = msv_b_conv(&b, x, prefix, 2 * c, 2, 2, 0, 1, 1, 1);
        c *= 2;
    }
    for (int j = 0; j < middle; j++) {
        snprintf(prefix, sizeof prefix, "middle_blks.%d", j);
        x = naf_block(&b, x, prefix, c);
    }
    for (int i = 0; i < n_dec; i++) {
        x = up_block(&b, x, i, c);
        c /= 2;
        x = msv_binary(g, MSV_BIN_ADD, x, skips[n_enc - 1 - i]);
        for (int j = 0; j < (int)dec_d[i]; j++) {
            snprintf(prefix, sizeof prefix, "decoders.%d.%d", i, j);
            x = naf_block(&b, x, prefix, c);
        }
    }
    x = msv_b_conv(&b, x, "ending", img_ch, 3, 1, 1, 1, 1, 1);
    x = msv_binary(g, MSV_BIN_ADD, x, inp);
    x = msv_eltwise(g, x, MSV_ACT_CLIP, 0.f, 1.f);
    msv_output(g, x);
    st = msv_graph_finalize(g, err);
    if (st != MSV_OK) {
        msv_graph_destroy(g);
        return st;
    }
    *out = g;
    return MSV_OK;
}
