/* epp_hash: the one hash function of the in-memory hash tables (consumer batches, caches,
 * rollup aggregation): FNV-1a over the bytes, started from a seed that mixes in the rest of a
 * key (a bucket, a kind), then a final avalanche so that the low bits index a table well.
 * Never returns 0 (tables use 0 for an empty slot). Not for anything an attacker chooses keys
 * against with a cost: it is not keyed.
 *
 * Pure; thread-safe. */
#ifndef EPP_HASH_H
#define EPP_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t epp_hash_bytes(uint64_t seed, const void *data, size_t len);

#endif
