/* UUIDs: parsing, formatting, UUIDv7 generation and name-based UUIDv5 (RFC 9562). Thread-safe. */
#ifndef EPP_UUID_H
#define EPP_UUID_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t b[16];
} epp_uuid_t;

#define EPP_UUID_STRLEN 36

/* Parses the canonical 8-4-4-4-12 hex form (either case). No braces, no "urn:uuid:".
 * Returns 0 or EPP_EINVAL. */
int epp_uuid_parse(const char *s, size_t len, epp_uuid_t *out);

/* Writes the lower-case canonical form and a NUL: out must hold EPP_UUID_STRLEN + 1 bytes. */
void epp_uuid_format(const epp_uuid_t *u, char *out);

/* A new UUIDv7: 48-bit Unix milliseconds, then a counter/random tail. Values made by one
 * process are strictly increasing (monotonic even when the clock steps back), from any thread. */
void epp_uuid_v7(epp_uuid_t *out);

/* The UUIDv5 of name (len bytes, any content) in namespace ns: the same (ns, name) always gives
 * the same UUID, on every machine. */
void epp_uuid_v5(const epp_uuid_t *ns, const void *name, size_t len, epp_uuid_t *out);

/* The version nibble (7 for v7, 4 for v4...). */
int epp_uuid_version(const epp_uuid_t *u);

#endif
