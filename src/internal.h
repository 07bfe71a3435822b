/* Every layer's header at once, which every .c includes for now; the headers
 * themselves (base.h, os.h, ..., alloc.h) are one per layer, named after its .c. */
#ifndef BRISK_INTERNAL_H
#define BRISK_INTERNAL_H
#include "base.h"
#include "os.h"
#include "options.h"
#include "pagemap.h"
#include "meta.h"
#include "size_class.h"
#include "block.h"
#include "numa.h"
#include "page_heap.h"
#include "prof.h"
#include "large.h"
#include "small.h"
#include "thread_cache.h"
#include "guard.h"
#include "stats.h"
#include "metrics.h"
#include "init.h"
#include "alloc.h"
#endif /* BRISK_INTERNAL_H */
