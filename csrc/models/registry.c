/* registry.c - architecture name -> builder. One builder file per architecture in this folder. */
#include <string.h>

#include "../core/graph_internal.h"

msv_status msv_build_nafnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_ulfd(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_pnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_rnet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mtcnn_onet(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);
msv_status msv_build_mogface(const msv_settings *s, const msv_weights *w, msv_graph **out, msv_error *err);

typedef msv_status (*msv_builder_fn)(const msv_settings *, const msv_weights *, msv_graph **, msv_error *);

static const struct {
    const char *name;
    msv_builder_fn build;
} k_architectures[] = {
    {"nafnet", msv_build_nafnet},         {"ulfd", msv_build_ulfd},
    {"mtcnn_pnet", msv_build_mtcnn_pnet}, {"mtcnn_rnet", msv_build_mtcnn_rnet},
    {"mtcnn_onet", msv_build_mtcnn_onet}, {"mogface", msv_build_mogface},
};

msv_status msv_model_build(const char *arch, const msv_settings *settings, const msv_weights *weights, msv_graph **out,
                           msv_error *err) {
    *out = NULL;
    for (size_t i = 0; i < sizeof k_architectures / sizeof k_architectures[0]; i++)
        if (strcmp(k_architectures[i].name, arch) == 0) return k_architectures[i].build(settings, weights, out, err);
    return msv_set_error(err, MSV_ERR_UNSUPPORTED, "unknown architecture '%s'", arch);
}
