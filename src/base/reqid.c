#include "reqid.h"

#include <stdio.h>
#include <string.h>

bool reqid_valid(const char *rid)
{
    if (rid == NULL)
        return false;
    size_t n = 0;
    for (const char *p = rid; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("._:@/+=-", c) != NULL;
        if (!ok || n >= REQID_MAX)
            return false;
    }
    return n > 0;
}

void reqid_generate(uint64_t *state, char *out)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    snprintf(out, REQID_MAX + 1, "%016llx", (unsigned long long)z);
}
