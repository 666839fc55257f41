// Reading and writing result files without losing what is already there: outputs are checked for
// writability before any work starts and replaced atomically (write to a temporary, then rename).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace ridgeline {

// Throws io_error with one clear line when `path` cannot be created or replaced.
void check_writable(const std::filesystem::path& path);
// Writes `content` to a temporary beside `path` and renames it over `path`; throws io_error.
// A path ending in .gz gets the content gzip-compressed (readable by gunzip and zcat).
void write_atomically(const std::filesystem::path& path, std::string_view content);
// Whole file as a string; throws io_error when it cannot be read.
// Gzip-compressed files (by their magic bytes) come back decompressed.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ridgeline
