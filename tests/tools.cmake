# Tests of the benchmark tools (label tools): tools/bench_report.py, which turns the
# runs of tools/compare.sh into the table and plots and decides whether a run was
# served by the allocator it was meant to measure. Python's own unittest, no build.
find_program(BRISK_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT BRISK_PYTHON3)
  find_program(BRISK_PYTHON3 python3 REQUIRED)
endif()
add_test(NAME tools_bench_report
         COMMAND ${BRISK_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/tools/test_bench_report.py)
set_tests_properties(tools_bench_report PROPERTIES LABELS tools TIMEOUT 60)
