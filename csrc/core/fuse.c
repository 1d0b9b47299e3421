/*
 * fuse.c - post-op fusion: element-wise ops, PReLU, and binary ops whose first operand is the result of a
 * convolution, deconvolution, linear or binary node fold into that producer as oneDNN post-ops (conv -> add ->
 * clip ...). The fused node takes the consumer's place in the order, so every operand it reads is ready by then.
 * A tensor with other consumers (or a graph output) is never fused away.
 */
#include <string.h>

#include "graph.h"

static int accepts_post_ops(msv_op_kind kind) {
    return kind == MSV_OP_CONV2D || kind == MSV_OP_DECONV2D || kind == MSV_OP_LINEAR || kind == MSV_OP_BINARY;
}

void msv_fuse_post_ops(msv_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        msv_node *c = &g->nodes[i];
        if (c->fused_away || (c->kind != MSV_OP_ELTWISE && c->kind != MSV_OP_BINARY && c->kind != MSV_OP_PRELU))
            continue;
        const int t = c->in[0];
        const int pi = g->tensors[t].producer;
        if (pi < 0) continue;
        msv_node *p = &g->nodes[pi];
        if (p->fused_away || !accepts_post_ops(p->kind) || p->n_post >= MSV_MAX_POST_OPS || g->uses[t] != 1) continue;
        if (c->kind == MSV_OP_BINARY && c->in[1] == t) continue;                  /* x op x */
        if (c->kind == MSV_OP_BINARY && g->shapes[c->in[1]].ndims != 4) continue; /* oneDNN post-ops: 4-D here */
        msv_post_op po;
        memset(&po, 0, sizeof po);
        if (c->kind == MSV_OP_ELTWISE) {
            po.kind = MSV_POST_ELTWISE;
            po.eltwise = c->p.eltwise;
        } else if (c->kind == MSV_OP_PRELU) {
            po.kind = MSV_POST_PRELU;
            po.tensor = c->in[1];
        } else {
            po.kind = MSV_POST_BINARY;
            po.op = c->p.binary.op;
            po.tensor = c->in[1];
        }
        msv_node fused = *p;
        fused.post[fused.n_post++] = po;
        fused.out = c->out;
        p->fused_away = 1;
        *c = fused;
        g->tensors[c->out].producer = i;
        g->uses[t] = 0;
    }
}
