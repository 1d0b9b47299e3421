/*
 * planner.h - the backend's internal API: plans (per input shape), their entries and steps, and the small set of
 * calls the op planners (backend/ops/<family>.c, one msv_plan_<op> per row of core/ops.def) build steps with.
 *
 * A plan is a list of steps over entries. An entry is a buffer: a block of the session's activation arena placed
 * by liveness, a caller's input or output buffer, or fixed data (constants, packed weights). A step is a oneDNN
 * primitive or a C kernel (kernels/). Activations keep the layouts oneDNN picks (format_tag_any, the producer's
 * layout offered first), so reorders stay at the graph's edges and in weight packing.
 * This folder is the only code that includes dnnl.h.
 */
#ifndef MSV_PLANNER_H
#define MSV_PLANNER_H

#include <dnnl.h>

#include "../core/graph.h"
#include "../kernels/kernels.h"

#define MSV_MAX_ARGS (MSV_MAX_INPUTS + MSV_MAX_POST_OPS + 6)
#define MSV_MAX_STEP_VIEWS (MSV_MAX_INPUTS + MSV_MAX_POST_OPS + 1)
#define MSV_ARENA_ALIGN 64

/* ---- environment knobs (env.c reads them, all in one place; README lists them) ---- */
typedef enum msv_layout_pref { MSV_PREFER_NHWC, MSV_PREFER_BLOCKED, MSV_PREFER_ANY } msv_layout_pref;
typedef struct msv_env {
    msv_layout_pref layout; /* MSVISION_LAYOUT=nhwc|blocked|any: the activation layout offered first */
    int winograd;           /* MSVISION_WINOGRAD=0 turns Winograd convolutions off */
    int64_t winograd_tiles; /* MSVISION_WINOGRAD_TILES: tiles per Winograd matmul (tuning) */
    int verbose;            /* MSVISION_VERBOSE=1: print every planned step */
    int profile;            /* MSVISION_PROFILE=1: time every step */
    int refuse_ref;         /* MSVISION_REFUSE_REF=1: planning fails instead of using a oneDNN reference kernel */
    int fallback_kernels;   /* MSVISION_FALLBACK_KERNELS=1: the C kernels that stand in for oneDNN reference ones
                             * run wherever they can (to test them on machines where oneDNN needs none) */
    msv_isa kernel_isa;     /* MSVISION_KERNEL_ISA=generic|avx2|avx512: the widest vectors the Winograd and
                             * few-outputs kernels may use (to test every instance on one machine) */
    int bf16;               /* not from the environment: the session's precision option is MSV_PRECISION_BF16 */
} msv_env;
msv_env msv_read_env(void); /* call it where no other thread can change the environment (session creation) */

/* ---- oneDNN helpers (engine.c) ---- */
dnnl_engine_t msv_engine(msv_error *err); /* the process-wide CPU engine */
msv_status msv_dnnl_fail(msv_error *err, dnnl_status_t s, const char *what);
dnnl_memory_desc_t msv_md(int ndims, const int64_t *dims, dnnl_format_tag_t tag); /* f32; NULL on failure */
dnnl_memory_desc_t msv_md_dt(int ndims, const int64_t *dims, dnnl_format_tag_t tag, dnnl_data_type_t dt);
dnnl_data_type_t msv_md_data_type(const_dnnl_memory_desc_t md);
dnnl_memory_desc_t msv_md_strides(int ndims, const int64_t *dims, const int64_t *strides);
dnnl_memory_desc_t msv_md_clone(const_dnnl_memory_desc_t md);
dnnl_memory_desc_t msv_md_plain(msv_shape s); /* row-major (nchw for 4-D) */
dnnl_memory_desc_t msv_md_shape(msv_shape s, dnnl_format_tag_t tag);
dnnl_format_tag_t msv_plain_tag(int ndims);
const char *msv_impl_name(const_dnnl_primitive_desc_t pd);
int msv_is_ref(const_dnnl_primitive_desc_t pd); /* a oneDNN reference (slow) implementation */
/* Describes a 4-D (or plain) f32 activation md as a channel-blocked view; 0 if it is not one. */
int msv_md_to_view(const_dnnl_memory_desc_t md, msv_view *v);
/* The same for any data type (a bf16 md's view counts bf16 elements). */
int msv_md_layout_view(const_dnnl_memory_desc_t md, msv_view *v);
/* A short layout name for messages: nchw, nhwc, nChw16c, plain, other; " bf16" appended for bf16 data. */
void msv_describe_md(char *buf, size_t cap, const_dnnl_memory_desc_t md);
/* md with data type dt: a clone, or for another type the same 4-D layout (plain, nhwc, nChw<b>c); NULL if the
 * layout is none of those. */
dnnl_memory_desc_t msv_md_retyped(const_dnnl_memory_desc_t md, dnnl_data_type_t dt);
/* An f32 md of the same layout family as `like` with other dims. */
dnnl_memory_desc_t msv_md_like(const msv_view *like, msv_shape s);
dnnl_alg_kind_t msv_eltwise_alg(msv_act act, float *alpha, float *beta);
dnnl_alg_kind_t msv_binary_alg(msv_binop op);
dnnl_primitive_attr_t msv_new_attr(void); /* user scratchpad mode */

/* ---- plans ---- */
typedef enum msv_entry_kind { MSV_E_ARENA, MSV_E_INPUT, MSV_E_OUTPUT, MSV_E_FIXED } msv_entry_kind;

typedef struct msv_entry {
    msv_entry_kind kind;
    int index;             /* MSV_E_INPUT / MSV_E_OUTPUT: which graph input / output */
    dnnl_memory_desc_t md; /* owned */
    size_t bytes;
    int64_t offset;      /* MSV_E_ARENA */
    void *fixed;         /* MSV_E_FIXED: constants or packed weights (not owned) */
    int def, last;       /* the steps between which an arena block is live */
    int defined_by_step; /* 1 once a step writes it (only such entries can become caller outputs) */
    dnnl_memory_t mem;
} msv_entry;

typedef struct msv_step msv_step;
typedef struct msv_exec msv_exec;
/* A C-kernel step's run function (NULL: the step executes its primitive). */
typedef msv_status (*msv_step_run)(const msv_step *s, msv_exec *x);

struct msv_step {
    char what[112]; /* "conv2d: brgconv:avx2 [nhwc -> nhwc]" (verbose, profile, msv_session_describe_step) */
    dnnl_primitive_t prim;
    int nargs;
    int arg_kind[MSV_MAX_ARGS];
    int arg_entry[MSV_MAX_ARGS];
    dnnl_exec_arg_t args[MSV_MAX_ARGS];
    msv_step_run run;
    const msv_node *node;
    int n_views; /* C kernels: the entries they touch, as views (data filled in at run time) */
    int view_entry[MSV_MAX_STEP_VIEWS];
    msv_view views[MSV_MAX_STEP_VIEWS];
    void *state; /* op-specific (owned; freed with free_state) */
    void (*free_state)(void *state);
};

typedef struct msv_plan {
    msv_shape in_shapes[MSV_MAX_GRAPH_INPUTS]; /* as the caller gives them (session layout) */
    msv_shape out_shapes[MSV_MAX_OUTPUTS];
    int n_inputs, n_outputs;
    msv_entry *entries;
    int n_entries, cap_entries;
    msv_step *steps;
    int n_steps, cap_steps;
    int *tensor_entry;              /* graph tensor -> entry holding it (-1: none yet) */
    int conv_from[32], conv_to[32]; /* conversions already made (an input reordered once for two consumers) */
    int n_conv;
    size_t arena_bytes;
    void *bound_arena;
    uint64_t last_used;
    int profile; /* MSVISION_PROFILE when planned */
} msv_plan;

/* What a running step sees. */
struct msv_exec {
    const msv_plan *plan;
    void *arena;
    const float *const *inputs;
    float *const *outputs;
    dnnl_stream_t stream;
    int profile;
    int step;
    msv_error *err;
};
void *msv_exec_ptr(const msv_exec *x, int entry);
/* A kernel step's view i with its data pointer for this run. */
msv_view msv_exec_view(const msv_exec *x, const msv_step *s, int i);

/* ---- packed weights, shared by every plan of a session (and sessions sharing weights) (weights.c) ---- */
typedef enum msv_weight_form { MSV_W_AS_STORED, MSV_W_WINOGRAD } msv_weight_form;
typedef struct msv_weight_store msv_weight_store;
msv_status msv_weight_store_create(msv_weight_store **out, msv_error *err);
msv_weight_store *msv_weight_store_ref(msv_weight_store *w);
void msv_weight_store_unref(msv_weight_store *w);
/* The packed copy of (tensor, form, layout), or NULL. */
void *msv_weight_store_find(msv_weight_store *w, int tensor, msv_weight_form form, const_dnnl_memory_desc_t md);
/* Keeps buf (allocated with aligned_alloc, taken over) as the packed copy of (tensor, form, md); returns the copy
 * to use (another one if a concurrent planner stored it first), or NULL when out of memory (buf is freed). */
void *msv_weight_store_add(msv_weight_store *w, int tensor, msv_weight_form form, const_dnnl_memory_desc_t md,
                           void *buf);

/* ---- planning one node (plan.c): the calls an op planner makes ---- */
typedef struct msv_planner {
    const msv_graph *g;
    msv_plan *p;
    msv_weight_store *weights;
    const msv_shape *shapes; /* concrete shapes of every tensor */
    const msv_env *env;
    dnnl_engine_t engine;
    int64_t primitives_created;
    msv_error *err;
    const msv_node **deferred;        /* per tensor: the node computing it, left unplanned (msv_pl_defer); or NULL */
    int materializing;                /* set while msv_pl_entry plans a deferred node: it must not defer again */
    const unsigned char *bf16_result; /* per tensor: a convolution result to store as bf16 (env->bf16 only) */
} msv_planner;

typedef msv_status (*msv_planner_fn)(msv_planner *pl, const msv_node *n);
#define MSV_OP(kind, name, family) msv_status msv_plan_##name(msv_planner *pl, const msv_node *n);
#include "../core/ops.def"
#undef MSV_OP

/* The entry holding tensor t (a constant gets a fixed entry in its plain layout; a deferred node's result is
 * planned now, its step placed here); -1 on error. */
int msv_pl_entry(msv_planner *pl, int t);
/* Leaves node n unplanned for now: its consumers may read its inputs in place (msv_pl_deferred); any that calls
 * msv_pl_entry on its result gets it planned at that point. A planner defers only when pl->materializing is 0. */
void msv_pl_defer(msv_planner *pl, const msv_node *n);
/* The deferred node computing tensor t (whose result has no entry yet), or NULL. */
const msv_node *msv_pl_deferred(const msv_planner *pl, int t);
/* Whether convolution n will be planned as a Winograd convolution, which reads a concat's inputs in place
 * (conv.c). */
int msv_conv_reads_concat_in_place(const msv_planner *pl, const msv_node *n);
/* Under bf16: whether convolution n is planned on a oneDNN bf16 convolution, which reads a bf16 input and
 * operands as well as fp32 ones, and can write a bf16 result (conv.c). */
int msv_conv_runs_bf16(const msv_planner *pl, const msv_node *n);
/* A new entry of `md` (taken over); defined by the step added next. -1 on error. */
int msv_pl_new_entry(msv_planner *pl, msv_entry_kind kind, dnnl_memory_desc_t md);
/* An arena entry for node n's result in layout md (cloned); -1 on error. */
int msv_pl_output(msv_planner *pl, const msv_node *n, const_dnnl_memory_desc_t md);
/* Entry e in layout `want`: a reorder step is added (once per pair) when the layouts differ. -1 on error. */
int msv_pl_converted(msv_planner *pl, int e, const_dnnl_memory_desc_t want);
/* Entry of tensor t as a channel-blocked view (kernels.h), reordered to plain if its layout is none; -1 on error. */
int msv_pl_view(msv_planner *pl, int t, msv_view *v);
/* A step running pd's primitive (created here; pd is destroyed), with a scratchpad entry if it needs one. */
msv_step *msv_pl_primitive(msv_planner *pl, dnnl_primitive_desc_t pd, const msv_node *n, const char *what);
/* A C-kernel step. */
msv_step *msv_pl_kernel(msv_planner *pl, msv_step_run run, const msv_node *n, const char *what);
void msv_pl_arg(msv_planner *pl, msv_step *s, int dnnl_arg, int entry);
/* Adds entry e to a kernel step as view v (returns its index). The last entry added to a step that defines
 * one is its result (see msv_pl_output). */
int msv_pl_kernel_view(msv_planner *pl, msv_step *s, int e, const msv_view *v);
/* Weights of constant `tensor` (plain layout `plain` over `data`) in layout `want`, packed once per store. */
int msv_pl_packed_weights(msv_planner *pl, int tensor, msv_weight_form form, const_dnnl_memory_desc_t plain,
                          const void *data, const_dnnl_memory_desc_t want);
/* Where node n's post-op operands live (binary operands; PReLU slopes as (1, C, 1, 1)); -1 for element-wise
 * ones. Returns 0 on error. */
int msv_pl_post_op_operands(msv_planner *pl, const msv_node *n, int *operand_entries);
/* Node n's post-ops into attr, each operand described by the layout of operand_entries[k]. Returns 0 on error. */
int msv_pl_post_ops(msv_planner *pl, const msv_node *n, dnnl_primitive_attr_t attr, const int *operand_entries);
void msv_pl_post_op_args(msv_planner *pl, msv_step *s, const msv_node *n, const int *operand_entries);
/* The post-ops of n from index `first` on as a C-kernel step applied in place to entry y (their operands read
 * through views); used where no fast oneDNN kernel takes them fused. */
msv_status msv_pl_post_ops_kernel(msv_planner *pl, const msv_node *n, int first, int y);
/* A single-primitive op whose result takes the layout the primitive chose. Destroys pd. */
msv_status msv_pl_simple(msv_planner *pl, const msv_node *n, dnnl_status_t created, dnnl_primitive_desc_t pd,
                         const char *what, const int *src_entries, const int *src_args, int n_src,
                         const int *operand_entries);
/* A C-kernel step of n reading view vx of entry src and writing view vy of entry out, n's result (views 0 and 1
 * of the step), then n's post-ops; state (may be NULL) is taken over and freed with free(), on error too. A
 * negative src or out stands for an earlier error, which is returned. */
msv_status msv_pl_unary_kernel(msv_planner *pl, const msv_node *n, msv_step_run run, const char *what, void *state,
                               int src, const msv_view *vx, int out, const msv_view *vy);
/* Under bf16, for a C kernel that can write bf16: an NHWC bf16 arena entry for n's result (viewed as *vy), when
 * plan.c marked that result (only bf16 convolutions read it), n has no post-ops and its input view vx is NHWC;
 * else -1, with no error set unless one occurred (the kernel then writes fp32 as usual). */
int msv_pl_bf16_output(msv_planner *pl, const msv_node *n, const msv_view *vx, msv_view *vy);
/* A C-kernel op reading in[0] as a view and writing a result of the same layout family (msv_pl_unary_kernel). */
msv_status msv_pl_view_kernel(msv_planner *pl, const msv_node *n, msv_step_run run, const char *what, void *state);
/* Tensor t as a (outer, extent of `axis`, 1, inner) view of its row-major layout (reordered to it if needed). */
int msv_pl_axis_view(msv_planner *pl, int t, int axis, msv_view *v);
/* An arena entry for n's result in row-major layout, viewed like msv_pl_axis_view; -1 on error. */
int msv_pl_axis_output(msv_planner *pl, const msv_node *n, int axis, msv_view *v);
/* A oneDNN reference implementation is only used where nothing faster exists: this fails planning under
 * MSVISION_REFUSE_REF (the test suite sets it), else allows it. */
msv_status msv_pl_allow_ref(msv_planner *pl, const msv_node *n, const_dnnl_primitive_desc_t pd);
/* The activation layout offered first for a result of `channels` channels. */
dnnl_format_tag_t msv_pl_preferred_tag(const msv_planner *pl, int64_t channels);

/* Whether `threads` OpenMP threads can be started (threads.c); checked once per new maximum. */
msv_status msv_check_threads(int threads, msv_error *err);

/* ---- plans as a whole (plan.c), used by the session ---- */
/* env: the knobs as the session read them when it was created (getenv is not safe while another thread sets the
 * environment, and plans run with the GIL released). */
msv_status msv_plan_build(const msv_graph *g, msv_weight_store *weights, const msv_env *env, msv_layout io_layout,
                          const msv_shape *in_shapes, msv_plan **out, int64_t *primitives_created, msv_error *err);
void msv_plan_destroy(msv_plan *p);
msv_status msv_plan_execute(msv_plan *p, void *arena, const float *const *inputs, float *const *outputs,
                            dnnl_stream_t stream, msv_error *err);

#endif
