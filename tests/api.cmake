# API-level tests (included from tests/CMakeLists.txt).
#   test_api        the brisk_* API, malloc stays glibc's (brisk_api)
#   test_override   the libc names when libbrisk.a is linked in (brisk_static)
#   test_bad_usage  double frees and foreign pointers abort with one "brisk: " line
#   test_guard      sampled guard pages: placement and reports (BRISK_GUARD_SAMPLE)
#   test_prof       heap profiles (BRISK_PROF): each site's estimate against the truth
#   stress          randomized multithreaded stress, 3 s; stress_long runs it 60 s
# The stress run is reproducible with STRESS_SEED (printed at start);
# STRESS_SECONDS sets its length.

brisk_add_test(test_api LABEL api SOURCES test_api.c LIBS brisk_api TIMEOUT 300)

brisk_add_test(test_override LABEL api SOURCES test_override.c LIBS brisk_static)
# Every call must reach the symbol: no folding of strdup, memset+malloc, etc.
target_compile_options(test_override PRIVATE -fno-builtin)

# Without guarded blocks: each case needs the small block it corrupts to be a
# span's (test_guard checks the guarded ones' answers).
brisk_add_test(test_bad_usage LABEL api SOURCES test_bad_usage.c LIBS brisk_api ENV "BRISK_GUARD_SAMPLE=0")

# Guarded blocks: every small block sampled, then (test_guard_rate) the default rate.
brisk_add_test(test_guard LABEL api SOURCES test_guard.c LIBS brisk_api ENV "BRISK_GUARD_SAMPLE=1")
add_test(NAME test_guard_rate COMMAND test_guard rate)
set_tests_properties(test_guard_rate PROPERTIES LABELS api TIMEOUT 120)

# Heap profiles: every site's estimated live bytes within 5 standard deviations (and two blocks)
# of the truth; the dump at exit and on the trigger file from a child. Then the
# same with the guard sampler more frequent than the profile's (the profile takes
# one event in four, and guarded blocks carry records too); and the profile read
# by google-pprof (skipped without it: Debian google-perftools).
brisk_add_test(test_prof LABEL api SOURCES test_prof.c LIBS brisk_api m TIMEOUT 180
  ENV "BRISK_PROF=1;BRISK_PROF_SAMPLE=16K;BRISK_PROF_FILE=")
add_test(NAME test_prof_guarded COMMAND test_prof)
set_tests_properties(test_prof_guarded PROPERTIES LABELS api TIMEOUT 180
  ENVIRONMENT "BRISK_PROF=1;BRISK_PROF_SAMPLE=16K;BRISK_PROF_FILE=;BRISK_GUARD_SAMPLE=4K")
find_program(BRISK_BASH bash REQUIRED)
add_test(NAME test_prof_pprof COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/prof_pprof.sh $<TARGET_FILE:test_prof>)
set_tests_properties(test_prof_pprof PROPERTIES LABELS api TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "BRISK_PROF=1;BRISK_PROF_SAMPLE=16K;BRISK_PROF_FILE=")

brisk_add_test(stress LABEL stress SOURCES test_stress.c LIBS brisk_static)
target_compile_options(stress PRIVATE -fno-builtin)

# Again with four page-heap arenas (one per 4 CPUs makes a single one here):
# spans and large runs taken and freed across arenas by every thread at once.
add_test(NAME stress_arenas COMMAND stress)
set_tests_properties(stress_arenas PROPERTIES LABELS stress ENVIRONMENT "BRISK_HEAP_SHARDS=4")

# The same binary as a 60-second soak, excluded by `ctest -LE long`.
add_test(NAME stress_long COMMAND stress)
set_tests_properties(stress_long PROPERTIES LABELS long TIMEOUT 300
  ENVIRONMENT "STRESS_SECONDS=60")

# Resident memory against the kernel's Rss (/proc/self/smaps) after a mixed
# workload, large blocks mapped alone from 2 MiB and guarded blocks included.
brisk_add_test(test_resident LABEL api SOURCES test_resident.c LIBS brisk_static
  ENV "BRISK_LARGE_MMAP=2M;BRISK_GUARD_SAMPLE=16K")
target_include_directories(test_resident PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
# Its walk over four arenas (every arena's lock at once, dropped for each mincore).
add_test(NAME test_resident_arenas COMMAND test_resident)
set_tests_properties(test_resident_arenas PROPERTIES LABELS api
  ENVIRONMENT "BRISK_LARGE_MMAP=2M;BRISK_GUARD_SAMPLE=16K;BRISK_HEAP_SHARDS=4")
