// What binary produced a result: git sha and dirty flag at build time, build type, compilers.
#pragma once

namespace ridgeline {

struct build_info {
  const char* git_sha;
  bool git_dirty;
  const char* build_type;
  const char* cxx_compiler;
  const char* cuda_compiler;  // empty when built without CUDA
  const char* version;
};

const build_info& current_build();

}  // namespace ridgeline
