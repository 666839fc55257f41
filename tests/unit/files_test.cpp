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

TEST(Files, GzipNamesAreWrittenCompressedAndReadBack) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto gz = dir / "ridgeline_files_test.json.gz";
  std::string text(200000, 'x');
  for (std::size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
  write_atomically(gz, text);
  const auto size = std::filesystem::file_size(gz);
  EXPECT_LT(size, text.size() / 4) << "not compressed";
  std::ifstream raw(gz, std::ios::binary);
  EXPECT_EQ(raw.get(), 0x1f);
  EXPECT_EQ(raw.get(), 0x8b);
  EXPECT_EQ(read_text_file(gz), text);
  // A truncated gzip file is one clear error, not a partial read.
  std::string bytes;
  {
    std::ifstream in(gz, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto cut = dir / "ridgeline_files_test_cut.json.gz";
  std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  try {
    read_text_file(cut);
    FAIL() << "a truncated gzip file was read";
  } catch (const io_error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt or truncated gzip"), std::string::npos) << e.what();
  }
  std::filesystem::remove(gz);
  std::filesystem::remove(cut);
}
