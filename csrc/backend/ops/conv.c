/*
 * conv.c - planners of conv2d, deconv2d and linear.
 *
 * A convolution with post-ops is planned, best first, as:
 *   1. Winograd F(4x4, 3x3) (3x3 stride-1, see below), where it pays;
 *   2. one oneDNN primitive with every post-op fused: the producer's layout in, the preferred (or a full-size
 *      fused operand's) layout out, then any layout; then with the full-size operands reordered into the layout
 *      the convolution takes without them (an edge reorder, e.g. of the network input);
 *   3. the convolution with its leading element-wise post-ops fused, and the rest applied by a C kernel in place
 *      (oneDNN fuses a channel-broadcast operand only on its reference convolution);
 *   4. a depthwise or transposed convolution no fast kernel takes: a C kernel (kernels/fallback.c);
 *   5. oneDNN's reference implementation (correct, slow; refused under MSVISION_REFUSE_REF).
 * Under bf16 (msv.h's msv_precision) 2. and 3. run on bf16 inputs and weights (an fp32 input is reordered to bf16
 * once), writing bf16 where plan.c marked the result so and fp32 otherwise. Winograd stays fp32: measured on Zen 4
 * (2 threads, 3 chained 3x3 convolutions), fp32 Winograd is as fast as oneDNN's bf16 direct convolution at 64-128
 * channels and 1.4x faster at 256 (574 vs 418 GFLOP/s direct-equivalent), and keeps fp32 accuracy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../kernels/winograd.h"
#include "../planner.h"

/* ------------------------------------------------------------------ Winograd */

/* Winograd F(4x4, 3x3) replaces oneDNN's direct convolution (this oneDNN build has no fp32 Winograd) for 3x3
 * stride-1 convolutions, dilation 1 or 2, with channel counts in multiples of 16 (the transforms' vector width),
 * whose fused post-ops are at most a same-shape add (a residual) followed by ReLU, leaky ReLU or swish (SiLU).
 * Measured on Zen 4 (2 threads, 3 chained convolutions C -> C): 1.6-3x faster from 32 channels at 125x125 to 512
 * channels at 16x16; below 16x16 output pixels per image, or when the 4x4 tiles mostly overhang the output (thin
 * maps, batches of tiny images), reading the 4x larger transformed weights costs more than the multiplies saved. */
#define WINO_MIN_PIXELS 256 /* output pixels per image */
#define WINO_MIN_FILL 0.5   /* output pixels / pixels the tiles cover */
/* Smaller maps (down to 8x8 per image) in a batch, e.g. HRNet's 8x8 branch for 3 persons: the batch shares the
 * transformed weights, so Winograd pays once the batch's pixels x the smaller channel count reach
 * WINO_SMALL_MIN_WORK and the transformed weights (36 I O floats) stay cache-sized. Measured on Zen 5, 2 threads,
 * 3 chained convs: 192 channels at 3 x 8x8 2.4x and 2 x 8x8 2.2x faster; 384 channels at 1 x 8x8 (21 MB of
 * transformed weights) 1.3x slower; 32 channels at 15x15 even. */
#define WINO_SMALL_MIN_PIXELS 64
#define WINO_SMALL_MIN_WORK 16384
#define WINO_SMALL_MAX_WEIGHT_BYTES (8 << 20)
/* Tiles per matmul: chunk buffers of 36 x 192 x (I + O) floats (28 MB at 512 channels); MogFace's times were flat
 * from 96 to 768 tiles. The transformed weights are packed for this row count whatever the chunk, so one packed
 * copy per chunk layout (below) serves every input size: a convolution whose maps fall on both sides of the
 * tile-major bound (inputs of very different sizes) keeps two. */
#define WINO_CHUNK_TILES 192
/* Maps of at least a chunk of tiles keep each tile's 36 transformed rows together (tile-major chunks, see
 * winograd.h): the transforms then write and read one contiguous block per tile instead of 36 rows a chunk
 * apart; oneDNN then runs the strided matmul on its gemm:jit kernel rather than brgemm. Measured on Zen 5, 2
 * threads: RealESRNet's dense blocks (32..160 -> 32 channels at 256x256) 8% faster, 256 channels at 32x32 6%,
 * MogFace even; on a few tiles (3 x 8x8 maps, 96 channels) 15% slower, hence the bound. */

typedef struct wino_state {
    msv_wino_geometry geo;
    int64_t rows;
    int v, m;                   /* entries: the chunk's transformed input and products */
    int n_sources;              /* the step's first views: the input, or the inputs of a concat read in place */
    int residual;               /* whether the view after the output is a residual added before the activation */
    msv_wino_epilogue epilogue; /* bias, activation (the residual view is set per run) */
    msv_isa isa;                /* the widest vectors the transforms may use */
} wino_state;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The post-ops Winograd's epilogue runs: [add of a same-shape tensor], then [ReLU | leaky ReLU | swish | clip |
 * ELU]. *residual gets the added tensor (-1: none), *act the activation and its parameters. */
static int winograd_post_ops(const msv_planner *pl, const msv_node *n, int *residual, msv_wino_act *act, float *alpha,
                             float *beta) {
    int k = 0;
    *residual = -1;
    *act = MSV_WINO_ACT_NONE;
    *alpha = *beta = 0.f;
    if (k < n->n_post && n->post[k].kind == MSV_POST_BINARY && n->post[k].op == MSV_BIN_ADD) {
        const msv_shape a = pl->shapes[n->post[k].tensor], y = pl->shapes[n->out];
        if (a.ndims != y.ndims || memcmp(a.dims, y.dims, sizeof(int64_t) * (size_t)y.ndims) != 0) return 0;
        if (pl->g->tensors[n->post[k].tensor].data) return 0; /* a constant: not a residual */
        *residual = n->post[k++].tensor;
    }
    if (k < n->n_post && n->post[k].kind == MSV_POST_ELTWISE) {
        const msv_eltwise_params *e = &n->post[k].eltwise;
        if (e->act == MSV_ACT_RELU) {
            *act = MSV_WINO_ACT_RELU;
        } else if (e->act == MSV_ACT_LEAKY_RELU || e->act == MSV_ACT_SWISH || e->act == MSV_ACT_ELU) {
            *act = e->act == MSV_ACT_SWISH ? MSV_WINO_ACT_SWISH
                   : e->act == MSV_ACT_ELU ? MSV_WINO_ACT_ELU
                                           : MSV_WINO_ACT_LEAKY_RELU;
            *alpha = e->alpha;
        } else if (e->act == MSV_ACT_CLIP) {
            *act = MSV_WINO_ACT_CLIP;
            *alpha = e->alpha;
            *beta = e->beta;
        } else {
            return 0;
        }
        k++;
    }
    return k == n->n_post;
}

static int wants_winograd(const msv_planner *pl, const msv_node *n) {
    const msv_window w = msv_conv_window(pl->g, n);
    if (n->kind != MSV_OP_CONV2D || !pl->env->winograd) return 0;
    if (n->p.conv.groups != 1 || w.kh != 3 || w.kw != 3 || w.sh != 1 || w.sw != 1 || w.dh != w.dw || w.dh > 2) return 0;
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    if (xs.dims[1] % 16 || ys.dims[1] % 16) return 0;
    const int64_t pixels = ys.dims[2] * ys.dims[3], I = xs.dims[1], O = ys.dims[1];
    const msv_wino_geometry geo = msv_wino_plan_tiles(1, ys.dims[2], ys.dims[3], 0, 0, w.dh);
    const int small_batch_pays =
        pixels >= WINO_SMALL_MIN_PIXELS && ys.dims[0] * pixels * (I < O ? I : O) >= WINO_SMALL_MIN_WORK &&
        (double)MSV_WINO_POSITIONS * (double)I * (double)O * 4.0 <= WINO_SMALL_MAX_WEIGHT_BYTES;
    if ((pixels < WINO_MIN_PIXELS && !small_batch_pays) || (double)pixels < WINO_MIN_FILL * 16.0 * (double)geo.n_tiles)
        return 0;
    int residual;
    msv_wino_act act;
    float alpha, beta;
    return winograd_post_ops(pl, n, &residual, &act, &alpha, &beta);
}

static msv_status run_winograd(const msv_step *s, msv_exec *x) {
    const wino_state *w = s->state;
    msv_view src[MSV_MAX_STEP_VIEWS];
    for (int i = 0; i < w->n_sources; i++)
        src[i] = msv_exec_view(x, s, i);
    const msv_view dst = msv_exec_view(x, s, w->n_sources);
    const msv_view res = w->residual ? msv_exec_view(x, s, w->n_sources + 1) : dst;
    msv_wino_epilogue epilogue = w->epilogue;
    epilogue.residual = w->residual ? &res : NULL;
    float *v = msv_exec_ptr(x, w->v);
    const float *m = msv_exec_ptr(x, w->m);
    double phase_ms[3] = {0, 0, 0}; /* input transform, matmul, output transform (MSVISION_PROFILE) */
    for (int64_t first = 0; first < w->geo.n_tiles; first += w->rows) {
        const int64_t count = w->geo.n_tiles - first < w->rows ? w->geo.n_tiles - first : w->rows;
        const double t1 = x->profile ? now_ms() : 0;
        msv_wino_transform_input(src, w->n_sources, &w->geo, first, count, w->rows, v, w->isa);
        const double t2 = x->profile ? now_ms() : 0;
        dnnl_status_t st = dnnl_primitive_execute(s->prim, x->stream, s->nargs, s->args);
        if (st != dnnl_success) return msv_dnnl_fail(x->err, st, "execute a primitive");
        if (x->profile) dnnl_stream_wait(x->stream);
        const double t3 = x->profile ? now_ms() : 0;
        msv_wino_transform_output(m, &w->geo, first, count, w->rows, &epilogue, &dst, w->isa);
        if (x->profile) {
            phase_ms[0] += t2 - t1;
            phase_ms[1] += t3 - t2;
            phase_ms[2] += now_ms() - t3;
        }
    }
    if (x->profile)
        fprintf(stderr, "msvision: step %d winograd input %.3f ms, matmul %.3f ms, output %.3f ms\n", x->step,
                phase_ms[0], phase_ms[1], phase_ms[2]);
    return MSV_OK;
}

/* The entry of tensor t as a view whose channels come in runs of 16 (reordered to NHWC if its layout has none);
 * -1 on error. */
static int wino_view_entry(msv_planner *pl, int t, msv_view *v) {
    int e = msv_pl_entry(pl, t);
    if (e >= 0 && (!msv_md_to_view(pl->p->entries[e].md, v) || !msv_wino_view_ok(v))) {
        dnnl_memory_desc_t nhwc = msv_md(4, pl->shapes[t].dims, dnnl_nhwc);
        e = nhwc ? msv_pl_converted(pl, e, nhwc) : -1;
        dnnl_memory_desc_destroy(nhwc);
        if (e >= 0) msv_md_to_view(pl->p->entries[e].md, v);
    }
    return e;
}

/* The matmul (rows x I) x (I x O) of 36 positions, on oneDNN's fast kernels only; NULL otherwise. */
static dnnl_primitive_desc_t wino_matmul(msv_planner *pl, int64_t rows, int64_t I, int64_t O, int tile_major,
                                         const_dnnl_memory_desc_t weights) {
    const int64_t P = MSV_WINO_POSITIONS;
    dnnl_memory_desc_t vmd = tile_major ? msv_md_strides(3, (int64_t[]){P, rows, I}, (int64_t[]){I, P * I, 1})
                                        : msv_md(3, (int64_t[]){P, rows, I}, dnnl_abc);
    dnnl_memory_desc_t umd =
        weights ? msv_md_clone(weights) : msv_md(3, (int64_t[]){MSV_WINO_POSITIONS, I, O}, dnnl_format_tag_any);
    dnnl_memory_desc_t mmd = tile_major ? msv_md_strides(3, (int64_t[]){P, rows, O}, (int64_t[]){O, P * O, 1})
                                        : msv_md(3, (int64_t[]){P, rows, O}, dnnl_abc);
    dnnl_primitive_attr_t attr = msv_new_attr();
    dnnl_primitive_desc_t pd = NULL;
    if (vmd && umd && mmd && attr &&
        (dnnl_matmul_primitive_desc_create(&pd, pl->engine, vmd, umd, NULL, mmd, attr) != dnnl_success ||
         msv_is_ref(pd))) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    dnnl_memory_desc_destroy(vmd);
    dnnl_memory_desc_destroy(umd);
    dnnl_memory_desc_destroy(mmd);
    dnnl_primitive_attr_destroy(attr);
    return pd;
}

/* Plans n as a Winograd convolution; *planned stays 0 (and nothing is added) when oneDNN has no fast matmul. */
static msv_status plan_winograd(msv_planner *pl, const msv_node *n, int *planned) {
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    const int64_t I = xs.dims[1], O = ys.dims[1];
    const msv_window win = msv_conv_window(pl->g, n);
    *planned = 0;
    msv_wino_geometry geo = msv_wino_plan_tiles(ys.dims[0], ys.dims[2], ys.dims[3], win.pad_t, win.pad_l, win.dh);
    geo.tile_major = geo.n_tiles >= WINO_CHUNK_TILES;
    const int64_t chunk = pl->env->winograd_tiles ? pl->env->winograd_tiles : WINO_CHUNK_TILES;
    const int64_t n_chunks = (geo.n_tiles + chunk - 1) / chunk;
    const int64_t rows = (geo.n_tiles + n_chunks - 1) / n_chunks; /* even chunks: little work on unused rows */
    /* the weight layout is the one oneDNN picks for a full chunk, so every plan of this chunk layout shares one
     * packed copy */
    dnnl_primitive_desc_t canonical = wino_matmul(pl, WINO_CHUNK_TILES, I, O, geo.tile_major, NULL);
    if (!canonical) return MSV_OK;
    const_dnnl_memory_desc_t umd = dnnl_primitive_desc_query_md(canonical, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_t pd = wino_matmul(pl, rows, I, O, geo.tile_major, umd);
    if (!pd) {
        dnnl_primitive_desc_destroy(canonical);
        return MSV_OK;
    }
    /* the input, or the inputs of a concat left to its consumers (each in its range of V's channels) */
    const msv_node *concat = msv_pl_deferred(pl, n->in[0]);
    const int n_sources = concat ? concat->n_in : 1;
    msv_view vs[MSV_MAX_STEP_VIEWS], vd;
    int sources[MSV_MAX_STEP_VIEWS], src = 0;
    for (int i = 0; i < n_sources && src >= 0; i++) {
        const int t = concat ? concat->in[i] : n->in[0];
        src = sources[i] = wino_view_entry(pl, t, &vs[i]);
    }
    int residual_tensor;
    msv_wino_act act;
    float alpha, beta;
    winograd_post_ops(pl, n, &residual_tensor, &act, &alpha, &beta);
    msv_view vr;
    int res = -1;
    if (src >= 0 && residual_tensor >= 0) {
        res = wino_view_entry(pl, residual_tensor, &vr);
        if (res < 0) src = -1;
    }
    int w = -1;
    if (src >= 0) {
        void *packed = msv_weight_store_find(pl->weights, n->in[1], MSV_W_WINOGRAD, umd);
        if (packed) {
            w = msv_pl_new_entry(pl, MSV_E_FIXED, msv_md_clone(umd));
            if (w >= 0) {
                pl->p->entries[w].fixed = packed;
                pl->p->entries[w].def = 0;
            }
        } else {
            float *u = malloc(sizeof(float) * MSV_WINO_POSITIONS * (size_t)I * (size_t)O);
            dnnl_memory_desc_t plain = msv_md(3, (int64_t[]){MSV_WINO_POSITIONS, I, O}, dnnl_abc);
            if (u && plain) {
                msv_wino_transform_weights(pl->g->tensors[n->in[1]].data, O, I, u);
                w = msv_pl_packed_weights(pl, n->in[1], MSV_W_WINOGRAD, plain, u, umd);
            } else {
                msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory packing weights");
            }
            free(u);
            dnnl_memory_desc_destroy(plain);
        }
    }
    dnnl_primitive_desc_destroy(canonical);
    wino_state *state = calloc(1, sizeof(*state));
    int v = -1, m = -1, out = -1;
    if (w >= 0 && state) {
        v = msv_pl_new_entry(pl, MSV_E_ARENA, msv_md_clone(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0)));
        m = v < 0 ? -1
                  : msv_pl_new_entry(pl, MSV_E_ARENA,
                                     msv_md_clone(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0)));
        dnnl_memory_desc_t ymd = msv_md(4, ys.dims, dnnl_nhwc);
        out = m < 0 || !ymd ? -1 : msv_pl_output(pl, n, ymd);
        dnnl_memory_desc_destroy(ymd);
    }
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        free(state);
        if (pl->err->status == MSV_OK) msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
        return pl->err->status;
    }
    msv_md_to_view(pl->p->entries[out].md, &vd);
    msv_step *s = msv_pl_primitive(
        pl, pd, n, concat ? "winograd convolution of the concat read in place" : "winograd convolution");
    if (!s) {
        free(state);
        return pl->err->status;
    }
    *state = (wino_state){geo,
                          rows,
                          v,
                          m,
                          n_sources,
                          res >= 0,
                          {n->in[2] >= 0 ? pl->g->tensors[n->in[2]].data : NULL, NULL, act, alpha, beta},
                          pl->env->kernel_isa};
    s->run = run_winograd;
    s->state = state;
    s->free_state = free;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    msv_pl_arg(pl, s, DNNL_ARG_SRC, v);
    msv_pl_arg(pl, s, DNNL_ARG_WEIGHTS, w);
    msv_pl_arg(pl, s, DNNL_ARG_DST, m);
    for (int i = 0; i < n_sources; i++)
        msv_pl_kernel_view(pl, s, sources[i], &vs[i]);
    msv_pl_kernel_view(pl, s, out, &vd);
    if (res >= 0) msv_pl_kernel_view(pl, s, res, &vr);
    *planned = 1;
    return MSV_OK;
}

/* ------------------------------------------------------------------ direct convolutions */

typedef struct conv_descs {
    int deconv;
    dnnl_data_type_t sdt, ddt; /* of the input and weights, of the result */
    dnnl_memory_desc_t wplain, wany, bias, dany, sany, dpref;
    dnnl_dims_t strides, dilation, pad_l, pad_r;
} conv_descs;

static void destroy_descs(conv_descs *d) {
    dnnl_memory_desc_destroy(d->wplain);
    dnnl_memory_desc_destroy(d->wany);
    dnnl_memory_desc_destroy(d->bias);
    dnnl_memory_desc_destroy(d->dany);
    dnnl_memory_desc_destroy(d->sany);
    dnnl_memory_desc_destroy(d->dpref);
}

/* ddt: the result's data type (f32, or bf16 for a bf16 convolution). */
static int make_descs(msv_planner *pl, const msv_node *n, conv_descs *d, dnnl_data_type_t ddt) {
    memset(d, 0, sizeof *d);
    d->sdt = msv_conv_runs_bf16(pl, n) ? dnnl_bf16 : dnnl_f32;
    d->ddt = ddt;
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out], ws = pl->shapes[n->in[1]];
    msv_window p;
    int64_t G = 1;
    d->deconv = n->kind == MSV_OP_DECONV2D;
    if (n->kind == MSV_OP_LINEAR) { /* a convolution whose window is the whole input */
        p = (msv_window){(int)xs.dims[2], (int)xs.dims[3], 1, 1, 0, 0, 0, 0, 1, 1};
    } else {
        p = msv_conv_window(pl->g, n);
        G = n->p.conv.groups;
    }
    const int64_t O = ys.dims[1], I = xs.dims[1], KH = p.kh, KW = p.kw;
    if (!d->deconv) {
        d->wplain = G == 1 ? msv_md(4, (int64_t[]){O, I, KH, KW}, dnnl_oihw)
                           : msv_md(5, (int64_t[]){G, O / G, I / G, KH, KW}, dnnl_goihw);
    } else { /* torch ConvTranspose2d weights are (I, O/G, kh, kw) */
        const int64_t og = ws.dims[1], ig = I / G;
        d->wplain = G == 1 ? msv_md_strides(4, (int64_t[]){O, I, KH, KW}, (int64_t[]){KH * KW, O * KH * KW, KW, 1})
                           : msv_md_strides(5, (int64_t[]){G, og, ig, KH, KW},
                                            (int64_t[]){ig * og * KH * KW, KH * KW, og * KH * KW, KW, 1});
    }
    d->wany = G == 1 ? msv_md_dt(4, (int64_t[]){O, I, KH, KW}, dnnl_format_tag_any, d->sdt)
                     : msv_md_dt(5, (int64_t[]){G, O / G, I / G, KH, KW}, dnnl_format_tag_any, d->sdt);
    d->bias = n->in[2] >= 0 ? msv_md(1, (int64_t[]){O}, dnnl_a) : NULL;
    d->dany = msv_md_dt(4, ys.dims, dnnl_format_tag_any, ddt);
    d->sany = msv_md_dt(4, xs.dims, dnnl_format_tag_any, d->sdt);
    d->dpref = msv_md_dt(4, ys.dims, msv_pl_preferred_tag(pl, O), ddt);
    d->strides[0] = p.sh, d->strides[1] = p.sw;
    d->dilation[0] = p.dh - 1, d->dilation[1] = p.dw - 1;
    d->pad_l[0] = p.pad_t, d->pad_l[1] = p.pad_l;
    d->pad_r[0] = p.pad_b, d->pad_r[1] = p.pad_r;
    if (d->deconv) {
        d->pad_r[0] -= n->p.conv.out_pad_h;
        d->pad_r[1] -= n->p.conv.out_pad_w;
    }
    return d->wplain && d->wany && d->dany && d->sany && d->dpref && (n->in[2] < 0 || d->bias);
}

/* A primitive descriptor if oneDNN has a fast kernel for these layouts; the first reference one found is kept
 * in *fallback (with the operand entries its post-ops were described with). */
static dnnl_primitive_desc_t candidate(msv_planner *pl, const conv_descs *d, const_dnnl_memory_desc_t src,
                                       const_dnnl_memory_desc_t dst, const_dnnl_primitive_attr_t attr,
                                       dnnl_primitive_desc_t *fallback, const int *operands, int *fallback_operands) {
    dnnl_primitive_desc_t cand = NULL;
    dnnl_primitive_attr_t own = attr ? NULL : msv_new_attr(); /* probes still use a user scratchpad */
    if (!attr) attr = own;
    dnnl_status_t s =
        d->deconv
            ? dnnl_deconvolution_forward_primitive_desc_create(&cand, pl->engine, dnnl_forward_inference,
                                                               dnnl_deconvolution_direct, src, d->wany, d->bias, dst,
                                                               d->strides, d->dilation, d->pad_l, d->pad_r, attr)
            : dnnl_convolution_forward_primitive_desc_create(&cand, pl->engine, dnnl_forward_inference,
                                                             dnnl_convolution_direct, src, d->wany, d->bias, dst,
                                                             d->strides, d->dilation, d->pad_l, d->pad_r, attr);
    dnnl_primitive_attr_destroy(own);
    if (s != dnnl_success) return NULL;
    if (!msv_is_ref(cand)) return cand;
    if (fallback && !*fallback) {
        *fallback = cand;
        memcpy(fallback_operands, operands, sizeof(int) * MSV_MAX_POST_OPS);
    } else {
        dnnl_primitive_desc_destroy(cand);
    }
    return NULL;
}

/* The first fast candidate over (src layouts) x (dst layouts), with node m's post-ops (described from operands). */
static dnnl_primitive_desc_t search(msv_planner *pl, const conv_descs *d, const msv_node *m, int src,
                                    const_dnnl_memory_desc_t dst_hint, const int *operands,
                                    dnnl_primitive_desc_t *fallback, int *fallback_operands) {
    dnnl_primitive_attr_t attr = msv_new_attr();
    if (!attr || !msv_pl_post_ops(pl, m, attr, operands)) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    /* the producer's layout (in the input's data type: an fp32 producer's bf16 copy keeps its layout) */
    dnnl_memory_desc_t producer = msv_md_retyped(pl->p->entries[src].md, d->sdt);
    dnnl_memory_desc_t hint = dst_hint ? msv_md_retyped(dst_hint, d->ddt) : NULL;
    const_dnnl_memory_desc_t srcs[2] = {producer ? producer : d->sany, d->sany};
    const_dnnl_memory_desc_t dsts[3] = {hint ? hint : d->dpref, d->dpref, d->dany};
    dnnl_primitive_desc_t pd = NULL;
    for (int j = 0; j < 3 && !pd; j++) /* the output layout matters most: every consumer reads it */
        for (int i = 0; i < 2 && !pd; i++)
            pd = candidate(pl, d, srcs[i], dsts[j], attr, fallback, operands, fallback_operands);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_destroy(producer);
    dnnl_memory_desc_destroy(hint);
    return pd;
}

static int is_full_operand(const msv_planner *pl, const msv_node *n, int k) {
    const int t = n->post[k].tensor;
    return n->post[k].kind == MSV_POST_BINARY && pl->g->tensors[t].kind != MSV_T_CONST &&
           memcmp(pl->shapes[t].dims, pl->shapes[n->out].dims, sizeof(int64_t) * 4) == 0;
}

/* Adds the convolution step of pd (destroyed), reading operands for node m's post-ops. */
static msv_status add_conv_step(msv_planner *pl, const msv_node *n, const msv_node *m, const conv_descs *d,
                                dnnl_primitive_desc_t pd, int src, const int *operands, int *result) {
    const int s_in = msv_pl_converted(pl, src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
    const int w_in =
        s_in < 0 ? -1
                 : msv_pl_packed_weights(pl, n->in[1], MSV_W_AS_STORED, d->wplain, pl->g->tensors[n->in[1]].data,
                                         dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    const int b_in = n->in[2] >= 0 && w_in >= 0 ? msv_pl_entry(pl, n->in[2]) : -1;
    const int out = w_in < 0 || (n->in[2] >= 0 && b_in < 0)
                        ? -1
                        : msv_pl_output(pl, n, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
    if (out < 0) {
        dnnl_primitive_desc_destroy(pd);
        return pl->err->status ? pl->err->status : MSV_ERR_BACKEND;
    }
    msv_step *s = msv_pl_primitive(pl, pd, n, "");
    if (!s) return pl->err->status;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    msv_pl_arg(pl, s, DNNL_ARG_SRC, s_in);
    msv_pl_arg(pl, s, DNNL_ARG_WEIGHTS, w_in);
    if (b_in >= 0) msv_pl_arg(pl, s, DNNL_ARG_BIAS, b_in);
    msv_pl_arg(pl, s, DNNL_ARG_DST, out);
    msv_pl_post_op_args(pl, s, m, operands);
    *result = out;
    return MSV_OK;
}

/* ------------------------------------------------------------------ C kernels: depthwise and transposed */

typedef struct conv_kernel_state {
    const float *weights, *bias;
    msv_window win;
    int64_t groups;
    int deconv;
    float *taps;  /* few-outputs convolution: the weights as (O, kh, kw, C), owned */
    float *zeros; /* and kw * C zeros, owned */
    msv_isa isa;  /* the widest vectors its blocks may use */
} conv_kernel_state;

static void free_conv_kernel_state(void *p) {
    conv_kernel_state *st = p;
    if (st) {
        free(st->taps);
        free(st->zeros);
    }
    free(st);
}

static msv_status run_conv_kernel(const msv_step *s, msv_exec *x) {
    const conv_kernel_state *st = s->state;
    const msv_view src = msv_exec_view(x, s, 0), dst = msv_exec_view(x, s, 1);
    if (st->taps)
        msv_kernel_conv_few_outputs(&src, &dst, st->taps, st->bias, &st->win, st->zeros, st->isa);
    else if (st->deconv)
        msv_kernel_deconv(&src, &dst, st->weights, st->bias, &st->win, st->groups);
    else
        msv_kernel_depthwise_conv(&src, &dst, st->weights, st->bias, &st->win);
    return MSV_OK;
}

/* Convolutions with a few output channels over many input channels (a matting or segmentation head: 32 -> 1):
 * oneDNN 3.2 runs them at a few GFLOP/s; the C kernel's per-pixel dot products over contiguous channels are ~5x
 * faster. Its input is the producer's NHWC tensor (a blocked one is reordered). */
static int wants_few_outputs_kernel(const msv_planner *pl, const msv_node *n) {
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    return n->kind == MSV_OP_CONV2D && n->p.conv.groups == 1 && ys.dims[1] <= MSV_FEW_OUTPUTS && xs.dims[1] >= 8 &&
           ys.dims[2] * ys.dims[3] >= 4096;
}

static msv_status plan_few_outputs_kernel(msv_planner *pl, const msv_node *n) {
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    const msv_window win = msv_conv_window(pl->g, n);
    const int64_t O = ys.dims[1], C = xs.dims[1], taps = (int64_t)win.kh * win.kw;
    conv_kernel_state *st = calloc(1, sizeof(*st));
    float *packed = malloc(sizeof(float) * (size_t)(O * taps * C));
    float *zeros = calloc((size_t)(win.kw * C), sizeof(float));
    int src = msv_pl_entry(pl, n->in[0]);
    dnnl_memory_desc_t nhwc = msv_md(4, xs.dims, dnnl_nhwc), ymd = msv_md(4, ys.dims, dnnl_nhwc);
    src = src >= 0 && nhwc ? msv_pl_converted(pl, src, nhwc) : -1; /* the kernel reads channels contiguously */
    int out = src >= 0 && ymd ? msv_pl_output(pl, n, ymd) : -1;
    dnnl_memory_desc_destroy(nhwc);
    dnnl_memory_desc_destroy(ymd);
    msv_view vx, vy;
    if (!st || !packed || !zeros || out < 0 || !msv_md_to_view(pl->p->entries[src].md, &vx) ||
        !msv_md_to_view(pl->p->entries[out].md, &vy)) {
        free(st);
        free(packed);
        free(zeros);
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    const float *w = pl->g->tensors[n->in[1]].data; /* (O, C, kh, kw) */
    for (int64_t o = 0; o < O; o++)
        for (int64_t t = 0; t < taps; t++)
            for (int64_t c = 0; c < C; c++)
                packed[(o * taps + t) * C + c] = w[(o * C + c) * taps + t];
    *st = (conv_kernel_state){.bias = n->in[2] >= 0 ? pl->g->tensors[n->in[2]].data : NULL,
                              .win = win,
                              .taps = packed,
                              .zeros = zeros,
                              .isa = pl->env->kernel_isa};
    msv_step *s = msv_pl_kernel(pl, run_conv_kernel, n, "few outputs");
    if (!s) {
        free_conv_kernel_state(st);
        return pl->err->status ? pl->err->status : msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    s->state = st;
    s->free_state = free_conv_kernel_state;
    pl->p->entries[out].def = pl->p->n_steps - 1;
    msv_pl_kernel_view(pl, s, src, &vx);
    msv_pl_kernel_view(pl, s, out, &vy);
    return n->n_post ? msv_pl_post_ops_kernel(pl, n, 0, out) : MSV_OK;
}

/* Whether a C kernel takes n: depthwise convolutions (groups == C == O) and transposed convolutions. */
static int has_conv_kernel(const msv_planner *pl, const msv_node *n) {
    const msv_shape xs = pl->shapes[n->in[0]], ys = pl->shapes[n->out];
    if (n->kind == MSV_OP_DECONV2D) return 1;
    return n->kind == MSV_OP_CONV2D && n->p.conv.groups == xs.dims[1] && ys.dims[1] == xs.dims[1];
}

static msv_status plan_conv_kernel(msv_planner *pl, const msv_node *n) {
    conv_kernel_state *st = calloc(1, sizeof(*st));
    if (!st) return msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning");
    *st = (conv_kernel_state){pl->g->tensors[n->in[1]].data, n->in[2] >= 0 ? pl->g->tensors[n->in[2]].data : NULL,
                              msv_conv_window(pl->g, n), n->p.conv.groups, n->kind == MSV_OP_DECONV2D};
    return msv_pl_view_kernel(pl, n, run_conv_kernel, st->deconv ? "deconvolution" : "depthwise", st);
}

/* ------------------------------------------------------------------ planning */

int msv_conv_reads_concat_in_place(const msv_planner *pl, const msv_node *n) {
    return !wants_few_outputs_kernel(pl, n) && wants_winograd(pl, n);
}

int msv_conv_runs_bf16(const msv_planner *pl, const msv_node *n) {
    return pl->env->bf16 && n->kind == MSV_OP_CONV2D && !wants_few_outputs_kernel(pl, n) && !wants_winograd(pl, n) &&
           !(pl->env->fallback_kernels && has_conv_kernel(pl, n));
}

static msv_status plan_conv(msv_planner *pl, const msv_node *n) {
    if (wants_few_outputs_kernel(pl, n)) return plan_few_outputs_kernel(pl, n);
    if (wants_winograd(pl, n)) {
        int planned;
        msv_status st = plan_winograd(pl, n, &planned);
        if (st != MSV_OK || planned) return st;
    }
    conv_descs d;
    int operands[MSV_MAX_POST_OPS], fallback_operands[MSV_MAX_POST_OPS], result = -1;
    msv_status st = MSV_OK;
    dnnl_primitive_desc_t pd = NULL, fallback = NULL;
    int src = msv_pl_entry(pl, n->in[0]);
    const dnnl_data_type_t ddt = pl->bf16_result[n->out] ? dnnl_bf16 : dnnl_f32;
    if (src < 0 || !make_descs(pl, n, &d, ddt) || !msv_pl_post_op_operands(pl, n, operands)) {
        destroy_descs(&d);
        return pl->err->status ? pl->err->status
                               : msv_set_error(pl->err, MSV_ERR_BACKEND, "planning a convolution failed");
    }
    memcpy(fallback_operands, operands, sizeof operands);
    if (pl->env->fallback_kernels && has_conv_kernel(pl, n)) {
        st = plan_conv_kernel(pl, n);
        goto done;
    }
    /* 2. every post-op fused; a full-size operand's layout is the best output layout to ask for */
    const_dnnl_memory_desc_t hint = NULL;
    for (int k = 0; k < n->n_post; k++)
        if (is_full_operand(pl, n, k)) hint = pl->p->entries[operands[k]].md;
    if (!pl->env->fallback_kernels || n->n_post == 0)
        pd = search(pl, &d, n, src, hint, operands, &fallback, fallback_operands);
    if (!pd && n->n_post > 0 &&
        !pl->env->fallback_kernels) { /* the layout the convolution takes without post-ops, for every full operand */
        msv_node bare = *n;
        bare.n_post = 0;
        dnnl_primitive_desc_t probe = search(pl, &d, &bare, src, NULL, operands, NULL, NULL);
        if (probe) {
            const_dnnl_memory_desc_t natural = dnnl_primitive_desc_query_md(probe, dnnl_query_dst_md, 0);
            int moved[MSV_MAX_POST_OPS], ok = 1;
            memcpy(moved, operands, sizeof moved);
            for (int k = 0; k < n->n_post && ok; k++)
                if (is_full_operand(pl, n, k)) ok = (moved[k] = msv_pl_converted(pl, operands[k], natural)) >= 0;
            if (ok && (pd = search(pl, &d, n, src, natural, moved, &fallback, fallback_operands)))
                memcpy(operands, moved, sizeof moved);
            dnnl_primitive_desc_destroy(probe);
        }
    }
    if (pd) {
        st = add_conv_step(pl, n, n, &d, pd, src, operands, &result);
        goto done;
    }
    /* 3. the leading element-wise post-ops fused, the rest by a C kernel (which applies them to an fp32 result) */
    if (n->n_post > 0 && d.ddt != dnnl_f32) {
        destroy_descs(&d);
        if (!make_descs(pl, n, &d, dnnl_f32)) {
            st = msv_set_error(pl->err, MSV_ERR_OUT_OF_MEMORY, "out of memory planning a convolution");
            goto done;
        }
    }
    if (n->n_post > 0) {
        msv_node head = *n;
        head.n_post = 0;
        while (head.n_post < n->n_post && n->post[head.n_post].kind == MSV_POST_ELTWISE)
            head.n_post++;
        pd = search(pl, &d, &head, src, NULL, operands, NULL, NULL);
        if (pd) {
            st = add_conv_step(pl, n, &head, &d, pd, src, operands, &result);
            if (st == MSV_OK) st = msv_pl_post_ops_kernel(pl, n, head.n_post, result);
            goto done;
        }
    }
    /* 4. depthwise and transposed convolutions on C kernels */
    if (has_conv_kernel(pl, n)) {
        st = plan_conv_kernel(pl, n);
        goto done;
    }
    /* 5. the reference implementation */
    if (!fallback) {
        st = msv_set_error(pl->err, MSV_ERR_BACKEND, "oneDNN has no %s for this shape",
                           d.deconv ? "deconvolution" : "convolution");
        goto done;
    }
    st = msv_pl_allow_ref(pl, n, fallback);
    if (st == MSV_OK) {
        st = add_conv_step(pl, n, n, &d, fallback, src, fallback_operands, &result);
        fallback = NULL;
    }
done:
    if (fallback) dnnl_primitive_desc_destroy(fallback);
    destroy_descs(&d);
    return st;
}

msv_status msv_plan_conv2d(msv_planner *pl, const msv_node *n) { return plan_conv(pl, n); }
msv_status msv_plan_deconv2d(msv_planner *pl, const msv_node *n) { return plan_conv(pl, n); }

msv_status msv_plan_linear(msv_planner *pl, const msv_node *n) {
    if (pl->shapes[n->in[0]].ndims == 4) return plan_conv(pl, n);
    /* (N, F) x (O, F)^T: an inner product */
    const msv_shape xs = pl->shapes[n->in[0]], ws = pl->shapes[n->in[1]];
    int operands[MSV_MAX_POST_OPS];
    const int src = msv_pl_entry(pl, n->in[0]);
    dnnl_memory_desc_t wplain = msv_md(2, ws.dims, dnnl_oi), wany = msv_md(2, ws.dims, dnnl_format_tag_any);
    dnnl_memory_desc_t bmd = n->in[2] >= 0 ? msv_md(1, ws.dims, dnnl_a) : NULL;
    dnnl_memory_desc_t dmd = msv_md(2, (int64_t[]){xs.dims[0], ws.dims[0]}, dnnl_ab);
    dnnl_primitive_attr_t attr = msv_new_attr();
    dnnl_primitive_desc_t pd = NULL;
    msv_status st = MSV_ERR_BACKEND;
    if (src >= 0 && wplain && wany && dmd && attr && msv_pl_post_op_operands(pl, n, operands) &&
        msv_pl_post_ops(pl, n, attr, operands)) {
        dnnl_status_t s = dnnl_inner_product_forward_primitive_desc_create(
            &pd, pl->engine, dnnl_forward_inference, pl->p->entries[src].md, wany, bmd, dmd, attr);
        if (s != dnnl_success) {
            st = msv_dnnl_fail(pl->err, s, "create an inner product");
        } else if ((st = msv_is_ref(pd) ? msv_pl_allow_ref(pl, n, pd) : MSV_OK) == MSV_OK) {
            const int w = msv_pl_packed_weights(pl, n->in[1], MSV_W_AS_STORED, wplain, pl->g->tensors[n->in[1]].data,
                                                dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
            const int b = n->in[2] >= 0 && w >= 0 ? msv_pl_entry(pl, n->in[2]) : -1;
            if (w >= 0 && (n->in[2] < 0 || b >= 0)) {
                int srcs[3] = {src, w, b};
                int args[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS};
                st = msv_pl_simple(pl, n, dnnl_success, pd, "", srcs, args, n->in[2] >= 0 ? 3 : 2, operands);
                pd = NULL;
            } else {
                st = pl->err->status;
            }
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_memory_desc_destroy(wplain);
    dnnl_memory_desc_destroy(wany);
    dnnl_memory_desc_destroy(bmd);
    dnnl_memory_desc_destroy(dmd);
    dnnl_primitive_attr_destroy(attr);
    if (st != MSV_OK && pl->err->status == MSV_OK)
        msv_set_error(pl->err, MSV_ERR_BACKEND, "planning a linear layer failed");
    return st;
}
