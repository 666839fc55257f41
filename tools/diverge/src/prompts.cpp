// Prompt sets of `ridgeline diverge run` (see diverge.hpp): "random:N:LEN:SEED" sets, prompt
// files (token ids per line, or a JSON array of arrays), their FNV-1a identity hash, and the
// hash of a logits row; plus the FNV-1a and row-index helpers of diverge_detail.hpp.
#include <algorithm>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <stdexcept>

#include "diverge_detail.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/diverge/diverge.hpp"

namespace ridgeline::bench {

using nlohmann::json;

namespace detail {

void fnv_bytes(std::uint64_t& h, const void* data, std::size_t n) {
  constexpr std::uint64_t k_fnv_prime = 0x100000001b3ULL;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= k_fnv_prime;
  }
}

void fnv_u32(std::uint64_t& h, std::uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                              static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 24)};
  fnv_bytes(h, b, 4);
}

std::string hex64(std::uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h));
  return s;
}

std::vector<const json*> index_rows(const json& doc) {
  const auto prompts = doc["config"]["prompt_set"]["prompts"].get<std::size_t>();
  const auto steps = doc["config"]["steps"].get<std::size_t>();
  std::vector<const json*> index(prompts * steps, nullptr);
  for (const auto& r : doc["rows"]) {
    index[r["prompt"].get<std::size_t>() * steps + r["step"].get<std::size_t>()] = &r;
  }
  return index;
}

}  // namespace detail

namespace {

using detail::fnv_u32;
using detail::hex64;
using detail::k_fnv_offset;

std::string hash_prompts(const std::vector<std::vector<token_id>>& prompts) {
  std::uint64_t h = k_fnv_offset;
  fnv_u32(h, static_cast<std::uint32_t>(prompts.size()));
  for (const auto& p : prompts) {
    fnv_u32(h, static_cast<std::uint32_t>(p.size()));
    for (token_id t : p) fnv_u32(h, static_cast<std::uint32_t>(t));
  }
  return hex64(h);
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

long long parse_int(const std::string& text, const std::string& what) {
  std::size_t pos = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (text.empty() || pos != text.size()) {
    throw std::invalid_argument(what + ": '" + text + "' is not an integer");
  }
  return v;
}

void check_token(long long t, int vocab, const std::string& where) {
  if (t < 0 || t >= vocab) {
    throw std::invalid_argument(where + ": token id " + std::to_string(t) + " outside [0, " +
                                std::to_string(vocab) + ")");
  }
}

}  // namespace

prompt_set random_prompt_set(const std::string& spec, int vocab) {
  const auto parts = split_on(spec, ':');
  if (parts.size() != 4 || parts[0] != "random") {
    throw std::invalid_argument("--prompt-set '" + spec + "': expected random:N:LEN:SEED");
  }
  const long long n = parse_int(parts[1], "--prompt-set N");
  const long long len = parse_int(parts[2], "--prompt-set LEN");
  const long long seed = parse_int(parts[3], "--prompt-set SEED");
  if (n <= 0 || n > 100000) throw std::invalid_argument("--prompt-set: N out of range [1, 100000]");
  if (len <= 0 || len > (1 << 20)) {
    throw std::invalid_argument("--prompt-set: LEN out of range [1, 1048576]");
  }
  prompt_set ps;
  ps.id = spec;
  std::seed_seq sq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), 0x9au};
  std::mt19937_64 rng(sq);
  std::uniform_int_distribution<token_id> tok(0, vocab - 1);
  ps.prompts.resize(static_cast<std::size_t>(n));
  for (auto& p : ps.prompts) {
    p.resize(static_cast<std::size_t>(len));
    for (auto& t : p) t = tok(rng);
  }
  ps.hash = hash_prompts(ps.prompts);
  return ps;
}

prompt_set read_prompt_file(const std::string& path, int vocab) {
  const std::string text = read_text_file(path);
  prompt_set ps;
  ps.id = "file:" + std::filesystem::path(path).filename().string();
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    json j;
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      throw std::invalid_argument(path + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_array()) throw std::invalid_argument(path + ": expected an array of prompts");
    for (std::size_t i = 0; i < j.size(); ++i) {
      const std::string where = path + ": prompt " + std::to_string(i);
      if (!j[i].is_array()) throw std::invalid_argument(where + " is not an array of token ids");
      std::vector<token_id> p;
      for (const auto& t : j[i]) {
        if (!t.is_number_integer()) throw std::invalid_argument(where + " holds a non-integer");
        check_token(t.get<long long>(), vocab, where);
        p.push_back(static_cast<token_id>(t.get<long long>()));
      }
      if (p.empty()) throw std::invalid_argument(where + " is empty");
      ps.prompts.push_back(std::move(p));
    }
  } else {
    std::istringstream in(text);
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      std::replace(line.begin(), line.end(), ',', ' ');
      std::istringstream ls(line);
      std::string item;
      std::vector<token_id> p;
      const std::string where = path + ":" + std::to_string(line_no);
      while (ls >> item) {
        const long long t = parse_int(item, where);
        check_token(t, vocab, where);
        p.push_back(static_cast<token_id>(t));
      }
      if (!p.empty()) ps.prompts.push_back(std::move(p));
    }
  }
  if (ps.prompts.empty()) throw std::invalid_argument(path + ": no prompts");
  ps.hash = hash_prompts(ps.prompts);
  return ps;
}

std::string hash_logits(std::span<const float> row) {
  std::uint64_t h = k_fnv_offset;
  for (float x : row) fnv_u32(h, std::bit_cast<std::uint32_t>(x));
  return hex64(h);
}

}  // namespace ridgeline::bench
