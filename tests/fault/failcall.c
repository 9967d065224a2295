/* An LD_PRELOAD shim that makes one call of a chosen library function fail, so that the start-up
 * paths nothing else can reach (a daemon that does not start, a thread that cannot be created)
 * run in the real binary. Configured by the environment:
 *   GD_FAIL_FUNC   the function: pthread_create, MHD_start_daemon or event_base_new_with_config
 *   GD_FAIL_CALL   which call fails, counting from 1 (every call of that function in the
 *                  process, whichever thread makes it); 0 or unset: none
 *   GD_FAIL_ERRNO  the error, as a number or a name (EAGAIN, ENOMEM, EMFILE, ...); EAGAIN
 *                  when unset
 * Every other call goes to the real function. When the fault fires, a line
 * "failcall: <func> call <n> fails with <errno name>" goes to stderr, so a test can tell that
 * the path it means to exercise really ran.
 *
 * A failed pthread_create does what glibc 2.36 does when clone() fails: it has already stored
 * the new thread's descriptor in *thread, and frees it before returning the error. Here the
 * descriptor is the address of a page that can never be read, so using it (pthread_join) faults
 * at once instead of corrupting glibc's stack cache quietly. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The libraries' types, only as far as the shim passes them on: it links none of them. */
struct MHD_Daemon;
struct event_base;
struct event_config;

static const struct {
    const char *name;
    int value;
} errnos[] = {
    {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EMFILE", EMFILE}, {"ENFILE", ENFILE},
    {"EPERM", EPERM},   {"EINVAL", EINVAL}, {"EACCES", EACCES}, {"EADDRINUSE", EADDRINUSE},
};

static int parse_errno(const char *s)
{
    if (s == NULL || *s == '\0')
        return EAGAIN;
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (strcmp(s, errnos[i].name) == 0)
            return errnos[i].value;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v > 0 && v < 4096 ? (int)v : EAGAIN;
}

static const char *errno_name(int e)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (errnos[i].value == e)
            return errnos[i].name;
    return "an error";
}

/* Counts the calls of `func` and says whether this one is the one to fail; its errno then. */
static int should_fail(const char *func, atomic_long *calls)
{
    const char *want = getenv("GD_FAIL_FUNC");
    const char *nth = getenv("GD_FAIL_CALL");
    if (want == NULL || strcmp(want, func) != 0 || nth == NULL)
        return 0;
    long n = atomic_fetch_add(calls, 1) + 1;
    if (n != strtol(nth, NULL, 10))
        return 0;
    int e = parse_errno(getenv("GD_FAIL_ERRNO"));
    char line[160];
    int len = snprintf(line, sizeof line, "failcall: %s call %ld fails with %s\n", func, n,
                       errno_name(e));
    if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0) {
        /* Nothing to do: the fault happens anyway. */
    }
    return e;
}

static void *next(const char *func)
{
    void *f = dlsym(RTLD_NEXT, func);
    if (f == NULL) {
        fprintf(stderr, "failcall: no %s after the shim: %s\n", func, dlerror());
        abort();
    }
    return f;
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg)
{
    static atomic_long calls;
    int e = should_fail("pthread_create", &calls);
    if (e != 0) {
        long page = sysconf(_SC_PAGESIZE);
        void *freed = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        *thread = (pthread_t)(freed == MAP_FAILED ? NULL : freed);
        return e;
    }
    int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
        next("pthread_create");
    return real(thread, attr, start, arg);
}

/* MHD_start_daemon() is variadic: the real work is MHD_start_daemon_va(), which it calls. */
typedef struct MHD_Daemon *(*mhd_start_va_fn)(unsigned int, unsigned short, void *, void *, void *,
                                              void *, va_list);

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, unsigned short port, void *apc,
                                    void *apc_cls, void *dh, void *dh_cls, ...)
{
    static atomic_long calls;
    int e = should_fail("MHD_start_daemon", &calls);
    if (e != 0) {
        errno = e;
        return NULL;
    }
    mhd_start_va_fn real = (mhd_start_va_fn)next("MHD_start_daemon_va");
    va_list ap;
    va_start(ap, dh_cls);
    struct MHD_Daemon *d = real(flags, port, apc, apc_cls, dh, dh_cls, ap);
    va_end(ap);
    return d;
}

struct event_base *event_base_new_with_config(const struct event_config *cfg)
{
    static atomic_long calls;
    int e = should_fail("event_base_new_with_config", &calls);
    if (e != 0) {
        errno = e;
        return NULL;
    }
    struct event_base *(*real)(const struct event_config *) = next("event_base_new_with_config");
    return real(cfg);
}
