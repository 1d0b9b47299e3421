/*
 * ops_util.h - what the op family files share: signature field helpers, checks, size arithmetic that keeps
 * MSV_DYNAMIC dims dynamic and never overflows.
 */
#ifndef MSV_OPS_UTIL_H
#define MSV_OPS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "../graph.h"

#define FIELD(params, member, type, name, doc) {name, type, offsetof(params, member), NULL, 0, doc}
#define ENUM_FIELD(params, member, choices, name, doc) {name, MSV_FIELD_ENUM, offsetof(params, member), choices, 0, doc}
#define DIMS_FIELD(params, member, fill, name, doc) {name, MSV_FIELD_DIMS, offsetof(params, member), NULL, fill, doc}

#define MSV_MAX_WINDOW 65536 /* kernel, stride, dilation and padding bounds */
#define MSV_MAX_SCALE 1024.0 /* resize factors beyond this are certainly mistakes */

/* Input i must be an activation (a graph input or a node result). */
msv_status msv_need_activation(const msv_graph *g, const msv_node *n, int i, msv_error *err);
/* Input i must be an activation of rank `rank`. */
msv_status msv_need_rank(const msv_graph *g, const msv_node *n, const msv_shape *shapes, int i, int rank,
                         msv_error *err);
/* Kernel (when with_kernel), stride, padding and dilation within bounds. */
msv_status msv_check_window(const msv_window *w, int with_kernel, msv_error *err);

/* Sizes of sliding windows: MSV_DYNAMIC stays dynamic; 0 when the window does not fit. */
int64_t msv_window_out(int64_t in, int k, int stride, int pad0, int pad1, int dilation, int ceil_mode);

static inline int msv_known(int64_t d) { return d >= 0; }

#endif
