/* brisk_bench: every benchmark of micro.c and scal_*.c in one program. It does not
 * link brisk: LD_PRELOAD chooses the allocator, and the JSON context's
 * malloc_provider says which one served the run. See bench/README.md. */
#include "shim/bench_shim.h"

int main(int argc, char **argv) { return bs_main(argc, argv); }
