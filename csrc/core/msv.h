/*
 * msv.h - public API of the msvision C core.
 *
 * The core knows neither Python nor file formats. A model is a graph of ops over 4-D NCHW tensors that an
 * architecture builder (csrc/models/) assembles once from named weights and integer settings; the core plans it
 * per input shape (oneDNN primitives created once, weights reordered once, one activation arena) and runs it.
 *
 * Conventions
 *  - Every function that can fail returns an msv_status and fills the caller's msv_error (may be NULL).
 *  - Objects come in create/destroy pairs; destroy accepts NULL.
 *  - Nothing here calls exit()/abort() on anything a caller can trigger.
 *  - Builder calls (msv_conv2d, ...) return a tensor id >= 0, or -1 after the first error, which the graph
 *    keeps ("sticky") and msv_graph_finalize() reports; builders need not check every call.
 * Ownership
 *  - A graph copies (and transforms) every constant it keeps; it owns all its oneDNN objects.
 *  - msv_graph_run() reads and writes caller-owned NCHW float32 buffers.
 * Thread safety: a graph may be run from several threads; runs of one graph are serialised internally.
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
    MSV_ERR_INVALID_ARGUMENT = 1, /* caller passed something malformed */
    MSV_ERR_MISSING_WEIGHT = 2,   /* a weight the architecture needs is absent */
    MSV_ERR_WEIGHT_SHAPE = 3,     /* a weight exists with the wrong shape */
    MSV_ERR_SHAPE = 4,            /* input shape the graph cannot take */
    MSV_ERR_OUT_OF_MEMORY = 5,
    MSV_ERR_BACKEND = 6, /* oneDNN refused or failed */
    MSV_ERR_UNSUPPORTED = 7,
} msv_status;

typedef struct msv_error {
    msv_status status;
    char message[512];
} msv_error;

#define MSV_MAX_DIMS 5

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

/* ---- graph building ---- */
typedef struct msv_graph msv_graph;

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
} msv_act;

typedef enum msv_binop {
    MSV_BIN_ADD,
    MSV_BIN_SUB,
    MSV_BIN_MUL,
    MSV_BIN_DIV,
    MSV_BIN_MAX,
    MSV_BIN_MIN,
} msv_binop;

typedef struct msv_conv_params {
    int kh, kw;
    int sh, sw;                     /* stride */
    int pad_t, pad_l, pad_b, pad_r; /* zero padding */
    int dh, dw;                     /* dilation, 1 = none */
    int groups;
    int out_pad_h, out_pad_w; /* deconvolution output_padding */
} msv_conv_params;

typedef enum msv_pool_kind { MSV_POOL_MAX, MSV_POOL_AVG_INCLUDE_PAD, MSV_POOL_AVG_EXCLUDE_PAD } msv_pool_kind;

typedef enum msv_resize_mode {
    MSV_RESIZE_NEAREST,               /* torch 'nearest' (floor(dst * in / out)) */
    MSV_RESIZE_BILINEAR_HALF_PIXEL,   /* align_corners=False */
    MSV_RESIZE_BILINEAR_ALIGN_CORNERS /* align_corners=True */
} msv_resize_mode;

msv_status msv_graph_create(msv_graph **out, msv_error *err);
void msv_graph_destroy(msv_graph *g);

/* A graph input of `channels` channels; batch and spatial size come with each run. */
int msv_input(msv_graph *g, int channels);
/* Marks a tensor as the next graph output; returns the graph's (sticky) status. */
msv_status msv_output(msv_graph *g, int t);
/* A constant (copied). */
int msv_const(msv_graph *g, msv_shape shape, const float *data);

/* weight: (O, I/groups, kh, kw) constant; bias: (O) constant or -1. */
int msv_conv2d(msv_graph *g, int x, int weight, int bias, const msv_conv_params *p);
/* weight: torch ConvTranspose2d layout (I, O/groups, kh, kw); bias (O) or -1. */
int msv_deconv2d(msv_graph *g, int x, int weight, int bias, const msv_conv_params *p);
/* x flattened to (N, C*H*W); weight (O, C*H*W); result (N, O, 1, 1). */
int msv_linear(msv_graph *g, int x, int weight, int bias);
int msv_eltwise(msv_graph *g, int x, msv_act act, float alpha, float beta);
/* b broadcasts against a (each dim equal or 1); the result has a's shape. b may be a 4-D constant. */
int msv_binary(msv_graph *g, msv_binop op, int a, int b);
/* slope: (C) constant (per channel) or (1) constant (shared). */
int msv_prelu(msv_graph *g, int x, int slope);
/* LayerNorm over the channel axis of NCHW data (as NAFNet's LayerNorm2d); scale/shift (C) or -1. */
int msv_layer_norm_channels(msv_graph *g, int x, int scale, int shift, float eps);
int msv_pool2d(msv_graph *g, int x, msv_pool_kind kind, const msv_conv_params *window, int ceil_mode);
int msv_global_avg_pool(msv_graph *g, int x);
int msv_softmax_channels(msv_graph *g, int x);
/* Output size (out_h, out_w) > 0, or scale factors when out_h == out_w == 0. */
int msv_resize(msv_graph *g, int x, msv_resize_mode mode, int out_h, int out_w, float scale_h, float scale_w);
/* x resized by the scale factors, keeping the top-left part of like's spatial size (as an FPN crops an upsampled
 * map to the finer level's size); like must not be larger than the resized x. Nearest or half-pixel bilinear. */
int msv_resize_like(msv_graph *g, int x, int like, msv_resize_mode mode, float scale_h, float scale_w);
int msv_concat_channels(msv_graph *g, int n, const int *xs);
int msv_pad(msv_graph *g, int x, int top, int left, int bottom, int right, float value);
/* Channel range [c0, c1) and spatial window [h0, h1) x [w0, w1); -1 ends mean "to the end". */
int msv_slice(msv_graph *g, int x, int c0, int c1, int h0, int h1, int w0, int w1);
int msv_pixel_shuffle(msv_graph *g, int x, int r);
int msv_pixel_unshuffle(msv_graph *g, int x, int r);
/* NAFNet's SimpleGate: first half of the channels times the second half. */
int msv_simple_gate(msv_graph *g, int x);
/* GroupNorm: statistics over (C/groups, H, W) per sample and group; scale/shift (C) or -1. */
int msv_group_norm(msv_graph *g, int x, int groups, int scale, int shift, float eps);

/* Ends building: fuses post-ops and reports the first builder error, if any. */
msv_status msv_graph_finalize(msv_graph *g, msv_error *err);

/* ---- running ---- */
int msv_graph_num_inputs(const msv_graph *g);
int msv_graph_num_outputs(const msv_graph *g);
/* Output shapes for the given input shapes (4-D NCHW), without planning. */
msv_status msv_graph_infer(msv_graph *g, const msv_shape *in_shapes, msv_shape *out_shapes, msv_error *err);
/* Runs with caller buffers (NCHW float32, C-contiguous). threads <= 0: keep the current OpenMP setting. */
msv_status msv_graph_run(msv_graph *g, const msv_shape *in_shapes, const float *const *inputs, float *const *outputs,
                         int threads, msv_error *err);
/* Number of oneDNN primitives created so far (planning happens once per input shape). */
int64_t msv_graph_primitive_count(const msv_graph *g);
/* Bytes of activation arena currently held. */
int64_t msv_graph_arena_bytes(const msv_graph *g);

/* ---- detection post-processing (csrc/core/detect.c): work per box, in C ---- */
typedef enum msv_nms_mode { MSV_NMS_UNION, MSV_NMS_MIN } msv_nms_mode;
/* Greedy NMS over boxes (n x 4, x1 y1 x2 y2) visited by decreasing score (ties: lower index first).
 * overlap = inter / union (or / min area); areas use (x2 - x1 + offset) * (y2 - y1 + offset) (offset 0 or 1, as
 * the model's reference code does); eps is added to the denominator (some references do). A box is dropped when
 * its overlap with a kept box is > iou_threshold.
 * Writes up to max_keep (< 0: all) kept indices to keep; returns their count, or -1 when out of memory. */
int64_t msv_nms(const float *boxes, const float *scores, int64_t n, float iou_threshold, msv_nms_mode mode,
                float offset, float eps, int64_t max_keep, int64_t *keep);
/* SSD center-size decoding: out = corners of (p.c + loc.c * v0 * p.wh, p.wh * exp(loc.wh * v1)), per box;
 * loc and priors are n x 4 (cx, cy, w, h), out n x 4 (x1, y1, x2, y2). */
void msv_decode_center_size(const float *loc, const float *priors, int64_t n, float v0, float v1, float *out);

#ifdef __cplusplus
}
#endif
#endif /* MSV_H */
