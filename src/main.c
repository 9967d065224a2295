/* Process wiring: arguments, configuration, process-wide library state, and the exit code.
 * Process-wide state lives here and nowhere else: curl_global_init(), libevent's threading
 * hooks, SIGPIPE, and the descriptor limit. */
#include "app.h"
#include "config.h"
#include "upstream.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f)
{
    fputs("usage: gatherd [--config FILE] [--listen ADDR] [--workers N] [--log-level LEVEL]\n"
          "               [--check-config] [--version] [--help]\n"
          "\n"
          "  --config FILE    JSON configuration (default: the built-in /tickers example)\n"
          "  --listen ADDR    HOST:PORT, [IPV6]:PORT or unix:PATH (overrides config and $PORT)\n"
          "  --workers N      event loops; 0 = one per usable CPU (overrides config)\n"
          "  --log-level L    debug, info, warn or error (overrides config)\n"
          "  --check-config   validate the configuration, print a summary, exit\n"
          "\n"
          "Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads --config.\n"
          "Exit codes: 0 clean, 1 runtime failure, 2 usage or configuration error.\n",
          f);
}

/* Many idle keep-alive clients plus upstream connections outgrow the usual soft limit of 1024;
 * take what the hard limit allows, as nginx's worker_rlimit_nofile would. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'}, {"log-level", required_argument, NULL, 'L'},
        {"check-config", no_argument, NULL, 'C'},  {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    struct app_opts opts = {NULL, NULL, -1, -1};
    int check = 0, c;

    while ((c = getopt_long(argc, argv, "c:l:w:L:CVh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opts.config_path = optarg;
            break;
        case 'l':
            opts.listen = optarg;
            break;
        case 'w':
            if (parse_int(optarg, 0, 256, &opts.workers) < 0) {
                fprintf(stderr, "gatherd: --workers: must be an integer from 0 to 256\n");
                return 2;
            }
            break;
        case 'L': {
            enum loglevel lvl;
            if (loglevel_parse(optarg, &lvl) < 0) {
                fprintf(stderr, "gatherd: --log-level: must be debug, info, warn or error\n");
                return 2;
            }
            opts.log_level = (int)lvl;
            break;
        }
        case 'C':
            check = 1;
            break;
        case 'V': {
            char v[256];
            app_versions(v, sizeof v, 0);
            printf("gatherd %s (%s)\n", GATHERD_VERSION, v);
            return 0;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gatherd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char err[1024];
    struct config *cfg = NULL;
    int rc = opts.config_path ? config_load_file(opts.config_path, &cfg, err, sizeof err)
                              : config_default(&cfg, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        return 2;
    }
    char spec[256];
    if (app_listen_spec(cfg, opts.listen, spec, sizeof spec, err, sizeof err) < 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        config_unref(cfg);
        return 2;
    }
    if (check) {
        for (size_t i = 0; i < cfg->nwarnings; i++)
            fprintf(stderr, "gatherd: warning: %s: %s\n", cfg->warnings[i].key,
                    cfg->warnings[i].detail);
        printf("gatherd: configuration OK (%s): %zu endpoint%s, %zu backend%s, listen %s, "
               "workers %d\n",
               opts.config_path ? opts.config_path : "built-in", cfg->nendpoints,
               cfg->nendpoints == 1 ? "" : "s", cfg->nbackends_total,
               cfg->nbackends_total == 1 ? "" : "s", spec,
               app_worker_count(opts.workers >= 0 ? opts.workers : cfg->workers));
        config_unref(cfg);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (upstream_global_init() != 0 || evthread_use_pthreads() != 0) {
        fprintf(stderr, "gatherd: cannot initialise libcurl or libevent threading\n");
        config_unref(cfg);
        return 1;
    }
    int code = app_run(cfg, &opts);
    curl_global_cleanup();
    libevent_global_shutdown();
    return code;
}
