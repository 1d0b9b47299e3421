/* boxes.c - the box geometry bindings: nms, batched_nms, decode_center_size, decode_distribution (work per box, in
 * C: kernels/boxes.c). */
#include "binding.h"

static int lookup_mode(const char *name) {
    if (strcmp(name, "union") == 0) return MSV_NMS_UNION;
    if (strcmp(name, "min") == 0) return MSV_NMS_MIN;
    if (strcmp(name, "tf") == 0) return MSV_NMS_TF;
    PyErr_Format(PyExc_ValueError, "unknown nms mode '%s'", name);
    return -1;
}

/* nms(boxes (n, 4), scores (n,), iou_threshold, mode='union'|'min'|'tf', offset=0.0, max_keep=-1, eps=0.0) -> indices
 * ('tf': TensorFlow's NonMaxSuppression; offset and eps do not apply) */
static PyObject *py_nms(PyObject *mod, PyObject *args, PyObject *kwds) {
    (void)mod;
    static char *kwlist[] = {"boxes", "scores", "iou_threshold", "mode", "offset", "max_keep", "eps", NULL};
    PyObject *bo, *so;
    float iou, offset = 0.f, eps = 0.f;
    const char *mode = "union";
    long long max_keep = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOf|sfLf", kwlist, &bo, &so, &iou, &mode, &offset, &max_keep, &eps))
        return NULL;
    int mode_id = lookup_mode(mode);
    if (mode_id < 0) return NULL;
    PyArrayObject *b = msv_as_f32(bo, "boxes"), *s = b ? msv_as_f32(so, "scores") : NULL;
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
    PyArrayObject *l = msv_as_f32(lo, "loc"), *p = l ? msv_as_f32(po, "priors") : NULL;
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

/* batched_nms(boxes (n, 4), scores (n,), labels (n,) int64, iou_threshold) -> indices, as torchvision's */
static PyObject *py_batched_nms(PyObject *mod, PyObject *args, PyObject *kwds) {
    (void)mod;
    static char *kwlist[] = {"boxes", "scores", "labels", "iou_threshold", NULL};
    PyObject *bo, *so, *lo;
    double iou;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOd", kwlist, &bo, &so, &lo, &iou)) return NULL;
    PyArrayObject *b = msv_as_f32(bo, "boxes"), *s = b ? msv_as_f32(so, "scores") : NULL;
    PyArrayObject *l =
        s ? (PyArrayObject *)PyArray_FROMANY(lo, NPY_INT64, 1, 1, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST) : NULL;
    PyObject *result = NULL;
    int64_t *keep = NULL;
    if (!b || !s || !l) goto done;
    npy_intp n = PyArray_NDIM(s) == 1 ? PyArray_DIM(s, 0) : -1;
    if (n < 0 || PyArray_NDIM(b) != 2 || PyArray_DIM(b, 0) != n || PyArray_DIM(b, 1) != 4 || PyArray_DIM(l, 0) != n) {
        PyErr_SetString(PyExc_ValueError, "batched_nms needs boxes (n, 4), scores (n,) and labels (n,)");
        goto done;
    }
    keep = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!keep) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t kept;
    Py_BEGIN_ALLOW_THREADS kept = msv_batched_nms((const float *)PyArray_DATA(b), (const float *)PyArray_DATA(s),
                                                  (const int64_t *)PyArray_DATA(l), n, iou, keep);
    Py_END_ALLOW_THREADS if (kept < 0) {
        PyErr_NoMemory();
        goto done;
    }
    npy_intp dims[1] = {(npy_intp)kept};
    result = PyArray_SimpleNew(1, dims, NPY_INT64);
    if (result) memcpy(PyArray_DATA((PyArrayObject *)result), keep, sizeof(int64_t) * (size_t)kept);
done:
    free(keep);
    Py_XDECREF(b);
    Py_XDECREF(s);
    Py_XDECREF(l);
    return result;
}

/* decode_distribution(reg (n, 4 * bins), priors (n, 3) x y stride, project (bins,)) -> boxes (n, 4) x1 y1 x2 y2 */
static PyObject *py_decode_distribution(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *ro, *po, *jo;
    if (!PyArg_ParseTuple(args, "OOO", &ro, &po, &jo)) return NULL;
    PyArrayObject *r = msv_as_f32(ro, "reg"), *p = r ? msv_as_f32(po, "priors") : NULL;
    PyArrayObject *j = p ? msv_as_f32(jo, "project") : NULL;
    PyObject *result = NULL;
    if (!r || !p || !j) goto done;
    const npy_intp bins = PyArray_NDIM(j) == 1 ? PyArray_DIM(j, 0) : 0;
    if (bins < 1 || bins > 4096 || PyArray_NDIM(r) != 2 || PyArray_DIM(r, 1) != 4 * bins || PyArray_NDIM(p) != 2 ||
        PyArray_DIM(p, 1) != 3 || PyArray_DIM(p, 0) != PyArray_DIM(r, 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "decode_distribution needs reg (n, 4 * bins), priors (n, 3) and project (bins,)");
        goto done;
    }
    npy_intp dims[2] = {PyArray_DIM(r, 0), 4};
    result = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!result) goto done;
    Py_BEGIN_ALLOW_THREADS msv_decode_distribution((const float *)PyArray_DATA(r), (const float *)PyArray_DATA(p),
                                                   dims[0], (int)bins, (const float *)PyArray_DATA(j),
                                                   (float *)PyArray_DATA((PyArrayObject *)result));
    Py_END_ALLOW_THREADS done : Py_XDECREF(r);
    Py_XDECREF(p);
    Py_XDECREF(j);
    return result;
}

PyMethodDef msv_box_methods[] = {
    {"batched_nms", (PyCFunction)(void (*)(void))py_batched_nms, METH_VARARGS | METH_KEYWORDS,
     "batched_nms(boxes, scores, labels, iou_threshold) -> kept indices (int64), as torchvision.ops.batched_nms"},
    {"decode_distribution", py_decode_distribution, METH_VARARGS,
     "decode_distribution(reg, priors, project) -> boxes x1 y1 x2 y2 (GFL distribution decoding, priors x y stride)"},
    {"nms", (PyCFunction)(void (*)(void))py_nms, METH_VARARGS | METH_KEYWORDS,
     "nms(boxes, scores, iou_threshold, mode='union', offset=0.0, max_keep=-1, eps=0.0) -> kept indices (int64)"},
    {"decode_center_size", py_decode_center_size, METH_VARARGS,
     "decode_center_size(loc, priors, v0, v1) -> boxes x1 y1 x2 y2"},
    {NULL, NULL, 0, NULL},
};
