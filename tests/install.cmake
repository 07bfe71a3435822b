# The installed tree, the launcher and the Debian package (labels tools, package):
#   install_tree  cmake --install into a scratch prefix; consumers built there with
#                 pkg-config and find_package(brisk CONFIG), and run
#   launcher      bin/brisk of this build: preloading, --stats, --set, refusals,
#                 the options listing against the README, the version everywhere
#   package       tools/package.sh's .deb installed into a scratch dpkg root, used
#                 and removed (label package; it builds the library once more, for
#                 /usr, in package-test/)
# The consumer built here (on the prefixed API alone, so on libc's malloc unless
# something preloads brisk) is the program the launcher test runs.
find_program(BRISK_BASH bash REQUIRED)
add_executable(install_consumer_api install/consumer/consumer.c)
target_compile_options(install_consumer_api PRIVATE ${BRISK_WARN})
target_link_libraries(install_consumer_api PRIVATE brisk_api ${CMAKE_DL_LIBS})

add_test(NAME install_tree
         COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/install/install_test.sh ${PROJECT_BINARY_DIR})
add_test(NAME launcher
         COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/install/launcher_test.sh ${PROJECT_BINARY_DIR}
                 $<TARGET_FILE:install_consumer_api>)
set_tests_properties(install_tree launcher PROPERTIES LABELS tools TIMEOUT 120)

find_program(BRISK_DPKG_DEB dpkg-deb)
if(BRISK_DPKG_DEB)
  add_test(NAME package
           COMMAND ${BRISK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/install/package_test.sh ${PROJECT_BINARY_DIR}
                   $<TARGET_FILE:install_consumer_api>)
  set_tests_properties(package PROPERTIES LABELS package TIMEOUT 300)
else()
  message(STATUS "dpkg-deb not found: no package test")
endif()
