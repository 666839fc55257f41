// A fresh folder per test under the system's temporary directory (named by the process and the
// running test, so parallel test processes never share one), removed with everything in it.
//   ridgeline::test::temp_dir dir("gguf");   // /tmp/ridgeline_gguf_<pid>_<test name>/
//   fs::path p = dir.write("x.gguf", bytes);
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace ridgeline::test {

struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("ridgeline_" + tag + "_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  // Writes `content` byte for byte to `name` in the folder; returns its path.
  std::filesystem::path write(const std::string& name, const std::string& content) const {
    std::ofstream out(path / name, std::ios::binary);
    out << content;
    return path / name;
  }
};

}  // namespace ridgeline::test
