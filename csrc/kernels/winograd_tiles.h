/*
 * winograd_tiles.h - the per-tile Winograd transforms of winograd.c, written once for vectors of WT_LANES
 * channels and included by winograd.c once per instruction set (so no include guard): 16 lanes for AVX-512, 8 for
 * AVX2 (GCC 12 lowers a 16-lane comparison to scalar code on AVX2, and 16-lane tiles there need twice its 16
 * registers), 16 generic lanes elsewhere. Same arithmetic per lane in every instance, so the same results.
 *
 * Before each inclusion define WT_LANES, WT_ATTR (the functions' target attribute, or nothing) and WT_SUFFIX;
 * it defines the static functions input_tile_<suffix> and output_tile_<suffix> and undefines its own macros.
 */
#define WT_CAT2(a, b) a##_##b
#define WT_CAT(a, b) WT_CAT2(a, b)
#define WT(name) WT_CAT(name, WT_SUFFIX)

typedef float WT(vf) __attribute__((vector_size(WT_LANES * 4)));
typedef int32_t WT(vi) __attribute__((vector_size(WT_LANES * 4)));
typedef float WT(vu) __attribute__((vector_size(WT_LANES * 4), aligned(4), may_alias));

/* Macros, not functions: a function taking or returning a vector by value has a target-dependent ABI. */
#define WT_LOAD(p) ((WT(vf))(*(const WT(vu) *)(p)))
#define WT_STORE(p, v) (*(WT(vu) *)(p) = (v))

/* 1-D transforms. */
WT_ATTR static inline void WT(b_t)(const WT(vf) z[6], WT(vf) r[6]) {
    r[0] = 4.f * z[0] - 5.f * z[2] + z[4];
    r[1] = -4.f * z[1] - 4.f * z[2] + z[3] + z[4];
    r[2] = 4.f * z[1] - 4.f * z[2] - z[3] + z[4];
    r[3] = -2.f * z[1] - z[2] + 2.f * z[3] + z[4];
    r[4] = 2.f * z[1] - z[2] - 2.f * z[3] + z[4];
    r[5] = 4.f * z[1] - 5.f * z[3] + z[5];
}

WT_ATTR static inline void WT(a_t)(const WT(vf) m[6], WT(vf) o[4]) {
    const WT(vf) s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + 2.f * d34;
    o[2] = s12 + 4.f * s34;
    o[3] = d12 + 8.f * d34 + m[5];
}

/* One tile, all channels of one source: the 6x6 input patch at (r0, c0) (input coordinates, step d) -> 36 rows of
 * v (the source's channels from v on, rows `plane` floats apart). */
WT_ATTR static void WT(input_tile)(const msv_view *x, int64_t n, int64_t r0, int64_t c0, int64_t d, float *v,
                                   int64_t plane) {
    const int inside = r0 >= 0 && c0 >= 0 && r0 + 5 * d < x->h && c0 + 5 * d < x->w;
    const WT(vf) zero = {0};
    for (int64_t ch = 0; ch < x->c; ch += WT_LANES) {
        const float *base = x->data + n * x->sn + (ch / x->block) * x->scb + ch % x->block; /* one division per run */
        WT(vf) t[6][6];
        for (int j = 0; j < 6; j++) { /* B^T patch: down each column of the patch */
            const int64_t w = c0 + d * j;
            WT(vf) z[6];
            for (int i = 0; i < 6; i++) {
                const int64_t h = r0 + d * i;
                z[i] =
                    inside || (h >= 0 && h < x->h && w >= 0 && w < x->w) ? WT_LOAD(base + h * x->sh + w * x->sw) : zero;
            }
            WT(vf) r[6];
            WT(b_t)(z, r);
            for (int i = 0; i < 6; i++)
                t[i][j] = r[i];
        }
        for (int i = 0; i < 6; i++) { /* (B^T patch) B: along each row */
            WT(vf) r[6];
            WT(b_t)(t[i], r);
            float *out = v + (int64_t)(i * 6) * plane + ch;
            for (int j = 0; j < 6; j++)
                WT_STORE(out + j * plane, r[j]);
        }
    }
}

/* exp on every lane (Cephes' expf: range reduction by ln 2 in two parts, a degree-5 polynomial, the exponent
 * added to the bits): ~1 ulp over [-87, 88]; clamped outside (exp(-x) of SiLU then saturates cleanly); NaN stays
 * NaN. */
WT_ATTR static inline void WT(exp_lanes)(WT(vf) * inout) {
    WT(vf) x = *inout;
    const WT(vf) zero = {0};
    const WT(vf) hi = zero + 88.3762626647949f, lo = zero + -88.3762626647949f;
    WT(vi) big = x > hi, small = x < lo;
    x = (WT(vf))(((WT(vi))hi & big) | ((WT(vi))x & ~big));
    x = (WT(vf))(((WT(vi))lo & small) | ((WT(vi))x & ~small));
    WT(vf) fx = x * 1.44269504088896341f + 0.5f;
    WT(vf) t = __builtin_convertvector(__builtin_convertvector(fx, WT(vi)), WT(vf));
    fx = t - (WT(vf))((WT(vi))(zero + 1.f) & (t > fx)); /* floor */
    x = x - fx * 0.693359375f - fx * -2.12194440e-4f;
    const WT(vf) z = x * x;
    WT(vf) y = zero + 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.f;
    const WT(vi) e = (__builtin_convertvector(fx, WT(vi)) + 127) << 23;
    *inout = y * (WT(vf))e;
}

/* One tile, all output channels: 36 rows of m -> the 4x4 output pixels at (r0, c0) (step d) that lie in y. */
WT_ATTR static void WT(output_tile)(const float *m, int64_t plane, const msv_view *y, int64_t n, int64_t r0, int64_t c0,
                                    int64_t d, const msv_wino_epilogue *e) {
    int rows = 0, cols = 0;
    while (rows < 4 && r0 + d * rows < y->h)
        rows++;
    while (cols < 4 && c0 + d * cols < y->w)
        cols++;
    const WT(vf) zero = {0};
    const WT(vf) alpha = zero + e->alpha, beta = zero + e->beta;
    for (int64_t ch = 0; ch < y->c; ch += WT_LANES) {
        WT(vf) t[4][6];
        for (int j = 0; j < 6; j++) { /* A^T m: down each column */
            WT(vf) z[6], o[4];
            for (int i = 0; i < 6; i++)
                z[i] = WT_LOAD(m + (int64_t)(i * 6 + j) * plane + ch);
            WT(a_t)(z, o);
            for (int i = 0; i < 4; i++)
                t[i][j] = o[i];
        }
        const WT(vf) b = e->bias ? WT_LOAD(e->bias + ch) : zero;
        float *ybase = y->data + n * y->sn + (ch / y->block) * y->scb + ch % y->block;
        const msv_view *res = e->residual;
        const float *rbase = res ? res->data + n * res->sn + (ch / res->block) * res->scb + ch % res->block : NULL;
        for (int i = 0; i < rows; i++) { /* (A^T m) A: along each row, then the epilogue */
            WT(vf) o[4];
            WT(a_t)(t[i], o);
            for (int j = 0; j < cols; j++) {
                WT(vf) val = o[j] + b;
                if (rbase) val += WT_LOAD(rbase + (r0 + d * i) * res->sh + (c0 + d * j) * res->sw);
                if (e->act == MSV_WINO_ACT_RELU) {
                    val = (WT(vf))((WT(vi))val & ~(val < zero)); /* negative lanes -> 0; NaN stays NaN */
                } else if (e->act == MSV_WINO_ACT_LEAKY_RELU) {
                    const WT(vi) negative = val < zero;
                    val = (WT(vf))(((WT(vi))(val * alpha) & negative) | ((WT(vi))val & ~negative));
                } else if (e->act == MSV_WINO_ACT_SWISH) { /* x * sigmoid(alpha x) = x / (1 + exp(-alpha x)) */
                    WT(vf) e_neg = -(val * alpha);
                    WT(exp_lanes)(&e_neg);
                    val = val / (1.f + e_neg);
                } else if (e->act == MSV_WINO_ACT_CLIP) { /* NaN stays NaN, as oneDNN's clip */
                    val = (WT(vf))(((WT(vi))alpha & (val < alpha)) | ((WT(vi))val & ~(val < alpha)));
                    val = (WT(vf))(((WT(vi))beta & (val > beta)) | ((WT(vi))val & ~(val > beta)));
                } else if (e->act == MSV_WINO_ACT_ELU) {
                    const WT(vi) negative = val < zero;
                    WT(vf) ex = (WT(vf))((WT(vi))val & negative); /* exp of the negative lanes only (0 elsewhere) */
                    WT(exp_lanes)(&ex);
                    val = (WT(vf))(((WT(vi))(alpha * (ex - 1.f)) & negative) | ((WT(vi))val & ~negative));
                }
                WT_STORE(ybase + (r0 + d * i) * y->sh + (c0 + d * j) * y->sw, val);
            }
        }
    }
}

#undef WT_LOAD
#undef WT_STORE
#undef WT
#undef WT_CAT
#undef WT_CAT2
#undef WT_LANES
#undef WT_ATTR
#undef WT_SUFFIX
