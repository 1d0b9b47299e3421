/* boxes.c - box geometry that is work per box: NMS and SSD box decoding (msv.h). */
#include <math.h>
#include <stdlib.h>

#include "../msv.h"

typedef struct scored {
    float score;
    int64_t index;
} scored;

/* Decreasing score; equal scores keep index order, so the result does not depend on the sort algorithm. NaN ranks
 * above every number, as in torch.sort, which keeps the order total (qsort needs one). */
static int by_score_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    const int x_nan = isnan(x->score), y_nan = isnan(y->score);
    if (x_nan != y_nan) return x_nan ? -1 : 1;
    if (!x_nan && x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->index < y->index ? -1 : x->index > y->index;
}

int64_t msv_nms(const float *boxes, const float *scores, int64_t n, float iou_threshold, msv_nms_mode mode,
                float offset, float eps, int64_t max_keep, int64_t *keep) {
    if (n <= 0) return 0;
    scored *order = malloc(sizeof(scored) * (size_t)n);
    unsigned char *removed = calloc((size_t)n, 1);
    if (!order || !removed) {
        free(order);
        free(removed);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        order[i] = (scored){scores[i], i};
    qsort(order, (size_t)n, sizeof(scored), by_score_desc);
    int64_t kept = 0;
    for (int64_t oi = 0; oi < n && (max_keep < 0 || kept < max_keep); oi++) {
        if (removed[oi]) continue;
        const float *a = boxes + 4 * order[oi].index;
        const float area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset);
        keep[kept++] = order[oi].index;
        for (int64_t oj = oi + 1; oj < n; oj++) {
            if (removed[oj]) continue;
            const float *b = boxes + 4 * order[oj].index;
            const float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]) + offset;
            const float ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]) + offset;
            if (iw <= 0 || ih <= 0) continue;
            const float inter = iw * ih;
            const float area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset);
            const float denom = (mode == MSV_NMS_MIN ? fminf(area_a, area_b) : area_a + area_b - inter) + eps;
            if (inter / denom > iou_threshold) removed[oj] = 1;
        }
    }
    free(order);
    free(removed);
    return kept;
}

void msv_decode_center_size(const float *loc, const float *priors, int64_t n, float v0, float v1, float *out) {
#pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        const float *l = loc + 4 * i, *p = priors + 4 * i;
        const float cx = p[0] + l[0] * v0 * p[2], cy = p[1] + l[1] * v0 * p[3];
        const float w = p[2] * expf(l[2] * v1), h = p[3] * expf(l[3] * v1);
        float *o = out + 4 * i;
        o[0] = cx - w / 2;
        o[1] = cy - h / 2;
        o[2] = cx + w / 2;
        o[3] = cy + h / 2;
    }
}
