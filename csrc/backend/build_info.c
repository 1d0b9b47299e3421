/* build_info.c - what oneDNN this build runs on (version, threading runtime, ISA). */
#include <dnnl.h>

#include "planner.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2_vnni_2: return "avx2_vnni_2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_fp16: return "avx512_core_fp16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "default";
    }
}

void msv_get_build_info(msv_build_info *info) {
    const dnnl_version_t *v = dnnl_version();
    info->dnnl_major = v->major;
    info->dnnl_minor = v->minor;
    info->dnnl_patch = v->patch;
    info->dnnl_hash = v->hash;
    info->cpu_runtime = v->cpu_runtime == DNNL_RUNTIME_OMP   ? "OpenMP"
                        : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB"
                        : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
                                                             : "other";
    info->isa = isa_name(dnnl_get_effective_cpu_isa());
#ifdef _OPENMP
    info->max_threads = omp_get_max_threads();
#else
    info->max_threads = 1;
#endif
}
