/* For the module tests only (tests/test_*.c): every layer's header at once. No
 * file of the library includes it; each .c includes its own header and those of
 * the layers it calls, so that a call upwards shows in its includes. */
#ifndef BRISK_INTERNAL_H
#define BRISK_INTERNAL_H
#include "base.h"
#include "counters.h"
#include "os.h"
#include "options.h"
#include "pagemap.h"
#include "meta.h"
#include "boot.h"
#include "size_class.h"
#include "block.h"
#include "numa.h"
#include "page_heap.h"
#include "backtrace.h"
#include "prof.h"
#include "large.h"
#include "small.h"
#include "thread_cache.h"
#include "guard.h"
#include "sample.h"
#include "stats.h"
#include "metrics.h"
#include "init.h"
#include "alloc.h"
#endif /* BRISK_INTERNAL_H */
