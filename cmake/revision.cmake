# Writes OUT (a C header defining GPTOSS_REVISION) from `git describe` of SOURCE_DIR, run at every
# build so the binary names the commit it was built from; "unknown" outside a git checkout. The
# file is rewritten only when the revision changes, so an unchanged tree recompiles nothing.
set(revision "unknown")
find_package(Git QUIET)
if(GIT_FOUND AND EXISTS "${SOURCE_DIR}/.git")
  execute_process(COMMAND "${GIT_EXECUTABLE}" -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                  OUTPUT_VARIABLE described OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE failed ERROR_QUIET)
  if(NOT failed AND described)
    set(revision "${described}")
  endif()
endif()
set(content "#define GPTOSS_REVISION \"${revision}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
