/*
 * binding.h - what the binding's files share (the binding is the only code that includes Python.h):
 *   module.c   module init, build_info, C status -> msvision.errors exceptions
 *   graph.c    msvision._C.Graph: one method per op kind, generated from the op signatures (core/ops.def)
 *   session.c  msvision._C.Session: plans and runs a graph, GIL released
 *   boxes.c    nms, decode_center_size
 */
#ifndef MSV_BINDING_H
#define MSV_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_20_API_VERSION
#ifndef MSV_BINDING_MODULE /* module.c imports NumPy's C API for all of them */
#define NO_IMPORT_ARRAY
#endif
#define PY_ARRAY_UNIQUE_SYMBOL msvision_ARRAY_API
#include <numpy/arrayobject.h>

#include "../msv.h"

typedef struct {
    PyObject_HEAD msv_graph *graph;
} GraphObject;

extern PyTypeObject msv_GraphType;
extern PyTypeObject msv_SessionType;

/* Raises the msvision.errors exception matching err->status; returns NULL. */
PyObject *msv_raise(const msv_error *err);
/* float32 C-contiguous copy-or-view of any array-like (NULL with TypeError). */
PyArrayObject *msv_as_f32(PyObject *obj, const char *what);
/* Finishes a type with the op methods (graph.c). */
int msv_graph_type_ready(void);
int msv_session_type_ready(void);
extern PyMethodDef msv_box_methods[];

#endif
