# Run at build time (not configure time) so --version names the commit that was actually built.
# Inputs: SOURCE_DIR, OUTPUT, VERSION, CUDA_DESCRIPTION.
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
execute_process(COMMAND git status --porcelain --untracked-files=no
  WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit "unknown")
elseif(dirty)
  set(commit "${commit}-dirty")
endif()
set(text "#pragma once\n#define AUTOGLM_VERSION \"${VERSION}\"\n#define AUTOGLM_GIT_COMMIT \"${commit}\"\n#define AUTOGLM_CUDA_DESCRIPTION \"${CUDA_DESCRIPTION}\"\n")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUTPUT} "${text}")
endif()
