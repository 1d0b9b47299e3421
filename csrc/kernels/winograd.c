/*
 * winograd.c - Winograd F(4x4, 3x3) transforms (see winograd.h for the math and the data layouts).
 *
 * The matrices (interpolation points 0, 1, -1, 2, -2 and infinity):
 *
 *   B^T = [ 4  0 -5  0  1  0 ]    G = [  1/4     0     0  ]    A^T = [ 1  1  1  1  1  0 ]
 *         [ 0 -4 -4  1  1  0 ]        [ -1/6  -1/6  -1/6  ]          [ 0  1 -1  2 -2  0 ]
 *         [ 0  4 -4 -1  1  0 ]        [ -1/6   1/6  -1/6  ]          [ 0  1  1  4  4  0 ]
 *         [ 0 -2 -1  2  1  0 ]        [ 1/24  1/12   1/6  ]          [ 0  1 -1  8 -8  1 ]
 *         [ 0  2 -1 -2  1  0 ]        [ 1/24 -1/12   1/6  ]
 *         [ 0  4  0 -5  0  1 ]        [   0     0     1   ]
 *
 * Each 2-D transform is the 1-D one applied to the columns, then to the rows. Activations come in runs of 16
 * channels; the tile kernels take one vector register of them at a time (16 with AVX-512, 8 with AVX2:
 * winograd_tiles.h). The weight transform runs once, in double precision.
 */
#include <string.h>

#include "winograd.h"

#define LANES 16 /* channels per contiguous run in the views the transforms read and write */

msv_wino_geometry msv_wino_plan_tiles(int64_t n, int64_t oh, int64_t ow, int64_t pad_t, int64_t pad_l,
                                      int64_t dilation) {
    msv_wino_geometry g;
    const int64_t band = 4 * dilation; /* output rows (columns) covered by `dilation` interleaved tiles */
    g.dilation = dilation;
    g.pad_t = pad_t;
    g.pad_l = pad_l;
    g.tiles_h = (oh + band - 1) / band * dilation;
    g.tiles_w = (ow + band - 1) / band * dilation;
    g.n_tiles = n * g.tiles_h * g.tiles_w;
    g.tile_major = 0;
    return g;
}

int msv_wino_view_ok(const msv_view *v) {
    return v->c % LANES == 0 && ((v->block == 1 && v->scb == 1) || (v->block > 1 && v->block % LANES == 0));
}

/* First output row (column) of tile index i along one axis. */
static inline int64_t tile_origin(int64_t i, int64_t dilation) { return (i / dilation) * 4 * dilation + i % dilation; }

void msv_wino_transform_weights(const float *w, int64_t O, int64_t I, float *u) {
    static const double G[6][3] = {{1.0 / 4, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < I; i++) {
        for (int64_t o = 0; o < O; o++) { /* o innermost: the 36 rows written are contiguous */
            const float *g = w + (o * I + i) * 9;
            double gg[6][3]; /* G g */
            for (int r = 0; r < 6; r++)
                for (int c = 0; c < 3; c++)
                    gg[r][c] = G[r][0] * g[c] + G[r][1] * g[3 + c] + G[r][2] * g[6 + c];
            for (int r = 0; r < 6; r++)
                for (int c = 0; c < 6; c++) /* (G g) G^T */
                    u[((r * 6 + c) * I + i) * O + o] =
                        (float)(gg[r][0] * G[c][0] + gg[r][1] * G[c][1] + gg[r][2] * G[c][2]);
        }
    }
}

/* The tile transforms, one instance per vector width (winograd_tiles.h); the transforms below pick one per call. */
#define WT_LANES 16
#define WT_ATTR
#define WT_SUFFIX generic
#include "winograd_tiles.h"
#ifdef MSV_X86_KERNELS
#define WT_LANES 16
#define WT_ATTR __attribute__((target("avx512f,fma")))
#define WT_SUFFIX avx512
#include "winograd_tiles.h"
#define WT_LANES 8
#define WT_ATTR __attribute__((target("avx2,fma")))
#define WT_SUFFIX avx2
#include "winograd_tiles.h"
#endif

typedef void (*input_tile_fn)(const msv_view *x, int64_t n, int64_t r0, int64_t c0, int64_t d, float *v, int64_t plane);
typedef void (*output_tile_fn)(const float *m, int64_t plane, const msv_view *y, int64_t n, int64_t r0, int64_t c0,
                               int64_t d, const msv_wino_epilogue *e);

/* The instance per msv_isa (one generic instance where no other is compiled). */
#ifdef MSV_X86_KERNELS
static const input_tile_fn input_tiles[] = {input_tile_generic, input_tile_avx2, input_tile_avx512};
static const output_tile_fn output_tiles[] = {output_tile_generic, output_tile_avx2, output_tile_avx512};
#else
static const input_tile_fn input_tiles[] = {input_tile_generic, input_tile_generic, input_tile_generic};
static const output_tile_fn output_tiles[] = {output_tile_generic, output_tile_generic, output_tile_generic};
#endif

void msv_wino_transform_input(const msv_view *xs, int n_sources, const msv_wino_geometry *g, int64_t first,
                              int64_t count, int64_t rows, float *v, msv_isa isa) {
    int64_t channels = 0;
    for (int s = 0; s < n_sources; s++)
        channels += xs[s].c;
    const int64_t per_image = g->tiles_h * g->tiles_w;
    const int64_t plane = g->tile_major ? channels : rows * channels; /* from one position's row to the next */
    const int64_t tile_stride = g->tile_major ? MSV_WINO_POSITIONS * channels : channels;
    const input_tile_fn input_tile = input_tiles[msv_kernel_isa(isa)];
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < count; t++) {
        const int64_t tile = first + t, n = tile / per_image, th = tile % per_image / g->tiles_w,
                      tw = tile % g->tiles_w;
        const int64_t r0 = tile_origin(th, g->dilation) - g->pad_t, c0 = tile_origin(tw, g->dilation) - g->pad_l;
        float *row = v + t * tile_stride;
        for (int s = 0; s < n_sources; s++) {
            input_tile(&xs[s], n, r0, c0, g->dilation, row, plane);
            row += xs[s].c;
        }
    }
    /* rows the matmul reads but nobody uses */
    if (g->tile_major && count < rows)
        memset(v + count * tile_stride, 0, sizeof(float) * (size_t)((rows - count) * tile_stride));
    for (int k = 0; k < MSV_WINO_POSITIONS && count < rows && !g->tile_major; k++)
        memset(v + ((int64_t)k * rows + count) * channels, 0, sizeof(float) * (size_t)((rows - count) * channels));
}

void msv_wino_transform_output(const float *m, const msv_wino_geometry *g, int64_t first, int64_t count, int64_t rows,
                               const msv_wino_epilogue *e, const msv_view *y, msv_isa isa) {
    const int64_t per_image = g->tiles_h * g->tiles_w;
    const int64_t plane = g->tile_major ? y->c : rows * y->c;
    const int64_t tile_stride = g->tile_major ? MSV_WINO_POSITIONS * y->c : y->c;
    const output_tile_fn output_tile = output_tiles[msv_kernel_isa(isa)];
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < count; t++) {
        const int64_t tile = first + t, n = tile / per_image, th = tile % per_image / g->tiles_w,
                      tw = tile % g->tiles_w;
        output_tile(m + t * tile_stride, plane, y, n, tile_origin(th, g->dilation), tile_origin(tw, g->dilation),
                    g->dilation, e);
    }
}
