/* boxes.c - box geometry that is work per box: NMS, torchvision's batched NMS, SSD and distribution box decoding
 * (msv.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

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

/* TensorFlow's NonMaxSuppression IoU (image_ops' IOU): corners in either order, boxes of no area overlap nothing. */
static float tf_iou(const float *a, const float *b) {
    const float ay0 = fminf(a[0], a[2]), ax0 = fminf(a[1], a[3]), ay1 = fmaxf(a[0], a[2]), ax1 = fmaxf(a[1], a[3]);
    const float by0 = fminf(b[0], b[2]), bx0 = fminf(b[1], b[3]), by1 = fmaxf(b[0], b[2]), bx1 = fmaxf(b[1], b[3]);
    const float area_a = (ay1 - ay0) * (ax1 - ax0), area_b = (by1 - by0) * (bx1 - bx0);
    if (area_a <= 0 || area_b <= 0) return 0.f;
    const float ih = fmaxf(fminf(ay1, by1) - fmaxf(ay0, by0), 0.f);
    const float iw = fmaxf(fminf(ax1, bx1) - fmaxf(ax0, bx0), 0.f);
    const float inter = ih * iw;
    return inter / (area_a + area_b - inter);
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
            if (mode == MSV_NMS_TF) {
                if (tf_iou(a, b) > iou_threshold) removed[oj] = 1;
                continue;
            }
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

/* The largest float <= t: for a float v, (double)v > t exactly when v > it (torchvision compares in double). */
static float float_below(double t) {
    float f = (float)t;
    if ((double)f > t) f = nextafterf(f, -INFINITY);
    return f;
}

/* Marks removed every box j in [from, to) whose IoU with box a exceeds the threshold (boxes as columns in score
 * order; std::max semantics ((a < b) ? b : a) so NaN coordinates behave as in torchvision). One straight loop
 * over the columns, so it vectorises; boxes already removed are compared too (the flag only ever turns on). */
MSV_MULTIVERSION
static void suppress_overlaps(const float *x1, const float *y1, const float *x2, const float *y2, const float *areas,
                              int64_t a, int64_t from, int64_t to, float threshold, int32_t *removed) {
    const float ax1 = x1[a], ay1 = y1[a], ax2 = x2[a], ay2 = y2[a], area = areas[a];
    for (int64_t j = from; j < to; j++) {
        const float xx1 = ax1 < x1[j] ? x1[j] : ax1, yy1 = ay1 < y1[j] ? y1[j] : ay1;
        const float xx2 = x2[j] < ax2 ? x2[j] : ax2, yy2 = y2[j] < ay2 ? y2[j] : ay2;
        const float w = 0.f < xx2 - xx1 ? xx2 - xx1 : 0.f, h = 0.f < yy2 - yy1 ? yy2 - yy1 : 0.f;
        const float inter = w * h;
        const float ovr = inter / (area + areas[j] - inter);
        removed[j] |= ovr > threshold;
    }
}

/* torchvision's CPU nms kernel over boxes[idx[0..m)] (x1 y1 x2 y2); kept positions into idx go to keep, best
 * first. The boxes are gathered into columns in score order first. */
static int64_t torchvision_nms(const float *boxes, const float *scores, const int64_t *idx, int64_t m,
                               double iou_threshold, int64_t *keep) {
    const size_t count = (size_t)(m ? m : 1);
    scored *order = malloc(sizeof(scored) * count);
    int32_t *removed = calloc(count, sizeof(int32_t));
    float *columns = malloc(sizeof(float) * 5 * count); /* x1, y1, x2, y2, area: m each, in score order */
    if (!order || !removed || !columns) {
        free(order);
        free(removed);
        free(columns);
        return -1;
    }
    for (int64_t i = 0; i < m; i++)
        order[i] = (scored){scores[idx[i]], i};
    qsort(order, (size_t)m, sizeof(scored), by_score_desc);
    float *x1 = columns, *y1 = x1 + m, *x2 = y1 + m, *y2 = x2 + m, *areas = y2 + m;
    for (int64_t r = 0; r < m; r++) {
        const float *b = boxes + 4 * idx[order[r].index];
        x1[r] = b[0];
        y1[r] = b[1];
        x2[r] = b[2];
        y2[r] = b[3];
        areas[r] = (b[2] - b[0]) * (b[3] - b[1]);
    }
    const float threshold = float_below(iou_threshold);
    int64_t kept = 0;
    for (int64_t r = 0; r < m; r++) {
        if (removed[r]) continue;
        keep[kept++] = order[r].index;
        suppress_overlaps(x1, y1, x2, y2, areas, r, r + 1, m, threshold, removed);
    }
    free(order);
    free(removed);
    free(columns);
    return kept;
}

/* torch.sort(descending=True) on the CPU, ties included: libstdc++'s std::sort (introsort: median-of-three
 * quicksort down to 16-element runs, heapsort past 2 log2 n levels, a final insertion sort) over (score, index)
 * pairs with torch's comparator "a before b" = (isnan(a) && !isnan(b)) || a > b. Equal scores come out in
 * whatever order that algorithm leaves them, which is what torchvision's batched_nms returns. */
static int torch_before(const scored *a, const scored *b) {
    return (isnan(a->score) && !isnan(b->score)) || a->score > b->score;
}

static void swap_scored(scored *a, scored *b) {
    const scored t = *a;
    *a = *b;
    *b = t;
}

static void unguarded_linear_insert(scored *last) {
    const scored val = *last;
    scored *next = last - 1;
    while (torch_before(&val, next)) {
        *last = *next;
        last = next--;
    }
    *last = val;
}

static void insertion_sort(scored *first, scored *last) {
    if (first == last) return;
    for (scored *i = first + 1; i != last; ++i) {
        if (torch_before(i, first)) {
            const scored val = *i;
            memmove(first + 1, first, sizeof(scored) * (size_t)(i - first));
            *first = val;
        } else {
            unguarded_linear_insert(i);
        }
    }
}

static void push_heap(scored *first, int64_t hole, int64_t top, scored value) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && torch_before(first + parent, &value)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = value;
}

static void adjust_heap(scored *first, int64_t hole, int64_t len, scored value) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (torch_before(first + child, first + (child - 1))) child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(first, hole, top, value);
}

static void heap_sort(scored *first, scored *last) {
    const int64_t len = last - first;
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(first, parent, len, first[parent]);
        if (parent == 0) break;
    }
    while (last - first > 1) {
        --last;
        const scored value = *last;
        *last = *first;
        adjust_heap(first, 0, last - first, value);
    }
}

static void move_median_to_first(scored *result, scored *a, scored *b, scored *c) {
    if (torch_before(a, b)) {
        if (torch_before(b, c))
            swap_scored(result, b);
        else if (torch_before(a, c))
            swap_scored(result, c);
        else
            swap_scored(result, a);
    } else if (torch_before(a, c)) {
        swap_scored(result, a);
    } else if (torch_before(b, c)) {
        swap_scored(result, c);
    } else {
        swap_scored(result, b);
    }
}

static scored *unguarded_partition(scored *first, scored *last, const scored *pivot) {
    for (;;) {
        while (torch_before(first, pivot))
            ++first;
        --last;
        while (torch_before(pivot, last))
            --last;
        if (!(first < last)) return first;
        swap_scored(first, last);
        ++first;
    }
}

#define STD_SORT_THRESHOLD 16

static void introsort_loop(scored *first, scored *last, int64_t depth_limit) {
    while (last - first > STD_SORT_THRESHOLD) {
        if (depth_limit == 0) {
            heap_sort(first, last);
            return;
        }
        --depth_limit;
        scored *mid = first + (last - first) / 2;
        move_median_to_first(first, first + 1, mid, last - 1);
        scored *cut = unguarded_partition(first + 1, last, first);
        introsort_loop(cut, last, depth_limit);
        last = cut;
    }
}

static void torch_sort_desc(scored *first, int64_t n) {
    if (n < 2) return;
    int64_t lg = 0;
    while ((n >> (lg + 1)) > 0)
        lg++;
    introsort_loop(first, first + n, 2 * lg);
    if (n > STD_SORT_THRESHOLD) {
        insertion_sort(first, first + STD_SORT_THRESHOLD);
        for (scored *i = first + STD_SORT_THRESHOLD; i != first + n; ++i)
            unguarded_linear_insert(i);
    } else {
        insertion_sort(first, first + n);
    }
}

/* Kept indices (ascending) reordered as torchvision's scores[keep].sort(descending=True) orders them. */
static int64_t sort_kept_by_score(const float *scores, int64_t *keep, int64_t k) {
    scored *order = malloc(sizeof(scored) * (size_t)(k ? k : 1));
    if (!order) return -1;
    for (int64_t i = 0; i < k; i++)
        order[i] = (scored){scores[keep[i]], keep[i]};
    torch_sort_desc(order, k);
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
