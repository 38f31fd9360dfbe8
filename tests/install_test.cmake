# Installs jetforge from BUILD_DIR into a scratch prefix, then configures, builds and runs a separate consumer
# project that uses find_package(jetforge) and links jetforge::runtime.
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
foreach(step
    "${CMAKE_COMMAND};--install;${BUILD_DIR};--prefix;${prefix}"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR}/tests/install_consumer;-B;${WORK_DIR}/consumer;-DCMAKE_PREFIX_PATH=${prefix};-DCUDAToolkit_ROOT=${CUDA_ROOT}"
    "${CMAKE_COMMAND};--build;${WORK_DIR}/consumer"
    "${WORK_DIR}/consumer/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "install test step failed (${result}): ${step}\n${out}\n${err}")
  endif()
endforeach()
message(STATUS "${out}")
