# Tests of the tools (label tools): tools/bench_report.py, which turns the
# runs of tools/compare.sh into the table and plots and decides whether a run was
# served by the allocator it was meant to measure (Python's own unittest), and the
# runner itself on one benchmark instance.
find_program(BRISK_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT BRISK_PYTHON3)
  find_program(BRISK_PYTHON3 python3 REQUIRED)
endif()
add_test(NAME tools_bench_report
         COMMAND ${BRISK_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/tools/test_bench_report.py)
set_tests_properties(tools_bench_report PROPERTIES LABELS tools TIMEOUT 60)

# tools/compare.sh end to end on one benchmark instance (a few seconds): needs
# libbrisk.so and bench/brisk_bench from this build.
if(BRISK_BENCH)
  find_program(BRISK_BASH bash REQUIRED)
  add_test(NAME tools_compare_runner
           COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/tools/runner_test.sh ${PROJECT_BINARY_DIR})
  set_tests_properties(tools_compare_runner PROPERTIES LABELS tools TIMEOUT 120)
  # tools/callgrind.sh's filter: the names of the runs under a fixed iteration count.
  add_test(NAME tools_fixed_names
           COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/tools/fixed_names_test.sh ${PROJECT_BINARY_DIR})
  set_tests_properties(tools_fixed_names PROPERTIES LABELS tools TIMEOUT 60)
endif()

# tools/install-deps.sh: what is missing, the message to a user who is not root, and
# build directories left by a failed configure (a few seconds; installs nothing).
find_program(BRISK_BASH bash REQUIRED)
add_test(NAME tools_install_deps
         COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/tools/install_deps_test.sh)
set_tests_properties(tools_install_deps PROPERTIES LABELS tools TIMEOUT 120)
