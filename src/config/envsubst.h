/* ${NAME} expansion for configuration values, so secrets stay out of the file. */
#ifndef GATHERD_ENVSUBST_H
#define GATHERD_ENVSUBST_H

#include <stddef.h>

/* Looks a variable up; returns NULL when it is unset. getenv() fits (with a cast-free wrapper).*/
typedef const char *(*envsubst_lookup_fn)(const char *name, void *ctx);

/* Expands every ${NAME} in `in` (NAME: [A-Za-z_][A-Za-z0-9_]*), and "$$" to "$"; any other '$'
 * stays as it is. Returns 0 and a malloc'd string in *out (the caller frees it), or a negative
 * errno-style code with a reason written to err: -EINVAL for a malformed reference, -ENOENT for
 * an unset variable (the reason names it), -ENOMEM. */
int envsubst_expand(const char *in, envsubst_lookup_fn lookup, void *ctx, char **out, char *err,
                    size_t errlen);

#endif
