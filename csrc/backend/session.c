/*
 * session.c - msv_session_*: runs a finalized graph. A session owns its plans (one per input shape, least
 * recently used evicted past max_plans), its activation arena (sized to the largest cached plan: shrunk when
 * the plan that needed more is evicted), a oneDNN stream and its thread count; packed weights live in a store
 * shared with the sessions created from it. One thread uses a session at a time; sessions run concurrently.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "planner.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define DEFAULT_MAX_PLANS 8
#define MAX_PLANS_LIMIT 4096

struct msv_session {
    const msv_graph *g;
    msv_session_options opt;
    msv_env env; /* read once, at creation */
    dnnl_stream_t stream;
    msv_weight_store *weights;
    msv_plan **plans;
    int n_plans;
    uint64_t clock;
    void *arena;
    size_t arena_bytes;
    int64_t primitives_created;
    msv_plan *last; /* the plan planned or run last */
};

msv_status msv_session_create(msv_session **out, const msv_graph *g, const msv_session_options *options,
                              msv_error *err) {
    msv_error ignored; /* err may be NULL (msv.h); the planner reports through it */
    if (!err) err = &ignored;
    *out = NULL;
    if (!g || !g->finalized) return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "the graph is not finalized");
    msv_session_options opt = options ? *options : (msv_session_options){0};
    if (opt.max_plans <= 0) opt.max_plans = DEFAULT_MAX_PLANS;
    if (opt.max_plans > MAX_PLANS_LIMIT || opt.threads > 4096 ||
        (opt.io_layout != MSV_LAYOUT_NCHW && opt.io_layout != MSV_LAYOUT_NHWC) ||
        (opt.precision != MSV_PRECISION_FP32 && opt.precision != MSV_PRECISION_BF16))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "invalid session options (max_plans 1..%d, threads up to 4096, layout NCHW or NHWC, "
                             "precision FP32 or BF16)",
                             MAX_PLANS_LIMIT);
    if (opt.share_weights_with && opt.share_weights_with->g != g)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "share_weights_with must be a session of the same graph");
    msv_session *s = calloc(1, sizeof(*s));
    if (s) s->plans = calloc((size_t)opt.max_plans, sizeof(msv_plan *));
    if (!s || !s->plans) {
        if (s) free(s->plans);
        free(s);
        return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    }
    s->g = g;
    s->opt = opt;
    s->env = msv_read_env();
    s->env.bf16 = opt.precision == MSV_PRECISION_BF16;
    s->opt.share_weights_with = NULL;
    msv_status st = MSV_OK;
    if (opt.share_weights_with)
        s->weights = msv_weight_store_ref(opt.share_weights_with->weights);
    else
        st = msv_weight_store_create(&s->weights, err);
    dnnl_engine_t engine = st == MSV_OK ? msv_engine(err) : NULL;
    if (st == MSV_OK && !engine) st = err->status;
    if (st == MSV_OK) {
        dnnl_status_t ds = dnnl_stream_create(&s->stream, engine, dnnl_stream_default_flags);
        if (ds != dnnl_success) st = msv_dnnl_fail(err, ds, "create a stream");
    }
    if (st != MSV_OK) {
        msv_session_destroy(s);
        return st;
    }
    *out = s;
    return MSV_OK;
}

void msv_session_destroy(msv_session *s) {
    if (!s) return;
    for (int i = 0; i < s->n_plans; i++)
        msv_plan_destroy(s->plans[i]);
    free(s->plans);
    free(s->arena);
    if (s->stream) dnnl_stream_destroy(s->stream);
    msv_weight_store_unref(s->weights);
    free(s);
}

static int same_shapes(const msv_plan *p, const msv_shape *shapes) {
    for (int i = 0; i < p->n_inputs; i++) {
        if (p->in_shapes[i].ndims != shapes[i].ndims) return 0;
        if (memcmp(p->in_shapes[i].dims, shapes[i].dims, sizeof(int64_t) * (size_t)shapes[i].ndims) != 0) return 0;
    }
    return 1;
}

/* Frees the arena when it is larger than every cached plan needs (the next run allocates what it needs). */
static void fit_arena(msv_session *s) {
    size_t need = 0;
    for (int i = 0; i < s->n_plans; i++)
        if (s->plans[i]->arena_bytes > need) need = s->plans[i]->arena_bytes;
    if (s->arena_bytes > need) {
        free(s->arena);
        s->arena = NULL;
        s->arena_bytes = 0;
    }
}

static msv_status find_plan(msv_session *s, const msv_shape *in_shapes, msv_plan **out, msv_error *err) {
    for (int i = 0; i < s->n_plans; i++)
        if (same_shapes(s->plans[i], in_shapes)) {
            *out = s->plans[i];
            return MSV_OK;
        }
    for (int i = 0; i < s->g->n_inputs; i++)
        if (in_shapes[i].ndims < 1 || in_shapes[i].ndims > MSV_MAX_DIMS)
            return msv_set_error(err, MSV_ERR_SHAPE, "input %d has %d dimensions", i, in_shapes[i].ndims);
    msv_plan *p = NULL;
    struct timespec t0, t1;
    if (s->env.profile) clock_gettime(CLOCK_MONOTONIC, &t0);
    msv_status st =
        msv_plan_build(s->g, s->weights, &s->env, s->opt.io_layout, in_shapes, &p, &s->primitives_created, err);
    if (st != MSV_OK) return st;
    if (s->env.profile) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "msvision: planned in %.3f ms (%d steps, %.1f MiB of activations)\n",
                (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, p->n_steps,
                (double)p->arena_bytes / (1 << 20));
    }
    if (s->opt.memory_limit > 0 && (int64_t)p->arena_bytes > s->opt.memory_limit) {
        char shape[96] = "";
        size_t used = 0;
        for (int d = 0; d < in_shapes[0].ndims && used < sizeof shape; d++)
            used += (size_t)snprintf(shape + used, sizeof shape - used, d ? " x %lld" : "%lld",
                                     (long long)in_shapes[0].dims[d]);
        st = msv_set_error(err, MSV_ERR_MEMORY_LIMIT,
                           "an input of %s needs %.1f MiB of activation memory, more than this session's limit of "
                           "%.1f MiB",
                           shape, (double)p->arena_bytes / (1 << 20), (double)s->opt.memory_limit / (1 << 20));
        msv_plan_destroy(p);
        return st;
    }
    if (s->n_plans == s->opt.max_plans) { /* evict the least recently used plan */
        int lru = 0;
        for (int i = 1; i < s->n_plans; i++)
            if (s->plans[i]->last_used < s->plans[lru]->last_used) lru = i;
        if (s->last == s->plans[lru]) s->last = NULL;
        msv_plan_destroy(s->plans[lru]);
        s->plans[lru] = s->plans[--s->n_plans];
        fit_arena(s);
    }
    s->plans[s->n_plans++] = p;
    *out = p;
    return MSV_OK;
}

/* Sets this OS thread's OpenMP thread count to the session's, before planning as well as running: oneDNN sizes a
 * primitive's work split for the threads it sees when it is created, and runs that many. */
static msv_status use_threads(const msv_session *s, msv_error *err) {
#ifdef _OPENMP
    if (s->opt.threads > 0) {
        msv_status st = msv_check_threads(s->opt.threads, err);
        if (st != MSV_OK) return st;
        omp_set_num_threads(s->opt.threads); /* this OS thread's setting: other sessions keep theirs */
    }
#else
    (void)s;
    (void)err;
#endif
    return MSV_OK;
}

msv_status msv_session_plan(msv_session *s, const msv_shape *in_shapes, msv_shape *out_shapes, msv_error *err) {
    msv_error ignored;
    if (!err) err = &ignored;
    msv_plan *p = NULL;
    msv_status st = use_threads(s, err);
    if (st == MSV_OK) st = find_plan(s, in_shapes, &p, err);
    if (st != MSV_OK) return st;
    s->last = p;
    memcpy(out_shapes, p->out_shapes, sizeof(msv_shape) * (size_t)p->n_outputs);
    return MSV_OK;
}

msv_status msv_session_run(msv_session *s, const msv_shape *in_shapes, const float *const *inputs,
                           float *const *outputs, msv_error *err) {
    msv_error ignored;
    if (!err) err = &ignored;
    msv_plan *p = NULL;
    msv_status st = use_threads(s, err);
    if (st == MSV_OK) st = find_plan(s, in_shapes, &p, err);
    if (st != MSV_OK) return st;
    p->last_used = ++s->clock;
    s->last = p;
    if (p->arena_bytes > s->arena_bytes) {
        free(s->arena);
        s->arena_bytes = 0;
        s->arena = aligned_alloc(MSV_ARENA_ALIGN, p->arena_bytes);
        if (!s->arena)
            return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory: %zu bytes of activations", p->arena_bytes);
        s->arena_bytes = p->arena_bytes;
    }
    return msv_plan_execute(p, s->arena, inputs, outputs, s->stream, err);
}

void msv_session_get_stats(const msv_session *s, msv_session_stats *stats) {
    stats->primitives_created = s->primitives_created;
    stats->arena_bytes = (int64_t)s->arena_bytes;
    stats->plans = s->n_plans;
    stats->steps = s->last ? s->last->n_steps : 0;
}

int msv_session_describe_step(const msv_session *s, int step, char *buf, size_t cap) {
    if (!s->last || step < 0 || step >= s->last->n_steps) return 0;
    snprintf(buf, cap, "%s", s->last->steps[step].what);
    return 1;
}
