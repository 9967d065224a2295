/* The process: the listening socket, the workers, and the control thread that turns signals
 * into drains and reloads. The control thread runs its own small event_base for signals and
 * worker notifications; it never serves a request. */
#ifndef GATHERD_APP_H
#define GATHERD_APP_H

#include <stddef.h>

struct config;

struct app_opts {
    const char *config_path; /* NULL: built-in configuration, SIGHUP has nothing to re-read */
    const char *listen;      /* --listen, or NULL */
    int workers;             /* --workers, or -1 */
    int log_level;           /* --log-level as enum loglevel, or -1 */
};

/* The listen address in force: --listen, the config's key, $PORT, then 0.0.0.0:5042. Writes it
 * to out (a valid address is at most 112 bytes); -EINVAL with a reason naming the
 * setting in err if --listen is not an address (laddr_check()) or $PORT not a port number. */
int app_listen_spec(const struct config *cfg, const char *cli, char *out, size_t outlen, char *err,
                    size_t errlen);

/* Resolves a workers setting (0: one per usable CPU, see usable_cpus() in app.c; at most
 * 256). */
int app_worker_count(int configured);

/* Serves until SIGTERM or SIGINT has drained every worker. Takes the reference on cfg.
 * Returns the process exit code. */
int app_run(struct config *cfg, const struct app_opts *opts);

/* "libmicrohttpd 0.9.75, libcurl 7.88.1, ..." for --version and gatherd_build_info. */
void app_versions(char *out, size_t outlen, int as_labels);

#endif
