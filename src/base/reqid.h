/* Request ids: the X-Request-Id a request is known by in answers, upstream calls and logs. */
#ifndef GATHERD_REQID_H
#define GATHERD_REQID_H

#include <stdbool.h>
#include <stdint.h>

/* Longest id, without its NUL. Every buffer that holds one is REQID_MAX + 1 bytes. */
#define REQID_MAX 128

/* Whether a client-supplied id may be used as ours: 1 to REQID_MAX characters from
 * [A-Za-z0-9._:@/+=-], so it is safe in headers, logs and JSON without escaping. */
bool reqid_valid(const char *rid);

/* Writes a new 16-hex-digit id to out (REQID_MAX + 1 bytes), advancing *state: splitmix64 over a
 * per-worker random seed, unique enough to correlate logs, and no system call. */
void reqid_generate(uint64_t *state, char *out);

#endif
