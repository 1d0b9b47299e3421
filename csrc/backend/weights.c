/*
 * weights.c - packed weights: each constant reordered once per (form, layout) a primitive asks for, shared by all
 * plans of a session and by the sessions created with share_weights_with (reference counted, one lock: packing
 * happens while planning, which is rare).
 */
#include <pthread.h>
#include <stdlib.h>

#include "planner.h"

typedef struct packed {
    int tensor;
    msv_weight_form form;
    dnnl_memory_desc_t md;
    void *buf;
} packed;

struct msv_weight_store {
    pthread_mutex_t lock;
    int refs;
    packed *items;
    int n, cap;
};

msv_status msv_weight_store_create(msv_weight_store **out, msv_error *err) {
    msv_weight_store *w = calloc(1, sizeof(*w));
    if (!w) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return msv_set_error(err, MSV_ERR_BACKEND, "cannot create a lock");
    }
    w->refs = 1;
    *out = w;
    return MSV_OK;
}

msv_weight_store *msv_weight_store_ref(msv_weight_store *w) {
    pthread_mutex_lock(&w->lock);
    w->refs++;
    pthread_mutex_unlock(&w->lock);
    return w;
}

void msv_weight_store_unref(msv_weight_store *w) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    const int left = --w->refs;
    pthread_mutex_unlock(&w->lock);
    if (left > 0) return;
    for (int i = 0; i < w->n; i++) {
        free(w->items[i].buf);
        dnnl_memory_desc_destroy(w->items[i].md);
    }
    free(w->items);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static void *find_locked(msv_weight_store *w, int tensor, msv_weight_form form, const_dnnl_memory_desc_t md) {
    for (int i = 0; i < w->n; i++)
        if (w->items[i].tensor == tensor && w->items[i].form == form && dnnl_memory_desc_equal(w->items[i].md, md))
            return w->items[i].buf;
    return NULL;
}

void *msv_weight_store_find(msv_weight_store *w, int tensor, msv_weight_form form, const_dnnl_memory_desc_t md) {
    pthread_mutex_lock(&w->lock);
    void *buf = find_locked(w, tensor, form, md);
    pthread_mutex_unlock(&w->lock);
    return buf;
}

void *msv_weight_store_add(msv_weight_store *w, int tensor, msv_weight_form form, const_dnnl_memory_desc_t md,
                           void *buf) {
    pthread_mutex_lock(&w->lock);
    void *existing = find_locked(w, tensor, form, md);
    if (existing) {
        pthread_mutex_unlock(&w->lock);
        free(buf);
        return existing;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        packed *items = realloc(w->items, (size_t)cap * sizeof(*items));
        if (!items) {
            pthread_mutex_unlock(&w->lock);
            free(buf);
            return NULL;
        }
        w->items = items;
        w->cap = cap;
    }
    dnnl_memory_desc_t copy = msv_md_clone(md);
    if (!copy) {
        pthread_mutex_unlock(&w->lock);
        free(buf);
        return NULL;
    }
    w->items[w->n++] = (packed){tensor, form, copy, buf};
    pthread_mutex_unlock(&w->lock);
    return buf;
}
