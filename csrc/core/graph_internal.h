/*
 * graph_internal.h - the graph IR shared by the builder (graph.c), the C kernels and the oneDNN backend.
 * Nothing here knows oneDNN; the backend keeps its objects behind `struct msv_plan_cache`.
 */
#ifndef MSV_GRAPH_INTERNAL_H
#define MSV_GRAPH_INTERNAL_H

#include <pthread.h>

#include "msv.h"

#define MSV_MAX_NODE_INPUTS 16
#define MSV_MAX_POST_OPS 4
#define MSV_MAX_OUTPUTS 32

typedef enum msv_op {
    MSV_OP_CONV,
    MSV_OP_DECONV,
    MSV_OP_LINEAR,
    MSV_OP_ELTWISE,
    MSV_OP_BINARY,
    MSV_OP_PRELU,
    MSV_OP_LAYER_NORM,
    MSV_OP_POOL,
    MSV_OP_GLOBAL_AVG_POOL,
    MSV_OP_SOFTMAX,
    MSV_OP_RESIZE,
    MSV_OP_CONCAT,
    MSV_OP_PAD,
    MSV_OP_SLICE,
    MSV_OP_PIXEL_SHUFFLE,
    MSV_OP_PIXEL_UNSHUFFLE,
    MSV_OP_SIMPLE_GATE,
    MSV_OP_GROUP_NORM,
} msv_op;

typedef enum msv_tensor_kind { MSV_T_INPUT, MSV_T_CONST, MSV_T_ACT } msv_tensor_kind;

typedef struct msv_tensor {
    msv_tensor_kind kind;
    msv_shape shape; /* consts: as given; inputs/activations: 4-D, spatial dims filled at inference */
    float *data;     /* consts only (owned) */
    int producer;    /* node index for activations, -1 otherwise */
    int channels;    /* inputs: declared channel count */
} msv_tensor;

typedef enum msv_post_kind { MSV_POST_ELTWISE, MSV_POST_BINARY, MSV_POST_PRELU } msv_post_kind;

typedef struct msv_post_op {
    msv_post_kind kind;
    msv_act act; /* eltwise */
    float alpha, beta;
    msv_binop bin; /* binary: dst = dst (op) tensor */
    int tensor;    /* binary operand, or prelu slope (a constant) */
} msv_post_op;

typedef struct msv_node {
    msv_op op;
    int in[MSV_MAX_NODE_INPUTS];
    int n_in;
    int out;
    int weight, bias, scale, shift; /* const tensor ids or -1 */
    msv_conv_params win;            /* conv, deconv, pool */
    int alg;                        /* msv_act / msv_binop / msv_pool_kind / msv_resize_mode */
    float alpha, beta, eps;
    int ints[8];     /* op-specific: pad t,l,b,r; slice c0,c1,h0,h1,w0,w1; shuffle r; resize out h,w; ceil */
    float floats[2]; /* resize scales */
    msv_post_op post[MSV_MAX_POST_OPS];
    int n_post;
    int fused_away; /* merged into a later node */
} msv_node;

struct msv_plan_cache; /* backend-owned */

struct msv_graph {
    msv_tensor *tensors;
    int n_tensors, cap_tensors;
    msv_node *nodes;
    int n_nodes, cap_nodes;
    int inputs[8];
    int n_inputs;
    int outputs[MSV_MAX_OUTPUTS];
    int n_outputs;
    int finalized;
    msv_error first_error; /* sticky builder error */
    pthread_mutex_t run_lock;
    struct msv_plan_cache *plans;
};

/* Error helpers (status.c). */
msv_status msv_set_error(msv_error *err, msv_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Shape inference for every tensor given the input shapes (graph.c). Fills shapes into `shapes`
 * (n_tensors entries). */
msv_status msv_infer_all(const msv_graph *g, const msv_shape *in_shapes, msv_shape *shapes, msv_error *err);

/* Backend (csrc/backend/plan.c). */
void msv_plan_cache_destroy(struct msv_plan_cache *pc);
msv_status msv_backend_run(msv_graph *g, const msv_shape *in_shapes, const float *const *inputs, float *const *outputs,
                           msv_error *err);
int64_t msv_backend_primitive_count(const struct msv_plan_cache *pc);
int64_t msv_backend_arena_bytes(const struct msv_plan_cache *pc);
/* Whether `threads` OpenMP threads can be started (backend/threads.c); checked once per new maximum. */
msv_status msv_check_threads(int threads, msv_error *err);

#endif
