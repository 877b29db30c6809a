# git_commit.cmake: writes OUT (vl_git_commit.h) with the short commit of SRC, "unknown" outside
# a git checkout; rewrites it only when the commit changed, so that nothing rebuilds needlessly.
execute_process(COMMAND git -C ${SRC} rev-parse --short=10 HEAD
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit "unknown")
endif()
set(text "#define VL_GIT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
