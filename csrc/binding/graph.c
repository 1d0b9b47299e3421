/*
 * graph.c - msvision._C.Graph, the one way networks are built (msvision/models/ builds every network with it).
 *
 *   g = Graph(); x = g.input(channels=3)                  # (N, 3, H, W), N / H / W given at run time
 *   w = g.const(array)                                     # constants are copied
 *   y = g.conv2d(x, w, bias=b, stride=2, padding=1)        # one method per op kind: inputs (tensor ids; None for
 *   g.output(y); g.finalize()                              #   an absent optional one), parameters by keyword
 *
 * The op methods are generated from the op signatures (core/ops/<family>.c), so a new row in core/ops.def needs
 * nothing here. Tensor ids are ints. Builder errors raise msvision.errors.GraphError naming the op; the first
 * one also sticks to the graph (finalize() reports it).
 */
#include <string.h>

#include "binding.h"

static void Graph_dealloc(GraphObject *self) {
    msv_graph_destroy(self->graph);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Graph_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if ((args && PyTuple_GET_SIZE(args)) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Graph() takes no arguments");
        return NULL;
    }
    GraphObject *self = (GraphObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    msv_error err = {0};
    if (msv_graph_create(&self->graph, &err) != MSV_OK) {
        Py_DECREF(self);
        return msv_raise(&err);
    }
    return (PyObject *)self;
}

/* A tensor id, or the graph's (sticky) error. */
static PyObject *tensor_result(GraphObject *self, int id) {
    if (id < 0) {
        msv_error err = {0};
        msv_graph_error(self->graph, &err);
        return msv_raise(&err);
    }
    return PyLong_FromLong(id);
}

static int as_int(PyObject *v, int64_t lo, int64_t hi, const char *what, int64_t *out) {
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %s", what, Py_TYPE(v)->tp_name);
        return 0;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || x < lo || x > hi) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%s is out of range", what);
        return 0;
    }
    *out = x;
    return 1;
}

static int as_tensor(PyObject *v, const char *what, int *out) {
    int64_t x;
    if (!as_int(v, INT32_MIN, INT32_MAX, what, &x)) return 0;
    *out = (int)x;
    return 1;
}

/* Reads 1..max numbers from an int/float or a sequence. */
static int read_numbers(PyObject *v, int max, int floats, double *out, int *count, const char *name) {
    PyObject *items[8];
    int n = 0;
    if (PyLong_Check(v) || PyFloat_Check(v)) {
        items[0] = v;
        n = 1;
    } else if (PyTuple_Check(v) || PyList_Check(v)) {
        n = (int)PySequence_Fast_GET_SIZE(v);
        if (n < 1 || n > max) {
            PyErr_Format(PyExc_ValueError, "%s takes 1 to %d values, got %d", name, max, n);
            return 0;
        }
        for (int i = 0; i < n; i++)
            items[i] = PySequence_Fast_GET_ITEM(v, i);
    } else {
        PyErr_Format(PyExc_TypeError, "%s must be a number or a tuple of numbers, got %s", name, Py_TYPE(v)->tp_name);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (PyBool_Check(items[i]) || !(PyLong_Check(items[i]) || (floats && PyFloat_Check(items[i])))) {
            PyErr_Format(PyExc_TypeError, "%s takes %s", name, floats ? "numbers" : "ints");
            return 0;
        }
        if (floats) {
            out[i] = PyFloat_AsDouble(items[i]);
        } else {
            int64_t x;
            if (!as_int(items[i], INT32_MIN, INT32_MAX, name, &x)) return 0;
            out[i] = (double)x;
        }
        if (PyErr_Occurred()) return 0;
    }
    *count = n;
    return 1;
}

static int parse_field(const msv_field *f, PyObject *v, char *params) {
    void *at = params + f->offset;
    double nums[8];
    int n = 0;
    switch (f->type) {
    case MSV_FIELD_INT:
    case MSV_FIELD_BOOL: {
        int64_t x;
        if (f->type == MSV_FIELD_BOOL && PyBool_Check(v)) {
            *(int *)at = v == Py_True;
            return 1;
        }
        if (!as_int(v, INT32_MIN, INT32_MAX, f->name, &x)) return 0;
        *(int *)at = (int)x;
        return 1;
    }
    case MSV_FIELD_FLOAT:
        if (!PyLong_Check(v) && !PyFloat_Check(v)) {
            PyErr_Format(PyExc_TypeError, "%s must be a number", f->name);
            return 0;
        }
        *(float *)at = (float)PyFloat_AsDouble(v);
        return !PyErr_Occurred();
    case MSV_FIELD_ENUM: {
        const char *name = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
        if (!name) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be a str", f->name);
            return 0;
        }
        for (int i = 0; f->choices[i]; i++)
            if (strcmp(f->choices[i], name) == 0) {
                *(int *)at = i;
                return 1;
            }
        PyErr_Format(PyExc_ValueError, "unknown %s '%s'", f->doc, name);
        return 0;
    }
    case MSV_FIELD_PAIR:
        if (!read_numbers(v, 2, 0, nums, &n, f->name)) return 0;
        ((int *)at)[0] = (int)nums[0];
        ((int *)at)[1] = (int)nums[n - 1];
        return 1;
    case MSV_FIELD_PADDING:
        if (!read_numbers(v, 4, 0, nums, &n, f->name)) return 0;
        if (n == 3) {
            PyErr_Format(PyExc_ValueError, "%s takes 1, 2 (h, w) or 4 (top, left, bottom, right) values", f->name);
            return 0;
        }
        for (int i = 0; i < 4; i++)
            ((int *)at)[i] = (int)(n == 4 ? nums[i] : n == 2 ? nums[i % 2] : nums[0]);
        return 1;
    case MSV_FIELD_SIZE:
        if (v == Py_None) return 1;
        if (!read_numbers(v, 2, 0, nums, &n, f->name)) return 0;
        ((int64_t *)at)[0] = (int64_t)nums[0];
        ((int64_t *)at)[1] = (int64_t)nums[n - 1];
        return 1;
    case MSV_FIELD_SCALE:
        if (v == Py_None) return 1;
        if (!read_numbers(v, 2, 1, nums, &n, f->name)) return 0;
        ((float *)at)[0] = (float)nums[0];
        ((float *)at)[1] = (float)nums[n - 1];
        return 1;
    case MSV_FIELD_DIMS: {
        if (!PyTuple_Check(v) && !PyList_Check(v)) {
            PyErr_Format(PyExc_TypeError, "%s must be a sequence with one entry per axis", f->name);
            return 0;
        }
        const Py_ssize_t len = PySequence_Fast_GET_SIZE(v);
        if (len > MSV_MAX_DIMS) {
            PyErr_Format(PyExc_ValueError, "%s has more than %d entries", f->name, MSV_MAX_DIMS);
            return 0;
        }
        for (int i = 0; i < MSV_MAX_DIMS; i++) {
            PyObject *item = i < len ? PySequence_Fast_GET_ITEM(v, i) : Py_None;
            int64_t x = f->fill;
            if (item != Py_None && !as_int(item, 0, INT64_MAX, f->name, &x)) return 0;
            ((int64_t *)at)[i] = x;
        }
        return 1;
    }
    }
    return 0;
}

/* The input name without its "?" / "*" mark. */
static int input_name_is(const char *spec, const char *name) {
    const size_t n = strcspn(spec, "?*");
    return strlen(name) == n && strncmp(spec, name, n) == 0;
}

/* g.<op>(*inputs, **parameters): self is the op kind (an int), args[0] the graph. */
static PyObject *op_call(PyObject *kind_obj, PyObject *args, PyObject *kwargs) {
    const msv_op_kind kind = (msv_op_kind)PyLong_AsLong(kind_obj);
    const msv_signature *sig = msv_op_signature(kind);
    const char *op = msv_op_name(kind);
    const Py_ssize_t n_args = PyTuple_GET_SIZE(args);
    if (n_args < 1 || !PyObject_TypeCheck(PyTuple_GET_ITEM(args, 0), &msv_GraphType)) {
        PyErr_Format(PyExc_TypeError, "%s() is a Graph method", op);
        return NULL;
    }
    GraphObject *self = (GraphObject *)PyTuple_GET_ITEM(args, 0);
    const int variadic = sig->n_inputs == 1 && strchr(sig->inputs[0], '*') != NULL;
    PyObject *given[MSV_MAX_FIELDS] = {0}; /* inputs by position or name */
    if (n_args - 1 > sig->n_inputs) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d input(s) (parameters by keyword), got %zd", op, sig->n_inputs,
                     n_args - 1);
        return NULL;
    }
    for (Py_ssize_t i = 1; i < n_args; i++)
        given[i - 1] = PyTuple_GET_ITEM(args, i);
    union {
        char bytes[256];
        double align;
    } params;
    memset(&params, 0, sizeof params);
    if (sig->params_size) memcpy(params.bytes, sig->defaults, sig->params_size);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (kwargs && PyDict_Next(kwargs, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        if (!name) return NULL;
        int done = 0;
        for (int i = 0; i < sig->n_inputs && !done; i++)
            if (input_name_is(sig->inputs[i], name)) {
                if (given[i]) {
                    PyErr_Format(PyExc_TypeError, "%s() got input '%s' twice", op, name);
                    return NULL;
                }
                given[i] = value;
                done = 1;
            }
        for (int i = 0; i < sig->n_fields && !done; i++)
            if (strcmp(sig->fields[i].name, name) == 0) {
                if (!parse_field(&sig->fields[i], value, params.bytes)) return NULL;
                done = 1;
            }
        if (!done) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", op, name);
            return NULL;
        }
    }
    int inputs[16], n_inputs = 0;
    if (variadic) {
        if (!given[0] || !(PyList_Check(given[0]) || PyTuple_Check(given[0]))) {
            PyErr_Format(PyExc_TypeError, "%s() takes a list of tensors", op);
            return NULL;
        }
        n_inputs = (int)PySequence_Fast_GET_SIZE(given[0]);
        if (n_inputs < 1 || n_inputs > 16) {
            PyErr_Format(PyExc_ValueError, "%s takes 1 to 16 tensors", op);
            return NULL;
        }
        for (int i = 0; i < n_inputs; i++)
            if (!as_tensor(PySequence_Fast_GET_ITEM(given[0], i), "a tensor id", &inputs[i])) return NULL;
    } else {
        n_inputs = sig->n_inputs;
        for (int i = 0; i < n_inputs; i++) {
            const int optional = strchr(sig->inputs[i], '?') != NULL;
            if (!given[i] || given[i] == Py_None) {
                if (!optional) {
                    PyErr_Format(PyExc_TypeError, "%s() needs input '%.*s'", op, (int)strcspn(sig->inputs[i], "?"),
                                 sig->inputs[i]);
                    return NULL;
                }
                inputs[i] = -1;
            } else if (!as_tensor(given[i], "a tensor id", &inputs[i])) {
                return NULL;
            }
        }
    }
    return tensor_result(self, msv_add_op(self->graph, kind, inputs, n_inputs, sig->params_size ? params.bytes : NULL));
}

static PyObject *Graph_input(GraphObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"channels", "shape", NULL};
    PyObject *channels = Py_None, *shape = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO", kwlist, &channels, &shape)) return NULL;
    msv_shape s;
    memset(&s, 0, sizeof s);
    if ((channels == Py_None) == (shape == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "input() takes channels= (an N x C x H x W input) or shape=");
        return NULL;
    }
    if (channels != Py_None) {
        int64_t c;
        if (!as_int(channels, INT32_MIN, INT32_MAX, "channels", &c)) return NULL;
        s = (msv_shape){4, {MSV_DYNAMIC, c, MSV_DYNAMIC, MSV_DYNAMIC, 0}};
    } else {
        if (!PyTuple_Check(shape) && !PyList_Check(shape)) {
            PyErr_SetString(PyExc_TypeError, "shape must be a sequence (None or -1 for a dynamic dimension)");
            return NULL;
        }
        s.ndims = (int)PySequence_Fast_GET_SIZE(shape);
        if (s.ndims > MSV_MAX_DIMS) s.ndims = MSV_MAX_DIMS + 1; /* refused by the core */
        for (int i = 0; i < s.ndims && i < MSV_MAX_DIMS; i++) {
            PyObject *d = PySequence_Fast_GET_ITEM(shape, i);
            if (d == Py_None)
                s.dims[i] = MSV_DYNAMIC;
            else if (!as_int(d, INT32_MIN, INT32_MAX, "a dimension", &s.dims[i]))
                return NULL;
        }
    }
    return tensor_result(self, msv_input(self->graph, s));
}

static PyObject *Graph_const(GraphObject *self, PyObject *arg) {
    PyArrayObject *a = msv_as_f32(arg, "a constant");
    if (!a) return NULL;
    msv_shape s;
    memset(&s, 0, sizeof s);
    s.ndims = PyArray_NDIM(a);
    if (s.ndims < 1 || s.ndims > MSV_MAX_DIMS) {
        Py_DECREF(a);
        PyErr_SetString(PyExc_ValueError, "constants have 1 to 5 dimensions");
        return NULL;
    }
    for (int i = 0; i < s.ndims; i++)
        s.dims[i] = PyArray_DIM(a, i);
    int id = msv_const(self->graph, s, (const float *)PyArray_DATA(a));
    Py_DECREF(a);
    return tensor_result(self, id);
}

static PyObject *Graph_output(GraphObject *self, PyObject *arg) {
    int t;
    if (!as_tensor(arg, "a tensor id", &t)) return NULL;
    if (msv_output(self->graph, t) != MSV_OK) {
        msv_error err = {0};
        msv_graph_error(self->graph, &err);
        return msv_raise(&err);
    }
    Py_RETURN_NONE;
}

static PyObject *Graph_finalize(GraphObject *self, PyObject *noargs) {
    (void)noargs;
    msv_error err = {0};
    if (msv_graph_finalize(self->graph, &err) != MSV_OK) return msv_raise(&err);
    Py_RETURN_NONE;
}

static PyObject *Graph_shape(GraphObject *self, PyObject *arg) {
    int t;
    if (!as_tensor(arg, "a tensor id", &t)) return NULL;
    const msv_shape s = msv_tensor_shape(self->graph, t);
    if (s.ndims == 0) {
        PyErr_Format(PyExc_ValueError, "%d is not a tensor of this graph", t);
        return NULL;
    }
    PyObject *out = PyTuple_New(s.ndims);
    for (int i = 0; out && i < s.ndims; i++)
        PyTuple_SET_ITEM(out, i, PyLong_FromLongLong(s.dims[i]));
    return out;
}

static const char *field_type_name(msv_field_type t) {
    static const char *names[] = {"int", "float", "bool", "enum", "pair", "padding", "size", "scale", "dims"};
    return names[t];
}

/* Appends a new reference (stolen, also on failure); -1 with an exception set on failure. */
static int append_new(PyObject *list, PyObject *item) {
    const int st = item ? PyList_Append(list, item) : -1;
    Py_XDECREF(item);
    return st;
}

static PyObject *signature_dict(const msv_signature *sig) {
    PyObject *inputs = PyList_New(0), *fields = PyList_New(0);
    int ok = inputs && fields;
    for (int i = 0; ok && i < sig->n_inputs; i++)
        ok = append_new(inputs, PyUnicode_FromString(sig->inputs[i])) == 0;
    for (int i = 0; ok && i < sig->n_fields; i++) {
        const msv_field *f = &sig->fields[i];
        PyObject *choices = PyList_New(0);
        ok = choices != NULL;
        for (int c = 0; ok && f->choices && f->choices[c]; c++)
            ok = append_new(choices, PyUnicode_FromString(f->choices[c])) == 0;
        if (!ok) {
            Py_XDECREF(choices);
            break;
        }
        ok = append_new(fields, Py_BuildValue("(ssN)", f->name, field_type_name(f->type), choices)) == 0;
    }
    if (!ok) {
        Py_XDECREF(inputs);
        Py_XDECREF(fields);
        return NULL;
    }
    return Py_BuildValue("{s:s,s:N,s:N}", "doc", sig->doc, "inputs", inputs, "fields", fields);
}

/* Graph.signature(op) -> {"doc", "inputs": [...], "fields": [(name, type, choices)]}: for tools and tests. */
static PyObject *Graph_signature(PyObject *cls, PyObject *arg) {
    (void)cls;
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    for (int k = 0; name && k < MSV_OP_COUNT; k++)
        if (strcmp(msv_op_name((msv_op_kind)k), name) == 0) return signature_dict(msv_op_signature((msv_op_kind)k));
    if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "unknown op %R", arg);
    return NULL;
}

static PyObject *Graph_get_num_inputs(GraphObject *self, void *c) {
    (void)c;
    return PyLong_FromLong(msv_graph_num_inputs(self->graph));
}

static PyObject *Graph_get_num_outputs(GraphObject *self, void *c) {
    (void)c;
    return PyLong_FromLong(msv_graph_num_outputs(self->graph));
}

static PyMethodDef Graph_methods[] = {
    {"input", (PyCFunction)(void (*)(void))Graph_input, METH_VARARGS | METH_KEYWORDS,
     "input(channels=C) -> an (N, C, H, W) input (N, H, W given at run time); input(shape=(...)) for others, None "
     "or -1 marking dynamic dimensions"},
    {"const", (PyCFunction)Graph_const, METH_O, "const(array) -> a constant (copied, float32)"},
    {"output", (PyCFunction)Graph_output, METH_O, "output(t): marks t as the next graph output"},
    {"finalize", (PyCFunction)Graph_finalize, METH_NOARGS, "finalize(): fuses post-ops; the graph is read-only after"},
    {"shape", (PyCFunction)Graph_shape, METH_O, "shape(t) -> t's shape as known while building (-1: dynamic)"},
    {"signature", (PyCFunction)Graph_signature, METH_O | METH_STATIC, "signature(op) -> its inputs and parameters"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Graph_getset[] = {
    {"num_inputs", (getter)Graph_get_num_inputs, NULL, "graph inputs", NULL},
    {"num_outputs", (getter)Graph_get_num_outputs, NULL, "graph outputs", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject msv_GraphType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msvision._C.Graph",
    .tp_basicsize = sizeof(GraphObject),
    .tp_dealloc = (destructor)Graph_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A network being built for the msvision C core (run it with Session).",
    .tp_methods = Graph_methods,
    .tp_getset = Graph_getset,
    .tp_new = Graph_new,
};

/* One method per op kind: "name(inputs..., **parameters)\n\n<doc>\n\nparameters: ..." */
static PyMethodDef g_op_defs[MSV_OP_COUNT];
static char g_op_docs[MSV_OP_COUNT][1024];

int msv_graph_type_ready(void) {
    if (PyType_Ready(&msv_GraphType) < 0) return -1;
    PyObject *ops = PyTuple_New(MSV_OP_COUNT);
    if (!ops) return -1;
    for (int k = 0; k < MSV_OP_COUNT; k++) {
        const msv_signature *sig = msv_op_signature((msv_op_kind)k);
        char *doc = g_op_docs[k];
        size_t used = (size_t)snprintf(doc, sizeof g_op_docs[k], "%s(", msv_op_name((msv_op_kind)k));
        for (int i = 0; i < sig->n_inputs && used < sizeof g_op_docs[k]; i++)
            used += (size_t)snprintf(doc + used, sizeof g_op_docs[k] - used, "%s%s", i ? ", " : "", sig->inputs[i]);
        for (int i = 0; i < sig->n_fields && used < sizeof g_op_docs[k]; i++)
            used += (size_t)snprintf(doc + used, sizeof g_op_docs[k] - used, "%s%s=", i || sig->n_inputs ? ", " : "",
                                     sig->fields[i].name);
        if (used < sizeof g_op_docs[k])
            used += (size_t)snprintf(doc + used, sizeof g_op_docs[k] - used, ") -> tensor id\n\n%s", sig->doc);
        for (int i = 0; i < sig->n_fields && used < sizeof g_op_docs[k]; i++)
            used += (size_t)snprintf(doc + used, sizeof g_op_docs[k] - used, "\n  %s: %s", sig->fields[i].name,
                                     sig->fields[i].doc);
        g_op_defs[k] = (PyMethodDef){msv_op_name((msv_op_kind)k), (PyCFunction)(void (*)(void))op_call,
                                     METH_VARARGS | METH_KEYWORDS, doc};
        PyObject *self = PyLong_FromLong(k);
        PyObject *fn = self ? PyCFunction_NewEx(&g_op_defs[k], self, NULL) : NULL;
        Py_XDECREF(self);
        PyObject *method = fn ? PyInstanceMethod_New(fn) : NULL;
        Py_XDECREF(fn);
        if (!method || PyDict_SetItemString(msv_GraphType.tp_dict, msv_op_name((msv_op_kind)k), method) < 0) {
            Py_XDECREF(method);
            Py_DECREF(ops);
            return -1;
        }
        Py_DECREF(method);
        PyTuple_SET_ITEM(ops, k, PyUnicode_FromString(msv_op_name((msv_op_kind)k)));
    }
    int st = PyDict_SetItemString(msv_GraphType.tp_dict, "ops", ops);
    Py_DECREF(ops);
    PyType_Modified(&msv_GraphType);
    return st;
}
