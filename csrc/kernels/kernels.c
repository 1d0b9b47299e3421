/* kernels.c - the C kernels of ops oneDNN lacks (kernels.h). */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AT(v, n, c, h, w) ((v)->data[msv_view_offset((v), (n), (c), (h), (w))])

msv_isa msv_kernel_isa(msv_isa cap) {
    msv_isa best = MSV_ISA_GENERIC;
#ifdef MSV_X86_KERNELS
    if (__builtin_cpu_supports("avx512f"))
        best = MSV_ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = MSV_ISA_AVX2;
#endif
    return best < cap ? best : cap;
}

void msv_kernel_zero_channel_padding(const msv_view *y) {
    if (y->c_padded == y->c) return;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t w = 0; w < y->w; w++)
                for (int64_t c = y->c; c < y->c_padded; c++)
                    AT(y, n, c, h, w) = 0.f;
}

/* Channel statistics of one pixel, two-pass like PyTorch's (x - mean).pow(2).mean(). */
static void pixel_stats(const msv_view *x, const float *p, float *mean_out, float *var_out) {
    const int64_t C = x->c;
    float sum = 0.f;
    if (x->block > 1) {
        const int64_t B = x->block, full = C / B;
        float lanes[16] = {0};
        for (int64_t cb = 0; cb < full; cb++) {
            const float *q = p + cb * x->scb;
#pragma omp simd
            for (int64_t i = 0; i < 16; i++)
                if (i < B) lanes[i] += q[i];
        }
        for (int64_t i = 0; i < 16; i++)
            sum += lanes[i];
        for (int64_t c = full * B; c < C; c++)
            sum += p[(c / B) * x->scb + c % B];
        float mean = sum / (float)C, sq = 0.f;
        float sl[16] = {0};
        for (int64_t cb = 0; cb < full; cb++) {
            const float *q = p + cb * x->scb;
#pragma omp simd
            for (int64_t i = 0; i < 16; i++)
                if (i < B) sl[i] += (q[i] - mean) * (q[i] - mean);
        }
        for (int64_t i = 0; i < 16; i++)
            sq += sl[i];
        for (int64_t c = full * B; c < C; c++) {
            float d = p[(c / B) * x->scb + c % B] - mean;
            sq += d * d;
        }
        *mean_out = mean;
        *var_out = sq / (float)C;
        return;
    }
    const int64_t s = x->scb;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; c++)
        sum += p[c * s];
    float mean = sum / (float)C, sq = 0.f;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < C; c++)
        sq += (p[c * s] - mean) * (p[c * s] - mean);
    *mean_out = mean;
    *var_out = sq / (float)C;
}

/* One pixel's channels are contiguous (NHWC): two-pass statistics, then normalise. */
MSV_MULTIVERSION
static void layer_norm_row_nhwc(const float *x, float *y, int64_t W, int64_t C, int64_t sx, int64_t sy,
                                const float *scale, const float *shift, float eps) {
    for (int64_t w = 0; w < W; w++) {
        const float *p = x + w * sx;
        float *q = y + w * sy;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < C; c++)
            sum += p[c];
        const float mean = sum / (float)C;
        float sq = 0.f;
#pragma omp simd reduction(+ : sq)
        for (int64_t c = 0; c < C; c++)
            sq += (p[c] - mean) * (p[c] - mean);
        const float denom = sqrtf(sq / (float)C + eps);
        if (scale && shift) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++)
                q[c] = scale[c] * ((p[c] - mean) / denom) + shift[c];
        } else {
            for (int64_t c = 0; c < C; c++) {
                float v = (p[c] - mean) / denom;
                if (scale) v = scale[c] * v;
                if (shift) v = v + shift[c];
                q[c] = v;
            }
        }
    }
}

void msv_kernel_layer_norm_channels(const msv_view *x, const msv_view *y, const float *scale, const float *shift,
                                    float eps) {
    const int64_t C = x->c;
    const int nhwc = x->block == 1 && y->block == 1 && x->scb == 1 && y->scb == 1;
    const int same_layout = x->block == y->block && x->scb == y->scb;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < x->n; n++) {
        for (int64_t h = 0; h < x->h; h++) {
            if (nhwc) {
                layer_norm_row_nhwc(x->data + n * x->sn + h * x->sh, y->data + n * y->sn + h * y->sh, x->w, C, x->sw,
                                    y->sw, scale, shift, eps);
                continue;
            }
            for (int64_t w = 0; w < x->w; w++) {
                const float *p = x->data + n * x->sn + h * x->sh + w * x->sw;
                float *q = y->data + n * y->sn + h * y->sh + w * y->sw;
                float mean, var;
                pixel_stats(x, p, &mean, &var);
                const float denom = sqrtf(var + eps);
                if (same_layout && x->block > 1 && C % x->block == 0) {
                    const int64_t B = x->block;
                    for (int64_t cb = 0; cb < C / B; cb++) {
                        const float *a = p + cb * x->scb;
                        float *b = q + cb * y->scb;
                        for (int64_t i = 0; i < B; i++) {
                            float v = (a[i] - mean) / denom;
                            if (scale) v = scale[cb * B + i] * v;
                            if (shift) v = v + shift[cb * B + i];
                            b[i] = v;
                        }
                    }
                } else {
                    for (int64_t c = 0; c < C; c++) {
                        float v = (p[(c / x->block) * x->scb + c % x->block] - mean) / denom;
                        if (scale) v = scale[c] * v;
                        if (shift) v = v + shift[c];
                        q[(c / y->block) * y->scb + c % y->block] = v;
                    }
                    for (int64_t c = C; c < y->c_padded; c++)
                        q[(c / y->block) * y->scb + c % y->block] = 0.f;
                }
            }
        }
    }
}

/* f32 -> bf16, rounded to nearest even (as oneDNN's reorders); a NaN stays a (quiet) NaN. */
static inline uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)rounded;
}

MSV_MULTIVERSION
static void round_to_bf16(const float *v, uint16_t *q, int64_t n) {
#pragma omp simd
    for (int64_t c = 0; c < n; c++)
        q[c] = bf16_from_f32(v[c]);
}

static void layer_norm_row_nhwc_bf16(const float *x, uint16_t *y, int64_t W, int64_t C, int64_t sx, int64_t sy,
                                     const float *scale, const float *shift, float eps) {
    float v[MSV_BF16_LAYER_NORM_MAX_C]; /* pixels normalised by the fp32 kernel, then rounded */
    const int64_t per = MSV_BF16_LAYER_NORM_MAX_C / C;
    for (int64_t w = 0; w < W; w += per) {
        const int64_t k = W - w < per ? W - w : per;
        layer_norm_row_nhwc(x + w * sx, v, k, C, sx, C, scale, shift, eps); /* k pixels, packed in v */
        for (int64_t i = 0; i < k; i++)
            round_to_bf16(v + i * C, y + (w + i) * sy, C);
    }
}

void msv_kernel_layer_norm_nhwc_bf16(const msv_view *x, const msv_view *y, const float *scale, const float *shift,
                                     float eps) {
    const uint16_t *out = (const uint16_t *)(const void *)y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < x->n; n++)
        for (int64_t h = 0; h < x->h; h++)
            layer_norm_row_nhwc_bf16(x->data + n * x->sn + h * x->sh, (uint16_t *)out + n * y->sn + h * y->sh, x->w,
                                     x->c, x->sw, y->sw, scale, shift, eps);
}

static inline float f32_from_bf16(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* One NHWC row of the gate per combination of input and result types (fp32 -> fp32: simple_gate_row_nhwc). */
#define SIMPLE_GATE_ROW(name, IN, OUT, LOAD, STORE)                                                              \
    MSV_MULTIVERSION                                                                                             \
    static void name(const IN *x, OUT *y, int64_t W, int64_t half, int64_t sx, int64_t sy) {                     \
        for (int64_t w = 0; w < W; w++) {                                                                        \
            const IN *a = x + w * sx;                                                                            \
            OUT *o = y + w * sy;                                                                                 \
            _Pragma("omp simd") for (int64_t c = 0; c < half; c++) o[c] = STORE(LOAD(a[c]) * LOAD(a[c + half])); \
        }                                                                                                        \
    }
#define AS_IS(v) (v)
SIMPLE_GATE_ROW(simple_gate_row_f32_bf16, float, uint16_t, AS_IS, bf16_from_f32)
SIMPLE_GATE_ROW(simple_gate_row_bf16_f32, uint16_t, float, f32_from_bf16, AS_IS)
SIMPLE_GATE_ROW(simple_gate_row_bf16_bf16, uint16_t, uint16_t, f32_from_bf16, bf16_from_f32)

static void simple_gate_row_nhwc(const float *x, float *y, int64_t W, int64_t half, int64_t sx, int64_t sy);

void msv_kernel_simple_gate_nhwc(const msv_view *x, int x_bf16, const msv_view *y, int y_bf16) {
    const void *in = x->data, *out = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++) {
            const int64_t xo = n * x->sn + h * x->sh, yo = n * y->sn + h * y->sh;
            if (x_bf16 && y_bf16)
                simple_gate_row_bf16_bf16((const uint16_t *)in + xo, (uint16_t *)out + yo, y->w, y->c, x->sw, y->sw);
            else if (x_bf16)
                simple_gate_row_bf16_f32((const uint16_t *)in + xo, (float *)out + yo, y->w, y->c, x->sw, y->sw);
            else if (y_bf16)
                simple_gate_row_f32_bf16((const float *)in + xo, (uint16_t *)out + yo, y->w, y->c, x->sw, y->sw);
            else
                simple_gate_row_nhwc((const float *)in + xo, (float *)out + yo, y->w, y->c, x->sw, y->sw);
        }
}

MSV_MULTIVERSION
static void channel_mul_row_bf16(const float *a, const float *b, uint16_t *y, int64_t W, int64_t C, int64_t sa,
                                 int64_t sy) {
    for (int64_t w = 0; w < W; w++) {
        const float *p = a + w * sa;
        uint16_t *q = y + w * sy;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            q[c] = bf16_from_f32(p[c] * b[c]);
    }
}

void msv_kernel_channel_mul_nhwc_bf16(const msv_view *a, const msv_view *b, const msv_view *y) {
    const void *out = y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++) /* b is (N, C, 1, 1): its channels are contiguous in any plain layout */
            channel_mul_row_bf16(a->data + n * a->sn + h * a->sh, b->data + n * b->sn,
                                 (uint16_t *)out + n * y->sn + h * y->sh, y->w, y->c, a->sw, y->sw);
}

MSV_MULTIVERSION
static void simple_gate_row_nhwc(const float *x, float *y, int64_t W, int64_t half, int64_t sx, int64_t sy) {
    for (int64_t w = 0; w < W; w++) {
        const float *a = x + w * sx;
        float *o = y + w * sy;
#pragma omp simd
        for (int64_t c = 0; c < half; c++)
            o[c] = a[c] * a[c + half];
    }
}

void msv_kernel_simple_gate(const msv_view *x, const msv_view *y) {
    const int64_t half = y->c;
    const int aligned = x->block == y->block && x->block > 1 && half % x->block == 0;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++) {
        for (int64_t h = 0; h < y->h; h++) {
            if (aligned) {
                const int64_t B = x->block, blocks = half / B, shift = blocks * x->scb;
                for (int64_t cb = 0; cb < blocks; cb++) {
                    const float *a = x->data + n * x->sn + cb * x->scb + h * x->sh;
                    float *o = y->data + n * y->sn + cb * y->scb + h * y->sh;
                    if (x->sw == B && y->sw == B) { /* a whole row of blocks is contiguous */
#pragma omp simd
                        for (int64_t i = 0; i < y->w * B; i++)
                            o[i] = a[i] * a[i + shift];
                    } else {
                        for (int64_t w = 0; w < y->w; w++)
                            for (int64_t i = 0; i < B; i++)
                                o[w * y->sw + i] = a[w * x->sw + i] * a[w * x->sw + i + shift];
                    }
                }
            } else if (x->block == 1 && y->block == 1 && x->scb == 1 && y->scb == 1) { /* NHWC */
                simple_gate_row_nhwc(x->data + n * x->sn + h * x->sh, y->data + n * y->sn + h * y->sh, y->w, half,
                                     x->sw, y->sw);
            } else {
                for (int64_t w = 0; w < y->w; w++) {
                    for (int64_t c = 0; c < half; c++)
                        AT(y, n, c, h, w) = AT(x, n, c, h, w) * AT(x, n, c + half, h, w);
                    for (int64_t c = half; c < y->c_padded; c++)
                        AT(y, n, c, h, w) = 0.f;
                }
            }
        }
    }
}

/* The source index of padded position i (i - pad) for a mirror: reflect maps -1 to 1, symmetric -1 to 0. */
static inline int64_t mirror_source(int64_t i, int64_t size, int symmetric) {
    if (i < 0) return symmetric ? -i - 1 : -i;
    if (i >= size) return symmetric ? 2 * size - i - 1 : 2 * size - i - 2;
    return i;
}

void msv_kernel_pad(const msv_view *x, const msv_view *y, int64_t top, int64_t left, float value, int mode) {
    const int mirror = mode != MSV_PAD_CONSTANT, symmetric = mode == MSV_PAD_SYMMETRIC;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t c = 0; c < y->c_padded; c++) {
                const int64_t ih = mirror ? mirror_source(h - top, x->h, symmetric) : h - top;
                for (int64_t w = 0; w < y->w; w++) {
                    const int64_t iw = mirror ? mirror_source(w - left, x->w, symmetric) : w - left;
                    float v = value;
                    if (c >= y->c)
                        v = 0.f;
                    else if (ih >= 0 && ih < x->h && iw >= 0 && iw < x->w)
                        v = AT(x, n, c, ih, iw);
                    AT(y, n, c, h, w) = v;
                }
            }
}

void msv_kernel_copy_into(const msv_view *x, const msv_view *y, int64_t n0, int64_t c0, int64_t h0, int64_t w0) {
    const int last_c = c0 + x->c == y->c; /* the copy that reaches y's channel padding zeroes it */
    const int64_t c_end = last_c ? y->c_padded - c0 : x->c;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < x->n; n++)
        for (int64_t h = 0; h < x->h; h++) {
            if (x->block == 1 && y->block == 1 && x->scb == 1 && y->scb == 1 && !(last_c && y->c_padded > y->c)) {
                for (int64_t w = 0; w < x->w; w++) {
                    const float *src = x->data + n * x->sn + h * x->sh + w * x->sw;
                    float *dst = y->data + (n + n0) * y->sn + c0 + (h + h0) * y->sh + (w + w0) * y->sw;
                    for (int64_t c = 0; c < x->c; c++)
                        dst[c] = src[c];
                }
                continue;
            }
            for (int64_t c = 0; c < c_end; c++)
                for (int64_t w = 0; w < x->w; w++)
                    AT(y, n + n0, c + c0, h + h0, w + w0) = c < x->c ? AT(x, n, c, h, w) : 0.f;
        }
}

void msv_kernel_slice(const msv_view *x, const msv_view *y, int64_t n0, int64_t c0, int64_t h0, int64_t w0) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t c = 0; c < y->c_padded; c++)
                for (int64_t w = 0; w < y->w; w++)
                    AT(y, n, c, h, w) = c < y->c ? AT(x, n + n0, c + c0, h + h0, w + w0) : 0.f;
}

void msv_kernel_pixel_shuffle(const msv_view *x, const msv_view *y, int64_t r) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t c = 0; c < y->c_padded; c++)
                for (int64_t w = 0; w < y->w; w++)
                    AT(y, n, c, h, w) = c < y->c ? AT(x, n, c * r * r + (h % r) * r + (w % r), h / r, w / r) : 0.f;
}

void msv_kernel_pixel_unshuffle(const msv_view *x, const msv_view *y, int64_t r) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t c = 0; c < y->c_padded; c++)
                for (int64_t w = 0; w < y->w; w++) {
                    if (c >= y->c) {
                        AT(y, n, c, h, w) = 0.f;
                        continue;
                    }
                    const int64_t ic = c / (r * r), i = (c / r) % r, j = c % r;
                    AT(y, n, c, h, w) = AT(x, n, ic, h * r + i, w * r + j);
                }
}

/* The source-index scale. PyTorch (aten/src/ATen/native/UpSample.h semantics, re-derived): 1/scale_factor when a
 * factor was given, else in/out; align_corners uses (in-1)/(out-1). TensorFlow's CalculateResizeScale is the same
 * in float. */
static double area_scale(int64_t in, int64_t out, int align_corners, double given) {
    if (align_corners) return out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
    return given > 0 ? 1.0 / given : (double)in / (double)out;
}

static inline int align_mode(int mode) {
    return mode == MSV_RESIZE_BILINEAR_ALIGN_CORNERS || mode == MSV_RESIZE_NEAREST_ALIGN_CORNERS;
}

static inline int is_nearest(int mode) {
    return mode == MSV_RESIZE_NEAREST || mode == MSV_RESIZE_NEAREST_ALIGN_CORNERS ||
           mode == MSV_RESIZE_NEAREST_HALF_PIXEL;
}

/* Linear interpolation's first source index and the weight of the next: an axis of unchanged size is copied;
 * otherwise the index is clamped to the input (float rounding can put the last one at `in` on inputs above 2^24)
 * and the weight to [0, 1]. Half-pixel sources below 0 clamp to 0 (PyTorch; TensorFlow's lower = upper = 0 there
 * gives the same value); TF1's asymmetric source dst * in / out never is. */
static inline void linear_source(int64_t out_i, int64_t in, int64_t out, float ratio, int mode, int64_t *i0,
                                 float *lambda) {
    if (in == out) {
        *i0 = out_i;
        *lambda = 0.f;
        return;
    }
    float src = mode == MSV_RESIZE_BILINEAR_HALF_PIXEL ? ratio * ((float)out_i + 0.5f) - 0.5f : ratio * (float)out_i;
    if (src < 0) src = 0;
    *i0 = (int64_t)src < in - 1 ? (int64_t)src : in - 1;
    *lambda = fminf(src - (float)*i0, 1.f);
}

/* Nearest's source index, clamped; an axis of unchanged size is copied. PyTorch and TF legacy: floor(i * ratio);
 * TF align_corners: round(i * ratio) (half away from zero); TF half_pixel_centers: floor((i + 0.5) * ratio). */
static inline int64_t nearest_source(int64_t out_i, int64_t in, int64_t out, float ratio, int mode) {
    if (in == out) return out_i;
    int64_t i;
    if (mode == MSV_RESIZE_NEAREST_ALIGN_CORNERS)
        i = (int64_t)roundf((float)out_i * ratio);
    else if (mode == MSV_RESIZE_NEAREST_HALF_PIXEL)
        i = (int64_t)floorf(((float)out_i + 0.5f) * ratio);
    else
        i = (int64_t)floorf((float)out_i * ratio);
    return i > in - 1 ? in - 1 : i < 0 ? 0 : i;
}

/* The same sampling for views whose channels are contiguous (NHWC: block 1, channel stride 1): per output pixel
 * the source pixels and weights once, then a loop over the channels (vectorised), rows in parallel. */
MSV_MULTIVERSION
static void resize_channels_last(const msv_view *x, const msv_view *y, int mode, float rh, float rw) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++) {
            const int64_t C = y->c;
            if (is_nearest(mode)) {
                const int64_t ih = nearest_source(h, x->h, y->h, rh, mode);
                for (int64_t w = 0; w < y->w; w++) {
                    const int64_t iw = nearest_source(w, x->w, y->w, rw, mode);
                    const float *src = x->data + n * x->sn + ih * x->sh + iw * x->sw;
                    float *dst = y->data + n * y->sn + h * y->sh + w * y->sw;
                    for (int64_t c = 0; c < C; c++)
                        dst[c] = src[c];
                }
                continue;
            }
            int64_t y0;
            float ly;
            linear_source(h, x->h, y->h, rh, mode, &y0, &ly);
            const int64_t y1 = y0 + (y0 < x->h - 1 ? 1 : 0);
            const float hy = 1.f - ly;
            for (int64_t w = 0; w < y->w; w++) {
                int64_t x0;
                float lx;
                linear_source(w, x->w, y->w, rw, mode, &x0, &lx);
                const int64_t x1 = x0 + (x0 < x->w - 1 ? 1 : 0);
                const float hx = 1.f - lx;
                const float *a = x->data + n * x->sn + y0 * x->sh, *b = x->data + n * x->sn + y1 * x->sh;
                const float *a0 = a + x0 * x->sw, *a1 = a + x1 * x->sw, *b0 = b + x0 * x->sw, *b1 = b + x1 * x->sw;
                float *dst = y->data + n * y->sn + h * y->sh + w * y->sw;
                for (int64_t c = 0; c < C; c++)
                    dst[c] = hy * (hx * a0[c] + lx * a1[c]) + ly * (hx * b0[c] + lx * b1[c]);
            }
        }
}

void msv_kernel_resize(const msv_view *x, const msv_view *y, int mode, double scale_h, double scale_w) {
    const int align = align_mode(mode);
    const float rh = (float)area_scale(x->h, y->h, align, scale_h);
    const float rw = (float)area_scale(x->w, y->w, align, scale_w);
    if (x->block == 1 && y->block == 1 && x->scb == 1 && y->scb == 1 && y->c_padded == y->c) {
        resize_channels_last(x, y, mode, rh, rw);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < y->n; n++)
        for (int64_t h = 0; h < y->h; h++)
            for (int64_t c = 0; c < y->c_padded; c++) {
                if (c >= y->c) {
                    for (int64_t w = 0; w < y->w; w++)
                        AT(y, n, c, h, w) = 0.f;
                    continue;
                }
                if (is_nearest(mode)) {
                    const int64_t ih = nearest_source(h, x->h, y->h, rh, mode);
                    for (int64_t w = 0; w < y->w; w++)
                        AT(y, n, c, h, w) = AT(x, n, c, ih, nearest_source(w, x->w, y->w, rw, mode));
                    continue;
                }
                int64_t y0;
                float ly;
                linear_source(h, x->h, y->h, rh, mode, &y0, &ly);
                const int64_t y1 = y0 + (y0 < x->h - 1 ? 1 : 0);
                const float hy = 1.f - ly;
                for (int64_t w = 0; w < y->w; w++) {
                    int64_t x0;
                    float lx;
                    linear_source(w, x->w, y->w, rw, mode, &x0, &lx);
                    const int64_t x1 = x0 + (x0 < x->w - 1 ? 1 : 0);
                    const float hx = 1.f - lx;
                    AT(y, n, c, h, w) = hy * (hx * AT(x, n, c, y0, x0) + lx * AT(x, n, c, y0, x1)) +
                                        ly * (hx * AT(x, n, c, y1, x0) + lx * AT(x, n, c, y1, x1));
                }
            }
}

/* NHWC GroupNorm: three passes over memory (group sums, squared deviations, normalise), each parallel over rows;
 * per-pixel partial sums in float, accumulated per group in double. */
#define GN_MAX_STATS 4096 /* images x groups */
#define GN_MAX_COEFS 8192 /* images x channels: per-channel scale and shift on the stack */
MSV_MULTIVERSION
static void group_norm_nhwc(const msv_view *x, const msv_view *y, int64_t groups, const float *scale,
                            const float *shift, float eps) {
    const int64_t N = x->n, C = x->c, cg = C / groups, count = cg * x->h * x->w;
    double mean[GN_MAX_STATS], sq[GN_MAX_STATS];
    for (int64_t i = 0; i < N * groups; i++)
        mean[i] = sq[i] = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        double *acc = pass == 0 ? mean : sq;
#pragma omp parallel
        {
            double local[GN_MAX_STATS];
            for (int64_t i = 0; i < N * groups; i++)
                local[i] = 0.0;
#pragma omp for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t h = 0; h < x->h; h++)
                    for (int64_t w = 0; w < x->w; w++) {
                        const float *p = x->data + n * x->sn + h * x->sh + w * x->sw;
                        for (int64_t g = 0; g < groups; g++) {
                            float s = 0.f;
                            if (pass == 0) {
#pragma omp simd reduction(+ : s)
                                for (int64_t c = 0; c < cg; c++)
                                    s += p[g * cg + c];
                            } else {
                                const float m = (float)mean[n * groups + g];
#pragma omp simd reduction(+ : s)
                                for (int64_t c = 0; c < cg; c++)
                                    s += (p[g * cg + c] - m) * (p[g * cg + c] - m);
                            }
                            local[n * groups + g] += s;
                        }
                    }
#pragma omp critical
            for (int64_t i = 0; i < N * groups; i++)
                acc[i] += local[i];
        }
        if (pass == 0)
            for (int64_t i = 0; i < N * groups; i++)
                mean[i] /= (double)count;
    }
    float ab[2 * GN_MAX_COEFS];
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t g = c / cg;
            const float rstd = (float)(1.0 / sqrt(sq[n * groups + g] / (double)count + eps));
            const float a = scale ? scale[c] * rstd : rstd;
            ab[2 * (n * C + c)] = a;
            ab[2 * (n * C + c) + 1] = (shift ? shift[c] : 0.f) - (float)mean[n * groups + g] * a;
        }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < x->h; h++)
            for (int64_t w = 0; w < x->w; w++) {
                const float *p = x->data + n * x->sn + h * x->sh + w * x->sw;
                float *q = y->data + n * y->sn + h * y->sh + w * y->sw;
                const float *coef = ab + 2 * n * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++)
                    q[c] = p[c] * coef[2 * c] + coef[2 * c + 1];
            }
}

void msv_kernel_group_norm(const msv_view *x, const msv_view *y, int64_t groups, const float *scale, const float *shift,
                           float eps) {
    if (x->block == 1 && y->block == 1 && x->scb == 1 && y->scb == 1 && x->n * groups <= GN_MAX_STATS &&
        x->n * x->c <= GN_MAX_COEFS) {
        group_norm_nhwc(x, y, groups, scale, shift, eps);
        return;
    }

    const int64_t cg = x->c / groups, count = cg * x->h * x->w;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < x->n; n++) {
        for (int64_t gi = 0; gi < groups; gi++) {
            /* two passes in double: a group spans many pixels, so float sums would drift */
            double sum = 0.0, sq = 0.0;
            for (int64_t c = gi * cg; c < (gi + 1) * cg; c++)
                for (int64_t h = 0; h < x->h; h++)
                    for (int64_t w = 0; w < x->w; w++)
                        sum += AT(x, n, c, h, w);
            const double mean = sum / (double)count;
            for (int64_t c = gi * cg; c < (gi + 1) * cg; c++)
                for (int64_t h = 0; h < x->h; h++)
                    for (int64_t w = 0; w < x->w; w++) {
                        const double d = AT(x, n, c, h, w) - mean;
                        sq += d * d;
                    }
            const float m = (float)mean, rstd = (float)(1.0 / sqrt(sq / (double)count + eps));
            for (int64_t c = gi * cg; c < (gi + 1) * cg; c++) {
                const float a = scale ? scale[c] * rstd : rstd, b = (shift ? shift[c] : 0.f) - m * a;
                for (int64_t h = 0; h < x->h; h++)
                    for (int64_t w = 0; w < x->w; w++)
                        AT(y, n, c, h, w) = AT(x, n, c, h, w) * a + b;
            }
        }
    }
    msv_kernel_zero_channel_padding(y);
}
