/*
 * module.c - msvision._C: the one CPython/NumPy binding of the C core (the only file that includes Python.h).
 *
 *   build_info() -> dict
 *   Graph()  - an empty graph to assemble op by op (the networks in msvision/models/ build theirs with it)
 *   Graph.run(inputs: list[ndarray NCHW], threads=0) -> list[ndarray NCHW float32]
 *
 * Errors: WeightError (missing / misshapen weight, bad settings), ShapeError (input the graph cannot take), both
 * ValueError subclasses; MemoryError; RuntimeError for backend failures. The GIL is released while graphs
 * are built and run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_20_API_VERSION
#include <numpy/arrayobject.h>

#include "../core/msv.h"

static PyObject *WeightError, *ShapeError;

static PyObject *raise_status(const msv_error *err) {
    PyObject *type = PyExc_RuntimeError;
    switch (err->status) {
    case MSV_ERR_MISSING_WEIGHT:
    case MSV_ERR_WEIGHT_SHAPE:
    case MSV_ERR_INVALID_ARGUMENT: type = WeightError; break;
    case MSV_ERR_SHAPE: type = ShapeError; break;
    case MSV_ERR_OUT_OF_MEMORY: type = PyExc_MemoryError; break;
    case MSV_ERR_UNSUPPORTED: type = PyExc_NotImplementedError; break;
    default: break;
    }
    PyErr_SetString(type, err->message[0] ? err->message : "msvision core error");
    return NULL;
}

/* ------------------------------------------------------------------ Graph */

typedef struct {
    PyObject_HEAD msv_graph *graph;
    PyObject *keep; /* list of arrays referenced while building */
} GraphObject;

static void Graph_dealloc(GraphObject *self) {
    msv_graph_destroy(self->graph);
    Py_XDECREF(self->keep);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Graph_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    GraphObject *self = (GraphObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    msv_error err = {0};
    if (msv_graph_create(&self->graph, &err) != MSV_OK) {
        Py_DECREF(self);
        return raise_status(&err);
    }
    return (PyObject *)self;
}

static PyTypeObject GraphType;

/* float32 C-contiguous copy-or-view of any array-like. */
static PyArrayObject *as_f32(PyObject *obj, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(
        obj, NPY_FLOAT32, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) {
        PyErr_Format(PyExc_TypeError, "%s must be convertible to a float32 array", what);
        return NULL;
    }
    return a;
}

static int shape_of(PyArrayObject *a, msv_shape *s) {
    int nd = PyArray_NDIM(a);
    if (nd < 1 || nd > MSV_MAX_DIMS) return 0;
    s->ndims = nd;
    for (int i = 0; i < nd; i++)
        s->dims[i] = PyArray_DIM(a, i);
    return 1;
}

/* Returns a tensor id or raises when the graph has recorded an error. */
static PyObject *tensor_result(GraphObject *self, int id) {
    if (id < 0) {
        msv_error err = {0};
        msv_graph_finalize(self->graph, &err); /* reports the sticky builder error */
        return raise_status(&err);
    }
    return PyLong_FromLong(id);
}

static PyObject *Graph_input(GraphObject *self, PyObject *args) {
    int c;
    if (!PyArg_ParseTuple(args, "i", &c)) return NULL;
    return tensor_result(self, msv_input(self->graph, c));
}

static PyObject *Graph_const(GraphObject *self, PyObject *args) {
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O", &obj)) return NULL;
    PyArrayObject *a = as_f32(obj, "a constant");
    if (!a) return NULL;
    msv_shape s;
    if (!shape_of(a, &s)) {
        Py_DECREF(a);
        PyErr_SetString(PyExc_ValueError, "constants have 1 to 5 dimensions");
        return NULL;
    }
    int id = msv_const(self->graph, s, (const float *)PyArray_DATA(a));
    Py_DECREF(a);
    return tensor_result(self, id);
}

static int parse_window(PyObject *kw, msv_conv_params *p, int kh, int kw_) {
    memset(p, 0, sizeof *p);
    p->kh = kh;
    p->kw = kw_;
    p->sh = p->sw = p->dh = p->dw = p->groups = 1;
    if (!kw) return 1;
    PyObject *v;
    if ((v = PyDict_GetItemString(kw, "stride")) && !PyArg_ParseTuple(v, "ii", &p->sh, &p->sw)) return 0;
    if ((v = PyDict_GetItemString(kw, "padding")) &&
        !PyArg_ParseTuple(v, "iiii", &p->pad_t, &p->pad_l, &p->pad_b, &p->pad_r))
        return 0;
    if ((v = PyDict_GetItemString(kw, "dilation")) && !PyArg_ParseTuple(v, "ii", &p->dh, &p->dw)) return 0;
    if ((v = PyDict_GetItemString(kw, "output_padding")) && !PyArg_ParseTuple(v, "ii", &p->out_pad_h, &p->out_pad_w))
        return 0;
    if ((v = PyDict_GetItemString(kw, "groups"))) {
        p->groups = (int)PyLong_AsLong(v);
        if (PyErr_Occurred()) return 0;
    }
    return 1;
}

/* conv2d(x, w, b, kernel=(kh, kw), stride=, padding=(t,l,b,r), dilation=, groups=) */
static PyObject *conv_like(GraphObject *self, PyObject *args, PyObject *kw, int deconv) {
    int x, w, b, kh, kwid;
    if (!PyArg_ParseTuple(args, "iii(ii)", &x, &w, &b, &kh, &kwid)) return NULL;
    msv_conv_params p;
    if (!parse_window(kw, &p, kh, kwid)) return NULL;
    return tensor_result(self, deconv ? msv_deconv2d(self->graph, x, w, b, &p) : msv_conv2d(self->graph, x, w, b, &p));
}

static PyObject *Graph_conv2d(GraphObject *self, PyObject *args, PyObject *kw) { return conv_like(self, args, kw, 0); }
static PyObject *Graph_deconv2d(GraphObject *self, PyObject *args, PyObject *kw) {
    return conv_like(self, args, kw, 1);
}

static PyObject *Graph_linear(GraphObject *self, PyObject *args) {
    int x, w, b;
    if (!PyArg_ParseTuple(args, "iii", &x, &w, &b)) return NULL;
    return tensor_result(self, msv_linear(self->graph, x, w, b));
}

static const char *k_acts[] = {"relu",      "leaky_relu", "sigmoid", "tanh", "gelu_erf", "gelu_tanh", "swish",
                               "hardswish", "clip",       "elu",     "exp",  "linear",   NULL};
static const char *k_binops[] = {"add", "sub", "mul", "div", "max", "min", NULL};
static const char *k_pools[] = {"max", "avg_include_pad", "avg_exclude_pad", NULL};
static const char *k_resize[] = {"nearest", "bilinear", "bilinear_align_corners", NULL};

static int lookup(const char *const *names, const char *name, const char *what) {
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0) return i;
    PyErr_Format(PyExc_ValueError, "unknown %s '%s'", what, name);
    return -1;
}

static PyObject *Graph_eltwise(GraphObject *self, PyObject *args) {
    int x;
    const char *name;
    float alpha = 0.f, beta = 0.f;
    if (!PyArg_ParseTuple(args, "is|ff", &x, &name, &alpha, &beta)) return NULL;
    int act = lookup(k_acts, name, "activation");
    if (act < 0) return NULL;
    return tensor_result(self, msv_eltwise(self->graph, x, (msv_act)act, alpha, beta));
}

static PyObject *Graph_binary(GraphObject *self, PyObject *args) {
    int a, b;
    const char *name;
    if (!PyArg_ParseTuple(args, "sii", &name, &a, &b)) return NULL;
    int op = lookup(k_binops, name, "binary op");
    if (op < 0) return NULL;
    return tensor_result(self, msv_binary(self->graph, (msv_binop)op, a, b));
}

static PyObject *Graph_prelu(GraphObject *self, PyObject *args) {
    int x, s;
    if (!PyArg_ParseTuple(args, "ii", &x, &s)) return NULL;
    return tensor_result(self, msv_prelu(self->graph, x, s));
}

static PyObject *Graph_layer_norm(GraphObject *self, PyObject *args) {
    int x, sc, sh;
    float eps;
    if (!PyArg_ParseTuple(args, "iiif", &x, &sc, &sh, &eps)) return NULL;
    return tensor_result(self, msv_layer_norm_channels(self->graph, x, sc, sh, eps));
}

static PyObject *Graph_pool2d(GraphObject *self, PyObject *args, PyObject *kw) {
    int x, kh, kwid, ceil_mode = 0;
    const char *name;
    if (!PyArg_ParseTuple(args, "is(ii)|p", &x, &name, &kh, &kwid, &ceil_mode)) return NULL;
    int kind = lookup(k_pools, name, "pooling kind");
    if (kind < 0) return NULL;
    msv_conv_params p;
    if (!parse_window(kw, &p, kh, kwid)) return NULL;
    return tensor_result(self, msv_pool2d(self->graph, x, (msv_pool_kind)kind, &p, ceil_mode));
}

static PyObject *Graph_unary(GraphObject *self, PyObject *args, int (*fn)(msv_graph *, int)) {
    int x;
    if (!PyArg_ParseTuple(args, "i", &x)) return NULL;
    return tensor_result(self, fn(self->graph, x));
}
static PyObject *Graph_global_avg_pool(GraphObject *self, PyObject *args) {
    return Graph_unary(self, args, msv_global_avg_pool);
}
static PyObject *Graph_softmax(GraphObject *self, PyObject *args) {
    return Graph_unary(self, args, msv_softmax_channels);
}
static PyObject *Graph_simple_gate(GraphObject *self, PyObject *args) {
    return Graph_unary(self, args, msv_simple_gate);
}

static PyObject *Graph_resize(GraphObject *self, PyObject *args) {
    int x, oh, ow;
    const char *name;
    float sh, sw;
    if (!PyArg_ParseTuple(args, "isiiff", &x, &name, &oh, &ow, &sh, &sw)) return NULL;
    int mode = lookup(k_resize, name, "resize mode");
    if (mode < 0) return NULL;
    return tensor_result(self, msv_resize(self->graph, x, (msv_resize_mode)mode, oh, ow, sh, sw));
}

static PyObject *Graph_resize_like(GraphObject *self, PyObject *args) {
    int x, like;
    const char *name;
    float sh, sw;
    if (!PyArg_ParseTuple(args, "iisff", &x, &like, &name, &sh, &sw)) return NULL;
    int mode = lookup(k_resize, name, "resize mode");
    if (mode < 0) return NULL;
    return tensor_result(self, msv_resize_like(self->graph, x, like, (msv_resize_mode)mode, sh, sw));
}

static PyObject *Graph_concat(GraphObject *self, PyObject *args) {
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "O", &seq)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "concat takes a sequence of tensor ids");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int ids[16];
    if (n < 1 || n > 16) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "concat takes 1 to 16 tensors");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        ids[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
    Py_DECREF(fast);
    if (PyErr_Occurred()) return NULL;
    return tensor_result(self, msv_concat_channels(self->graph, (int)n, ids));
}

static PyObject *Graph_pad(GraphObject *self, PyObject *args) {
    int x, t, l, b, r;
    float v = 0.f;
    if (!PyArg_ParseTuple(args, "iiiii|f", &x, &t, &l, &b, &r, &v)) return NULL;
    return tensor_result(self, msv_pad(self->graph, x, t, l, b, r, v));
}

static PyObject *Graph_slice(GraphObject *self, PyObject *args) {
    int x, c0, c1, h0, h1, w0, w1;
    if (!PyArg_ParseTuple(args, "iiiiiii", &x, &c0, &c1, &h0, &h1, &w0, &w1)) return NULL;
    return tensor_result(self, msv_slice(self->graph, x, c0, c1, h0, h1, w0, w1));
}

static PyObject *Graph_shuffle(GraphObject *self, PyObject *args, int (*fn)(msv_graph *, int, int)) {
    int x, r;
    if (!PyArg_ParseTuple(args, "ii", &x, &r)) return NULL;
    return tensor_result(self, fn(self->graph, x, r));
}
static PyObject *Graph_pixel_shuffle(GraphObject *self, PyObject *args) {
    return Graph_shuffle(self, args, msv_pixel_shuffle);
}
static PyObject *Graph_pixel_unshuffle(GraphObject *self, PyObject *args) {
    return Graph_shuffle(self, args, msv_pixel_unshuffle);
}

static PyObject *Graph_group_norm(GraphObject *self, PyObject *args) {
    int x, groups, sc, sh;
    float eps;
    if (!PyArg_ParseTuple(args, "iiiif", &x, &groups, &sc, &sh, &eps)) return NULL;
    return tensor_result(self, msv_group_norm(self->graph, x, groups, sc, sh, eps));
}

static PyObject *Graph_output(GraphObject *self, PyObject *args) {
    int x;
    if (!PyArg_ParseTuple(args, "i", &x)) return NULL;
    if (msv_output(self->graph, x) != MSV_OK) {
        msv_error err = {0};
        msv_graph_finalize(self->graph, &err); /* reports the sticky error */
        return raise_status(&err);
    }
    Py_RETURN_NONE;
}

static PyObject *Graph_finalize(GraphObject *self, PyObject *noargs) {
    (void)noargs;
    msv_error err = {0};
    if (msv_graph_finalize(self->graph, &err) != MSV_OK) return raise_status(&err);
    Py_RETURN_NONE;
}

static PyObject *Graph_run(GraphObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"inputs", "threads", NULL};
    PyObject *seq;
    int threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|i", kwlist, &seq, &threads)) return NULL;
    const int n_in = msv_graph_num_inputs(self->graph), n_out = msv_graph_num_outputs(self->graph);
    PyObject *fast = PySequence_Fast(seq, "inputs must be a list of arrays");
    if (!fast) return NULL;
    if (PySequence_Fast_GET_SIZE(fast) != n_in) {
        PyErr_Format(ShapeError, "this graph takes %d input(s), got %zd", n_in, PySequence_Fast_GET_SIZE(fast));
        Py_DECREF(fast);
        return NULL;
    }
    PyArrayObject *ins[8] = {0}, *outs[32] = {0};
    msv_shape in_shapes[8], out_shapes[32];
    const float *in_ptrs[8];
    float *out_ptrs[32];
    PyObject *result = NULL;
    msv_error err = {0};
    for (int i = 0; i < n_in; i++) {
        ins[i] = as_f32(PySequence_Fast_GET_ITEM(fast, i), "a graph input");
        if (!ins[i]) goto done;
        if (PyArray_NDIM(ins[i]) != 4) {
            PyErr_Format(ShapeError, "input %d must be a 4-D N x C x H x W array, got %d dimension(s)", i,
                         PyArray_NDIM(ins[i]));
            goto done;
        }
        shape_of(ins[i], &in_shapes[i]);
        in_ptrs[i] = (const float *)PyArray_DATA(ins[i]);
    }
    if (msv_graph_infer(self->graph, in_shapes, out_shapes, &err) != MSV_OK) {
        raise_status(&err);
        goto done;
    }
    for (int i = 0; i < n_out; i++) {
        npy_intp dims[4] = {out_shapes[i].dims[0], out_shapes[i].dims[1], out_shapes[i].dims[2], out_shapes[i].dims[3]};
        outs[i] = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
        if (!outs[i]) goto done;
        out_ptrs[i] = (float *)PyArray_DATA(outs[i]);
    }
    msv_status st;
    Py_BEGIN_ALLOW_THREADS st = msv_graph_run(self->graph, in_shapes, in_ptrs, out_ptrs, threads, &err);
    Py_END_ALLOW_THREADS if (st != MSV_OK) {
        raise_status(&err);
        goto done;
    }
    result = PyList_New(n_out);
    if (!result) goto done;
    for (int i = 0; i < n_out; i++) {
        PyList_SET_ITEM(result, i, (PyObject *)outs[i]);
        outs[i] = NULL;
    }
done:
    for (int i = 0; i < 8; i++)
        Py_XDECREF(ins[i]);
    for (int i = 0; i < 32; i++)
        Py_XDECREF(outs[i]);
    Py_DECREF(fast);
    return result;
}

static PyObject *Graph_get_primitive_count(GraphObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(msv_graph_primitive_count(self->graph));
}

static PyObject *Graph_get_arena_bytes(GraphObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(msv_graph_arena_bytes(self->graph));
}

static PyMethodDef Graph_methods[] = {
    {"input", (PyCFunction)Graph_input, METH_VARARGS, "input(channels) -> tensor id"},
    {"const", (PyCFunction)Graph_const, METH_VARARGS, "const(array) -> tensor id"},
    {"conv2d", (PyCFunction)(void (*)(void))Graph_conv2d, METH_VARARGS | METH_KEYWORDS,
     "conv2d(x, w, b, (kh, kw), stride=, padding=(t,l,b,r), dilation=, groups=)"},
    {"deconv2d", (PyCFunction)(void (*)(void))Graph_deconv2d, METH_VARARGS | METH_KEYWORDS,
     "deconv2d(x, w, b, (kh, kw), stride=, padding=, dilation=, groups=, output_padding=)"},
    {"linear", (PyCFunction)Graph_linear, METH_VARARGS, "linear(x, w, b)"},
    {"eltwise", (PyCFunction)Graph_eltwise, METH_VARARGS, "eltwise(x, name, alpha=0, beta=0)"},
    {"binary", (PyCFunction)Graph_binary, METH_VARARGS, "binary(name, a, b)"},
    {"prelu", (PyCFunction)Graph_prelu, METH_VARARGS, "prelu(x, slope)"},
    {"layer_norm", (PyCFunction)Graph_layer_norm, METH_VARARGS, "layer_norm(x, scale, shift, eps)"},
    {"pool2d", (PyCFunction)(void (*)(void))Graph_pool2d, METH_VARARGS | METH_KEYWORDS,
     "pool2d(x, kind, (kh, kw), ceil_mode=False, stride=, padding=)"},
    {"global_avg_pool", (PyCFunction)Graph_global_avg_pool, METH_VARARGS, "global_avg_pool(x)"},
    {"softmax", (PyCFunction)Graph_softmax, METH_VARARGS, "softmax(x) over channels"},
    {"resize", (PyCFunction)Graph_resize, METH_VARARGS, "resize(x, mode, out_h, out_w, scale_h, scale_w)"},
    {"resize_like", (PyCFunction)Graph_resize_like, METH_VARARGS, "resize_like(x, like, mode, scale_h, scale_w)"},
    {"concat", (PyCFunction)Graph_concat, METH_VARARGS, "concat([x, ...]) over channels"},
    {"pad", (PyCFunction)Graph_pad, METH_VARARGS, "pad(x, top, left, bottom, right, value=0)"},
    {"slice", (PyCFunction)Graph_slice, METH_VARARGS, "slice(x, c0, c1, h0, h1, w0, w1)"},
    {"pixel_shuffle", (PyCFunction)Graph_pixel_shuffle, METH_VARARGS, "pixel_shuffle(x, r)"},
    {"pixel_unshuffle", (PyCFunction)Graph_pixel_unshuffle, METH_VARARGS, "pixel_unshuffle(x, r)"},
    {"simple_gate", (PyCFunction)Graph_simple_gate, METH_VARARGS, "simple_gate(x)"},
    {"group_norm", (PyCFunction)Graph_group_norm, METH_VARARGS, "group_norm(x, groups, scale, shift, eps)"},
    {"output", (PyCFunction)Graph_output, METH_VARARGS, "output(x)"},
    {"finalize", (PyCFunction)Graph_finalize, METH_NOARGS, "finalize()"},
    {"run", (PyCFunction)(void (*)(void))Graph_run, METH_VARARGS | METH_KEYWORDS,
     "run(inputs, threads=0) -> list of NCHW float32 arrays"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Graph_getset[] = {
    {"primitive_count", (getter)Graph_get_primitive_count, NULL, "oneDNN primitives created so far", NULL},
    {"arena_bytes", (getter)Graph_get_arena_bytes, NULL, "bytes of activation arena held", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GraphType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msvision._C.Graph",
    .tp_basicsize = sizeof(GraphObject),
    .tp_dealloc = (destructor)Graph_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A planned network of the msvision C core.",
    .tp_methods = Graph_methods,
    .tp_getset = Graph_getset,
    .tp_new = Graph_new,
};

static PyObject *py_build_info(PyObject *mod, PyObject *noargs) {
    (void)mod;
    (void)noargs;
    msv_build_info info;
    msv_get_build_info(&info);
    char version[64];
    snprintf(version, sizeof version, "%d.%d.%d", info.dnnl_major, info.dnnl_minor, info.dnnl_patch);
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:i}", "onednn_version", version, "onednn_commit", info.dnnl_hash,
                         "cpu_runtime", info.cpu_runtime, "isa", info.isa, "max_threads", info.max_threads);
}

/* nms(boxes (n, 4), scores (n,), iou_threshold, mode='union'|'min', offset=0.0, max_keep=-1, eps=0.0) -> indices */
static PyObject *py_nms(PyObject *mod, PyObject *args, PyObject *kwds) {
    (void)mod;
    static char *kwlist[] = {"boxes", "scores", "iou_threshold", "mode", "offset", "max_keep", "eps", NULL};
    PyObject *bo, *so;
    float iou, offset = 0.f, eps = 0.f;
    const char *mode = "union";
    long long max_keep = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOf|sfLf", kwlist, &bo, &so, &iou, &mode, &offset, &max_keep, &eps))
        return NULL;
    int mode_id = lookup((const char *const[]){"union", "min", NULL}, mode, "nms mode");
    if (mode_id < 0) return NULL;
    PyArrayObject *b = as_f32(bo, "boxes"), *s = b ? as_f32(so, "scores") : NULL;
    PyObject *result = NULL;
    if (!b || !s) goto done;
    npy_intp n = PyArray_NDIM(s) == 1 ? PyArray_DIM(s, 0) : -1;
    if (n < 0 || PyArray_NDIM(b) != 2 || PyArray_DIM(b, 0) != n || PyArray_DIM(b, 1) != 4) {
        PyErr_SetString(PyExc_ValueError, "nms needs boxes of shape (n, 4) and scores of shape (n,)");
        goto done;
    }
    int64_t *keep = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!keep) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t kept;
    Py_BEGIN_ALLOW_THREADS kept = msv_nms((const float *)PyArray_DATA(b), (const float *)PyArray_DATA(s), n, iou,
                                          (msv_nms_mode)mode_id, offset, eps, max_keep, keep);
    Py_END_ALLOW_THREADS if (kept < 0) {
        free(keep);
        PyErr_NoMemory();
        goto done;
    }
    npy_intp dims[1] = {(npy_intp)kept};
    result = PyArray_SimpleNew(1, dims, NPY_INT64);
    if (result) memcpy(PyArray_DATA((PyArrayObject *)result), keep, sizeof(int64_t) * (size_t)kept);
    free(keep);
done:
    Py_XDECREF(b);
    Py_XDECREF(s);
    return result;
}

/* decode_center_size(loc (n, 4), priors (n, 4), v0, v1) -> boxes (n, 4) x1 y1 x2 y2 */
static PyObject *py_decode_center_size(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *lo, *po;
    float v0, v1;
    if (!PyArg_ParseTuple(args, "OOff", &lo, &po, &v0, &v1)) return NULL;
    PyArrayObject *l = as_f32(lo, "loc"), *p = l ? as_f32(po, "priors") : NULL;
    PyObject *result = NULL;
    if (!l || !p) goto done;
    if (PyArray_NDIM(l) != 2 || PyArray_DIM(l, 1) != 4 || PyArray_NDIM(p) != 2 || PyArray_DIM(p, 1) != 4 ||
        PyArray_DIM(p, 0) != PyArray_DIM(l, 0)) {
        PyErr_SetString(PyExc_ValueError, "decode_center_size needs loc and priors of the same shape (n, 4)");
        goto done;
    }
    result = PyArray_SimpleNew(2, PyArray_DIMS(l), NPY_FLOAT32);
    if (!result) goto done;
    Py_BEGIN_ALLOW_THREADS msv_decode_center_size((const float *)PyArray_DATA(l), (const float *)PyArray_DATA(p),
                                                  PyArray_DIM(l, 0), v0, v1,
                                                  (float *)PyArray_DATA((PyArrayObject *)result));
    Py_END_ALLOW_THREADS done : Py_XDECREF(l);
    Py_XDECREF(p);
    return result;
}

static PyMethodDef module_methods[] = {
    {"nms", (PyCFunction)(void (*)(void))py_nms, METH_VARARGS | METH_KEYWORDS,
     "nms(boxes, scores, iou_threshold, mode='union', offset=0.0, max_keep=-1, eps=0.0) -> kept indices (int64)"},
    {"decode_center_size", py_decode_center_size, METH_VARARGS,
     "decode_center_size(loc, priors, v0, v1) -> boxes x1 y1 x2 y2"},
    {"build_info", py_build_info, METH_NOARGS, "oneDNN version, CPU runtime, effective ISA, threads"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "msvision._C", "msvision C core binding.", -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    if (PyType_Ready(&GraphType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    WeightError =
        PyErr_NewExceptionWithDoc("msvision._C.WeightError",
                                  "A model's weights or settings do not fit its architecture.", PyExc_ValueError, NULL);
    ShapeError = PyErr_NewExceptionWithDoc("msvision._C.ShapeError", "An input the network cannot take.",
                                           PyExc_ValueError, NULL);
    Py_INCREF(&GraphType);
    if (!WeightError || !ShapeError || PyModule_AddObject(m, "Graph", (PyObject *)&GraphType) < 0 ||
        PyModule_AddObject(m, "WeightError", WeightError) < 0 || PyModule_AddObject(m, "ShapeError", ShapeError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
