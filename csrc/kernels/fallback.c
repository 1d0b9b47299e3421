/*
 * fallback.c - C kernels for ops oneDNN 3.2 runs only on its reference implementations in some shapes or
 * layouts (e.g. a binary post-op broadcast over channels, softmax over a few channels, depthwise convolutions
 * of 1-3 channels on some ISAs). The planner uses them instead of a `ref` primitive (backend/ops/).
 */
#include <math.h>

#include "kernels.h"

float msv_eltwise_value(msv_act act, float alpha, float beta, float v) {
    switch (act) {
    case MSV_ACT_RELU: return v > 0 ? v : 0.f * v; /* keeps NaN */
    case MSV_ACT_LEAKY_RELU: return v > 0 ? v : alpha * v;
    case MSV_ACT_SIGMOID: return 1.f / (1.f + expf(-v));
    case MSV_ACT_TANH: return tanhf(v);
    case MSV_ACT_GELU_ERF: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    case MSV_ACT_GELU_TANH: {
        const float k = 0.79788456080286536f; /* sqrt(2 / pi) */
        return 0.5f * v * (1.f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
    case MSV_ACT_SWISH: return v / (1.f + expf(-alpha * v));
    case MSV_ACT_HARDSWISH: return v * fminf(fmaxf(v + 3.f, 0.f), 6.f) / 6.f;
    case MSV_ACT_CLIP: return v < alpha ? alpha : (v > beta ? beta : v);
    case MSV_ACT_ELU: return v > 0 ? v : alpha * (expf(v) - 1.f);
    case MSV_ACT_EXP: return expf(v);
    case MSV_ACT_LINEAR: return alpha * v + beta;
    case MSV_ACT_SQUARE: return v * v;
    case MSV_ACT_SQRT: return sqrtf(v);
    case MSV_ACT_POW: return alpha * powf(v, beta);
    case MSV_ACT_ABS: return fabsf(v);
    default: return v;
    }
}

static inline float binary_value(msv_binop op, float a, float b) {
    switch (op) {
    case MSV_BIN_ADD: return a + b;
    case MSV_BIN_SUB: return a - b;
    case MSV_BIN_MUL: return a * b;
    case MSV_BIN_DIV: return a / b;
    case MSV_BIN_MAX: return a > b ? a : b;
    case MSV_BIN_MIN: return a < b ? a : b;
    default: return a;
    }
}

/* Offset of pixel (n, h, w) in a view whose size-1 dims broadcast. */
static inline int64_t pixel_offset(const msv_view *v, int64_t n, int64_t h, int64_t w) {
    return (v->n == 1 ? 0 : n) * v->sn + (v->h == 1 ? 0 : h) * v->sh + (v->w == 1 ? 0 : w) * v->sw;
}

/* A channel walk over a view: the offset of channel c, advanced one channel at a time (blocked layouts split the
 * channel into a block index and a lane) with no division per element. A view broadcast over channels stays put. */
typedef struct channel_walk {
    int64_t offset, lane, block, scb, still;
} channel_walk;

static inline channel_walk walk_start(const msv_view *v, int operand) {
    return (channel_walk){0, 0, v->block, v->scb, operand && v->c == 1};
}

static inline void walk_next(channel_walk *k) {
    if (k->still) return;
    if (++k->lane == k->block) {
        k->lane = 0;
        k->offset += k->scb - (k->block - 1);
    } else {
        k->offset++;
    }
}

#define POST_MAX 8              /* post-ops in one chain (the graph allows MSV_MAX_POST_OPS) */
#define POST_TABLE_CHANNELS 128 /* up to this many channels, the channel offsets come from a table on the stack */

static inline int64_t channel_offset(const msv_view *v, int64_t c) { return (c / v->block) * v->scb + c % v->block; }

/* The dense path: x, y and every operand keep a pixel's channels contiguous (stride 1, no block padding) or, for
 * an operand, broadcast them. A row is taken in chunks of pixels: copied into a buffer, each op applied to the
 * whole chunk in one loop (its switch outside the loop, so the loop vectorises), the buffer stored. */
#define POST_CHUNK_FLOATS 4096

static int channels_dense(const msv_view *v, int64_t C) { /* v has C channels, or broadcasts one (c == 1) */
    return v->block == 1 && (v->c == 1 ? v->c_padded == 1 : v->c == C && v->scb == 1 && v->c_padded == C);
}

static int post_ops_dense(const msv_view *x, const msv_view *y, const msv_kernel_post *ops, int n_ops) {
    const int64_t C = y->c;
    if (C > POST_CHUNK_FLOATS || x->c != C || !channels_dense(x, C) || !channels_dense(y, C)) return 0;
    for (int k = 0; k < n_ops; k++)
        if (ops[k].kind != MSV_KPOST_ELTWISE && !channels_dense(&ops[k].operand, C)) return 0;
    return 1;
}

MSV_MULTIVERSION
static void eltwise_span(msv_act act, float alpha, float beta, float *v, int64_t len) {
    switch (act) {
    case MSV_ACT_RELU:
        for (int64_t i = 0; i < len; i++)
            v[i] = v[i] > 0 ? v[i] : 0.f * v[i];
        break;
    case MSV_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < len; i++)
            v[i] = v[i] > 0 ? v[i] : alpha * v[i];
        break;
    case MSV_ACT_LINEAR:
        for (int64_t i = 0; i < len; i++)
            v[i] = alpha * v[i] + beta;
        break;
    case MSV_ACT_CLIP:
        for (int64_t i = 0; i < len; i++)
            v[i] = v[i] < alpha ? alpha : (v[i] > beta ? beta : v[i]);
        break;
    case MSV_ACT_SQUARE:
        for (int64_t i = 0; i < len; i++)
            v[i] = v[i] * v[i];
        break;
    default:
        for (int64_t i = 0; i < len; i++)
            v[i] = msv_eltwise_value(act, alpha, beta, v[i]);
    }
}

/* v[p * C + c] (op)= b[p * b_pixel + c * b_channel] for P pixels; b_channel is 0 (broadcast) or 1. */
#define BINARY_SPAN_CASE(OP, EXPR)                                                 \
    case OP:                                                                       \
        for (int64_t p = 0; p < P; p++)                                            \
            for (int64_t c = 0; c < C; c++) {                                      \
                const float a = v[p * C + c], bv = b[p * b_pixel + c * b_channel]; \
                v[p * C + c] = EXPR;                                               \
            }                                                                      \
        break;

MSV_MULTIVERSION
static void binary_span(msv_binop op, float *v, const float *b, int64_t P, int64_t C, int64_t b_pixel,
                        int64_t b_channel) {
    switch (op) {
        BINARY_SPAN_CASE(MSV_BIN_ADD, a + bv)
        BINARY_SPAN_CASE(MSV_BIN_SUB, a - bv)
        BINARY_SPAN_CASE(MSV_BIN_MUL, a * bv)
        BINARY_SPAN_CASE(MSV_BIN_DIV, a / bv)
        BINARY_SPAN_CASE(MSV_BIN_MAX, a > bv ? a : bv)
        BINARY_SPAN_CASE(MSV_BIN_MIN, a < bv ? a : bv)
    default: break;
    }
}

MSV_MULTIVERSION
static void prelu_span(float *v, const float *slopes, int64_t P, int64_t C, int64_t slope_channel) {
    for (int64_t p = 0; p < P; p++)
        for (int64_t c = 0; c < C; c++) {
            const float a = v[p * C + c];
            v[p * C + c] = a > 0 ? a : a * slopes[c * slope_channel];
        }
}

static void post_ops_dense_rows(const msv_view *x, const msv_view *y, const msv_kernel_post *ops, int n_ops) {
    const int64_t C = y->c, chunk = POST_CHUNK_FLOATS / C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++) {
            float buf[POST_CHUNK_FLOATS];
            for (int64_t w0 = 0; w0 < y->w; w0 += chunk) {
                const int64_t P = y->w - w0 < chunk ? y->w - w0 : chunk;
                const float *px = x->data + n * x->sn + h * x->sh + w0 * x->sw;
                for (int64_t p = 0; p < P; p++)
                    for (int64_t c = 0; c < C; c++)
                        buf[p * C + c] = px[p * x->sw + c];
                for (int k = 0; k < n_ops; k++) {
                    const msv_kernel_post *op = &ops[k];
                    const msv_view *o = &op->operand;
                    if (op->kind == MSV_KPOST_ELTWISE)
                        eltwise_span(op->act, op->alpha, op->beta, buf, P * C);
                    else if (op->kind == MSV_KPOST_BINARY)
                        binary_span(op->op, buf, o->data + pixel_offset(o, n, h, w0), P, C, o->w == 1 ? 0 : o->sw,
                                    o->c != 1);
                    else
                        prelu_span(buf, o->data, P, C, o->c != 1);
                }
                float *py = y->data + n * y->sn + h * y->sh + w0 * y->sw;
                for (int64_t p = 0; p < P; p++)
                    for (int64_t c = 0; c < C; c++)
                        py[p * y->sw + c] = buf[p * C + c];
            }
        }
}

void msv_kernel_post_ops(const msv_view *x, const msv_view *y, const msv_kernel_post *ops, int n_ops) {
    if (n_ops > POST_MAX) n_ops = POST_MAX;
    if (post_ops_dense(x, y, ops, n_ops)) {
        post_ops_dense_rows(x, y, ops, n_ops);
        return;
    }
    const int64_t C = y->c;
    /* offsets of each channel in x, y and each operand (0 where an operand broadcasts over channels): a lookup
     * per element instead of a division; past the table's size the offsets are walked channel by channel */
    int64_t table[(2 + POST_MAX) * POST_TABLE_CHANNELS];
    const int tabled = C <= POST_TABLE_CHANNELS;
    for (int64_t c = 0; tabled && c < C; c++) {
        table[c] = channel_offset(x, c);
        table[POST_TABLE_CHANNELS + c] = channel_offset(y, c);
        for (int k = 0; k < n_ops; k++)
            table[(2 + k) * POST_TABLE_CHANNELS + c] =
                ops[k].kind == MSV_KPOST_ELTWISE || ops[k].operand.c == 1 ? 0 : channel_offset(&ops[k].operand, c);
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t w = 0; w < y->w; w++) {
                const float *px = x->data + n * x->sn + h * x->sh + w * x->sw;
                float *py = y->data + n * y->sn + h * y->sh + w * y->sw;
                const float *operand[POST_MAX];
                channel_walk at[POST_MAX];
                for (int k = 0; k < n_ops; k++) {
                    const msv_view *o = &ops[k].operand;
                    operand[k] = ops[k].kind == MSV_KPOST_BINARY  ? o->data + pixel_offset(o, n, h, w)
                                 : ops[k].kind == MSV_KPOST_PRELU ? o->data
                                                                  : NULL;
                    at[k] = ops[k].kind == MSV_KPOST_ELTWISE ? (channel_walk){0, 0, 1, 1, 1} : walk_start(o, 1);
                }
                channel_walk ax = walk_start(x, 0), ay = walk_start(y, 0);
                for (int64_t c = 0; c < C; c++) {
                    float v = px[tabled ? table[c] : ax.offset];
                    for (int k = 0; k < n_ops; k++) {
                        const msv_kernel_post *op = &ops[k];
                        const int64_t off = tabled ? table[(2 + k) * POST_TABLE_CHANNELS + c] : at[k].offset;
                        if (op->kind == MSV_KPOST_ELTWISE)
                            v = msv_eltwise_value(op->act, op->alpha, op->beta, v);
                        else if (op->kind == MSV_KPOST_BINARY)
                            v = binary_value(op->op, v, operand[k][off]);
                        else if (!(v > 0))
                            v *= operand[k][off];
                        if (!tabled) walk_next(&at[k]);
                    }
                    py[tabled ? table[POST_TABLE_CHANNELS + c] : ay.offset] = v;
                    if (!tabled) {
                        walk_next(&ax);
                        walk_next(&ay);
                    }
                }
                for (int64_t c = C; c < y->c_padded; c++) /* padding channels of a blocked y */
                    py[channel_offset(y, c)] = 0.f;
            }
}

void msv_kernel_binary(const msv_view *a, const msv_view *b, const msv_view *y, msv_binop op) {
    const msv_kernel_post post = {.kind = MSV_KPOST_BINARY, .op = op, .operand = *b};
    msv_kernel_post_ops(a, y, &post, 1);
}

void msv_kernel_softmax_channels(const msv_view *x, const msv_view *y) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < x->n; n++)
        for (int64_t h = 0; h < x->h; h++)
            for (int64_t w = 0; w < x->w; w++) {
                float m = -INFINITY, sum = 0.f;
                for (int64_t c = 0; c < x->c; c++) {
                    const float v = x->data[msv_view_offset(x, n, c, h, w)];
                    m = v > m ? v : m;
                }
                for (int64_t c = 0; c < x->c; c++) {
                    const float e = expf(x->data[msv_view_offset(x, n, c, h, w)] - m);
                    y->data[msv_view_offset(y, n, c, h, w)] = e;
                    sum += e;
                }
                for (int64_t c = 0; c < x->c; c++)
                    y->data[msv_view_offset(y, n, c, h, w)] /= sum;
                for (int64_t c = y->c; c < y->c_padded; c++)
                    y->data[msv_view_offset(y, n, c, h, w)] = 0.f;
            }
}

void msv_kernel_depthwise_conv(const msv_view *x, const msv_view *y, const float *wt, const float *bias,
                               const msv_window *win) {
    const int64_t kh = win->kh, kw = win->kw;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t oh = 0; oh < y->h; oh++)
            for (int64_t ow = 0; ow < y->w; ow++) {
                for (int64_t c = 0; c < y->c; c++) {
                    float acc = bias ? bias[c] : 0.f;
                    const float *k = wt + c * kh * kw;
                    for (int64_t i = 0; i < kh; i++) {
                        const int64_t ih = oh * win->sh - win->pad_t + i * win->dh;
                        if (ih < 0 || ih >= x->h) continue;
                        for (int64_t j = 0; j < kw; j++) {
                            const int64_t iw = ow * win->sw - win->pad_l + j * win->dw;
                            if (iw < 0 || iw >= x->w) continue;
                            acc += k[i * kw + j] * x->data[msv_view_offset(x, n, c, ih, iw)];
                        }
                    }
                    y->data[msv_view_offset(y, n, c, oh, ow)] = acc;
                }
                for (int64_t c = y->c; c < y->c_padded; c++)
                    y->data[msv_view_offset(y, n, c, oh, ow)] = 0.f;
            }
}

typedef float f16v __attribute__((vector_size(64)));
typedef float f16v_unaligned __attribute__((vector_size(64), aligned(4), may_alias));

/* One output pixel (the row's last few, or any): 16-lane partial sums over every tap and channel in one register
 * per output, one horizontal sum at the end. */
static inline __attribute__((always_inline)) void few_outputs_pixel(const msv_view *x, float *py, const float *taps,
                                                                    const float *bias, const msv_window *win, int64_t n,
                                                                    int64_t oh, int64_t ow, int64_t O) {
    const int64_t kh = win->kh, kw = win->kw, C = x->c, C16 = C / 16 * 16;
    for (int64_t o = 0; o < O; o++) {
        f16v acc = {0};
        float rest = bias ? bias[o] : 0.f;
        for (int64_t i = 0; i < kh; i++) {
            const int64_t ih = oh * win->sh - win->pad_t + i * win->dh;
            if (ih < 0 || ih >= x->h) continue;
            for (int64_t j = 0; j < kw; j++) {
                const int64_t iw = ow * win->sw - win->pad_l + j * win->dw;
                if (iw < 0 || iw >= x->w) continue;
                const float *px = x->data + n * x->sn + ih * x->sh + iw * x->sw; /* C contiguous */
                const float *k = taps + ((o * kh + i) * kw + j) * C;
                for (int64_t c = 0; c < C16; c += 16)
                    acc += *(const f16v_unaligned *)(px + c) * *(const f16v_unaligned *)(k + c);
                for (int64_t c = C16; c < C; c++)
                    rest += px[c] * k[c];
            }
        }
        for (int l = 0; l < 16; l++)
            rest += acc[l];
        py[o] = rest;
    }
}

#ifdef MSV_X86_KERNELS
#include <immintrin.h>
#define FEW_MAX_PIXELS 8

/* A block: P neighbouring output pixels of a row, all O outputs at once (O and P compile-time constants, so the
 * P x O accumulators stay in registers): each input vector loaded once serves O outputs and each weight vector P
 * pixels. A tap row inside the image of dense pixels is kw * C contiguous floats in the input as in the weights,
 * summed as one span; otherwise tap by tap (taps outside the image read the zero row), channels past the last
 * whole vector summed apart. One definition per ISA: V the vector type of LANES floats. */
#define DEFINE_FEW_OUTPUTS_BLOCK(NAME, TARGET, V, LANES, LOAD, FMADD, ZERO, HSUM)                                   \
    __attribute__((target(TARGET))) static inline __attribute__((always_inline)) void NAME(                         \
        const msv_view *x, const msv_view *y, const float *taps, const float *bias, const msv_window *win,          \
        const float *zeros, int64_t n, int64_t oh, int64_t ow0, const int O, const int P) {                         \
        const int64_t kh = win->kh, kw = win->kw, C = x->c, CV = C / LANES * LANES;                                 \
        V a[FEW_MAX_PIXELS][MSV_FEW_OUTPUTS];                                                                       \
        float rest[FEW_MAX_PIXELS][MSV_FEW_OUTPUTS] = {{0}};                                                        \
        for (int p = 0; p < P; p++)                                                                                 \
            for (int o = 0; o < O; o++)                                                                             \
                a[p][o] = ZERO();                                                                                   \
        for (int64_t i = 0; i < kh; i++) {                                                                          \
            const int64_t ih = oh * win->sh - win->pad_t + i * win->dh;                                             \
            if (ih < 0 || ih >= x->h) continue;                                                                     \
            const float *row = x->data + n * x->sn + ih * x->sh;                                                    \
            const int64_t first = ow0 * win->sw - win->pad_l, last = (ow0 + P - 1) * win->sw - win->pad_l + kw - 1; \
            const int whole_row = win->dw == 1 && x->sw == C && first >= 0 && last < x->w && (kw * C) % LANES == 0; \
            for (int64_t j = 0; j < (whole_row ? 1 : kw); j++) {                                                    \
                const float *px[FEW_MAX_PIXELS], *k[MSV_FEW_OUTPUTS];                                               \
                for (int p = 0; p < P; p++) {                                                                       \
                    const int64_t iw = (ow0 + p) * win->sw - win->pad_l + j * win->dw;                              \
                    px[p] = iw < 0 || iw >= x->w ? zeros : row + iw * x->sw;                                        \
                }                                                                                                   \
                for (int o = 0; o < O; o++)                                                                         \
                    k[o] = taps + ((o * kh + i) * kw + j) * C;                                                      \
                const int64_t span = whole_row ? kw * C : CV;                                                       \
                for (int64_t c = 0; c < span; c += LANES)                                                           \
                    for (int p = 0; p < P; p++) {                                                                   \
                        const V v = LOAD(px[p] + c);                                                                \
                        for (int o = 0; o < O; o++)                                                                 \
                            a[p][o] = FMADD(v, LOAD(k[o] + c), a[p][o]);                                            \
                    }                                                                                               \
                for (int64_t c = span; c < (whole_row ? span : C); c++)                                             \
                    for (int p = 0; p < P; p++)                                                                     \
                        for (int o = 0; o < O; o++)                                                                 \
                            rest[p][o] += px[p][c] * k[o][c];                                                       \
            }                                                                                                       \
        }                                                                                                           \
        for (int p = 0; p < P; p++) {                                                                               \
            float *py = y->data + n * y->sn + oh * y->sh + (ow0 + p) * y->sw;                                       \
            for (int o = 0; o < O; o++)                                                                             \
                py[o] = (bias ? bias[o] : 0.f) + rest[p][o] + HSUM(a[p][o]);                                        \
        }                                                                                                           \
    }

__attribute__((target("avx2"))) static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

DEFINE_FEW_OUTPUTS_BLOCK(few_outputs_block_avx512, "avx512f,fma", __m512, 16, _mm512_loadu_ps, _mm512_fmadd_ps,
                         _mm512_setzero_ps, _mm512_reduce_add_ps)
DEFINE_FEW_OUTPUTS_BLOCK(few_outputs_block_avx2, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps,
                         _mm256_setzero_ps, hsum_avx2)

/* Pixels per block for O outputs: as many accumulators as leave room for the operands (32 vector registers with
 * AVX-512, 16 with AVX2). */
#define AVX512_PIXELS(O) ((O) <= 2 ? 8 : 16 / (O))
#define AVX2_PIXELS(O) ((O) == 1 ? 8 : 12 / (O))

/* The row's whole blocks; returns the first output column left to the one-pixel path. */
#define FEW_OUTPUTS_ROW(NAME, BLOCK, PIXELS, TARGET)                                                                  \
    __attribute__((target(TARGET))) static int64_t NAME(const msv_view *x, const msv_view *y, const float *taps,      \
                                                        const float *bias, const msv_window *win, const float *zeros, \
                                                        int64_t n, int64_t oh) {                                      \
        int64_t ow = 0;                                                                                               \
        switch (y->c) {                                                                                               \
        case 1:                                                                                                       \
            for (; ow + PIXELS(1) <= y->w; ow += PIXELS(1))                                                           \
                BLOCK(x, y, taps, bias, win, zeros, n, oh, ow, 1, PIXELS(1));                                         \
            break;                                                                                                    \
        case 2:                                                                                                       \
            for (; ow + PIXELS(2) <= y->w; ow += PIXELS(2))                                                           \
                BLOCK(x, y, taps, bias, win, zeros, n, oh, ow, 2, PIXELS(2));                                         \
            break;                                                                                                    \
        case 3:                                                                                                       \
            for (; ow + PIXELS(3) <= y->w; ow += PIXELS(3))                                                           \
                BLOCK(x, y, taps, bias, win, zeros, n, oh, ow, 3, PIXELS(3));                                         \
            break;                                                                                                    \
        case 4:                                                                                                       \
            for (; ow + PIXELS(4) <= y->w; ow += PIXELS(4))                                                           \
                BLOCK(x, y, taps, bias, win, zeros, n, oh, ow, 4, PIXELS(4));                                         \
            break;                                                                                                    \
        }                                                                                                             \
        return ow;                                                                                                    \
    }

FEW_OUTPUTS_ROW(few_outputs_row_avx512, few_outputs_block_avx512, AVX512_PIXELS, "avx512f,fma")
FEW_OUTPUTS_ROW(few_outputs_row_avx2, few_outputs_block_avx2, AVX2_PIXELS, "avx2,fma")
#endif

MSV_MULTIVERSION
static void few_outputs_pixels(const msv_view *x, const msv_view *y, const float *taps, const float *bias,
                               const msv_window *win, int64_t n, int64_t oh, int64_t ow_begin) {
    for (int64_t ow = ow_begin; ow < y->w; ow++)
        few_outputs_pixel(x, y->data + n * y->sn + oh * y->sh + ow * y->sw, taps, bias, win, n, oh, ow, y->c);
}

void msv_kernel_conv_few_outputs(const msv_view *x, const msv_view *y, const float *taps, const float *bias,
                                 const msv_window *win, const float *zeros, msv_isa isa) {
    isa = y->c <= MSV_FEW_OUTPUTS ? msv_kernel_isa(isa) : MSV_ISA_GENERIC;
#ifndef MSV_X86_KERNELS
    (void)zeros;
#endif
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t oh = 0; oh < y->h; oh++) {
            int64_t ow = 0;
#ifdef MSV_X86_KERNELS
            if (isa == MSV_ISA_AVX512)
                ow = few_outputs_row_avx512(x, y, taps, bias, win, zeros, n, oh);
            else if (isa == MSV_ISA_AVX2)
                ow = few_outputs_row_avx2(x, y, taps, bias, win, zeros, n, oh);
#endif
            few_outputs_pixels(x, y, taps, bias, win, n, oh, ow);
        }
}

void msv_kernel_deconv(const msv_view *x, const msv_view *y, const float *wt, const float *bias, const msv_window *win,
                       int64_t groups) {
    const int64_t kh = win->kh, kw = win->kw, cin = x->c / groups, cout = y->c / groups;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t oh = 0; oh < y->h; oh++)
            for (int64_t ow = 0; ow < y->w; ow++) {
                for (int64_t o = 0; o < y->c; o++) {
                    const int64_t g = o / cout, og = o % cout;
                    float acc = bias ? bias[o] : 0.f;
                    for (int64_t i = 0; i < kh; i++) {
                        const int64_t th = oh + win->pad_t - i * win->dh; /* = ih * stride */
                        if (th < 0 || th % win->sh) continue;
                        const int64_t ih = th / win->sh;
                        if (ih >= x->h) continue;
                        for (int64_t j = 0; j < kw; j++) {
                            const int64_t tw = ow + win->pad_l - j * win->dw;
                            if (tw < 0 || tw % win->sw) continue;
                            const int64_t iw = tw / win->sw;
                            if (iw >= x->w) continue;
                            for (int64_t ci = 0; ci < cin; ci++) {
                                const int64_t c = g * cin + ci;
                                acc +=
                                    wt[((c * cout + og) * kh + i) * kw + j] * x->data[msv_view_offset(x, n, c, ih, iw)];
                            }
                        }
                    }
                    y->data[msv_view_offset(y, n, o, oh, ow)] = acc;
                }
                for (int64_t c = y->c; c < y->c_padded; c++)
                    y->data[msv_view_offset(y, n, c, oh, ow)] = 0.f;
            }
}

void msv_kernel_slice_plain(const float *x, const int64_t *xdims, float *y, const int64_t *ydims, const int64_t *begin,
                            int rank) {
    int64_t d[MSV_MAX_DIMS] = {1, 1, 1, 1, 1}, xd[MSV_MAX_DIMS] = {1, 1, 1, 1, 1}, b[MSV_MAX_DIMS] = {0};
    for (int i = 0; i < rank; i++) { /* right-align into 5 dims */
        d[MSV_MAX_DIMS - rank + i] = ydims[i];
        xd[MSV_MAX_DIMS - rank + i] = xdims[i];
        b[MSV_MAX_DIMS - rank + i] = begin[i];
    }
    const int64_t rows = d[0] * d[1] * d[2] * d[3];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t i3 = r % d[3], i2 = (r / d[3]) % d[2], i1 = (r / (d[3] * d[2])) % d[1],
                      i0 = r / (d[3] * d[2] * d[1]);
        const int64_t src =
            ((((i0 + b[0]) * xd[1] + i1 + b[1]) * xd[2] + i2 + b[2]) * xd[3] + i3 + b[3]) * xd[4] + b[4];
        for (int64_t k = 0; k < d[4]; k++)
            y[r * d[4] + k] = x[src + k];
    }
}
