/* auth.c: --api-key: every endpoint but /health wants "Authorization: Bearer KEY", as OpenAI's
 * clients send it. The key is compared in time that does not depend on where it differs, so
 * that response times do not give it away byte by byte. */
#include "server/server_impl.h"

#include <strings.h>

int vl_auth_ok(const char *api_key, const char *authorization) {
    if (!api_key) return 1;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return 0;
    const char *given = authorization + 7;
    while (*given == ' ') given++;
    size_t n = strlen(api_key), m = strlen(given);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(api_key[i] ^ given[i < m ? i : 0]);
    return diff == 0;
}
