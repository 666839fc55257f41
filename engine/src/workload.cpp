// Trace loaders and workload generators (see workload.hpp).
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/workload.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <stdexcept>
#include <string_view>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline {
namespace {

constexpr std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr std::uint64_t mix2(std::uint64_t a, std::uint64_t b) {
  return splitmix(a ^ splitmix(b));
}

// Domain tags so seeds of different origins never meet.
constexpr std::uint64_t k_tag_mooncake = 0x4d6f6f6e63616b65ULL;
constexpr std::uint64_t k_tag_azure = 0x417a757265435356ULL;
constexpr std::uint64_t k_tag_output = 0x4f75747075747321ULL;
constexpr std::uint64_t k_tag_system = 0x53797374656d5021ULL;
constexpr std::uint64_t k_tag_message = 0x4d65737361676521ULL;


[[noreturn]] void fail_at(const std::string& source, std::int64_t line, const std::string& what) {
  throw std::invalid_argument(source + ":" + std::to_string(line) + ": " + what);
}

std::ifstream open_trace(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error("cannot read trace '" + path.string() + "'");
  return in;
}

// Seeded generator, independent of the standard library's distributions so every platform
// produces the same workload.
class rng {
 public:
  explicit rng(std::uint64_t seed) : m_state(splitmix(seed)) {}
  std::uint64_t next() { return splitmix(m_state += 0x632be59bd9b4e019ULL); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform_open() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  double normal() {
    const double u = uniform_open(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * std::numbers::pi * v);
  }
  double exponential(double mean) { return -mean * std::log(uniform_open()); }
  // Marsaglia and Tsang; shapes below 1 through the boost gamma(k+1) * U^(1/k).
  double gamma(double shape, double scale) {
    if (shape < 1.0) return gamma(shape + 1.0, scale) * std::pow(uniform_open(), 1.0 / shape);
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = uniform_open();
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v * scale;
    }
  }

 private:
  std::uint64_t m_state;
};

double sample(const length_distribution& d, rng& r) {
  double x = 0;
  switch (d.shape) {
    case length_distribution::kind::fixed:
      x = d.a;
      break;
    case length_distribution::kind::uniform:
      x = d.a + (d.b - d.a) * r.uniform();
      break;
    case length_distribution::kind::lognormal:
      x = d.a * std::exp(d.b * r.normal());
      break;
    case length_distribution::kind::exponential:
      x = r.exponential(d.a);
      break;
  }
  return std::clamp(x, static_cast<double>(d.min), static_cast<double>(d.max));
}

std::int64_t sample_length(const length_distribution& d, rng& r) {
  return std::clamp<std::int64_t>(std::llround(sample(d, r)), d.min, d.max);
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  const auto* end = s.data() + s.size();
  const auto res = std::from_chars(s.data(), end, out);
  return res.ec == std::errc() && res.ptr == end;
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "YYYY-MM-DD hh:mm:ss[.fffffff]" -> seconds since 1970; nullopt when malformed.
std::optional<double> parse_timestamp(std::string_view s) {
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!parse_number(s.substr(0, 4), y) || !parse_number(s.substr(5, 2), mo) ||
      !parse_number(s.substr(8, 2), d) || !parse_number(s.substr(11, 2), h) ||
      !parse_number(s.substr(14, 2), mi) || !parse_number(s.substr(17, 2), sec)) {
    return std::nullopt;
  }
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
    return std::nullopt;
  }
  double frac = 0;
  if (s.size() > 19) {
    if (s[19] != '.' || s.size() == 20 || s.size() > 29) return std::nullopt;
    double scale = 0.1;
    for (char c : s.substr(20)) {
      if (c < '0' || c > '9') return std::nullopt;
      frac += (c - '0') * scale;
      scale /= 10;
    }
  }
  const auto days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return static_cast<double>(days) * 86400.0 + h * 3600.0 + mi * 60.0 + sec + frac;
}

std::int64_t json_length(const nlohmann::json& obj, const char* key, std::int64_t min,
                         const std::string& source, std::int64_t line) {
  const auto it = obj.find(key);
  if (it == obj.end()) fail_at(source, line, std::string("missing field '") + key + "'");
  if (!it->is_number_integer()) {
    fail_at(source, line,
            std::string("field '") + key + "' must be an integer, got " + printable(it->dump(), 48));
  }
  if (it->is_number_unsigned() && it->get<std::uint64_t>() > std::uint64_t(k_max_trace_tokens)) {
    fail_at(source, line,
            std::string("field '") + key + "' is absurd: " + printable(it->dump(), 48) + " (at most " +
                std::to_string(k_max_trace_tokens) + ")");
  }
  const auto v = it->get<std::int64_t>();
  if (v < min) {
    fail_at(source, line,
            std::string("field '") + key + "' must be at least " + std::to_string(min) + ", got " +
                std::to_string(v));
  }
  if (v > k_max_trace_tokens) {
    fail_at(source, line,
            std::string("field '") + key + "' is absurd: " + std::to_string(v) + " (at most " +
                std::to_string(k_max_trace_tokens) + ")");
  }
  return v;
}

}  // namespace

std::int64_t workload::total_prompt_tokens() const {
  std::int64_t n = 0;
  for (const auto& r : requests) n += r.prompt_tokens;
  return n;
}

std::int64_t workload::total_output_tokens() const {
  std::int64_t n = 0;
  for (const auto& r : requests) n += r.output_tokens;
  return n;
}

token_id segment_token(std::uint64_t seed, std::int64_t position) {
  const std::uint64_t x =
      splitmix(seed + static_cast<std::uint64_t>(position) * 0xd1b54a32d192ed03ULL);
  return static_cast<token_id>((x >> 32) % k_workload_vocab);
}

void materialize_prompt(const workload_request& r, std::vector<token_id>& out) {
  out.resize(static_cast<std::size_t>(r.prompt_tokens));
  std::size_t at = 0;
  for (const auto& seg : r.prompt) {
    for (std::int32_t i = 0; i < seg.tokens && at < out.size(); ++i) {
      out[at++] = segment_token(seg.seed, i);
    }
  }
  if (at != out.size()) {
    throw std::logic_error("workload request " + std::to_string(r.id) +
                           ": segments do not add up to prompt_tokens");
  }
}

// ---------------------------------------------------------------------------------------------
workload parse_mooncake_trace(std::istream& in, const std::string& source,
                              std::int32_t block_tokens) {
  if (block_tokens <= 0) throw std::invalid_argument("Mooncake block size must be positive");
  workload w;
  w.source = source;
  std::string line;
  std::int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range (overflow)
      fail_at(source, line_no, "bad JSON: " + printable(e.what(), 160));
    }
    if (!j.is_object())
      fail_at(source, line_no, "expected a JSON object, got " + std::string(j.type_name()));
    workload_request r;
    r.id = w.requests.size();
    const auto ts = j.find("timestamp");
    if (ts == j.end()) fail_at(source, line_no, "missing field 'timestamp'");
    if (!ts->is_number()) fail_at(source, line_no, "field 'timestamp' must be a number");
    const double ms = ts->get<double>();
    if (!std::isfinite(ms) || ms < 0 || ms > 1e13) {
      fail_at(source, line_no, "field 'timestamp' out of range: " + printable(ts->dump(), 48));
    }
    r.arrival_seconds = ms / 1000.0;
    r.prompt_tokens = json_length(j, "input_length", 1, source, line_no);
    r.output_tokens =
        static_cast<std::int32_t>(json_length(j, "output_length", 1, source, line_no));
    const auto ids = j.find("hash_ids");
    if (ids == j.end()) fail_at(source, line_no, "missing field 'hash_ids'");
    if (!ids->is_array()) fail_at(source, line_no, "field 'hash_ids' must be an array");
    const std::int64_t want = blocks_for(r.prompt_tokens, block_tokens);
    if (std::ssize(*ids) != want) {
      fail_at(source, line_no,
              "hash_ids has " + std::to_string(ids->size()) + " ids but input_length " +
                  std::to_string(r.prompt_tokens) + " needs " + std::to_string(want) +
                  " blocks of " + std::to_string(block_tokens));
    }
    r.prompt.reserve(ids->size());
    std::int64_t left = r.prompt_tokens;
    for (const auto& id : *ids) {
      if (!id.is_number_integer() ||
          (id.is_number_integer() && !id.is_number_unsigned() && id.get<std::int64_t>() < 0)) {
        fail_at(source, line_no,
                "hash_ids must hold non-negative integers, got " + printable(id.dump(), 48));
      }
      const auto len = static_cast<std::int32_t>(std::min<std::int64_t>(left, block_tokens));
      r.prompt.push_back({mix2(k_tag_mooncake, id.get<std::uint64_t>()), len});
      left -= len;
    }
    r.output_seed = mix2(k_tag_output ^ k_tag_mooncake, r.id);
    w.requests.push_back(std::move(r));
  }
  if (in.bad()) throw io_error("error while reading trace '" + source + "'");
  return w;
}

workload load_mooncake_trace(const std::filesystem::path& path, std::int32_t block_tokens) {
  auto in = open_trace(path);
  return parse_mooncake_trace(in, path.string(), block_tokens);
}

workload parse_azure_trace(std::istream& in, const std::string& source) {
  workload w;
  w.source = source;
  std::string line;
  std::int64_t line_no = 0;
  bool header = false;
  double t0 = 0;
  std::string_view fields[3];
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::size_t columns = 1;
    std::size_t start = 0;
    const std::string_view v(line);
    for (std::size_t i = 0; i <= v.size(); ++i) {
      if (i == v.size() || v[i] == ',') {
        if (columns <= 3) fields[columns - 1] = v.substr(start, i - start);
        if (i < v.size()) ++columns;
        start = i + 1;
      }
    }
    if (columns != 3) {
      fail_at(source, line_no,
              "expected 3 columns (TIMESTAMP,ContextTokens,GeneratedTokens), got " +
                  std::to_string(columns));
    }
    if (!header) {
      if (fields[0] != "TIMESTAMP" || fields[1] != "ContextTokens" ||
          fields[2] != "GeneratedTokens") {
        fail_at(source, line_no, "expected the header TIMESTAMP,ContextTokens,GeneratedTokens");
      }
      header = true;
      continue;
    }
    const auto t = parse_timestamp(fields[0]);
    if (!t) {
      fail_at(
          source, line_no,
          "bad TIMESTAMP '" + printable(fields[0], 48) + "' (expected YYYY-MM-DD hh:mm:ss.fffffff)");
    }
    std::int64_t context = 0, generated = 0;
    for (int k = 1; k <= 2; ++k) {
      std::int64_t& value = k == 1 ? context : generated;
      const char* name = k == 1 ? "ContextTokens" : "GeneratedTokens";
      if (!parse_number(fields[k], value)) {
        fail_at(source, line_no,
                std::string(name) + " is not an integer: '" + printable(fields[k], 48) + "'");
      }
      if (value < 1 || value > k_max_trace_tokens) {
        fail_at(source, line_no,
                std::string(name) + " out of range [1, " + std::to_string(k_max_trace_tokens) +
                    "]: " + std::to_string(value));
      }
    }
    if (w.requests.empty()) t0 = *t;
    workload_request r;
    r.id = w.requests.size();
    r.arrival_seconds = *t - t0;
    if (r.arrival_seconds < 0) {
      fail_at(source, line_no, "TIMESTAMP goes back before the first row's");
    }
    r.prompt_tokens = context;
    r.prompt.push_back({mix2(k_tag_azure, r.id), static_cast<std::int32_t>(context)});
    r.output_tokens = static_cast<std::int32_t>(generated);
    r.output_seed = mix2(k_tag_output ^ k_tag_azure, r.id);
    w.requests.push_back(std::move(r));
  }
  if (in.bad()) throw io_error("error while reading trace '" + source + "'");
  if (!header) throw std::invalid_argument(source + ":1: empty trace (no header)");
  return w;
}

workload load_azure_trace(const std::filesystem::path& path) {
  auto in = open_trace(path);
  return parse_azure_trace(in, path.string());
}

workload load_trace(const std::filesystem::path& path, std::int32_t mooncake_block_tokens) {
  const auto ext = path.extension().string();
  if (ext == ".jsonl") return load_mooncake_trace(path, mooncake_block_tokens);
  if (ext == ".csv") return load_azure_trace(path);
  throw std::invalid_argument("unknown trace format '" + path.string() +
                              "' (expected .jsonl for Mooncake or .csv for Azure)");
}

// ---------------------------------------------------------------------------------------------
length_distribution parse_length_distribution(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ':') {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  auto num = [&](std::size_t i) {
    double v = 0;
    if (!parse_number(std::string_view(parts[i]), v) || !std::isfinite(v) || v < 0) {
      throw std::invalid_argument("bad number '" + printable(parts[i], 48) + "' in distribution '" +
                                  printable(text, 48) + "'");
    }
    return v;
  };
  length_distribution d;
  const std::string& k = parts[0];
  auto want = [&](std::size_t n) {
    if (parts.size() != n) {
      throw std::invalid_argument("distribution '" + printable(text, 48) + "' needs " +
                                  std::to_string(n - 1) +
                                  " parameters (fixed:N, uniform:A:B, lognormal:MEDIAN:SIGMA, "
                                  "exp:MEAN)");
    }
  };
  if (k == "fixed") {
    want(2);
    d.shape = length_distribution::kind::fixed;
    d.a = d.b = num(1);
  } else if (k == "uniform") {
    want(3);
    d.shape = length_distribution::kind::uniform;
    d.a = num(1);
    d.b = num(2);
    if (d.b < d.a)
      throw std::invalid_argument("uniform:A:B needs A <= B in '" + printable(text, 48) + "'");
  } else if (k == "lognormal") {
    want(3);
    d.shape = length_distribution::kind::lognormal;
    d.a = num(1);
    d.b = num(2);
  } else if (k == "exp") {
    want(2);
    d.shape = length_distribution::kind::exponential;
    d.a = num(1);
  } else {
    throw std::invalid_argument("unknown distribution '" + printable(text, 48) +
                                "' (fixed:N, uniform:A:B, lognormal:MEDIAN:SIGMA, exp:MEAN)");
  }
  if (d.a > static_cast<double>(k_max_trace_tokens) ||
      d.b > static_cast<double>(k_max_trace_tokens)) {
    throw std::invalid_argument("distribution '" + printable(text, 48) + "' is absurd (values above " +
                                std::to_string(k_max_trace_tokens) + ")");
  }
  return d;
}

generator_config parse_generator_spec(const std::string& spec) {
  generator_config c;
  std::size_t start = 0;
  auto number = [&](const std::string& key, const std::string& v, double lo, double hi) {
    double x = 0;
    if (!parse_number(std::string_view(v), x) || !std::isfinite(x) || x < lo || x > hi) {
      throw std::invalid_argument("generator: " + printable(key, 48) + "=" + printable(v, 48) +
                                  " is not a number in [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "]");
    }
    return x;
  };
  auto keep_bounds = [](length_distribution d, const length_distribution& old) {
    d.min = old.min;
    d.max = old.max;
    return d;
  };
  while (start < spec.size()) {
    auto end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      throw std::invalid_argument("generator: expected key=value, got '" + printable(item, 48) + "'");
    }
    const std::string key = item.substr(0, eq), v = item.substr(eq + 1);
    if (key == "arrival") {
      if (v == "poisson")
        c.arrival = generator_config::arrival_kind::poisson;
      else if (v == "gamma")
        c.arrival = generator_config::arrival_kind::gamma;
      else
        throw std::invalid_argument("generator: arrival must be poisson or gamma, got '" +
                                    printable(v, 48) + "'");
    } else if (key == "rate") {
      c.rate_per_second = number(key, v, 1e-9, 1e9);
    } else if (key == "cv") {
      c.cv = number(key, v, 1e-3, 1e3);
    } else if (key == "requests") {
      c.requests = static_cast<std::int64_t>(number(key, v, 1, 1e8));
    } else if (key == "seed") {
      c.seed = static_cast<std::uint64_t>(number(key, v, 0, 1.8e19));
    } else if (key == "prompt") {
      c.prompt = keep_bounds(parse_length_distribution(v), c.prompt);
    } else if (key == "output") {
      c.output = keep_bounds(parse_length_distribution(v), c.output);
    } else if (key == "sessions") {
      c.sessions = static_cast<std::int64_t>(number(key, v, 0, 1e7));
    } else if (key == "turns") {
      c.turns = keep_bounds(parse_length_distribution(v), c.turns);
    } else if (key == "think") {
      c.think_seconds = keep_bounds(parse_length_distribution(v), c.think_seconds);
    } else if (key == "message") {
      c.message = keep_bounds(parse_length_distribution(v), c.message);
    } else if (key == "system") {
      c.system_tokens = static_cast<std::int32_t>(number(key, v, 0, 1e6));
    } else if (key == "system_prompts") {
      c.system_prompts = static_cast<std::int32_t>(number(key, v, 1, 1e6));
    } else {
      throw std::invalid_argument(
          "generator: unknown key '" + printable(key, 48) +
          "' (arrival, rate, cv, requests, seed, prompt, output, sessions, turns, think, message, "
          "system, system_prompts)");
    }
  }
  return c;
}

workload generate_workload(const generator_config& c) {
  if (!(c.rate_per_second > 0)) throw std::invalid_argument("generator: rate must be positive");
  if (c.system_prompts < 1) throw std::invalid_argument("generator: system_prompts must be >= 1");
  rng r(c.seed);
  workload w;
  w.source = "generator";
  double t = 0;
  const double shape = 1.0 / (c.cv * c.cv);
  auto next_gap = [&] {
    if (c.arrival == generator_config::arrival_kind::poisson)
      return r.exponential(1.0 / c.rate_per_second);
    return r.gamma(shape, 1.0 / (c.rate_per_second * shape));
  };
  std::uint64_t seg_counter = 0;
  auto fresh_seed = [&](std::uint64_t tag) { return mix2(mix2(tag, c.seed), seg_counter++); };
  auto start_prompt = [&](workload_request& q) {
    if (c.system_tokens > 0) {
      const auto k =
          static_cast<std::uint64_t>(r.next() % static_cast<std::uint64_t>(c.system_prompts));
      q.prompt.push_back({mix2(mix2(k_tag_system, c.seed), k), c.system_tokens});
      q.prompt_tokens += c.system_tokens;
    }
  };
  auto add_output = [&](workload_request& q) {
    q.output_tokens =
        static_cast<std::int32_t>(std::min<std::int64_t>(sample_length(c.output, r), 1 << 30));
    q.output_seed = fresh_seed(k_tag_output);
  };

  if (c.sessions == 0) {
    w.requests.reserve(static_cast<std::size_t>(c.requests));
    for (std::int64_t i = 0; i < c.requests; ++i) {
      t += next_gap();
      workload_request q;
      q.id = static_cast<std::uint64_t>(i);
      q.arrival_seconds = t;
      start_prompt(q);
      const auto len = sample_length(c.prompt, r);
      q.prompt.push_back({fresh_seed(k_tag_message), static_cast<std::int32_t>(len)});
      q.prompt_tokens += len;
      add_output(q);
      w.requests.push_back(std::move(q));
    }
    return w;
  }

  for (std::int64_t s = 0; s < c.sessions; ++s) {
    t += next_gap();
    const std::int64_t turns = sample_length(c.turns, r);
    std::int64_t previous = -1;
    for (std::int64_t k = 0; k < turns; ++k) {
      workload_request q;
      q.id = w.requests.size();
      q.session = s;
      q.turn = static_cast<std::int32_t>(k);
      if (previous < 0) {
        q.arrival_seconds = t;
        start_prompt(q);
      } else {
        // The conversation so far: the previous prompt and the previous answer.
        const auto& p = w.requests[static_cast<std::size_t>(previous)];
        q.follow_up = true;
        q.think_seconds = sample(c.think_seconds, r);
        q.prompt = p.prompt;
        q.prompt.push_back({p.output_seed, p.output_tokens});
        q.prompt_tokens = p.prompt_tokens + p.output_tokens;
      }
      const auto len = sample_length(c.message, r);
      q.prompt.push_back({fresh_seed(k_tag_message), static_cast<std::int32_t>(len)});
      q.prompt_tokens += len;
      add_output(q);
      if (previous >= 0)
        w.requests[static_cast<std::size_t>(previous)].next_turn = std::ssize(w.requests);
      previous = std::ssize(w.requests);
      w.requests.push_back(std::move(q));
    }
  }
  return w;
}

workload window_of(const workload& w, double start_seconds, double duration_seconds,
                   std::int64_t max_requests) {
  if (!(start_seconds >= 0)) throw std::invalid_argument("window: start must not be negative");
  if (!(duration_seconds >= 0)) throw std::invalid_argument("window: duration must not be negative");
  if (max_requests < 0) throw std::invalid_argument("window: request count must not be negative");
  const double end = duration_seconds > 0 ? start_seconds + duration_seconds
                                          : std::numeric_limits<double>::infinity();
  // First turns in the window, in arrival order (ties by index), then their sessions' later turns.
  std::vector<std::size_t> firsts;
  for (std::size_t i = 0; i < w.requests.size(); ++i) {
    const auto& r = w.requests[i];
    if (!r.follow_up && r.arrival_seconds >= start_seconds && r.arrival_seconds < end) {
      firsts.push_back(i);
    }
  }
  std::stable_sort(firsts.begin(), firsts.end(), [&w](std::size_t a, std::size_t b) {
    return w.requests[a].arrival_seconds < w.requests[b].arrival_seconds;
  });
  if (max_requests > 0 && std::ssize(firsts) > max_requests) {
    firsts.resize(static_cast<std::size_t>(max_requests));
  }
  workload out;
  out.source = w.source;
  std::vector<std::int64_t> new_index(w.requests.size(), -1);
  std::vector<std::size_t> kept;
  for (std::size_t f : firsts) {
    for (std::int64_t i = static_cast<std::int64_t>(f); i >= 0;
         i = w.requests[static_cast<std::size_t>(i)].next_turn) {
      new_index[static_cast<std::size_t>(i)] = std::ssize(kept);
      kept.push_back(static_cast<std::size_t>(i));
    }
  }
  for (std::size_t i : kept) {
    workload_request r = w.requests[i];
    if (!r.follow_up) r.arrival_seconds -= start_seconds;
    if (r.next_turn >= 0) r.next_turn = new_index[static_cast<std::size_t>(r.next_turn)];
    out.requests.push_back(std::move(r));
  }
  return out;
}

}  // namespace ridgeline
