/*
 * graph.h - the graph IR: tensors, nodes with typed parameters, the op table. Shared by the builders
 * (core/ops/), the fusion pass and the backend; nothing here knows oneDNN, threads or sessions.
 */
#ifndef MSV_GRAPH_H
#define MSV_GRAPH_H

#include "../msv.h"

#define MSV_MAX_INPUTS 16 /* of one node */
#define MSV_MAX_POST_OPS 4
#define MSV_MAX_GRAPH_INPUTS 8
#define MSV_MAX_OUTPUTS 32
/* Largest dimension and tensor the core accepts: 2**31 - 1 per axis, 16 GiB of float32 per tensor. */
#define MSV_MAX_DIM_SIZE INT32_MAX
#define MSV_MAX_ELEMENTS ((int64_t)1 << 32)

typedef enum msv_tensor_kind { MSV_T_INPUT, MSV_T_CONST, MSV_T_ACT } msv_tensor_kind;

typedef struct msv_tensor {
    msv_tensor_kind kind;
    float *data;  /* constants only (owned) */
    int producer; /* node index for activations, -1 otherwise */
} msv_tensor;

typedef union msv_op_params {
    msv_conv_params conv;
    msv_eltwise_params eltwise;
    msv_binary_params binary;
    msv_norm_params norm;
    msv_pool_params pool;
    msv_resize_params resize;
    msv_concat_params concat;
    msv_pad_params pad;
    msv_slice_params slice;
    msv_shuffle_params shuffle;
} msv_op_params;

/* A consumer folded into its producer by the fusion pass (core/fuse.c): dst = post(dst [, tensor]). */
typedef enum msv_post_kind { MSV_POST_ELTWISE, MSV_POST_BINARY, MSV_POST_PRELU } msv_post_kind;

typedef struct msv_post_op {
    msv_post_kind kind;
    msv_eltwise_params eltwise;
    msv_binop op;
    int tensor; /* the binary operand, or the PReLU slope (a constant) */
} msv_post_op;

typedef struct msv_node {
    msv_op_kind kind;
    int in[MSV_MAX_INPUTS]; /* tensor ids; -1 for an absent optional input */
    int n_in;
    int out;
    msv_op_params p;
    msv_post_op post[MSV_MAX_POST_OPS];
    int n_post;
    int fused_away; /* merged into a later node */
} msv_node;

struct msv_graph {
    msv_tensor *tensors;
    msv_shape *shapes; /* static shapes, per tensor: MSV_DYNAMIC where they depend on the inputs */
    int n_tensors, cap_tensors;
    msv_node *nodes;
    int n_nodes, cap_nodes;
    int *uses; /* per tensor: consumers (nodes, post-op operands, graph outputs); built by finalize */
    int inputs[MSV_MAX_GRAPH_INPUTS];
    int n_inputs;
    int outputs[MSV_MAX_OUTPUTS];
    int n_outputs;
    int finalized;
    msv_error first_error; /* sticky builder error */
};

/* A shape rule validates node n (parameters, input kinds and shapes) and infers its output shape from the
 * input shapes in `shapes` (indexed by tensor; MSV_DYNAMIC dims while building, concrete ones when planning).
 * Messages need not name the op: the caller prefixes its name. */
typedef msv_status (*msv_shape_rule)(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                     msv_error *err);

typedef struct msv_op_info {
    const char *name;
    const msv_signature *signature;
    msv_shape_rule shape;
} msv_op_info;

extern const msv_op_info msv_ops[MSV_OP_COUNT];

#define MSV_OP(kind, name, family)                                                                              \
    extern const msv_signature msv_signature_##name;                                                            \
    msv_status msv_shape_##name(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out, \
                                msv_error *err);
#include "ops.def"
#undef MSV_OP

/* Error helper (status.c): first error wins where the caller keeps one (see msv_graph.first_error). */
msv_status msv_set_error(msv_error *err, msv_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Shape inference for every tensor given the input shapes (graph.c); `shapes` has n_tensors entries. */
msv_status msv_infer_shapes(const msv_graph *g, const msv_shape *in_shapes, msv_shape *shapes, msv_error *err);

/* Post-op fusion (fuse.c), run once by msv_graph_finalize. */
void msv_fuse_post_ops(msv_graph *g);

/* Helpers for shape rules (ops/common.c). */
int msv_is_const(const msv_graph *g, int t);
int msv_is_activation(const msv_graph *g, int t); /* an input or a node result */
int64_t msv_numel(msv_shape s);                   /* MSV_DYNAMIC if a dim is */
msv_shape msv_shape4(int64_t n, int64_t c, int64_t h, int64_t w);
/* Checks that an optional constant input holds `len` values (absent: fine). */
msv_status msv_check_vector(const msv_graph *g, int t, int64_t len, const char *what, msv_error *err);
/* The effective window of a conv2d / deconv2d node (kernel size from its weight). */
msv_window msv_conv_window(const msv_graph *g, const msv_node *n);

#endif
