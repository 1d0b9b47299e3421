/* weights.c - named borrowed weights and architecture settings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

typedef struct msv_weight_entry {
    char *name;
    msv_shape shape;
    const float *data;
    int used; /* looked up by a builder (a lookup is a logical read, hence mutable in a const table) */
} msv_weight_entry;

struct msv_weights {
    msv_weight_entry *items;
    int n, cap;
};

msv_status msv_weights_create(msv_weights **out, msv_error *err) {
    *out = calloc(1, sizeof(msv_weights));
    if (!*out) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory creating the weight table");
    return MSV_OK;
}

void msv_weights_destroy(msv_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++)
        free(w->items[i].name);
    free(w->items);
    free(w);
}

static msv_weight_entry *find_weight(const msv_weights *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->items[i].name, name) == 0) return &w->items[i];
    return NULL;
}

int msv_weights_unused(const msv_weights *w, const char **names, int cap) {
    int n = 0;
    for (int i = 0; i < w->n; i++)
        if (!w->items[i].used) {
            if (n < cap) names[n] = w->items[i].name;
            n++;
        }
    return n;
}

msv_status msv_weights_add(msv_weights *w, const char *name, msv_shape shape, const float *data, msv_error *err) {
    if (!name || !data || shape.ndims < 0 || shape.ndims > MSV_MAX_DIMS)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "invalid weight '%s'", name ? name : "(null)");
    if (find_weight(w, name)) return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "duplicate weight '%s'", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        msv_weight_entry *items = realloc(w->items, (size_t)cap * sizeof(*items));
        if (!items) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory adding weight '%s'", name);
        w->items = items;
        w->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory adding weight '%s'", name);
    w->items[w->n++] = (msv_weight_entry){copy, shape, data, 0};
    return MSV_OK;
}

int msv_weights_has(const msv_weights *w, const char *name) { return find_weight(w, name) != NULL; }

static void format_shape(char *buf, size_t cap, msv_shape s) {
    size_t used = 0;
    buf[0] = 0;
    used += (size_t)snprintf(buf + used, cap - used, "(");
    for (int i = 0; i < s.ndims && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)s.dims[i]);
    if (used < cap) snprintf(buf + used, cap - used, ")");
}

const float *msv_weights_get(const msv_weights *w, const char *name, msv_shape expected, msv_error *err) {
    msv_weight_entry *e = find_weight(w, name);
    if (!e) {
        msv_set_error(err, MSV_ERR_MISSING_WEIGHT, "missing weight '%s'", name);
        return NULL;
    }
    e->used = 1;
    int ok = e->shape.ndims == expected.ndims;
    for (int i = 0; ok && i < expected.ndims; i++)
        if (expected.dims[i] >= 0 && expected.dims[i] != e->shape.dims[i]) ok = 0;
    if (!ok) {
        char want[96], got[96];
        format_shape(want, sizeof want, expected);
        format_shape(got, sizeof got, e->shape);
        msv_set_error(err, MSV_ERR_WEIGHT_SHAPE, "weight '%s' has shape %s, expected %s", name, got, want);
        return NULL;
    }
    return e->data;
}

typedef struct msv_setting {
    char *name;
    int n;
    double *values;
} msv_setting;

struct msv_settings {
    msv_setting *items;
    int n, cap;
};

msv_status msv_settings_create(msv_settings **out, msv_error *err) {
    *out = calloc(1, sizeof(msv_settings));
    if (!*out) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory creating settings");
    return MSV_OK;
}

void msv_settings_destroy(msv_settings *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->items[i].name);
        free(s->items[i].values);
    }
    free(s->items);
    free(s);
}

msv_status msv_settings_set(msv_settings *s, const char *name, int n, const double *values, msv_error *err) {
    if (!name || n < 0 || (n > 0 && !values))
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "invalid setting '%s'", name ? name : "(null)");
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        msv_setting *items = realloc(s->items, (size_t)cap * sizeof(*items));
        if (!items) return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
        s->items = items;
        s->cap = cap;
    }
    msv_setting it = {strdup(name), n, malloc(sizeof(double) * (size_t)(n ? n : 1))};
    if (!it.name || !it.values) {
        free(it.name);
        free(it.values);
        return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (n) memcpy(it.values, values, sizeof(double) * (size_t)n);
    s->items[s->n++] = it;
    return MSV_OK;
}

int msv_settings_get(const msv_settings *s, const char *name, double *values, int cap) {
    for (int i = s->n - 1; i >= 0; i--) { /* last set wins */
        if (strcmp(s->items[i].name, name) == 0) {
            int n = s->items[i].n;
            for (int k = 0; k < n && k < cap; k++)
                values[k] = s->items[i].values[k];
            return n;
        }
    }
    return 0;
}
