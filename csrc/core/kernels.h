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

typedef struct msv_view {
    float *data;
    int64_t n, c, h, w; /* logical sizes */
    int64_t c_padded;   /* channels including block padding */
    int64_t block;      /* channels per block; 1 for plain layouts */
    int64_t sn, scb, sh, sw;
} msv_view;

/* Hot kernels are compiled for AVX-512 and AVX2 too; the loader picks the best the CPU has. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MSV_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MSV_MULTIVERSION
#endif

static inline int64_t msv_view_offset(const msv_view *v, int64_t n, int64_t c, int64_t h, int64_t w) {
    return n * v->sn + (c / v->block) * v->scb + (c % v->block) + h * v->sh + w * v->sw;
}

/* y = (x - mean_c(x)) / sqrt(var_c(x) + eps) * scale + shift, statistics over channels per pixel. */
void msv_kernel_layer_norm_channels(const msv_view *x, const msv_view *y, const float *scale, const float *shift,
                                    float eps);
/* y[c] = x[c] * x[c + C/2]. */
void msv_kernel_simple_gate(const msv_view *x, const msv_view *y);
/* y = x placed at (top, left) inside a frame filled with value. */
void msv_kernel_pad(const msv_view *x, const msv_view *y, int64_t top, int64_t left, float value);
/* y = x[:, c0:, h0:, w0:] cropped to y's size. */
void msv_kernel_slice(const msv_view *x, const msv_view *y, int64_t c0, int64_t h0, int64_t w0);
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

#endif
