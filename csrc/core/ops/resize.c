/* resize.c - resize, resize_like: signatures and shape rules. */
#include <math.h>

#include "ops_util.h"

static const char *const k_modes[] = {"nearest",
                                      "bilinear",
                                      "bilinear_align_corners",
                                      "bilinear_asymmetric",
                                      "nearest_align_corners",
                                      "nearest_half_pixel",
                                      NULL};
static const msv_resize_params resize_defaults = {.mode = MSV_RESIZE_NEAREST};

const msv_signature msv_signature_resize = {
    .doc = "torch F.interpolate on a 4-D tensor: to `size` (h, w), or by `scale` (torch's scale_factor: the output "
           "is floor(in * scale) and the sampling uses 1 / scale); nearest, bilinear (align_corners=False) or "
           "bilinear_align_corners; by size only, TensorFlow's bilinear_asymmetric (TF1's legacy src = dst * in / "
           "out), nearest_align_corners (rounded) and nearest_half_pixel",
    .inputs = {"x"},
    .n_inputs = 1,
    .fields = {ENUM_FIELD(msv_resize_params, mode, k_modes, "mode", "resize mode"),
               FIELD(msv_resize_params, out_h, MSV_FIELD_SIZE, "size", "output size (h, w)"),
               FIELD(msv_resize_params, scale_h, MSV_FIELD_SCALE, "scale", "scale factors (h, w)")},
    .n_fields = 3,
    .params_size = sizeof(msv_resize_params),
    .defaults = &resize_defaults,
};

const msv_signature msv_signature_resize_like = {
    .doc = "x resized by the scale factors and cropped to the spatial size of `like` (an FPN's "
           "up2(x)[:, :, :h, :w]); nearest or bilinear",
    .inputs = {"x", "like"},
    .n_inputs = 2,
    .fields = {ENUM_FIELD(msv_resize_params, mode, k_modes, "mode", "resize mode"),
               FIELD(msv_resize_params, scale_h, MSV_FIELD_SCALE, "scale", "scale factors (h, w)")},
    .n_fields = 2,
    .params_size = sizeof(msv_resize_params),
    .defaults = &resize_defaults,
};

static int valid_scale(float s) { return s > 0 && s <= MSV_MAX_SCALE; }

static int64_t scaled(int64_t in, float scale) {
    return msv_known(in) ? (int64_t)floor((double)in * scale) : MSV_DYNAMIC;
}

static msv_status check_mode(const msv_resize_params *p, msv_error *err) {
    if ((int)p->mode < 0 || p->mode >= MSV_RESIZE_COUNT)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "unknown resize mode %d", (int)p->mode);
    return MSV_OK;
}

msv_status msv_shape_resize(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                            msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st == MSV_OK) st = check_mode(&n->p.resize, err);
    if (st != MSV_OK) return st;
    const msv_resize_params *p = &n->p.resize;
    const int sized = p->out_h > 0 || p->out_w > 0;
    if ((sized && !(p->out_h > 0 && p->out_w > 0 && p->out_h <= MSV_MAX_DIM_SIZE && p->out_w <= MSV_MAX_DIM_SIZE)) ||
        (!sized && !(valid_scale(p->scale_h) && valid_scale(p->scale_w))) || p->out_h < 0 || p->out_w < 0)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "resize needs an output size or scale factors in (0, %g]",
                             MSV_MAX_SCALE);
    if (!sized && p->mode > MSV_RESIZE_BILINEAR_ALIGN_CORNERS)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "resize mode %s takes an output size, not scale factors",
                             k_modes[p->mode]);
    const msv_shape x = shapes[n->in[0]];
    const int64_t oh = sized ? p->out_h : scaled(x.dims[2], p->scale_h);
    const int64_t ow = sized ? p->out_w : scaled(x.dims[3], p->scale_w);
    if (oh == 0 || ow == 0) return msv_set_error(err, MSV_ERR_SHAPE, "resize to an empty image");
    *out = msv_shape4(x.dims[0], x.dims[1], oh, ow);
    return MSV_OK;
}

msv_status msv_shape_resize_like(const msv_graph *g, const msv_node *n, const msv_shape *shapes, msv_shape *out,
                                 msv_error *err) {
    msv_status st = msv_need_rank(g, n, shapes, 0, 4, err);
    if (st == MSV_OK) st = msv_need_rank(g, n, shapes, 1, 4, err);
    if (st == MSV_OK) st = check_mode(&n->p.resize, err);
    if (st != MSV_OK) return st;
    const msv_resize_params *p = &n->p.resize;
    if (!(valid_scale(p->scale_h) && valid_scale(p->scale_w)) || p->mode > MSV_RESIZE_BILINEAR_HALF_PIXEL)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT,
                             "resize_like needs scale factors in (0, %g] and mode nearest or bilinear (with "
                             "align_corners the sampling depends on the uncropped size)",
                             MSV_MAX_SCALE);
    const msv_shape x = shapes[n->in[0]], like = shapes[n->in[1]];
    const int64_t oh = scaled(x.dims[2], p->scale_h), ow = scaled(x.dims[3], p->scale_w);
    if (msv_known(oh) && msv_known(like.dims[2]) && msv_known(ow) && msv_known(like.dims[3]) &&
        (like.dims[2] > oh || like.dims[3] > ow))
        return msv_set_error(err, MSV_ERR_SHAPE,
                             "the reference (%lld x %lld) is larger than the resized input (%lld x %lld)",
                             (long long)like.dims[2], (long long)like.dims[3], (long long)oh, (long long)ow);
    *out = msv_shape4(x.dims[0], x.dims[1], like.dims[2], like.dims[3]);
    return MSV_OK;
}
