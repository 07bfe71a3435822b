# Makes brisk.1 from launcher/brisk.1.in: @VERSION@, and @OPTIONS@ replaced by the
# roff the launcher prints from the library's option table (brisk options --man).
# cmake -DLAUNCHER=... -DIN=... -DOUT=... -DVERSION=... -P launcher/man.cmake
execute_process(COMMAND ${LAUNCHER} options --man OUTPUT_VARIABLE OPTIONS RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${LAUNCHER} options --man failed (${rc})")
endif()
configure_file(${IN} ${OUT} @ONLY)
