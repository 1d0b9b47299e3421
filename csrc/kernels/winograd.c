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
 * Each 2-D transform is the 1-D one applied to the columns, then to the rows. The kernels work on 16 channels
 * at a time (one AVX-512 register); the weight transform runs once, in double precision.
 */
#include <string.h>

#include "winograd.h"

#define LANES 16 /* channels transformed together */

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

/* 16 channels as one value (GCC/Clang vector extension: one AVX-512 register, or pairs of narrower ones). */
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16_unaligned __attribute__((vector_size(64), aligned(4), may_alias));

/* Macros, not functions: a function taking or returning v16 by value has a target-dependent ABI. */
#define LOAD16(p) ((v16)(*(const v16_unaligned *)(p)))
#define STORE16(p, v) (*(v16_unaligned *)(p) = (v))

/* 1-D transforms. */
static inline void b_t(const v16 z[6], v16 r[6]) {
    r[0] = 4.f * z[0] - 5.f * z[2] + z[4];
    r[1] = -4.f * z[1] - 4.f * z[2] + z[3] + z[4];
    r[2] = 4.f * z[1] - 4.f * z[2] - z[3] + z[4];
    r[3] = -2.f * z[1] - z[2] + 2.f * z[3] + z[4];
    r[4] = 2.f * z[1] - z[2] - 2.f * z[3] + z[4];
    r[5] = 4.f * z[1] - 5.f * z[3] + z[5];
}

static inline void a_t(const v16 m[6], v16 o[4]) {
    const v16 s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + 2.f * d34;
    o[2] = s12 + 4.f * s34;
    o[3] = d12 + 8.f * d34 + m[5];
}

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

/* One tile, all channels of one source: the 6x6 input patch at (r0, c0) (input coordinates, step d) -> 36 rows of
 * v (the source's channels from v on, rows `plane` floats apart). */
MSV_MULTIVERSION
static void input_tile(const msv_view *x, int64_t n, int64_t r0, int64_t c0, int64_t d, float *v, int64_t plane) {
    const int inside = r0 >= 0 && c0 >= 0 && r0 + 5 * d < x->h && c0 + 5 * d < x->w;
    const v16 zero = {0};
    for (int64_t ch = 0; ch < x->c; ch += LANES) {
        v16 t[6][6];
        for (int j = 0; j < 6; j++) { /* B^T patch: down each column of the patch */
            const int64_t w = c0 + d * j;
            v16 z[6];
            for (int i = 0; i < 6; i++) {
                const int64_t h = r0 + d * i;
                z[i] = inside || (h >= 0 && h < x->h && w >= 0 && w < x->w)
                           ? LOAD16(x->data + msv_view_offset(x, n, ch, h, w))
                           : zero;
            }
            v16 r[6];
            b_t(z, r);
            for (int i = 0; i < 6; i++)
                t[i][j] = r[i];
        }
        for (int i = 0; i < 6; i++) { /* (B^T patch) B: along each row */
            v16 r[6];
            b_t(t[i], r);
            float *out = v + (int64_t)(i * 6) * plane + ch;
            for (int j = 0; j < 6; j++)
                STORE16(out + j * plane, r[j]);
        }
    }
}

void msv_wino_transform_input(const msv_view *xs, int n_sources, const msv_wino_geometry *g, int64_t first,
                              int64_t count, int64_t rows, float *v) {
    int64_t channels = 0;
    for (int s = 0; s < n_sources; s++)
        channels += xs[s].c;
    const int64_t per_image = g->tiles_h * g->tiles_w;
    const int64_t plane = g->tile_major ? channels : rows * channels; /* from one position's row to the next */
    const int64_t tile_stride = g->tile_major ? MSV_WINO_POSITIONS * channels : channels;
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

/* exp on 16 lanes (Cephes' expf: range reduction by ln 2 in two parts, a degree-5 polynomial, the exponent
 * added to the bits): ~1 ulp over [-87, 88]; clamped outside (exp(-x) of SiLU then saturates cleanly); NaN stays
 * NaN. */
static inline void exp16(v16 *inout) {
    v16 x = *inout;
    const v16 zero = {0};
    const v16 hi = zero + 88.3762626647949f, lo = zero + -88.3762626647949f;
    v16i big = x > hi, small = x < lo;
    x = (v16)(((v16i)hi & big) | ((v16i)x & ~big));
    x = (v16)(((v16i)lo & small) | ((v16i)x & ~small));
    v16 fx = x * 1.44269504088896341f + 0.5f;
    v16 t = __builtin_convertvector(__builtin_convertvector(fx, v16i), v16);
    fx = t - (v16)((v16i)(zero + 1.f) & (t > fx)); /* floor */
    x = x - fx * 0.693359375f - fx * -2.12194440e-4f;
    const v16 z = x * x;
    v16 y = zero + 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.f;
    const v16i e = (__builtin_convertvector(fx, v16i) + 127) << 23;
    *inout = y * (v16)e;
}

/* One tile, all output channels: 36 rows of m -> the 4x4 output pixels at (r0, c0) (step d) that lie in y. */
MSV_MULTIVERSION
static void output_tile(const float *m, int64_t plane, const msv_view *y, int64_t n, int64_t r0, int64_t c0, int64_t d,
                        const msv_wino_epilogue *e) {
    int rows = 0, cols = 0;
    while (rows < 4 && r0 + d * rows < y->h)
        rows++;
    while (cols < 4 && c0 + d * cols < y->w)
        cols++;
    const v16 zero = {0};
    const v16 alpha = zero + e->alpha, beta = zero + e->beta;
    for (int64_t ch = 0; ch < y->c; ch += LANES) {
        v16 t[4][6];
        for (int j = 0; j < 6; j++) { /* A^T m: down each column */
            v16 z[6], o[4];
            for (int i = 0; i < 6; i++)
                z[i] = LOAD16(m + (int64_t)(i * 6 + j) * plane + ch);
            a_t(z, o);
            for (int i = 0; i < 4; i++)
                t[i][j] = o[i];
        }
        const v16 b = e->bias ? LOAD16(e->bias + ch) : zero;
        for (int i = 0; i < rows; i++) { /* (A^T m) A: along each row, then the epilogue */
            v16 o[4];
            a_t(t[i], o);
            for (int j = 0; j < cols; j++) {
                v16 val = o[j] + b;
                if (e->residual)
                    val += LOAD16(e->residual->data + msv_view_offset(e->residual, n, ch, r0 + d * i, c0 + d * j));
                if (e->act == MSV_WINO_ACT_RELU) {
                    val = (v16)((v16i)val & ~(val < zero)); /* negative lanes -> 0; NaN stays NaN */
                } else if (e->act == MSV_WINO_ACT_LEAKY_RELU) {
                    const v16i negative = val < zero;
                    val = (v16)(((v16i)(val * alpha) & negative) | ((v16i)val & ~negative));
                } else if (e->act == MSV_WINO_ACT_SWISH) { /* x * sigmoid(alpha x) = x / (1 + exp(-alpha x)) */
                    v16 e_neg = -(val * alpha);
                    exp16(&e_neg);
                    val = val / (1.f + e_neg);
                } else if (e->act == MSV_WINO_ACT_CLIP) { /* NaN stays NaN, as oneDNN's clip */
                    val = (v16)(((v16i)alpha & (val < alpha)) | ((v16i)val & ~(val < alpha)));
                    val = (v16)(((v16i)beta & (val > beta)) | ((v16i)val & ~(val > beta)));
                } else if (e->act == MSV_WINO_ACT_ELU) {
                    const v16i negative = val < zero;
                    v16 ex = (v16)((v16i)val & negative); /* exp of the negative lanes only (0 elsewhere) */
                    exp16(&ex);
                    val = (v16)(((v16i)(alpha * (ex - 1.f)) & negative) | ((v16i)val & ~negative));
                }
                STORE16(y->data + msv_view_offset(y, n, ch, r0 + d * i, c0 + d * j), val);
            }
        }
    }
}

void msv_wino_transform_output(const float *m, const msv_wino_geometry *g, int64_t first, int64_t count, int64_t rows,
                               const msv_wino_epilogue *e, const msv_view *y) {
    const int64_t per_image = g->tiles_h * g->tiles_w;
    const int64_t plane = g->tile_major ? y->c : rows * y->c;
    const int64_t tile_stride = g->tile_major ? MSV_WINO_POSITIONS * y->c : y->c;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < count; t++) {
        const int64_t tile = first + t, n = tile / per_image, th = tile % per_image / g->tiles_w,
                      tw = tile % g->tiles_w;
        output_tile(m + t * tile_stride, plane, y, n, tile_origin(th, g->dilation), tile_origin(tw, g->dilation),
                    g->dilation, e);
    }
}
