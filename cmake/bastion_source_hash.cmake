# bastion_source_hash(HEADER MACRO INPUTS...): a build rule writing HEADER, which defines MACRO as
# a hash of INPUTS and the compile flags. Kernel variants carry it as their source hash, so
# tuning rows are dropped whenever a kernel's code or build options change.
function(bastion_source_hash header macro)
  string(REPLACE ";" "|" list "${ARGN}")
  string(TOUPPER "${CMAKE_BUILD_TYPE}" build_type)
  set(flags "${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION} ${CMAKE_C_FLAGS} ${CMAKE_C_FLAGS_${build_type}} ${BASTION_SANITIZE}")
  add_custom_command(OUTPUT ${header}
    COMMAND ${CMAKE_COMMAND} "-DOUT=${header}" "-DNAME=${macro}" "-DINPUTS=${list}"
            "-DFLAGS=${flags}" -P ${PROJECT_SOURCE_DIR}/cmake/source_hash.cmake
    DEPENDS ${ARGN} ${PROJECT_SOURCE_DIR}/cmake/source_hash.cmake
    COMMENT "Hashing the sources behind ${macro}"
    VERBATIM)
endfunction()
