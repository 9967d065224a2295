/* Helpers the unit tests of the core share: a configuration parsed from a string literal, and a
 * malloc'd copy of a body for agg_complete(), which takes ownership of it. */
#ifndef GATHERD_TESTCFG_H
#define GATHERD_TESTCFG_H

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline char *dup_s(const char *s)
{
    return strdup(s);
}

/* NULL, with the reason as a TAP comment, when the configuration is refused. */
static inline struct config *parse(const char *json)
{
    char err[512] = "";
    struct config *cfg = NULL;
    if (config_parse(json, strlen(json), "t", &cfg, err, sizeof err) < 0)
        printf("# config: %s\n", err);
    return cfg;
}

#endif
