#include "loglevel.h"

#include <errno.h>
#include <string.h>

static const char *const names[LOGLEVEL_COUNT] = {"debug", "info", "warn", "error"};

const char *loglevel_name(enum loglevel level)
{
    return (unsigned)level < LOGLEVEL_COUNT ? names[level] : "unknown";
}

int loglevel_parse(const char *s, enum loglevel *out)
{
    for (int i = 0; i < LOGLEVEL_COUNT; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum loglevel)i;
            return 0;
        }
    return -EINVAL;
}
