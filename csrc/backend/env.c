/* env.c - the environment knobs of the backend, read in one place (listed in planner.h and the README). */
#include <stdlib.h>
#include <string.h>

#include "planner.h"

static int flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

msv_env msv_read_env(void) {
    msv_env e = {MSV_PREFER_NHWC, 1, 0, 0, 0, 0, 0, MSV_ISA_AVX512, 0};
    const char *layout = getenv("MSVISION_LAYOUT");
    if (layout && strcmp(layout, "blocked") == 0) e.layout = MSV_PREFER_BLOCKED;
    if (layout && strcmp(layout, "any") == 0) e.layout = MSV_PREFER_ANY;
    const char *wino = getenv("MSVISION_WINOGRAD");
    e.winograd = !(wino && strcmp(wino, "0") == 0);
    const char *tiles = getenv("MSVISION_WINOGRAD_TILES");
    const long t = tiles ? strtol(tiles, NULL, 10) : 0;
    e.winograd_tiles = t > 0 && t < 100000 ? t : 0;
    e.verbose = flag("MSVISION_VERBOSE");
    e.profile = flag("MSVISION_PROFILE");
    e.refuse_ref = flag("MSVISION_REFUSE_REF");
    e.fallback_kernels = flag("MSVISION_FALLBACK_KERNELS");
    const char *isa = getenv("MSVISION_KERNEL_ISA");
    e.kernel_isa = isa && strcmp(isa, "generic") == 0 ? MSV_ISA_GENERIC
                   : isa && strcmp(isa, "avx2") == 0  ? MSV_ISA_AVX2
                                                      : MSV_ISA_AVX512;
    return e;
}
