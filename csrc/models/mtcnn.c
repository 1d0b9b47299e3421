/* mtcnn.c - placeholder: the MTCNN builders are being written (return "not implemented" until then). */
#include "../core/graph_internal.h"

msv_status msv_build_mtcnn_pnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_rnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_onet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

static msv_status not_yet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    (void)s;
    (void)w;
    *out = NULL;
    return msv_set_error(err, MSV_ERR_UNSUPPORTED, "MTCNN is not implemented yet");
}

msv_status msv_build_mtcnn_pnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    return not_yet(s, w, out, err);
}
msv_status msv_build_mtcnn_rnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    return not_yet(s, w, out, err);
}
msv_status msv_build_mtcnn_onet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    return not_yet(s, w, out, err);
}
