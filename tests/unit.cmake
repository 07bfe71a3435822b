# Module tests: each links the prefixed-API library and reaches the internals
# through src/internal.h.
foreach(t size_class pagemap page_heap thread_cache large options)
  brisk_add_test(test_${t} LABEL unit SOURCES test_${t}.c LIBS brisk_api)
endforeach()
# Its lock counts are exact: no sampled block, whose free takes the guard lock.
set_tests_properties(test_thread_cache PROPERTIES ENVIRONMENT "BRISK_GUARD_SAMPLE=0")

# NUMA bookkeeping on made-up machines (a replaced OS seam; hwloc synthetic and
# XML topologies from tests/data). It links libbrisk.a, so hwloc runs on brisk.
brisk_add_test(test_numa LABEL unit SOURCES test_numa.c LIBS brisk_static PkgConfig::HWLOC)
target_compile_definitions(test_numa PRIVATE BRISK_TEST_DATA="${CMAKE_CURRENT_SOURCE_DIR}/data")
# It checks where every early block's pages go: a guarded block (guard.c) is not
# in the heap that discovery moves, its pages are where the kernel's first touch
# put them.
set_tests_properties(test_numa PROPERTIES ENVIRONMENT "BRISK_GUARD_SAMPLE=0")
