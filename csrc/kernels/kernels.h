/*
 * kernels.h - ops oneDNN lacks (or lacks with PyTorch's exact semantics), written in C over a "channel-blocked
 * view" that covers every activation layout the planner hands out: plain NCHW/NHWC (block = 1) and oneDNN's
 * nChw8c/nChw16c (block = 8/16, channels padded to a multiple of the block, padding kept at zero).
 *
 *   element (n, c, h, w) lives at  data[n*sn + (c / block)*scb + (c % block) + h*sh + w*sw]
 *
 * Kernels parallelise with OpenMP over rows and never allocate.
 */
#ifndef MSV_KERNELS_H
#define MSV_KERNELS_H

#include <stdint.h>

#include "../msv.h"

typedef struct msv_view {
    float *data;
    int64_t n, c, h, w; /* logical sizes */
    int64_t c_padded;   /* channels including block padding */
    int64_t block;      /* channels per block; 1 for plain layouts */
    int64_t sn, scb, sh, sw;
} msv_view;

/* Hot kernels are compiled for AVX-512 and AVX2 too (MSV_X86_KERNELS): the loader picks the best the CPU has
 * (MSV_MULTIVERSION), or the kernel does, per call (msv_kernel_isa). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MSV_X86_KERNELS 1
#define MSV_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MSV_MULTIVERSION
#endif

/* Instruction sets of the kernels that dispatch explicitly (Winograd tiles, few-outputs convolution blocks),
 * narrowest first. */
typedef enum msv_isa { MSV_ISA_GENERIC, MSV_ISA_AVX2, MSV_ISA_AVX512 } msv_isa;
/* The widest of them this CPU runs (AVX2 counts with FMA only), at most `cap`. */
msv_isa msv_kernel_isa(msv_isa cap);

static inline int64_t msv_view_offset(const msv_view *v, int64_t n, int64_t c, int64_t h, int64_t w) {
    return n * v->sn + (c / v->block) * v->scb + (c % v->block) + h * v->sh + w * v->sw;
}

/* y = (x - mean_c(x)) / sqrt(var_c(x) + eps) * scale + shift, statistics over channels per pixel. */
void msv_kernel_layer_norm_channels(const msv_view *x, const msv_view *y, const float *scale, const float *shift,
                                    float eps);
/* y[c] = x[c] * x[c + C/2]. */
void msv_kernel_simple_gate(const msv_view *x, const msv_view *y);

/* bf16 data (precision bf16): a bf16 convolution's result read directly, and results only bf16 convolutions read
 * (which would round them to bf16 themselves) written as bf16. NHWC views whose data holds bf16 values (uint16_t;
 * written rounded to nearest even) where the flag or name says so, fp32 otherwise. */
#define MSV_BF16_LAYER_NORM_MAX_C 1024 /* channels the bf16-result layer norm takes */
void msv_kernel_layer_norm_nhwc_bf16(const msv_view *x, const msv_view *y, const float *scale, const float *shift,
                                     float eps); /* y bf16 */
void msv_kernel_simple_gate_nhwc(const msv_view *x, int x_bf16, const msv_view *y, int y_bf16);
/* y = a * b, b one value per (sample, channel) (an (N, C, 1, 1) view); a fp32, y bf16. */
void msv_kernel_channel_mul_nhwc_bf16(const msv_view *a, const msv_view *b, const msv_view *y);
/* Whether v is NHWC (channels contiguous), the layout the bf16-result kernels take. */
static inline int msv_view_is_nhwc(const msv_view *v) { return v->block == 1 && v->scb == 1; }
/* y = x placed at (top, left) inside a frame filled with value. */
/* y[n0 + n, c0 + c, h0 + h, w0 + w] = x[n, c, h, w] over x's extent (concatenation; y's padding channels are
 * zeroed by the copy that reaches them). */
void msv_kernel_copy_into(const msv_view *x, const msv_view *y, int64_t n0, int64_t c0, int64_t h0, int64_t w0);
/* mode: MSV_PAD_CONSTANT (value), MSV_PAD_REFLECT or MSV_PAD_SYMMETRIC (the shape rule bounds the padding) */
void msv_kernel_pad(const msv_view *x, const msv_view *y, int64_t top, int64_t left, float value, int mode);
/* y = x[n0:, c0:, h0:, w0:] cropped to y's size. */
void msv_kernel_slice(const msv_view *x, const msv_view *y, int64_t n0, int64_t c0, int64_t h0, int64_t w0);
/* PixelShuffle(r): y[c, h*r+i, w*r+j] = x[c*r*r + i*r + j, h, w]; unshuffle is the inverse. */
void msv_kernel_pixel_shuffle(const msv_view *x, const msv_view *y, int64_t r);
void msv_kernel_pixel_unshuffle(const msv_view *x, const msv_view *y, int64_t r);
/* PyTorch F.interpolate semantics. mode: 0 nearest (floor), 1 bilinear half-pixel, 2 bilinear align-corners.
 * scale_h/scale_w > 0 when the caller gave scale factors (PyTorch then maps with 1/scale, not in/out). */
void msv_kernel_resize(const msv_view *x, const msv_view *y, int mode, double scale_h, double scale_w);
/* GroupNorm: per sample and group of C/groups channels, statistics over those channels and all pixels. */
void msv_kernel_group_norm(const msv_view *x, const msv_view *y, int64_t groups, const float *scale, const float *shift,
                           float eps);
/* Zero the channel padding of a blocked view (c .. c_padded). */
void msv_kernel_zero_channel_padding(const msv_view *y);

/* ---- kernels for what oneDNN runs only on its slow reference implementations (fallback.c) ---- */

/* act(v) with oneDNN's definitions (msv.h msv_act). */
float msv_eltwise_value(msv_act act, float alpha, float beta, float v);

/* A view whose size-1 dims broadcast (stride 0 there): the operand of a binary op or post-op. */
typedef struct msv_kernel_post {
    enum { MSV_KPOST_ELTWISE, MSV_KPOST_BINARY, MSV_KPOST_PRELU } kind;
    msv_act act;
    float alpha, beta;
    msv_binop op;
    msv_view operand; /* binary: broadcast where a dim is 1; prelu: the slopes, (1, C or 1, 1, 1) */
} msv_kernel_post;

/* y = post_n(... post_1(x)); x may be y (in place). */
void msv_kernel_post_ops(const msv_view *x, const msv_view *y, const msv_kernel_post *ops, int n);
/* y = a (op) b, b broadcasting against a. */
void msv_kernel_binary(const msv_view *a, const msv_view *b, const msv_view *y, msv_binop op);
/* softmax over the channels of each pixel (max-subtracted, as oneDNN's accurate softmax). */
void msv_kernel_softmax_channels(const msv_view *x, const msv_view *y);
/* Depthwise convolution (groups == C == O): w is (C, kh, kw), bias (C) or NULL. */
void msv_kernel_depthwise_conv(const msv_view *x, const msv_view *y, const float *w, const float *bias,
                               const msv_window *win);
/* Convolution with at most MSV_FEW_OUTPUTS output channels (groups 1) on an NHWC x (channel stride 1): taps is
 * (O, kh, kw, C), bias (O) or NULL; zeros holds kw * C zeros (read for taps outside the image). Blocks of
 * pixels with AVX-512 or AVX2 + FMA as isa (msv_kernel_isa) allows, else one pixel at a time. */
#define MSV_FEW_OUTPUTS 4
void msv_kernel_conv_few_outputs(const msv_view *x, const msv_view *y, const float *taps, const float *bias,
                                 const msv_window *win, const float *zeros, msv_isa isa);
/* Transposed convolution (torch ConvTranspose2d): w is (C, O/groups, kh, kw), bias (O) or NULL; win's pads are
 * the convolution's (output_padding only widens y). */
void msv_kernel_deconv(const msv_view *x, const msv_view *y, const float *w, const float *bias, const msv_window *win,
                       int64_t groups);
/* y = x[begin ...] for row-major tensors of rank <= MSV_MAX_DIMS (ydims: the result's dims). */
void msv_kernel_slice_plain(const float *x, const int64_t *xdims, float *y, const int64_t *ydims, const int64_t *begin,
                            int rank);

#endif
