/* mogface.c - placeholder: the mogface builder is being written (returns "not implemented" until then). */
#include "../core/graph_internal.h"

msv_status msv_build_mogface(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

msv_status msv_build_mogface(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err) {
    (void)s;
    (void)w;
    *out = NULL;
    return msv_set_error(err, MSV_ERR_UNSUPPORTED, "architecture 'mogface' is not implemented yet");
}
