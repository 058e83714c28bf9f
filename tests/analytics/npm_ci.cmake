# Installs the test tools pinned in tests/analytics/package-lock.json into DST (the build
# directory), once per lock file: skipped when DST already holds an install of the same lock.
file(MAKE_DIRECTORY ${DST})
set(stamp ${DST}/.installed-lock)
file(READ ${SRC}/package-lock.json lock)
if(EXISTS ${stamp} AND EXISTS ${DST}/node_modules)
    file(READ ${stamp} old)
    if(old STREQUAL lock)
        message(STATUS "npm tools up to date in ${DST}")
        return()
    endif()
endif()
file(COPY ${SRC}/package.json ${SRC}/package-lock.json DESTINATION ${DST})
execute_process(COMMAND npm ci --no-audit --no-fund --loglevel=error WORKING_DIRECTORY ${DST}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "npm ci failed in ${DST} (${rc})")
endif()
file(WRITE ${stamp} "${lock}")
