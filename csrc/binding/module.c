/*
 * module.c - msvision._C: module init, build_info(), and the C status -> exception mapping (by meaning, with the
 * classes of msvision.errors): invalid op arguments GraphError (ValueError), an input the graph cannot take
 * ShapeError, an input over the memory limit MemoryLimitError, MemoryError, NotImplementedError for what is
 * valid but unimplemented, BackendError (RuntimeError) for oneDNN failures.
 */
#define MSV_BINDING_MODULE
#include "binding.h"

static PyObject *GraphError, *ShapeError, *MemoryLimitError, *BackendError;

PyObject *msv_raise(const msv_error *err) {
    PyObject *type = BackendError;
    switch (err->status) {
    case MSV_ERR_INVALID_ARGUMENT: type = GraphError; break;
    case MSV_ERR_SHAPE: type = ShapeError; break;
    case MSV_ERR_OUT_OF_MEMORY: type = PyExc_MemoryError; break;
    case MSV_ERR_MEMORY_LIMIT: type = MemoryLimitError; break;
    case MSV_ERR_UNSUPPORTED: type = PyExc_NotImplementedError; break;
    default: break;
    }
    PyErr_SetString(type, err->message[0] ? err->message : "msvision core error");
    return NULL;
}

PyArrayObject *msv_as_f32(PyObject *obj, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(
        obj, NPY_FLOAT32, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be convertible to a float32 array", what);
    }
    return a;
}

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

static PyMethodDef module_methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "oneDNN version, CPU runtime, effective ISA, threads"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                                        "msvision._C",
                                        "msvision C core binding: Graph (build), Session (run), box geometry.",
                                        -1,
                                        module_methods,
                                        NULL,
                                        NULL,
                                        NULL,
                                        NULL};

static PyObject *error_class(PyObject *errors, const char *name) {
    PyObject *cls = PyObject_GetAttrString(errors, name);
    return cls;
}

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *errors = PyImport_ImportModule("msvision.errors");
    if (!errors) return NULL;
    GraphError = error_class(errors, "GraphError");
    ShapeError = error_class(errors, "ShapeError");
    MemoryLimitError = error_class(errors, "MemoryLimitError");
    BackendError = error_class(errors, "BackendError");
    Py_DECREF(errors);
    if (!GraphError || !ShapeError || !MemoryLimitError || !BackendError) return NULL;
    if (msv_graph_type_ready() < 0 || msv_session_type_ready() < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (PyModule_AddFunctions(m, msv_box_methods) < 0) goto fail;
    Py_INCREF(&msv_GraphType);
    if (PyModule_AddObject(m, "Graph", (PyObject *)&msv_GraphType) < 0) goto fail;
    Py_INCREF(&msv_SessionType);
    if (PyModule_AddObject(m, "Session", (PyObject *)&msv_SessionType) < 0) goto fail;
    Py_INCREF(GraphError);
    Py_INCREF(ShapeError);
    Py_INCREF(MemoryLimitError);
    if (PyModule_AddObject(m, "GraphError", GraphError) < 0 || PyModule_AddObject(m, "ShapeError", ShapeError) < 0 ||
        PyModule_AddObject(m, "MemoryLimitError", MemoryLimitError) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
