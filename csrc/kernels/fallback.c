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

/* Element (n, c, h, w) of a view whose size-1 dims broadcast. */
static inline float bcast_at(const msv_view *v, int64_t n, int64_t c, int64_t h, int64_t w) {
    return v->data[msv_view_offset(v, v->n == 1 ? 0 : n, v->c == 1 ? 0 : c, v->h == 1 ? 0 : h, v->w == 1 ? 0 : w)];
}

void msv_kernel_post_ops(const msv_view *x, const msv_view *y, const msv_kernel_post *ops, int n_ops) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t w = 0; w < y->w; w++) {
                for (int64_t c = y->c; c < y->c_padded; c++)
                    y->data[msv_view_offset(y, n, c, h, w)] = 0.f;
                for (int64_t c = 0; c < y->c; c++) {
                    float v = x->data[msv_view_offset(x, n, c, h, w)];
                    for (int k = 0; k < n_ops; k++) {
                        const msv_kernel_post *op = &ops[k];
                        if (op->kind == MSV_KPOST_ELTWISE)
                            v = msv_eltwise_value(op->act, op->alpha, op->beta, v);
                        else if (op->kind == MSV_KPOST_BINARY)
                            v = binary_value(op->op, v, bcast_at(&op->operand, n, c, h, w));
                        else if (!(v > 0))
                            v *= bcast_at(&op->operand, 0, c, 0, 0);
                    }
                    y->data[msv_view_offset(y, n, c, h, w)] = v;
                }
            }
}

void msv_kernel_binary(const msv_view *a, const msv_view *b, const msv_view *y, msv_binop op) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t w = 0; w < y->w; w++) {
                for (int64_t c = 0; c < y->c; c++)
                    y->data[msv_view_offset(y, n, c, h, w)] =
                        binary_value(op, a->data[msv_view_offset(a, n, c, h, w)], bcast_at(b, n, c, h, w));
                for (int64_t c = y->c; c < y->c_padded; c++)
                    y->data[msv_view_offset(y, n, c, h, w)] = 0.f;
            }
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

/* Per output pixel and output channel: 16-lane partial sums over every tap and channel run in one register, one
 * horizontal sum at the end (a reduction per tap, or sums kept in an array, would cost more than the multiplies). */
MSV_MULTIVERSION
void msv_kernel_conv_few_outputs(const msv_view *x, const msv_view *y, const float *taps, const float *bias,
                                 const msv_window *win) {
    const int64_t kh = win->kh, kw = win->kw, C = x->c, O = y->c, C16 = C / 16 * 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t oh = 0; oh < y->h; oh++)
            for (int64_t ow = 0; ow < y->w; ow++) {
                float *py = y->data + n * y->sn + oh * y->sh + ow * y->sw;
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
