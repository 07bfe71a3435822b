# Module tests: each links the prefixed-API library and reaches the internals
# through src/internal.h.
foreach(t size_class pagemap page_heap thread_cache large options)
  brisk_add_test(test_${t} LABEL unit SOURCES test_${t}.c LIBS brisk_api)
endforeach()
