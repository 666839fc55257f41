// Result files: writability checks and atomic replacement keep what was already written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;

TEST(Files, AtomicWriteReplacesContent) {
  const fs::path p = fs::temp_directory_path() / "ridgeline_files_test.json";
  write_atomically(p, "first");
  write_atomically(p, "second");
  EXPECT_EQ(read_text_file(p), "second");
  fs::remove(p);
}

TEST(Files, UnwritableDirectoryIsAClearError) {
  EXPECT_THROW(check_writable("/nonexistent-dir/x.json"), io_error);
  EXPECT_THROW(check_writable(fs::temp_directory_path()), io_error);  // a directory
  EXPECT_THROW(write_atomically("/nonexistent-dir/x.json", "x"), io_error);
}

TEST(Files, FailedWriteKeepsExistingFile) {
  const fs::path dir = fs::temp_directory_path() / "ridgeline_files_ro";
  fs::create_directories(dir);
  const fs::path p = dir / "result.json";
  write_atomically(p, "precious");
  // A rename onto a directory fails: the existing file must be untouched and no temp left behind.
  const fs::path target_dir = dir / "sub";
  fs::create_directories(target_dir);
  EXPECT_THROW(write_atomically(target_dir, "x"), io_error);
  EXPECT_EQ(read_text_file(p), "precious");
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
}
