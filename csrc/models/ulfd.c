/* ulfd.c - placeholder: the ulfd builder is being written (returns "not implemented" until then). */
#include "../core/graph_internal.h"

msv_status msv_build_ulfd(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

msv_status msv_build_ulfd(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    (void)s;
    (void)w;
    *out = NULL;
    return msv_set_error(err, MSV_ERR_UNSUPPORTED, "architecture 'ulfd' is not implemented yet");
}
