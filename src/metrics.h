/* Live metrics (metrics.c), BRISK_METRICS: the file is made at start-up, rewritten
 * by the purge thread at each tick, removed at exit. */

#ifndef BRISK_METRICS_LAYER_H
#define BRISK_METRICS_LAYER_H
#include "base.h"

#pragma GCC visibility push(hidden)

void brisk__metrics_start(void);
void brisk__metrics_publish(void);
void brisk__metrics_at_exit(void);
bool brisk__metrics_wanted(void); /* set, and the purge thread allowed: it must run */

#pragma GCC visibility pop
#endif /* BRISK_METRICS_LAYER_H */
