/* Statistics (stats.c): merged on demand from the layers' own counters; the
 * residency walk over their mappings, and path options' expansion. */

#ifndef BRISK_STATS_H
#define BRISK_STATS_H
#include "base.h"

#pragma GCC visibility push(hidden)

/* What of brisk's mappings is resident now, by layer (stats.c, "Residency"):
 * the figures of the JSON's "resident" object and of brisk_get_resident. */
void brisk__stats_resident(brisk_resident_t *out);
/* A path option with each %p replaced by the pid and %% by %; false if the
 * result does not fit in cap bytes. */
bool brisk__expand_path(const char *tmpl, char *out, size_t cap);

#pragma GCC visibility pop
#endif /* BRISK_STATS_H */
