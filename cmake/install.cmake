# Install (cmake --install BUILD --prefix P): the libraries, the header, the
# launcher and its man page, pkg-config files (brisk: the replacing library;
# brisk-api: the prefixed API alone) and a CMake package (find_package(brisk
# CONFIG): brisk::brisk, brisk::static, brisk::api). Both kinds of file find the
# tree relative to themselves, so the prefix may be chosen at install time.
include(CMakePackageConfigHelpers)

set_target_properties(brisk PROPERTIES EXPORT_NAME brisk)
set_target_properties(brisk_static PROPERTIES EXPORT_NAME static)
set_target_properties(brisk_api PROPERTIES EXPORT_NAME api)
install(TARGETS brisk brisk_static brisk_api EXPORT brisk-targets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS brisk_launcher RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/brisk.h include/brisk_metrics.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/brisk.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

set(brisk_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/brisk)
install(EXPORT brisk-targets NAMESPACE brisk:: DESTINATION ${brisk_cmake_dir})
configure_package_config_file(cmake/brisk-config.cmake.in
  ${PROJECT_BINARY_DIR}/brisk-config.cmake INSTALL_DESTINATION ${brisk_cmake_dir})
# 0.x: a new minor version may break the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/brisk-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/brisk-config.cmake ${PROJECT_BINARY_DIR}/brisk-config-version.cmake
        DESTINATION ${brisk_cmake_dir})

# pkg-config: the prefix is found from the .pc file's own place (${pcfiledir}).
file(RELATIVE_PATH brisk_pc_to_prefix ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" brisk_pc_to_prefix "${brisk_pc_to_prefix}")
foreach(pc brisk brisk-api)
  configure_file(cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
