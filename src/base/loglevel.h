/* Log levels: what the configuration, the command line and the logger share. A leaf. */
#ifndef GATHERD_LOGLEVEL_H
#define GATHERD_LOGLEVEL_H

enum loglevel { LOGLEVEL_DEBUG, LOGLEVEL_INFO, LOGLEVEL_WARN, LOGLEVEL_ERROR, LOGLEVEL_COUNT };

/* "debug", "info", "warn", "error". */
const char *loglevel_name(enum loglevel level);

/* 0 and the level in *out, or -EINVAL for any other word. */
int loglevel_parse(const char *s, enum loglevel *out);

#endif
