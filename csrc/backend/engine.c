/* engine.c - the process-wide oneDNN CPU engine and the memory-descriptor helpers the planners share. */
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

static dnnl_engine_t g_engine;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t g_engine_status = dnnl_success;

/* oneDNN's global primitive cache keeps up to 1024 primitives (with their JIT code) by default, whether or not
 * anything still uses them. Our plans own their primitives; the cache only lets the identical layers of one plan
 * share an implementation, for which a few hundred entries are plenty. Bounded here unless the user set it. */
#define PRIMITIVE_CACHE_CAPACITY 128

static void engine_init(void) {
    if (!getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") && !getenv("DNNL_PRIMITIVE_CACHE_CAPACITY"))
        dnnl_set_primitive_cache_capacity(PRIMITIVE_CACHE_CAPACITY);
    g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
}

dnnl_engine_t msv_engine(msv_error *err) {
    pthread_once(&g_engine_once, engine_init);
    if (g_engine_status != dnnl_success) {
        msv_dnnl_fail(err, g_engine_status, "create a CPU engine");
        return NULL;
    }
    return g_engine;
}

msv_status msv_dnnl_fail(msv_error *err, dnnl_status_t s, const char *what) {
    return msv_set_error(err, s == dnnl_out_of_memory ? MSV_ERR_OUT_OF_MEMORY : MSV_ERR_BACKEND,
                         "oneDNN could not %s (%s)", what, dnnl_status2str(s));
}

dnnl_memory_desc_t msv_md_dt(int ndims, const int64_t *dims, dnnl_format_tag_t tag, dnnl_data_type_t dt) {
    dnnl_memory_desc_t md = NULL;
    dnnl_dims_t d;
    for (int i = 0; i < ndims; i++)
        d[i] = dims[i];
    if (dnnl_memory_desc_create_with_tag(&md, ndims, d, dt, tag) != dnnl_success) return NULL;
    return md;
}

dnnl_memory_desc_t msv_md(int ndims, const int64_t *dims, dnnl_format_tag_t tag) {
    return msv_md_dt(ndims, dims, tag, dnnl_f32);
}

dnnl_data_type_t msv_md_data_type(const_dnnl_memory_desc_t md) {
    dnnl_data_type_t dt = dnnl_data_type_undef;
    dnnl_memory_desc_query(md, dnnl_query_data_type, &dt);
    return dt;
}

dnnl_memory_desc_t msv_md_strides(int ndims, const int64_t *dims, const int64_t *strides) {
    dnnl_memory_desc_t md = NULL;
    dnnl_dims_t d, s;
    for (int i = 0; i < ndims; i++) {
        d[i] = dims[i];
        s[i] = strides[i];
    }
    if (dnnl_memory_desc_create_with_strides(&md, ndims, d, dnnl_f32, s) != dnnl_success) return NULL;
    return md;
}

dnnl_memory_desc_t msv_md_clone(const_dnnl_memory_desc_t src) {
    dnnl_memory_desc_t md = NULL;
    if (!src || dnnl_memory_desc_clone(&md, src) != dnnl_success) return NULL;
    return md;
}

dnnl_format_tag_t msv_plain_tag(int ndims) {
    static const dnnl_format_tag_t tags[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd, dnnl_abcde};
    return ndims >= 1 && ndims <= 5 ? tags[ndims] : dnnl_format_tag_undef;
}

dnnl_memory_desc_t msv_md_plain(msv_shape s) { return msv_md(s.ndims, s.dims, msv_plain_tag(s.ndims)); }
dnnl_memory_desc_t msv_md_shape(msv_shape s, dnnl_format_tag_t tag) { return msv_md(s.ndims, s.dims, tag); }

const char *msv_impl_name(const_dnnl_primitive_desc_t pd) {
    const char *name = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
    return name;
}

int msv_is_ref(const_dnnl_primitive_desc_t pd) { return strstr(msv_impl_name(pd), "ref") != NULL; }

int msv_md_layout_view(const_dnnl_memory_desc_t md, msv_view *v) {
    int nd = 0, nblks = 0;
    dnnl_format_kind_t fk;
    const dnnl_dims_t *dims, *pdims, *strides, *blks, *idxs, *poffs;
    if (dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &nd) != dnnl_success || nd != 4) return 0;
    dnnl_memory_desc_query(md, dnnl_query_format_kind, &fk);
    if (fk != dnnl_blocked) return 0;
    dnnl_memory_desc_query(md, dnnl_query_dims, &dims);
    dnnl_memory_desc_query(md, dnnl_query_padded_dims, &pdims);
    dnnl_memory_desc_query(md, dnnl_query_padded_offsets, &poffs);
    dnnl_memory_desc_query(md, dnnl_query_strides, &strides);
    dnnl_memory_desc_query(md, dnnl_query_inner_nblks_s32, &nblks);
    dnnl_memory_desc_query(md, dnnl_query_inner_blks, &blks);
    dnnl_memory_desc_query(md, dnnl_query_inner_idxs, &idxs);
    for (int i = 0; i < 4; i++)
        if ((*poffs)[i] != 0 || (i != 1 && (*pdims)[i] != (*dims)[i])) return 0;
    memset(v, 0, sizeof *v);
    v->n = (*dims)[0];
    v->c = (*dims)[1];
    v->h = (*dims)[2];
    v->w = (*dims)[3];
    v->c_padded = (*pdims)[1];
    if (nblks == 0)
        v->block = 1;
    else if (nblks == 1 && (*idxs)[0] == 1 && (*blks)[0] <= 16)
        v->block = (*blks)[0];
    else
        return 0;
    v->sn = (*strides)[0];
    v->scb = (*strides)[1];
    v->sh = (*strides)[2];
    v->sw = (*strides)[3];
    return 1;
}

int msv_md_to_view(const_dnnl_memory_desc_t md, msv_view *v) {
    return msv_md_data_type(md) == dnnl_f32 && msv_md_layout_view(md, v); /* the C kernels read and write fp32 */
}

void msv_describe_md(char *buf, size_t cap, const_dnnl_memory_desc_t md) {
    msv_view v;
    int nd = 0;
    const char *dt = msv_md_data_type(md) == dnnl_bf16 ? " bf16" : "";
    dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &nd);
    if (nd != 4)
        snprintf(buf, cap, "%s%s", nd > 0 ? "plain" : "-", dt);
    else if (!msv_md_layout_view(md, &v))
        snprintf(buf, cap, "other%s", dt);
    else if (v.block > 1)
        snprintf(buf, cap, "nChw%lldc%s", (long long)v.block, dt);
    else
        snprintf(buf, cap, "%s%s", v.scb == 1 && v.c > 1 ? "nhwc" : v.sw == 1 ? "nchw" : "strided", dt);
}

static dnnl_format_tag_t view_tag(const msv_view *like) {
    if (like->block == 16) return dnnl_nChw16c;
    if (like->block == 8) return dnnl_nChw8c;
    if (like->block == 4) return dnnl_nChw4c;
    if (like->block == 1 && like->scb == 1 && like->c > 1) return dnnl_nhwc;
    return dnnl_nchw;
}

dnnl_memory_desc_t msv_md_like(const msv_view *like, msv_shape s) { return msv_md(4, s.dims, view_tag(like)); }

dnnl_memory_desc_t msv_md_retyped(const_dnnl_memory_desc_t md, dnnl_data_type_t dt) {
    if (msv_md_data_type(md) == dt) return msv_md_clone(md);
    msv_view v;
    if (!msv_md_layout_view(md, &v)) return NULL;
    return msv_md_dt(4, (int64_t[]){v.n, v.c, v.h, v.w}, view_tag(&v), dt);
}

dnnl_alg_kind_t msv_eltwise_alg(msv_act act, float *alpha, float *beta) {
    switch (act) {
    case MSV_ACT_RELU: *alpha = 0.f; return dnnl_eltwise_relu;
    case MSV_ACT_LEAKY_RELU: return dnnl_eltwise_relu;
    case MSV_ACT_SIGMOID: return dnnl_eltwise_logistic;
    case MSV_ACT_TANH: return dnnl_eltwise_tanh;
    case MSV_ACT_GELU_ERF: return dnnl_eltwise_gelu_erf;
    case MSV_ACT_GELU_TANH: return dnnl_eltwise_gelu_tanh;
    case MSV_ACT_SWISH: return dnnl_eltwise_swish;
    case MSV_ACT_HARDSWISH:
        *alpha = 1.f / 6.f;
        *beta = 0.5f;
        return dnnl_eltwise_hardswish;
    case MSV_ACT_CLIP: return dnnl_eltwise_clip_v2;
    case MSV_ACT_ELU: return dnnl_eltwise_elu;
    case MSV_ACT_EXP: return dnnl_eltwise_exp;
    case MSV_ACT_LINEAR: return dnnl_eltwise_linear;
    case MSV_ACT_SQUARE: return dnnl_eltwise_square;
    case MSV_ACT_SQRT: return dnnl_eltwise_sqrt;
    case MSV_ACT_POW: return dnnl_eltwise_pow;
    case MSV_ACT_ABS: return dnnl_eltwise_abs;
    default: return dnnl_alg_kind_undef;
    }
}

dnnl_alg_kind_t msv_binary_alg(msv_binop op) {
    switch (op) {
    case MSV_BIN_ADD: return dnnl_binary_add;
    case MSV_BIN_SUB: return dnnl_binary_sub;
    case MSV_BIN_MUL: return dnnl_binary_mul;
    case MSV_BIN_DIV: return dnnl_binary_div;
    case MSV_BIN_MAX: return dnnl_binary_max;
    case MSV_BIN_MIN: return dnnl_binary_min;
    default: return dnnl_alg_kind_undef;
    }
}

dnnl_primitive_attr_t msv_new_attr(void) {
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    return attr;
}
