/*
 * session.c - msvision._C.Session: runs a finalized Graph.
 *
 *   s = Session(graph, threads=2, layout="nhwc", max_plans=8, memory_limit=0, share_weights_with=None,
 *               precision="fp32")     # or "bf16": see msv_precision in msv.h
 *   outputs = s.run([x, ...])          # float32 arrays in the session's layout; the GIL is released meanwhile
 *
 * One session runs one call at a time (a second thread calling the same session waits); sessions of one graph
 * run concurrently, and share packed weights when created with share_weights_with=another_session.
 */
#include "binding.h"
#include "pythread.h"

#include <pthread.h>

/* GNU OpenMP keeps no state across fork(): once this process has run a graph (started OpenMP's threads), a forked
 * child's first parallel region waits forever for threads that do not exist. Such a child gets an error instead. */
static int ran_a_graph, forked_after_running;
static void mark_forked_child(void) { forked_after_running = ran_a_graph; }

static int refuse_in_forked_child(void) {
    if (!forked_after_running) return 0;
    PyErr_SetString(PyExc_RuntimeError,
                    "msvision cannot run in a process forked after its parent ran a network: GNU OpenMP does not "
                    "survive fork(). Create pipelines in processes started with the 'spawn' method "
                    "(multiprocessing.get_context('spawn'); Dask's and Ray's workers already are)");
    return -1;
}

typedef struct {
    PyObject_HEAD msv_session *session;
    PyObject *graph; /* keeps the graph alive */
    PyObject *shared;
    PyThread_type_lock lock;
    msv_layout layout;
} SessionObject;

static void Session_dealloc(SessionObject *self) {
    msv_session_destroy(self->session);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_XDECREF(self->graph);
    Py_XDECREF(self->shared);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Session_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"graph",     "threads", "layout", "max_plans", "memory_limit", "share_weights_with",
                             "precision", NULL};
    PyObject *graph, *shared = Py_None;
    int threads = 0, max_plans = 0;
    long long memory_limit = 0;
    const char *layout = "nchw", *precision = "fp32";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|$isiLOs", kwlist, &msv_GraphType, &graph, &threads, &layout,
                                     &max_plans, &memory_limit, &shared, &precision))
        return NULL;
    if (refuse_in_forked_child() < 0) return NULL;
    msv_session_options opt = {0};
    opt.threads = threads;
    opt.max_plans = max_plans;
    opt.memory_limit = memory_limit;
    if (strcmp(layout, "nchw") == 0) {
        opt.io_layout = MSV_LAYOUT_NCHW;
    } else if (strcmp(layout, "nhwc") == 0) {
        opt.io_layout = MSV_LAYOUT_NHWC;
    } else {
        PyErr_Format(PyExc_ValueError, "unknown layout '%s' (nchw or nhwc)", layout);
        return NULL;
    }
    if (strcmp(precision, "fp32") == 0) {
        opt.precision = MSV_PRECISION_FP32;
    } else if (strcmp(precision, "bf16") == 0) {
        opt.precision = MSV_PRECISION_BF16;
    } else {
        PyErr_Format(PyExc_ValueError, "unknown precision '%s' (fp32 or bf16)", precision);
        return NULL;
    }
    if (threads < 0 || max_plans < 0 || memory_limit < 0) {
        PyErr_SetString(PyExc_ValueError, "threads, max_plans and memory_limit must not be negative");
        return NULL;
    }
    if (shared != Py_None) {
        if (!PyObject_TypeCheck(shared, &msv_SessionType)) {
            PyErr_SetString(PyExc_TypeError, "share_weights_with must be a Session");
            return NULL;
        }
        opt.share_weights_with = ((SessionObject *)shared)->session;
    }
    SessionObject *self = (SessionObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    self->lock = PyThread_allocate_lock();
    if (!self->lock) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    msv_error err = {0};
    if (msv_session_create(&self->session, ((GraphObject *)graph)->graph, &opt, &err) != MSV_OK) {
        Py_DECREF(self);
        return msv_raise(&err);
    }
    self->layout = opt.io_layout;
    Py_INCREF(graph);
    self->graph = graph;
    if (shared != Py_None) {
        Py_INCREF(shared);
        self->shared = shared;
    }
    return (PyObject *)self;
}

static PyObject *Session_run(SessionObject *self, PyObject *seq) {
    const msv_graph *g = ((GraphObject *)self->graph)->graph;
    const int n_in = msv_graph_num_inputs(g), n_out = msv_graph_num_outputs(g);
    if (refuse_in_forked_child() < 0) return NULL;
    ran_a_graph = 1;
    PyObject *fast = PySequence_Fast(seq, "run() takes a list of arrays");
    if (!fast) return NULL;
    PyArrayObject *ins[8] = {0}, *outs[32] = {0};
    msv_shape in_shapes[8], out_shapes[32];
    const float *in_ptrs[8];
    float *out_ptrs[32];
    PyObject *result = NULL;
    msv_error err = {0};
    msv_status st = MSV_OK;
    if (PySequence_Fast_GET_SIZE(fast) != n_in) {
        err.status = MSV_ERR_SHAPE;
        snprintf(err.message, sizeof err.message, "this graph takes %d input(s), got %zd", n_in,
                 PySequence_Fast_GET_SIZE(fast));
        msv_raise(&err);
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        ins[i] = msv_as_f32(PySequence_Fast_GET_ITEM(fast, i), "a graph input");
        if (!ins[i]) goto done;
        const int nd = PyArray_NDIM(ins[i]);
        const msv_shape want = msv_graph_input_shape(g, i);
        if (nd != want.ndims) {
            err.status = MSV_ERR_SHAPE;
            if (want.ndims == 4)
                snprintf(err.message, sizeof err.message, "input %d must be a 4-D %s array, got %d dimension(s)", i,
                         self->layout == MSV_LAYOUT_NHWC ? "N x H x W x C" : "N x C x H x W", nd);
            else
                snprintf(err.message, sizeof err.message, "input %d must have %d dimension(s), got %d", i, want.ndims,
                         nd);
            msv_raise(&err);
            goto done;
        }
        in_shapes[i].ndims = nd;
        for (int d = 0; d < nd; d++)
            in_shapes[i].dims[d] = PyArray_DIM(ins[i], d);
        in_ptrs[i] = (const float *)PyArray_DATA(ins[i]);
    }
    Py_BEGIN_ALLOW_THREADS PyThread_acquire_lock(self->lock, WAIT_LOCK);
    st = msv_session_plan(self->session, in_shapes, out_shapes, &err);
    Py_END_ALLOW_THREADS if (st != MSV_OK) {
        PyThread_release_lock(self->lock);
        msv_raise(&err);
        goto done;
    }
    for (int i = 0; i < n_out; i++) {
        npy_intp dims[MSV_MAX_DIMS];
        for (int d = 0; d < out_shapes[i].ndims; d++)
            dims[d] = out_shapes[i].dims[d];
        outs[i] = (PyArrayObject *)PyArray_SimpleNew(out_shapes[i].ndims, dims, NPY_FLOAT32);
        if (!outs[i]) {
            PyThread_release_lock(self->lock);
            goto done;
        }
        out_ptrs[i] = (float *)PyArray_DATA(outs[i]);
    }
    Py_BEGIN_ALLOW_THREADS st = msv_session_run(self->session, in_shapes, in_ptrs, out_ptrs, &err);
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS if (st != MSV_OK) {
        msv_raise(&err);
        goto done;
    }
    result = PyList_New(n_out);
    for (int i = 0; result && i < n_out; i++) {
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

/* Waits for the session's lock with the GIL released (a run may hold it for seconds). */
static void lock_session(SessionObject *self) {
    Py_BEGIN_ALLOW_THREADS PyThread_acquire_lock(self->lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
}

/* The steps of the last plan run, read under the lock: a run in another thread may evict that plan. */
static PyObject *Session_steps(SessionObject *self, PyObject *noargs) {
    (void)noargs;
    PyObject *out = PyList_New(0);
    char buf[160];
    lock_session(self);
    for (int i = 0; out && msv_session_describe_step(self->session, i, buf, sizeof buf); i++) {
        PyObject *s = PyUnicode_FromString(buf);
        if (!s || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(s);
    }
    PyThread_release_lock(self->lock);
    return out;
}

static PyObject *session_stat(SessionObject *self, int which) {
    msv_session_stats s;
    lock_session(self);
    msv_session_get_stats(self->session, &s);
    PyThread_release_lock(self->lock);
    return PyLong_FromLongLong(which == 0 ? s.primitives_created : which == 1 ? s.arena_bytes : s.plans);
}
static PyObject *Session_get_primitive_count(SessionObject *self, void *c) {
    (void)c;
    return session_stat(self, 0);
}
static PyObject *Session_get_arena_bytes(SessionObject *self, void *c) {
    (void)c;
    return session_stat(self, 1);
}
static PyObject *Session_get_plans(SessionObject *self, void *c) {
    (void)c;
    return session_stat(self, 2);
}
static PyObject *Session_get_graph(SessionObject *self, void *c) {
    (void)c;
    Py_INCREF(self->graph);
    return self->graph;
}

static PyMethodDef Session_methods[] = {
    {"run", (PyCFunction)Session_run, METH_O, "run([arrays]) -> list of float32 arrays (the session's layout)"},
    {"steps", (PyCFunction)Session_steps, METH_NOARGS,
     "steps() -> the plan run last, one line per step: 'op: implementation [src layout -> dst layout]'"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Session_getset[] = {
    {"primitive_count", (getter)Session_get_primitive_count, NULL, "oneDNN primitives this session created", NULL},
    {"arena_bytes", (getter)Session_get_arena_bytes, NULL, "bytes of activation arena held", NULL},
    {"plans", (getter)Session_get_plans, NULL, "input shapes planned and kept", NULL},
    {"graph", (getter)Session_get_graph, NULL, "the graph this session runs", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject msv_SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msvision._C.Session",
    .tp_basicsize = sizeof(SessionObject),
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Session(graph, *, threads=0, layout='nchw', max_plans=8, memory_limit=0, share_weights_with=None): "
              "plans a finalized graph per input shape and runs it.",
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
    .tp_new = Session_new,
};

int msv_session_type_ready(void) {
    if (pthread_atfork(NULL, NULL, mark_forked_child) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
        return -1;
    }
    return PyType_Ready(&msv_SessionType);
}
