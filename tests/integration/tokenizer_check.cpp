// ridgeline_tokenizer_check: ridgeline's tokenizer against the reference's answers, written by
// tests/integration/tokenizer_reference/make_cases.mjs (Hugging Face's tokenizers.js on a real
// vocabulary). For each cases file it loads the tokenizer.json the file names and checks:
//  - encode(text, add_special_tokens) gives the reference's ids, every case;
//  - decode(reference ids, skip_special_tokens = false) gives the reference's text;
//  - decode(encode(text)) == text wherever the reference round-trips;
//  - the detokenizer's pieces, one token at a time, concatenate to decode();
//  - decode of random id sequences (both skip_special_tokens) gives the reference's text;
//  - encoding about 100 KB of the cases' text takes under a second.
// Prints the count of each kind of mismatch and the first few (text, expected, got); exit 1 on
// any mismatch, 2 on bad usage or an unreadable file.
//   ridgeline_tokenizer_check build/tokenizer_reference/llama3.cases.json [more.cases.json ...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/tokenizer.hpp"

using namespace ridgeline;

namespace {

constexpr int k_shown = 5;  // mismatches printed per kind

std::string show_ids(const std::vector<token_id>& ids, std::size_t around) {
  // The ids near the first difference, so long cases stay one readable line.
  const std::size_t begin = around > 6 ? around - 6 : 0;
  const std::size_t end = std::min(ids.size(), around + 10);
  std::string s = begin > 0 ? "[... " : "[";
  for (std::size_t i = begin; i < end; ++i) s += std::to_string(ids[i]) + (i + 1 < end ? ", " : "");
  return s + (end < ids.size() ? " ...]" : "]") + " (" + std::to_string(ids.size()) + " ids)";
}

std::size_t first_difference(const std::vector<token_id>& a, const std::vector<token_id>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// Two texts from a little before their first difference, each on its own line.
std::string show_texts(const std::string& expected, const std::string& got) {
  std::size_t at = 0;
  while (at < expected.size() && at < got.size() && expected[at] == got[at]) ++at;
  const std::size_t from = at > 40 ? at - 40 : 0;
  const std::string cut = from > 0 ? "\"..." : "\"";
  return "\n      expected " + cut + printable(expected.substr(from), 100) + "\"\n      got      " +
         cut + printable(got.substr(from), 100) + "\"";
}

struct tally {
  const char* what;
  long checked = 0, failed = 0;
  void fail(const std::string& detail) {
    if (failed++ < k_shown) std::printf("  MISMATCH %s: %s\n", what, detail.c_str());
  }
};

bool check_file(const std::string& path) {
  const nlohmann::json doc = nlohmann::json::parse(read_text_file(path));
  const std::string json_path = doc.at("tokenizer_json_path").get<std::string>();
  const auto t0 = std::chrono::steady_clock::now();
  const tokenizer tok = tokenizer::from_file(json_path);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s\n  tokenizer %s (vocabulary %d, loaded in %.2f s), reference %s\n", path.c_str(),
              json_path.c_str(), tok.vocab_size(), load_s,
              doc.value("reference", std::string("?")).c_str());

  tally ids{"ids"}, decoded{"decode"}, round_trip{"round trip"}, pieces{"detokenizer"},
      random{"decode of random ids"};
  std::string all_text;
  double encode_s = 0;
  for (const auto& c : doc.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const bool add_special = c.at("add_special_tokens").get<bool>();
    const auto expected = c.at("ids").get<std::vector<token_id>>();
    const std::string expected_text = c.at("decoded").get<std::string>();
    const auto e0 = std::chrono::steady_clock::now();
    const std::vector<token_id> got = tok.encode(text, add_special);
    encode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    if (all_text.size() < 100 * 1024) all_text += text;
    std::string quoted_text = "\"";
    quoted_text += printable(text, 100);
    quoted_text += add_special ? "\" (add_special_tokens true)" : "\" (add_special_tokens false)";

    ++ids.checked;
    if (got != expected) {
      const std::size_t at = first_difference(got, expected);
      ids.fail(quoted_text + "\n      expected " + show_ids(expected, at) + "\n      got      " +
               show_ids(got, at));
    }
    ++decoded.checked;
    const std::string text_of_expected = tok.decode(expected, false);
    if (text_of_expected != expected_text) {
      decoded.fail(quoted_text + show_texts(expected_text, text_of_expected));
    }
    if (!add_special && expected_text == text) {
      ++round_trip.checked;
      const std::string back = tok.decode(got, false);
      if (back != text) round_trip.fail(quoted_text + show_texts(text, back));
    }
    ++pieces.checked;
    detokenizer d(tok, false);
    std::string streamed;
    for (const token_id id : expected) streamed += d.push(id);
    streamed += d.finish();
    if (streamed != text_of_expected) {
      pieces.fail(quoted_text + " (expected: decode(), got: the pieces)" +
                  show_texts(text_of_expected, streamed));
    }
  }
  for (const auto& c : doc.at("decode_cases")) {
    const auto in = c.at("ids").get<std::vector<token_id>>();
    const bool skip = c.at("skip_special_tokens").get<bool>();
    const std::string expected = c.at("text").get<std::string>();
    ++random.checked;
    const std::string got = tok.decode(in, skip);
    if (got != expected) {
      random.fail(show_ids(in, 0) +
                  (skip ? " (skip_special_tokens true)" : " (skip_special_tokens false)") +
                  show_texts(expected, got));
    }
    detokenizer d(tok, skip);
    std::string streamed;
    for (const token_id id : in) streamed += d.push(id);
    streamed += d.finish();
    ++pieces.checked;
    if (streamed != got) pieces.fail(show_ids(in, 0) + ": pieces differ from decode()");
  }

  // Encoding speed on about 100 KB of varied text (the requirement: well under a second).
  const auto p0 = std::chrono::steady_clock::now();
  const std::size_t n_ids = tok.encode(all_text).size();
  const double big_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();

  bool ok = true;
  for (const tally* t : {&ids, &decoded, &round_trip, &pieces, &random}) {
    std::printf("  %-22s %6ld checked, %ld mismatches\n", t->what, t->checked, t->failed);
    ok = ok && t->failed == 0;
  }
  std::printf("  encode: %.1f ms for all cases; %.1f KB in one call: %zu ids in %.1f ms\n",
              encode_s * 1e3, static_cast<double>(all_text.size()) / 1024, n_ids, big_s * 1e3);
  if (big_s >= 1.0) {
    std::printf("  MISMATCH speed: encoding %.1f KB took %.2f s (limit 1 s)\n",
                static_cast<double>(all_text.size()) / 1024, big_s);
    ok = false;
  }
  std::printf("  %s\n", ok ? "OK" : "FAIL");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CASES.json [CASES.json ...]\n", argv[0]);
    return 2;
  }
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    try {
      ok = check_file(argv[i]) && ok;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ridgeline_tokenizer_check: %s: %s\n", argv[i], e.what());
      return 2;
    }
  }
  return ok ? 0 : 1;
}
