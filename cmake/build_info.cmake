# Git sha, dirty flag, build type and compiler, regenerated on every build (cheap; the file only
# changes when the values do, so nothing relinks without reason).
set(RIDGELINE_BUILD_INFO_CPP ${CMAKE_BINARY_DIR}/generated/build_info.cpp)
add_custom_target(ridgeline_build_info_gen
  COMMAND ${CMAKE_COMMAND}
          -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
          -DOUTPUT=${RIDGELINE_BUILD_INFO_CPP}
          -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
          "-DCOMPILER=${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}"
          "-DCUDA_COMPILER=${CMAKE_CUDA_COMPILER_VERSION}"
          -DVERSION=${PROJECT_VERSION}
          -P ${CMAKE_SOURCE_DIR}/cmake/write_build_info.cmake
  BYPRODUCTS ${RIDGELINE_BUILD_INFO_CPP}
  COMMENT "ridgeline build info")
