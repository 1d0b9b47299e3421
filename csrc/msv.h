/*
 * msv.h - public API of the msvision C core.
 *
 * Two layers, as in ONNX Runtime's model vs InferenceSession:
 *  - a graph (WHAT to run): tensors of rank <= 5 and nodes, one op kind each (core/ops.def lists them), built
 *    once with msv_input / msv_const / msv_add_op and read-only after msv_graph_finalize; it knows neither
 *    oneDNN, threads nor file formats;
 *  - a session (HOW to run it): plans a graph per input shape (oneDNN primitives created once, weights packed
 *    once, one activation arena) and runs it with its own threads. Several sessions of one graph may run at
 *    the same time, sharing packed weights (msv_session_options.share_weights_with).
 *
 * Conventions
 *  - Every function that can fail returns an msv_status and fills the caller's msv_error (may be NULL).
 *  - Objects come in create/destroy pairs; destroy accepts NULL.
 *  - Nothing here calls exit()/abort() on anything a caller can trigger.
 *  - Builder calls (msv_input, msv_const, msv_add_op) return a tensor id >= 0, or -1 after the first error,
 *    which the graph keeps ("sticky") and msv_graph_finalize() / msv_graph_error() report; builders need not
 *    check every call. Errors name the op ("layer_norm: ...").
 *  - Parameters by name: each op kind takes a typed parameter struct, written with designated initialisers:
 *    msv_add_op(g, MSV_OP_CONV2D, (int[]){x, w, b}, 3, &(msv_conv_params){.win = {.kh = 3, .kw = 3, ...}}).
 * Ownership
 *  - A graph copies every constant it is given; a session owns everything it creates (plans, packed weights,
 *    arena) and only reads its graph, which must outlive it.
 *  - msv_session_run() reads and writes caller-owned float32 buffers, C-contiguous, in the session's layout.
 * Thread safety: a finalized graph may be shared by any number of threads and sessions; one session is used
 * by one thread at a time.
 */
#ifndef MSV_H
#define MSV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum msv_status {
    MSV_OK = 0,
    MSV_ERR_INVALID_ARGUMENT = 1, /* an op built with parameters or inputs it cannot take */
    MSV_ERR_SHAPE = 2,            /* input shape the graph cannot take */
    MSV_ERR_OUT_OF_MEMORY = 3,    /* the system refused memory (or threads) */
    MSV_ERR_MEMORY_LIMIT = 4,     /* an input would need more activation memory than the session allows */
    MSV_ERR_BACKEND = 5,          /* oneDNN refused or failed */
    MSV_ERR_UNSUPPORTED = 6,      /* valid, but not implemented */
} msv_status;

typedef struct msv_error {
    msv_status status;
    char message[512];
} msv_error;

#define MSV_MAX_DIMS 5
#define MSV_DYNAMIC (-1) /* a dimension known only when the graph runs */

typedef struct msv_shape {
    int ndims;
    int64_t dims[MSV_MAX_DIMS];
} msv_shape;

/* ---- version / environment ---- */
typedef struct msv_build_info {
    int dnnl_major, dnnl_minor, dnnl_patch;
    const char *dnnl_hash;
    const char *cpu_runtime; /* "OpenMP", "TBB", "SEQ", ... */
    const char *isa;         /* effective ISA oneDNN dispatches to */
    int max_threads;
} msv_build_info;
void msv_get_build_info(msv_build_info *info);

/* ---- op kinds (one row each in core/ops.def) ---- */
typedef enum msv_op_kind {
#define MSV_OP(kind, name, family) MSV_OP_##kind,
#include "core/ops.def"
#undef MSV_OP
    MSV_OP_COUNT
} msv_op_kind;

/* "conv2d", "layer_norm", ... (NULL for an unknown kind) */
const char *msv_op_name(msv_op_kind kind);

/* How to call an op, for bindings: its inputs and its parameter struct's fields, by name. */
typedef enum msv_field_type {
    MSV_FIELD_INT,     /* int */
    MSV_FIELD_FLOAT,   /* float */
    MSV_FIELD_BOOL,    /* int 0/1 */
    MSV_FIELD_ENUM,    /* int, one of `choices` (by name) */
    MSV_FIELD_PAIR,    /* two ints (h, w); one value means both */
    MSV_FIELD_PADDING, /* four ints (top, left, bottom, right); one value: all, two: (h, w) */
    MSV_FIELD_SIZE,    /* two int64 (h, w) */
    MSV_FIELD_SCALE,   /* two floats (h, w); one value means both */
    MSV_FIELD_DIMS,    /* MSV_MAX_DIMS int64, one per axis; missing or None entries take `fill` */
} msv_field_type;

typedef struct msv_field {
    const char *name;
    msv_field_type type;
    size_t offset; /* in the op's parameter struct */
    const char *const *choices;
    int64_t fill;
    const char *doc;
} msv_field;

#define MSV_MAX_FIELDS 8
typedef struct msv_signature {
    const char *doc;
    /* input names in order; "name?" is optional (absent: -1), "name*" takes a list of 1..16 tensors */
    const char *inputs[4];
    int n_inputs;
    msv_field fields[MSV_MAX_FIELDS];
    int n_fields;
    size_t params_size;   /* 0: the op has no parameters */
    const void *defaults; /* a parameter struct holding the defaults */
} msv_signature;

const msv_signature *msv_op_signature(msv_op_kind kind);

/* ---- op parameters: one struct per family ---- */
typedef enum msv_act {
    MSV_ACT_RELU,
    MSV_ACT_LEAKY_RELU, /* alpha = negative slope */
    MSV_ACT_SIGMOID,
    MSV_ACT_TANH,
    MSV_ACT_GELU_ERF,
    MSV_ACT_GELU_TANH,
    MSV_ACT_SWISH,     /* x * sigmoid(alpha * x) */
    MSV_ACT_HARDSWISH, /* x * relu6(x + 3) / 6 */
    MSV_ACT_CLIP,      /* clamp to [alpha, beta] */
    MSV_ACT_ELU,       /* alpha */
    MSV_ACT_EXP,
    MSV_ACT_LINEAR, /* alpha * x + beta */
    MSV_ACT_SQUARE,
    MSV_ACT_SQRT,
    MSV_ACT_POW, /* alpha * x^beta (TF Rsqrt: 1, -0.5) */
    MSV_ACT_ABS,
    MSV_ACT_COUNT
} msv_act;

typedef enum msv_binop {
    MSV_BIN_ADD,
    MSV_BIN_SUB,
    MSV_BIN_MUL,
    MSV_BIN_DIV,
    MSV_BIN_MAX,
    MSV_BIN_MIN,
    MSV_BIN_COUNT
} msv_binop;

/* A 2-D window: kernel, stride, zero padding (top, left, bottom, right), dilation (1 = none). */
typedef struct msv_window {
    int kh, kw;
    int sh, sw;
    int pad_t, pad_l, pad_b, pad_r;
    int dh, dw;
} msv_window;

/* conv2d: inputs x (N, C, H, W), weight (O, C/groups, kh, kw) constant, bias (O) constant or absent.
 * deconv2d: weight in torch ConvTranspose2d layout (C, O/groups, kh, kw); out_pad_* is output_padding.
 * linear: x flattened to (N, F), weight (O, F), bias (O); no parameters. */
typedef struct msv_conv_params {
    msv_window win; /* kh, kw must match the weight */
    int groups;
    int out_pad_h, out_pad_w;
} msv_conv_params;

/* eltwise: y = act(x). prelu: inputs x and a constant slope of C values or 1; no parameters. */
typedef struct msv_eltwise_params {
    msv_act act;
    float alpha, beta;
} msv_eltwise_params;

/* binary: y = a (op) b, b broadcasting against a (same rank, each dim equal or 1); b may be a constant.
 * simple_gate (NAFNet): y = x[:, :C/2] * x[:, C/2:]; no parameters. */
typedef struct msv_binary_params {
    msv_binop op;
} msv_binary_params;

/* layer_norm: statistics over `axis` (1: the channels of NCHW data, as NAFNet's LayerNorm2d); inputs x, scale
 * and shift (extent of that axis) constants or absent. group_norm: statistics over (C/groups, H, W).
 * softmax: over `axis`. */
typedef struct msv_norm_params {
    int axis;
    int groups;
    float eps;
} msv_norm_params;

typedef enum msv_pool_kind {
    MSV_POOL_MAX,
    MSV_POOL_AVG_INCLUDE_PAD,
    MSV_POOL_AVG_EXCLUDE_PAD,
    MSV_POOL_COUNT
} msv_pool_kind;

/* pool2d: PyTorch's output size (ceil_mode as torch). global_avg_pool: no parameters. */
typedef struct msv_pool_params {
    msv_pool_kind kind;
    msv_window win;
    int ceil_mode;
} msv_pool_params;

typedef enum msv_resize_mode {
    MSV_RESIZE_NEAREST,                /* torch 'nearest' (floor(dst * in / out)) */
    MSV_RESIZE_BILINEAR_HALF_PIXEL,    /* align_corners=False */
    MSV_RESIZE_BILINEAR_ALIGN_CORNERS, /* align_corners=True */
    MSV_RESIZE_BILINEAR_ASYMMETRIC,    /* TF1's legacy ResizeBilinear: src = dst * in / out, not clamped below */
    MSV_RESIZE_NEAREST_ALIGN_CORNERS,  /* TF ResizeNearestNeighbor align_corners: round(dst * (in-1) / (out-1)) */
    MSV_RESIZE_NEAREST_HALF_PIXEL,     /* TF ResizeNearestNeighbor half_pixel_centers: floor((dst + 0.5) * in/out) */
    MSV_RESIZE_COUNT
} msv_resize_mode;

/* resize: to (out_h, out_w) > 0, or by the scale factors when out_h == out_w == 0 (torch's scale_factor
 * semantics). resize_like: inputs x and like; x scaled by the factors and cropped to like's spatial size (an
 * FPN's up2(x)[:, :, :h, :w]); nearest or half-pixel bilinear. */
typedef struct msv_resize_params {
    msv_resize_mode mode;
    int64_t out_h, out_w;
    float scale_h, scale_w;
} msv_resize_params;

/* concat: 1 to 16 inputs of equal shape but for `axis`. */
typedef struct msv_concat_params {
    int axis;
} msv_concat_params;

typedef enum msv_pad_mode {
    MSV_PAD_CONSTANT,  /* `value` */
    MSV_PAD_REFLECT,   /* mirror without the edge (TF MirrorPad REFLECT, torch 'reflect'): pad < size */
    MSV_PAD_SYMMETRIC, /* mirror with the edge (TF MirrorPad SYMMETRIC): pad <= size */
    MSV_PAD_COUNT
} msv_pad_mode;

/* pad: spatial padding of a 4-D tensor with a constant or a mirror image of the border. */
typedef struct msv_pad_params {
    int top, left, bottom, right;
    float value;
    msv_pad_mode mode;
} msv_pad_params;

#define MSV_SLICE_END INT64_MAX /* slice end: to the end of the axis */

/* slice: x[begin[0]:end[0], begin[1]:end[1], ...] over the tensor's rank (step 1). */
typedef struct msv_slice_params {
    int64_t begin[MSV_MAX_DIMS], end[MSV_MAX_DIMS];
} msv_slice_params;

/* pixel_shuffle / pixel_unshuffle (torch semantics). */
typedef struct msv_shuffle_params {
    int factor;
} msv_shuffle_params;

/* ---- graph building ---- */
typedef struct msv_graph msv_graph;

msv_status msv_graph_create(msv_graph **out, msv_error *err);
void msv_graph_destroy(msv_graph *g);

/* A graph input of rank shape.ndims; MSV_DYNAMIC dims come with each run (4-D NCHW inputs usually fix C only). */
int msv_input(msv_graph *g, msv_shape shape);
/* A constant (copied). */
int msv_const(msv_graph *g, msv_shape shape, const float *data);
/* A node of op `kind` on `inputs` (tensor ids; -1 for an absent optional input) with the op family's parameter
 * struct (NULL for ops without parameters). Returns the result's tensor id. */
int msv_add_op(msv_graph *g, msv_op_kind kind, const int *inputs, int n_inputs, const void *params);
/* Marks a tensor as the next graph output; returns the graph's (sticky) status. */
msv_status msv_output(msv_graph *g, int t);
/* Ends building: fuses post-ops and reports the first builder error, if any. The graph is read-only after. */
msv_status msv_graph_finalize(msv_graph *g, msv_error *err);
/* The first builder error (MSV_OK if none). */
msv_status msv_graph_error(const msv_graph *g, msv_error *err);

int msv_graph_num_inputs(const msv_graph *g);
int msv_graph_num_outputs(const msv_graph *g);
/* Graph input i's declared shape (MSV_DYNAMIC where a run gives it); ndims 0 for an invalid index. */
msv_shape msv_graph_input_shape(const msv_graph *g, int i);
/* A tensor's shape as known while building (MSV_DYNAMIC where it depends on the input sizes); ndims 0 for an
 * invalid id. */
msv_shape msv_tensor_shape(const msv_graph *g, int t);

/* ---- sessions ---- */
typedef struct msv_session msv_session;

typedef enum msv_layout { MSV_LAYOUT_NCHW, MSV_LAYOUT_NHWC } msv_layout;

/* Arithmetic of the convolutions. FP32 everywhere is the default. BF16: convolutions multiply bf16 activations by
 * bf16 weights, accumulating in fp32 (fp32 bias and post-ops); a convolution's result is stored as bf16 when
 * every consumer is such a convolution, else as fp32; every other op runs in fp32. */
typedef enum msv_precision { MSV_PRECISION_FP32, MSV_PRECISION_BF16 } msv_precision;

typedef struct msv_session_options {
    int threads;          /* OpenMP threads of this session's runs; <= 0: OpenMP's default */
    int max_plans;        /* input shapes kept planned (least recently used evicted); <= 0: 8 */
    msv_layout io_layout; /* layout of the caller's 4-D input and output buffers (other ranks: row-major) */
    int64_t memory_limit; /* bytes of activations one plan may need; <= 0: no limit */
    const msv_session *share_weights_with; /* a session of the same graph: pack its weights once for both */
    msv_precision precision;               /* of the convolutions (sessions sharing weights may differ) */
} msv_session_options;

msv_status msv_session_create(msv_session **out, const msv_graph *g, const msv_session_options *options,
                              msv_error *err);
void msv_session_destroy(msv_session *s);
/* Plans the graph for these input shapes (or finds the plan) and returns the output shapes, in the session's
 * layout (NHWC: dims in N, H, W, C order). */
msv_status msv_session_plan(msv_session *s, const msv_shape *in_shapes, msv_shape *out_shapes, msv_error *err);
/* Runs on caller buffers (float32, C-contiguous, the session's layout; shapes as msv_session_plan takes them). */
msv_status msv_session_run(msv_session *s, const msv_shape *in_shapes, const float *const *inputs,
                           float *const *outputs, msv_error *err);

typedef struct msv_session_stats {
    int64_t primitives_created; /* oneDNN primitives this session created (planning happens once per shape) */
    int64_t arena_bytes;        /* activation arena held now */
    int plans;                  /* input shapes planned and kept */
    int steps;                  /* steps of the plan run last */
} msv_session_stats;
void msv_session_get_stats(const msv_session *s, msv_session_stats *stats);
/* "conv2d: brgconv:avx2 [nhwc -> nhwc]": step i of the plan run last (planned last if none ran); returns 0 past
 * the last step. */
int msv_session_describe_step(const msv_session *s, int step, char *buf, size_t cap);

/* ---- box geometry (kernels/boxes.c): work per box, in C ---- */
typedef enum msv_nms_mode { MSV_NMS_UNION, MSV_NMS_MIN, MSV_NMS_TF } msv_nms_mode;
/* Greedy NMS over boxes (n x 4, x1 y1 x2 y2) visited by decreasing score (ties: lower index first).
 * overlap = inter / union (or / min area); areas use (x2 - x1 + offset) * (y2 - y1 + offset) (offset 0 or 1, as
 * the model's reference code does); eps is added to the denominator (some references do). A box is dropped when
 * its overlap with a kept box is > iou_threshold. MSV_NMS_TF is TensorFlow's NonMaxSuppression (boxes y1 x1 y2 x2 or
 * x1 y1 x2 y2, corners in either order; a box of no area overlaps nothing; offset and eps unused; its score
 * threshold is the caller's, which passes the candidates only).
 * Writes up to max_keep (< 0: all) kept indices to keep; returns their count, or -1 when out of memory. */
int64_t msv_nms(const float *boxes, const float *scores, int64_t n, float iou_threshold, msv_nms_mode mode,
                float offset, float eps, int64_t max_keep, int64_t *keep);
/* SSD center-size decoding: out = corners of (p.c + loc.c * v0 * p.wh, p.wh * exp(loc.wh * v1)), per box;
 * loc and priors are n x 4 (cx, cy, w, h), out n x 4 (x1, y1, x2, y2). */
void msv_decode_center_size(const float *loc, const float *priors, int64_t n, float v0, float v1, float *out);
/* Class-aware NMS as torchvision.ops.batched_nms on the CPU, to the bit: above 1000 boxes, torchvision's NMS per
 * label and the kept indices sorted by decreasing score; otherwise every box shifted by label * (largest
 * coordinate + 1) in float32 and one NMS. That NMS visits boxes by decreasing score (a stable sort: ties by
 * index, NaN first), areas (x2 - x1) * (y2 - y1), and drops a box when inter / union > iou_threshold compared in
 * double, as torchvision's kernel does. Writes the kept indices (at most n) to keep; returns their count, or -1
 * when out of memory. */
int64_t msv_batched_nms(const float *boxes, const float *scores, const int64_t *labels, int64_t n, double iou_threshold,
                        int64_t *keep);
/* Distribution-focal decoding (GFL heads, DAMO-YOLO's ZeroHead): reg is n x 4 x bins logits; per box side a
 * softmax over its bins (max-subtracted), the expectation sum_i p_i * project[i], times the anchor's stride; then
 * out = (x - l, y - t, x + r, y + b). priors are n x 3 (x, y, stride), out n x 4. */
void msv_decode_distribution(const float *reg, const float *priors, int64_t n, int bins, const float *project,
                             float *out);

#ifdef __cplusplus
}
#endif
#endif /* MSV_H */
