/* boxes.c - box geometry that is work per box: NMS, torchvision's batched NMS, SSD and distribution box decoding
 * (msv.h). */
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

/* torchvision's CPU nms kernel over boxes[idx[0..m)] (x1 y1 x2 y2); kept positions into idx go to keep, best
 * first. std::max semantics ((a < b) ? b : a) so NaN coordinates behave as there. */
static int64_t torchvision_nms(const float *boxes, const float *scores, const int64_t *idx, int64_t m,
                               double iou_threshold, int64_t *keep) {
    scored *order = malloc(sizeof(scored) * (size_t)(m ? m : 1));
    unsigned char *removed = calloc((size_t)(m ? m : 1), 1);
    float *areas = malloc(sizeof(float) * (size_t)(m ? m : 1));
    if (!order || !removed || !areas) {
        free(order);
        free(removed);
        free(areas);
        return -1;
    }
    for (int64_t i = 0; i < m; i++) {
        const float *b = boxes + 4 * idx[i];
        order[i] = (scored){scores[idx[i]], i};
        areas[i] = (b[2] - b[0]) * (b[3] - b[1]);
    }
    qsort(order, (size_t)m, sizeof(scored), by_score_desc);
    int64_t kept = 0;
    for (int64_t oi = 0; oi < m; oi++) {
        const int64_t i = order[oi].index;
        if (removed[i]) continue;
        keep[kept++] = i;
        const float *a = boxes + 4 * idx[i];
        for (int64_t oj = oi + 1; oj < m; oj++) {
            const int64_t j = order[oj].index;
            if (removed[j]) continue;
            const float *b = boxes + 4 * idx[j];
            const float xx1 = a[0] < b[0] ? b[0] : a[0], yy1 = a[1] < b[1] ? b[1] : a[1];
            const float xx2 = b[2] < a[2] ? b[2] : a[2], yy2 = b[3] < a[3] ? b[3] : a[3];
            const float w = 0.f < xx2 - xx1 ? xx2 - xx1 : 0.f, h = 0.f < yy2 - yy1 ? yy2 - yy1 : 0.f;
            const float inter = w * h;
            const float ovr = inter / (areas[i] + areas[j] - inter);
            if ((double)ovr > iou_threshold) removed[j] = 1;
        }
    }
    free(order);
    free(removed);
    free(areas);
    return kept;
}

/* Kept indices sorted by decreasing score (ties by index). */
static int64_t sort_kept_by_score(const float *scores, int64_t *keep, int64_t k) {
    scored *order = malloc(sizeof(scored) * (size_t)(k ? k : 1));
    if (!order) return -1;
    for (int64_t i = 0; i < k; i++)
        order[i] = (scored){scores[keep[i]], keep[i]};
    qsort(order, (size_t)k, sizeof(scored), by_score_desc);
    for (int64_t i = 0; i < k; i++)
        keep[i] = order[i].index;
    free(order);
    return k;
}

static int by_label(const void *a, const void *b) {
    const int64_t *x = a, *y = b; /* (label, index) pairs */
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* torchvision's _batched_nms_vanilla: NMS within each label, then every kept index by decreasing score. */
static int64_t batched_nms_per_label(const float *boxes, const float *scores, const int64_t *labels, int64_t n,
                                     double iou_threshold, int64_t *keep) {
    int64_t *pairs = malloc(sizeof(int64_t) * 2 * (size_t)n), *idx = malloc(sizeof(int64_t) * (size_t)n);
    int64_t *local = malloc(sizeof(int64_t) * (size_t)n);
    unsigned char *mask = calloc((size_t)n, 1);
    int64_t kept = -1;
    if (!pairs || !idx || !local || !mask) goto done;
    for (int64_t i = 0; i < n; i++) {
        pairs[2 * i] = labels[i];
        pairs[2 * i + 1] = i;
    }
    qsort(pairs, (size_t)n, 2 * sizeof(int64_t), by_label);
    for (int64_t start = 0; start < n;) {
        int64_t end = start;
        while (end < n && pairs[2 * end] == pairs[2 * start]) {
            idx[end - start] = pairs[2 * end + 1]; /* ascending indices, as torch.where */
            end++;
        }
        const int64_t k = torchvision_nms(boxes, scores, idx, end - start, iou_threshold, local);
        if (k < 0) goto done;
        for (int64_t i = 0; i < k; i++)
            mask[idx[local[i]]] = 1;
        start = end;
    }
    kept = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask[i]) keep[kept++] = i;
    kept = sort_kept_by_score(scores, keep, kept);
done:
    free(pairs);
    free(idx);
    free(local);
    free(mask);
    return kept;
}

int64_t msv_batched_nms(const float *boxes, const float *scores, const int64_t *labels, int64_t n, double iou_threshold,
                        int64_t *keep) {
    if (n <= 0) return 0;
    if (4 * n > 4000) return batched_nms_per_label(boxes, scores, labels, n, iou_threshold, keep);
    /* _batched_nms_coordinate_trick, in float32 as torch computes it */
    float max_coordinate = -INFINITY; /* torch.max: NaN if any coordinate is NaN */
    for (int64_t i = 0; i < 4 * n && !isnan(max_coordinate); i++)
        if (isnan(boxes[i]) || boxes[i] > max_coordinate) max_coordinate = boxes[i];
    float *shifted = malloc(sizeof(float) * 4 * (size_t)n);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)n);
    int64_t kept = -1;
    if (shifted && idx) {
        const float step = max_coordinate + 1.f;
        for (int64_t i = 0; i < n; i++) {
            const float offset = (float)labels[i] * step;
            for (int k = 0; k < 4; k++)
                shifted[4 * i + k] = boxes[4 * i + k] + offset;
            idx[i] = i;
        }
        kept = torchvision_nms(shifted, scores, idx, n, iou_threshold, keep);
    }
    free(shifted);
    free(idx);
    return kept;
}

void msv_decode_distribution(const float *reg, const float *priors, int64_t n, int bins, const float *project,
                             float *out) {
#pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        float d[4];
        for (int k = 0; k < 4; k++) {
            const float *r = reg + ((size_t)i * 4 + (size_t)k) * (size_t)bins;
            float m = r[0];
            for (int b = 1; b < bins; b++)
                m = r[b] > m ? r[b] : m;
            float sum = 0.f, expectation = 0.f;
            for (int b = 0; b < bins; b++)
                sum += expf(r[b] - m);
            for (int b = 0; b < bins; b++)
                expectation += expf(r[b] - m) / sum * project[b];
            d[k] = expectation * priors[3 * i + 2];
        }
        const float x = priors[3 * i], y = priors[3 * i + 1];
        float *o = out + 4 * i;
        o[0] = x - d[0];
        o[1] = y - d[1];
        o[2] = x + d[2];
        o[3] = y + d[3];
    }
}
