/*
 * winograd.h - the transforms of Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2016).
 *
 * For one output tile of 4x4 pixels (6x6 input pixels), one input channel i and one output channel o:
 *     y = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) = element-wise product of two 6x6 matrices
 * so the 3x3 convolution's 144 multiply-adds per tile become 36 products. Summed over input channels, the
 * products are 36 independent matrix products, one per position k of the 6x6 matrices:
 *     M[k] (tiles x O) = V[k] (tiles x I) * U[k] (I x O)
 * which the backend runs on oneDNN's matmul. This header holds the three transforms around it:
 *     weights, once per model:   U[k][i][o] = (G g[o][i] G^T)[k]
 *     input, per chunk of tiles: V[k][t][i] = (B^T d[t][i] B)[k]
 *     output, per chunk:         y[tile t][o] = act(A^T M[.][t][o] A + bias (+ residual)), act none, ReLU,
 *                                leaky ReLU or swish (the epilogue: what the convolution's fused post-ops ask)
 *
 * Dilation d (1 or 2 here) works the same way on every d-th pixel: a tile covers output rows r0, r0+d, r0+2d,
 * r0+3d (and likewise columns), read from input rows r0 - pad_t + d*j, j = 0..5. Output rows are grouped in bands
 * of 4*d rows, each band holding d interleaved tiles.
 *
 * Activations are channel-blocked views (kernels.h) whose channels come in contiguous runs of 16: NHWC, or
 * nChw16c. Input pixels outside the image read as zero (the convolution's padding); output pixels past the
 * image edge are not written. All three functions parallelise with OpenMP and never allocate.
 *
 * Numerics: the transforms scale values by up to ~100 before the products are summed, so the result rounds a few
 * times more than a direct convolution (still ~1e-5 relative), overflows ~100x sooner (inputs beyond ~1e36),
 * and a non-finite input pixel makes its whole 4x4 output tile non-finite.
 */
#ifndef MSV_WINOGRAD_H
#define MSV_WINOGRAD_H

#include <stdint.h>

#include "kernels.h"

#define MSV_WINO_POSITIONS 36 /* 6x6 transformed-tile positions: the number of matrix products */

typedef struct msv_wino_geometry {
    int64_t dilation;
    int64_t pad_t, pad_l;
    int64_t tiles_h, tiles_w; /* per image */
    int64_t n_tiles;          /* batch * tiles_h * tiles_w, ordered (n, tile row, tile column) */
    int tile_major;           /* chunk layout of v and m: see msv_wino_transform_input (0 from plan_tiles) */
} msv_wino_geometry;

/* Tiles covering an output of oh x ow pixels (batch n). */
msv_wino_geometry msv_wino_plan_tiles(int64_t n, int64_t oh, int64_t ow, int64_t pad_t, int64_t pad_l,
                                      int64_t dilation);

/* Whether a view's channels come in contiguous runs of 16 (what the input/output transforms read and write). */
int msv_wino_view_ok(const msv_view *v);

/* w: (O, I, 3, 3) as PyTorch stores it -> u: 36 matrices of I x O, u[(k * I + i) * O + o]. */
void msv_wino_transform_weights(const float *w, int64_t O, int64_t I, float *u);

/* Tiles first .. first+count-1 of x -> v: 36 matrices of rows x C (rows >= count; rows past count are zeroed),
 * v[(k * rows + t) * C + c], or with g->tile_major each tile's 36 rows together, v[(t * 36 + k) * C + c] (the
 * matrices then have a row stride of 36 C). The products m passed to the output transform are laid out alike. x is the
 * concatenation along channels of n_sources views of the same batch and size (xs[0]'s channels first; C is their sum):
 * a concat node's inputs read in place. */
void msv_wino_transform_input(const msv_view *xs, int n_sources, const msv_wino_geometry *g, int64_t first,
                              int64_t count, int64_t rows, float *v, msv_isa isa);

/* What the output transform applies to each result, in this order: + bias, + residual (a view of y's shape),
 * then the activation. */
typedef enum msv_wino_act {
    MSV_WINO_ACT_NONE,
    MSV_WINO_ACT_RELU,
    MSV_WINO_ACT_LEAKY_RELU,
    MSV_WINO_ACT_SWISH, /* x * sigmoid(alpha x): SiLU at alpha 1 */
    MSV_WINO_ACT_CLIP,  /* clamp to [alpha, beta] (ReLU6) */
    MSV_WINO_ACT_ELU    /* x > 0 ? x : alpha (exp(x) - 1) */
} msv_wino_act;
typedef struct msv_wino_epilogue {
    const float *bias;        /* O values, or NULL */
    const msv_view *residual; /* or NULL; channels in runs of 16 like y */
    msv_wino_act act;
    float alpha, beta; /* leaky ReLU's negative slope, swish's and ELU's alpha, clip's bounds */
} msv_wino_epilogue;

/* m: 36 matrices of rows x O (the products for tiles first .. first+count-1) -> those tiles of y, through the
 * epilogue. Both transforms use the widest vectors isa allows (msv_kernel_isa); every instance computes the same
 * values. */
void msv_wino_transform_output(const float *m, const msv_wino_geometry *g, int64_t first, int64_t count, int64_t rows,
                               const msv_wino_epilogue *e, const msv_view *y, msv_isa isa);

#endif
