/*
 * threads.c - making sure an OpenMP thread count can be honoured before a run asks for it.
 *
 * GNU OpenMP ends the whole process ("Thread creation failed") when it cannot start the threads of a parallel
 * region, e.g. thousands of threads in a process with a memory limit. Before the first run with more threads
 * than any earlier one, we start that many threads ourselves (same default stack size as libgomp's), all alive
 * at once, and report a status if the system refuses.
 */
#include <pthread.h>
#include <string.h>

#include "planner.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_go_cond = PTHREAD_COND_INITIALIZER;
static int g_go;
static int g_verified = 1; /* thread counts up to this were started successfully */

static void *wait_for_go(void *unused) {
    (void)unused;
    pthread_mutex_lock(&g_lock);
    while (!g_go)
        pthread_cond_wait(&g_go_cond, &g_lock);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

#define MAX_PROBED 4096

msv_status msv_check_threads(int threads, msv_error *err) {
    if (threads > MAX_PROBED)
        return msv_set_error(err, MSV_ERR_INVALID_ARGUMENT, "%d threads asked for; at most %d are supported", threads,
                             MAX_PROBED);
    pthread_mutex_lock(&g_lock);
    const int verified = g_verified;
    pthread_mutex_unlock(&g_lock);
    if (threads <= verified) return MSV_OK;

    static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER; /* one probe at a time */
    pthread_mutex_lock(&probe_lock);
    pthread_t ids[MAX_PROBED];
    int started = 0, failure = 0;
    pthread_mutex_lock(&g_lock);
    g_go = 0;
    pthread_mutex_unlock(&g_lock);
    while (started < threads - 1 && (failure = pthread_create(&ids[started], NULL, wait_for_go, NULL)) == 0)
        started++;
    pthread_mutex_lock(&g_lock);
    g_go = 1;
    pthread_cond_broadcast(&g_go_cond);
    if (!failure && threads > g_verified) g_verified = threads;
    pthread_mutex_unlock(&g_lock);
    for (int i = 0; i < started; i++)
        pthread_join(ids[i], NULL);
    pthread_mutex_unlock(&probe_lock);
    if (failure)
        return msv_set_error(err, MSV_ERR_OUT_OF_MEMORY,
                             "cannot run on %d threads: the system refused to start thread %d (%s); use fewer threads",
                             threads, started + 2, strerror(failure));
    return MSV_OK;
}
