# Module tests: each links the prefixed-API library and reaches the internals
# through src/internal.h.
# They check one layer's exact state (a block's span, a thread's lock count, a
# spare large block): without guarded blocks, which are another layer's
# (guard.c, tested by test_guard) and would fall at random among theirs.
foreach(t size_class pagemap thread_cache large options backtrace lock)
  brisk_add_test(test_${t} LABEL unit SOURCES test_${t}.c LIBS brisk_api ENV "BRISK_GUARD_SAMPLE=0")
endforeach()
# Three arenas dealt round robin, whatever the machine's CPUs; then again with
# arenas on demand (the default), for the tests of each (test_page_heap.c, "Arenas").
brisk_add_test(test_page_heap LABEL unit SOURCES test_page_heap.c LIBS brisk_api
  ENV "BRISK_GUARD_SAMPLE=0" "BRISK_HEAP_SHARDS=3")
add_test(NAME test_page_heap_on_demand COMMAND test_page_heap)
set_tests_properties(test_page_heap_on_demand PROPERTIES LABELS unit
  ENVIRONMENT "BRISK_GUARD_SAMPLE=0;BRISK_HEAP_SHARDS=0")

# NUMA bookkeeping on made-up machines (a replaced OS seam; hwloc synthetic and
# XML topologies from tests/data). It links libbrisk.a, so hwloc runs on brisk.
brisk_add_test(test_numa LABEL unit SOURCES test_numa.c LIBS brisk_static PkgConfig::HWLOC)
target_compile_definitions(test_numa PRIVATE BRISK_TEST_DATA="${CMAKE_CURRENT_SOURCE_DIR}/data")
# It checks where every early block's pages go: a guarded block (guard.c) is not
# in the heap that discovery moves, its pages are where the kernel's first touch
# put them.
set_tests_properties(test_numa PROPERTIES ENVIRONMENT "BRISK_GUARD_SAMPLE=0")

# Idle threads given back by the purge tick (thread_cache.c, "Idle threads"): a
# purge delay of a few milliseconds, so that a thread is idle after two of them.
brisk_add_test(test_reclaim LABEL unit SOURCES test_reclaim.c LIBS brisk_api
  ENV "BRISK_GUARD_SAMPLE=0" "BRISK_PURGE_DELAY_MS=5")
# Its stress of sleeping and waking threads for 30 s, excluded by `ctest -LE long`.
add_test(NAME test_reclaim_long COMMAND test_reclaim)
set_tests_properties(test_reclaim_long PROPERTIES LABELS long TIMEOUT 300
  ENVIRONMENT "BRISK_GUARD_SAMPLE=0;BRISK_PURGE_DELAY_MS=5;RECLAIM_STRESS_MS=30000")
