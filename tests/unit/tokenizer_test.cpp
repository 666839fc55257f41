// The tokenizer (engine/tokenizer.hpp) on small tokenizer.json files written here by hand, one per
// family (byte-level BPE as Llama 3, sentencepiece-style BPE as Llama 2 / Mistral, and the
// Metaspace form), with ids worked out by hand from the merges; the byte-level tokenizer of
// random weights on random bytes (invalid UTF-8 included) against a UTF-8 decoder written from
// the Unicode standard's table of well-formed sequences; the detokenizer's pieces against
// decode(); one clear std::invalid_argument per broken or unsupported file; chat templates as
// exact strings. The real vocabularies are tests/integration/tokenizer_reference_test.sh's job.
//   build-cpu/tests/ridgeline_unit_tests --gtest_filter='Tokenizer*'
#include "ridgeline/engine/tokenizer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

using namespace ridgeline;
namespace fs = std::filesystem;
using json = nlohmann::json;
using ids_t = std::vector<token_id>;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir()
      : path(fs::temp_directory_path() /
             ("ridgeline_tokenizer_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return path / name;
  }
};

tokenizer load(const temp_dir& dir, const json& j, const std::string& name = "tokenizer.json") {
  return tokenizer::from_file(dir.write(name, j.dump()));
}

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode, as its definition reads: printable Latin-1 bytes ('!'..'~',
// '¡'..'¬', '®'..'ÿ') are themselves, the others become U+0100, U+0101, ... in byte order.
std::string byte_char(int b) {
  int n = 0;
  for (int x = 0; x < 256; ++x) {
    const bool keep = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
    if (x == b) return utf8(keep ? static_cast<char32_t>(x) : static_cast<char32_t>(256 + n));
    if (!keep) ++n;
  }
  return {};
}

json added(const std::string& content, token_id id, bool special = true) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", special}};
}

// ---- Family (a): byte-level BPE as Llama 3 ----------------------------------------------------
// Ids 0..255 are the bytes (the ByteLevel character of byte b has id b), then the merges' results:
//   256 Ġt (Ġ t)  257 he (h e)  258 Ġthe (Ġt he)  259 ll (l l)  260 hell (he ll)
//   261 hello (hell o)  262 Ġw (Ġ w)  263 or (o r)  264 Ġwor (Ġw or)
// merges in that order (ranks 0..8); then tokens no merge makes, which only ignore_merges finds:
//   270 Ġxy  271 'LL  272 123
// and the added tokens 265..269.
const char* k_llama3_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json byte_level_bpe_json(bool merges_as_pairs = false) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"},    {"h", "e"}, {"Ġt", "he"}, {"l", "l"},  {"he", "ll"},
      {"hell", "o"}, {"Ġ", "w"}, {"o", "r"},   {"Ġw", "or"}};
  json m = json::array();
  token_id id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    m.push_back(merges_as_pairs ? json::array({a, b}) : json(a + " " + b));
  }
  vocab["Ġxy"] = 270;
  vocab["'LL"] = 271;
  vocab["123"] = 272;
  return {
      {"version", "1.0"},
      {"added_tokens",
       {added("<|begin_of_text|>", 265), added("<|end_of_text|>", 266), added("<|eot_id|>", 267),
        added("<|start_header_id|>", 268), added("<|end_header_id|>", 269)}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", k_llama3_regex}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}},
          {{"type", "TemplateProcessing"},
           {"single",
            {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
           {"pair", json::array()},
           {"special_tokens",
            {{"<|begin_of_text|>",
              {{"id", "<|begin_of_text|>"},
               {"ids", {265}},
               {"tokens", {"<|begin_of_text|>"}}}}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", true},
        {"vocab", vocab},
        {"merges", m}}}};
}

// ---- Family (b): sentencepiece-style BPE as Llama 2 / Mistral ---------------------------------
// 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then
//   259 ▁  260 h  261 e  262 l  263 o  264 w  265 r  266 d  267 ▁h  268 ll  269 ▁he  270 llo
//   271 ▁hello  272 ▁w  273 or  274 ld  275 ▁wor  276 ▁world  277 é  278 a  279 b  280 a▁
// merges (ranks 0..10): ▁ h, l l, ▁h e, ll o, ▁he llo, ▁ w, o r, l d, ▁w or, ▁wor ld, a ▁.
json sentencepiece_json() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  static const char* k_hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b)
    vocab[std::string("<0x") + k_hex[b >> 4] + k_hex[b & 15] + ">"] = 3 + b;
  const std::vector<std::string> tokens = {
      "▁",   "h",      "e",  "l",  "o",  "w",    "r",      "d", "▁h", "ll", "▁he",
      "llo", "▁hello", "▁w", "or", "ld", "▁wor", "▁world", "é", "a",  "b",  "a▁"};
  for (std::size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = 259 + static_cast<int>(i);
  return {{"version", "1.0"},
          {"added_tokens", {added("<unk>", 0), added("<s>", 1), added("</s>", 2)}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "▁"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", "<unk>"},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges",
             {"▁ h", "l l", "▁h e", "ll o", "▁he llo", "▁ w", "o r", "l d", "▁w or", "▁wor ld",
              "a ▁"}}}}};
}

// The same vocabulary in the Metaspace form (no normalizer; the pre-tokenizer puts the ▁ in).
json metaspace_json(bool split) {
  json j = sentencepiece_json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", split}};
  j["decoder"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", split}};
  return j;
}

// UTF-8 decoding written from the Unicode standard (Table 3-7, well-formed byte sequences; and
// "U+FFFD substitution of maximal subparts", the practice WHATWG's decoder follows): at each
// position take the longest prefix of some well-formed sequence; whole: the character; else one
// U+FFFD for that prefix (at least one byte).
std::string reference_utf8_decode(const std::string& s) {
  // For a first byte: how many bytes, and the allowed range of the second byte.
  struct row {
    unsigned lo, hi, len, second_lo, second_hi;
  };
  const row table[] = {
      {0x00, 0x7F, 1, 0, 0},       {0xC2, 0xDF, 2, 0x80, 0xBF}, {0xE0, 0xE0, 3, 0xA0, 0xBF},
      {0xE1, 0xEC, 3, 0x80, 0xBF}, {0xED, 0xED, 3, 0x80, 0x9F}, {0xEE, 0xEF, 3, 0x80, 0xBF},
      {0xF0, 0xF0, 4, 0x90, 0xBF}, {0xF1, 0xF3, 4, 0x80, 0xBF}, {0xF4, 0xF4, 4, 0x80, 0x8F}};
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned b0 = static_cast<unsigned char>(s[i]);
    const row* r = nullptr;
    for (const row& x : table) {
      if (b0 >= x.lo && b0 <= x.hi) r = &x;
    }
    if (!r) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    std::size_t good = 1;  // bytes that still fit a well-formed sequence
    while (good < r->len && i + good < s.size()) {
      const unsigned b = static_cast<unsigned char>(s[i + good]);
      const bool fits =
          good == 1 ? (b >= r->second_lo && b <= r->second_hi) : (b >= 0x80 && b <= 0xBF);
      if (!fits) break;
      ++good;
    }
    if (good == r->len) {
      out.append(s, i, good);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += good;
  }
  return out;
}

bool valid_utf8(const std::string& s) {
  return reference_utf8_decode(s) == s;
}

std::string streamed(const tokenizer& t, const ids_t& ids, bool skip,
                     std::vector<std::string>* pieces = nullptr) {
  detokenizer d(t, skip);
  std::string out;
  for (const token_id id : ids) {
    std::string p = d.push(id);
    if (pieces) pieces->push_back(p);
    out += p;
  }
  std::string tail = d.finish();
  if (pieces) pieces->push_back(tail);
  return out + tail;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

}  // namespace

// ---- Byte-level BPE ----------------------------------------------------------------------------

TEST(Tokenizer, ByteLevelBpeMergesByRank) {
  temp_dir dir;
  const tokenizer t = load(dir, byte_level_bpe_json());
  EXPECT_EQ(t.vocab_size(), 273);
  // "hellos": h e l l o s -> he (rank 1) -> ll (3) -> hell (4) -> hello (5), s stays.
  // " the": Ġt (0) -> he (1) -> Ġthe (2). " world": Ġw (6) -> or (7) -> Ġwor (8), l, d.
  EXPECT_EQ(t.encode("hellos the world"), (ids_t{265, 261, 's', 258, 264, 'l', 'd'}));
  EXPECT_EQ(t.encode("hellos the world", false), (ids_t{261, 's', 258, 264, 'l', 'd'}));
  EXPECT_EQ(t.bos_id(), 265);
  EXPECT_EQ(std::vector<token_id>(t.eos_ids().begin(), t.eos_ids().end()), (ids_t{266, 267}));
  EXPECT_EQ(t.token_text(258), "Ġthe");
  EXPECT_EQ(t.find_token("<|eot_id|>"), 267);
  EXPECT_FALSE(t.find_token("<|eom_id|>").has_value());
}

TEST(Tokenizer, ByteLevelBpeRunsTheFilesRegex) {
  temp_dir dir;
  const tokenizer t = load(dir, byte_level_bpe_json());
  // The regex makes "'LL" a word (case-insensitive contraction) and "123" one (\p{N}{1,3});
  // ignore_merges then finds them whole in the vocabulary although no merge makes them.
  EXPECT_EQ(t.encode("I'LL've", false), (ids_t{'I', 271, '\'', 'v', 'e'}));
  EXPECT_EQ(t.encode("12345", false), (ids_t{272, '4', '5'}));
  EXPECT_EQ(t.encode(" xy", false), (ids_t{270}));
  // Spaces: "a", " " (\s+(?!\S) leaves the last space to the next word), " b".
  EXPECT_EQ(t.encode("a  b", false), (ids_t{'a', ' ', ' ', 'b'}));
  // Bytes of a character outside the vocabulary's merges: 日 = E6 97 A5.
  EXPECT_EQ(t.encode("日", false), (ids_t{0xE6, 0x97, 0xA5}));
}

TEST(Tokenizer, IgnoreMergesOffRunsBpeOnWholeWords) {
  temp_dir dir;
  json j = byte_level_bpe_json();
  j["model"]["ignore_merges"] = false;
  const tokenizer t = load(dir, j);
  EXPECT_EQ(t.encode(" xy", false), (ids_t{' ', 'x', 'y'}));
  EXPECT_EQ(t.encode("I'LL", false), (ids_t{'I', '\'', 'L', 'L'}));
}

TEST(Tokenizer, MergesAsPairsReadTheSame) {
  temp_dir dir;
  const tokenizer strings = load(dir, byte_level_bpe_json(false), "a.json");
  const tokenizer pairs = load(dir, byte_level_bpe_json(true), "b.json");
  for (const char* text : {"hellos the world", "the other world, hello", "x\nhe ll o"}) {
    EXPECT_EQ(strings.encode(text), pairs.encode(text)) << text;
  }
}

TEST(Tokenizer, AddedTokensAreSplitOutOfTheText) {
  temp_dir dir;
  const tokenizer t = load(dir, byte_level_bpe_json());
  EXPECT_EQ(t.encode("<|eot_id|>hi", false), (ids_t{267, 'h', 'i'}));
  EXPECT_EQ(t.encode("hi<|begin_of_text|>", true), (ids_t{265, 'h', 'i', 265}));
  EXPECT_EQ(t.encode("<|eot_id", false), (ids_t{'<', '|', 'e', 'o', 't', '_', 'i', 'd'}));
  // Longest match: <|end_of_text|> is not cut into a shorter token.
  EXPECT_EQ(t.encode("<|end_of_text|>", false), (ids_t{266}));
}

TEST(Tokenizer, ByteLevelDecode) {
  temp_dir dir;
  const tokenizer t = load(dir, byte_level_bpe_json());
  EXPECT_EQ(t.decode(ids_t{265, 261, 258, 264, 'l', 'd'}), "hello the world");
  EXPECT_EQ(t.decode(ids_t{265, 261, 267}, false), "<|begin_of_text|>hello<|eot_id|>");
  EXPECT_EQ(t.decode(ids_t{0xE6, 0x97, 0xA5}), "日");
  EXPECT_EQ(t.decode(ids_t{0xE6, 0x97}), "\xEF\xBF\xBD");  // unfinished
  EXPECT_EQ(t.decode(ids_t{0xE6, 0x97, 267, 0xA5}, false), "\xEF\xBF\xBD<|eot_id|>\xEF\xBF\xBD");
  EXPECT_EQ(t.decode(ids_t{0xE6, 0x97, 267, 0xA5}, true), "日");  // skipped: the bytes meet
  EXPECT_EQ(t.decode(ids_t{-1, 9999, 'a'}), "a");                 // unknown ids give nothing
  for (const char* text : {"hellos the world", " leading and trailing  ", "tab\tnew\nline\r\n",
                           "日本語 🤗 e\xCC\x81", "<|eot_id|> x"}) {
    EXPECT_EQ(t.decode(t.encode(text, false), false), text) << text;
  }
}

// ---- Sentencepiece-style BPE -------------------------------------------------------------------

TEST(Tokenizer, SentencepieceBpeMergesByRank) {
  temp_dir dir;
  const tokenizer t = load(dir, sentencepiece_json());
  // "▁hello▁world" is one word: ▁h (0), ll (1), ▁he (2), llo (3), ▁hello (4), ▁w (5), or (6),
  // ld (7), ▁wor (8), ▁world (9).
  EXPECT_EQ(t.encode("hello world"), (ids_t{1, 271, 276}));
  EXPECT_EQ(t.encode("hello world", false), (ids_t{271, 276}));
  // " hello": ▁▁hello; no merge takes ▁▁, so ▁ stays alone and ▁hello forms at position 1.
  EXPECT_EQ(t.encode(" hello", false), (ids_t{259, 271}));
  // "a b" -> ▁a▁b: a▁ (rank 10) merges across the space (no Metaspace split here).
  EXPECT_EQ(t.encode("a b", false), (ids_t{259, 280, 279}));
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(std::vector<token_id>(t.eos_ids().begin(), t.eos_ids().end()), (ids_t{2}));
}

TEST(Tokenizer, SentencepieceByteFallbackAndUnknowns) {
  temp_dir dir;
  const tokenizer t = load(dir, sentencepiece_json());
  // ▁h é, then ! is not in the vocabulary: its byte <0x21> (3 + 0x21).
  EXPECT_EQ(t.encode("hé!", false), (ids_t{267, 277, 3 + 0x21}));
  EXPECT_EQ(t.encode("日", false), (ids_t{259, 3 + 0xE6, 3 + 0x97, 3 + 0xA5}));
  // Without byte fallback unknown characters are <unk>, and fuse_unk makes a run of them one.
  json j = sentencepiece_json();
  j["model"]["byte_fallback"] = false;
  EXPECT_EQ(load(dir, j, "nofallback.json").encode("hxy!", false), (ids_t{267, 0}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(dir, j, "nofuse.json").encode("hxy!", false), (ids_t{267, 0, 0, 0}));
}

TEST(Tokenizer, SentencepieceNormalizesEachSectionAroundAddedTokens) {
  temp_dir dir;
  const tokenizer t = load(dir, sentencepiece_json());
  // "<s>" is split out first; the text after it is its own section and gets its own ▁.
  EXPECT_EQ(t.encode("<s>hello"), (ids_t{1, 1, 271}));
  EXPECT_EQ(t.encode("hello</s>hello", false), (ids_t{271, 2, 271}));
}

TEST(Tokenizer, SentencepieceDecodeStripsOneLeadingSpace) {
  temp_dir dir;
  const tokenizer t = load(dir, sentencepiece_json());
  EXPECT_EQ(t.decode(ids_t{1, 271, 276}), "hello world");
  EXPECT_EQ(t.decode(ids_t{1, 271, 276}, false), "<s> hello world");
  EXPECT_EQ(t.decode(ids_t{259, 271}), " hello");  // only the first space goes
  EXPECT_EQ(t.decode(ids_t{271, 3 + 0xE6, 3 + 0x97, 3 + 0xA5, 2}), "hello日");
  EXPECT_EQ(t.decode(ids_t{271, 3 + 0xE6, 3 + 0x97, 276}), "hello\xEF\xBF\xBD world");
  for (const char* text : {"hello world", "  two spaces", "hé! 日本", "a b a", "end "}) {
    EXPECT_EQ(t.decode(t.encode(text)), text) << text;
  }
}

TEST(Tokenizer, MetaspaceForm) {
  temp_dir dir;
  const tokenizer t = load(dir, metaspace_json(false), "nosplit.json");
  EXPECT_EQ(t.encode("hello world"), (ids_t{1, 271, 276}));
  EXPECT_EQ(t.encode("a b", false), (ids_t{259, 280, 279}));
  // prepend_scheme "first": the section after <s> is not the first one, so no ▁ (h e llo).
  EXPECT_EQ(t.encode("<s>hello", false), (ids_t{1, 260, 261, 270}));
  EXPECT_EQ(t.decode(ids_t{1, 271, 276}), "hello world");
  // split: every ▁ starts a word, so a▁ can no longer merge across the space.
  const tokenizer s = load(dir, metaspace_json(true), "split.json");
  EXPECT_EQ(s.encode("a b", false), (ids_t{259, 278, 259, 279}));
}

TEST(Tokenizer, OtherSupportedComponents) {
  temp_dir dir;
  // ByteLevel with its own GPT-2 regex and add_prefix_space: " hello", " world".
  json gpt2 = byte_level_bpe_json();
  gpt2["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  EXPECT_EQ(load(dir, gpt2, "gpt2.json").encode("hello world", false),
            (ids_t{' ', 261, 264, 'l', 'd'}));
  // Split on a string, the separators removed.
  json removed = byte_level_bpe_json();
  removed["pre_tokenizer"]["pretokenizers"][0] = {
      {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}};
  EXPECT_EQ(load(dir, removed, "removed.json").encode("hello the", false), (ids_t{261, 't', 257}));
  // NFKC and a regex Replace before the sentencepiece normalizers.
  json nfkc = sentencepiece_json();
  nfkc["normalizer"]["normalizers"].insert(
      nfkc["normalizer"]["normalizers"].begin(),
      {{{"type", "NFKC"}},
       {{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}}});
  const tokenizer n = load(dir, nfkc, "nfkc.json");
  EXPECT_EQ(n.encode("\xEF\xBD\x88\xEF\xBD\x85llo", false), (ids_t{271}));  // fullwidth ｈｅ
  EXPECT_EQ(n.encode("hello \t\n world", false), (ids_t{271, 276}));
  // lstrip / rstrip take the spaces next to the token; a `normalized` added token is matched
  // after the normalizer ("llo" becomes "▁llo").
  json strip = sentencepiece_json();
  strip["added_tokens"][1]["rstrip"] = true;
  strip["added_tokens"][2]["lstrip"] = true;
  strip["added_tokens"].push_back(added("llo", 281, false));
  strip["added_tokens"][3]["normalized"] = true;
  const tokenizer st = load(dir, strip, "strip.json");
  EXPECT_EQ(st.encode("<s>   hello", false), (ids_t{1, 271}));
  EXPECT_EQ(st.encode("hello   </s>", false), (ids_t{271, 2}));
  EXPECT_EQ(st.encode("he llo", false), (ids_t{269, 281}));
  EXPECT_FALSE(st.is_special(281));
  EXPECT_TRUE(st.is_special(1));
}

// ---- The byte-level tokenizer of random weights ------------------------------------------------

TEST(Tokenizer, ByteLevelForRandomWeights) {
  EXPECT_THROW(tokenizer::byte_level(257), std::invalid_argument);
  const tokenizer t = tokenizer::byte_level(128256);
  EXPECT_EQ(t.vocab_size(), 128256);
  EXPECT_EQ(t.bos_id(), 256);
  EXPECT_EQ(std::vector<token_id>(t.eos_ids().begin(), t.eos_ids().end()), (ids_t{257}));
  EXPECT_EQ(t.encode("hi"), (ids_t{256, 'h', 'i'}));
  EXPECT_EQ(t.encode("h\xFF", false), (ids_t{'h', 0xFF}));
  // Any id decodes: >= 258 to ' ' + (id - 258) % 95.
  EXPECT_EQ(t.decode(ids_t{256, 258, 352, 353, 'A', 257}), " ~ A");
  EXPECT_EQ(t.decode(ids_t{256, 'A', 257}, false), "<bos>A<eos>");
  EXPECT_EQ(t.token_text(0x0A), "<0x0A>");
  EXPECT_EQ(t.token_text(300), std::string(1, static_cast<char>(32 + 42)));
  EXPECT_THROW(t.token_text(128256), std::invalid_argument);
  EXPECT_EQ(chat_format_for(t), chat_format::plain);
}

TEST(Tokenizer, TokenBytesAreWhatTheDecoderMakesOfOneToken) {
  temp_dir dir;
  const tokenizer bl = load(dir, byte_level_bpe_json());
  EXPECT_EQ(bl.token_bytes(261), "hello");
  EXPECT_EQ(bl.token_bytes(258), " the");
  EXPECT_EQ(bl.token_bytes(0xE6), "\xE6");  // one byte of a multi-byte character, as it is
  EXPECT_EQ(bl.token_bytes(267), "<|eot_id|>");
  EXPECT_EQ(bl.token_bytes(-1), "");
  EXPECT_EQ(bl.token_bytes(99999), "");
  const tokenizer sp = load(dir, sentencepiece_json(), "sp.json");
  EXPECT_EQ(sp.token_bytes(276), " world");  // the leading space stays
  EXPECT_EQ(sp.token_bytes(3 + 0xE6), "\xE6");
  EXPECT_EQ(sp.token_bytes(1), "<s>");
  const tokenizer rb = tokenizer::byte_level(300);
  EXPECT_EQ(rb.token_bytes('A'), "A");
  EXPECT_EQ(rb.token_bytes(0xFF), "\xFF");
  EXPECT_EQ(rb.token_bytes(257), "<eos>");
  EXPECT_EQ(rb.token_bytes(258), " ");
  EXPECT_EQ(rb.token_bytes(300), "");
}

TEST(Tokenizer, ByteLevelRoundTripOnRandomBytes) {
  const tokenizer t = tokenizer::byte_level(300);
  std::mt19937 rng(7);
  // Bytes drawn to hit every UTF-8 case: ASCII, continuation bytes, each lead byte range, and
  // the bytes that can never appear (C0, C1, F5..FF).
  const std::vector<std::pair<int, int>> ranges = {{0x00, 0x7F}, {0x80, 0xBF}, {0xC0, 0xC1},
                                                   {0xC2, 0xDF}, {0xE0, 0xEF}, {0xF0, 0xF4},
                                                   {0xF5, 0xFF}};
  int invalid = 0;
  for (int n = 0; n < 3000; ++n) {
    std::string bytes;
    const int len = static_cast<int>(rng() % 24);
    for (int i = 0; i < len; ++i) {
      const auto& [lo, hi] = ranges[rng() % ranges.size()];
      bytes.push_back(
          static_cast<char>(lo + static_cast<int>(rng() % static_cast<unsigned>(hi - lo + 1))));
    }
    const ids_t ids = t.encode(bytes, false);
    ASSERT_EQ(ids.size(), bytes.size());
    for (std::size_t i = 0; i < ids.size(); ++i)
      ASSERT_EQ(ids[i], static_cast<unsigned char>(bytes[i]));
    const std::string text = t.decode(ids);
    ASSERT_EQ(text, reference_utf8_decode(bytes)) << n;
    ASSERT_TRUE(valid_utf8(text));
    if (valid_utf8(bytes)) {
      ASSERT_EQ(text, bytes);  // valid UTF-8 comes back byte for byte
    } else {
      ++invalid;
    }
    std::vector<std::string> pieces;
    ASSERT_EQ(streamed(t, ids, true, &pieces), text);
    for (const std::string& p : pieces) ASSERT_TRUE(valid_utf8(p));
  }
  EXPECT_GT(invalid, 1000);  // the draw does test invalid input
}

// ---- The detokenizer ---------------------------------------------------------------------------

TEST(Tokenizer, DetokenizerPiecesConcatenateToDecode) {
  temp_dir dir;
  const tokenizer families[] = {
      load(dir, byte_level_bpe_json(), "a.json"), load(dir, sentencepiece_json(), "b.json"),
      load(dir, metaspace_json(true), "c.json"), tokenizer::byte_level(300)};
  std::mt19937 rng(11);
  for (const tokenizer& t : families) {
    for (int n = 0; n < 500; ++n) {
      ids_t ids(rng() % 30);
      for (token_id& id : ids)
        id = static_cast<token_id>(rng() % static_cast<unsigned>(t.vocab_size() + 3)) - 1;
      for (const bool skip : {true, false}) {
        std::vector<std::string> pieces;
        ASSERT_EQ(streamed(t, ids, skip, &pieces), t.decode(ids, skip)) << t.source();
        for (const std::string& p : pieces) ASSERT_TRUE(valid_utf8(p)) << t.source();
      }
    }
  }
}

TEST(Tokenizer, DetokenizerHoldsBackUnfinishedCharacters) {
  temp_dir dir;
  const tokenizer t = load(dir, sentencepiece_json());
  std::vector<std::string> pieces;
  // ▁hello, then 日 as three byte tokens, then ▁world: the leading space of the text goes.
  EXPECT_EQ(streamed(t, ids_t{271, 3 + 0xE6, 3 + 0x97, 3 + 0xA5, 276}, true, &pieces),
            "hello日 world");
  EXPECT_EQ(pieces, (std::vector<std::string>{"hello", "", "", "日", " world", ""}));
  pieces.clear();
  // A lone leading ▁ is the stripped space; the next token keeps its own.
  EXPECT_EQ(streamed(t, ids_t{259, 271}, true, &pieces), " hello");
  EXPECT_EQ(pieces, (std::vector<std::string>{"", " hello", ""}));
}

// ---- Errors ------------------------------------------------------------------------------------

TEST(Tokenizer, BrokenOrUnsupportedFilesAreInvalidArguments) {
  temp_dir dir;
  const fs::path missing = dir.path / "nope.json";
  EXPECT_NE(error_of([&] { tokenizer::from_file(missing); }).find("nope.json"), std::string::npos);
  EXPECT_NE(error_of([&] {
              tokenizer::from_file(dir.write("bad.json", "{\"model\": ["));
            }).find("not valid JSON"),
            std::string::npos);

  auto message = [&](const std::function<void(json&)>& edit) {
    json j = sentencepiece_json();
    edit(j);
    const fs::path p = dir.write("edited.json", j.dump());
    const std::string m = error_of([&] { tokenizer::from_file(p); });
    EXPECT_NE(m.find("edited.json"), std::string::npos) << m;  // every message names the file
    return m;
  };
  EXPECT_NE(message([](json& j) {
              j["model"]["type"] = "WordPiece";
            }).find("model.type: 'WordPiece' is not supported"),
            std::string::npos);
  EXPECT_NE(message([](json& j) { j["model"].erase("type"); }).find("model.type: missing"),
            std::string::npos);
  EXPECT_NE(message([](json& j) { j["model"].erase("vocab"); }).find("model.vocab: missing"),
            std::string::npos);
  EXPECT_NE(message([](json& j) { j.erase("model"); }).find("model: missing"), std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["normalizer"]["normalizers"][1]["type"] = "Lowercase";
            }).find("normalizer.normalizers[1].type: 'Lowercase' is not supported"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["pre_tokenizer"] = {{"type", "Whitespace"}};
            }).find("pre_tokenizer.type: 'Whitespace' is not supported"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["decoder"] = {{"type", "WordPiece"}};
            }).find("decoder.type"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["post_processor"] = {{"type", "BertProcessing"}};
            }).find("post_processor.type"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["model"]["merges"][3] = "ll zz";
            }).find("model.merges[3]: token 'zz'"),
            std::string::npos);
  EXPECT_NE(message([](json& j) { j["model"]["merges"][0] = 42; }).find("model.merges[0]"),
            std::string::npos);
  EXPECT_NE(message([](json& j) { j["model"]["dropout"] = 0.1; }).find("model.dropout"),
            std::string::npos);
  EXPECT_NE(message([](json& j) { j["model"]["unk_token"] = "<nope>"; }).find("model.unk_token"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["model"]["vocab"] = json::array({"a", "b"});
            }).find("model.vocab"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["model"]["vocab"]["huge"] = 3000000000LL;
            }).find("model.vocab: token huge has id 3000000000"),
            std::string::npos);
  EXPECT_NE(
      message([](json& j) { j["added_tokens"][0]["id"] = "zero"; }).find("added_tokens[0].id"),
      std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["pre_tokenizer"] = {{"type", "Split"},
                                    {"pattern", {{"Regex", "(unclosed"}}},
                                    {"behavior", "Isolated"}};
            }).find("does not compile"),
            std::string::npos);
  EXPECT_NE(message([](json& j) {
              j["pre_tokenizer"] = {
                  {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Contiguous"}};
            }).find("pre_tokenizer.behavior: 'Contiguous' is not supported"),
            std::string::npos);
}

TEST(Tokenizer, EncodingIsNotQuadratic) {
  // 100 KB as one sentencepiece word (no pre-tokenizer splits it) and as many byte-level words.
  temp_dir dir;
  const tokenizer sp = load(dir, sentencepiece_json(), "sp.json");
  const tokenizer bl = load(dir, byte_level_bpe_json(), "bl.json");
  std::string text;
  while (text.size() < 100 * 1024) text += "hello world ab llo hé 日本 ";
  for (const tokenizer* t : {&sp, &bl}) {
    const auto t0 = std::chrono::steady_clock::now();
    const ids_t ids = t->encode(text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 2.0) << t->source() << ": " << ids.size() << " ids";  // about 20 ms here
    EXPECT_EQ(t->decode(ids), text);
  }
}

// ---- Chat templates ----------------------------------------------------------------------------

TEST(Tokenizer, ChatTemplatesExactText) {
  const std::vector<chat_message> chat = {
      {"system", "Be brief."}, {"user", " Hi! "}, {"assistant", "Hello."}, {"user", "Why?"}};
  EXPECT_EQ(apply_chat_template(chat_format::llama3, chat, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template(chat_format::llama3, std::span(chat).subspan(1, 1), false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
  EXPECT_EQ(
      apply_chat_template(chat_format::llama2, chat, true),
      "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi! [/INST] Hello. </s><s>[INST] Why? [/INST]");
  EXPECT_EQ(apply_chat_template(chat_format::llama2, std::span(chat).subspan(1), false),
            "<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Why? [/INST]");
  EXPECT_EQ(apply_chat_template(chat_format::mistral, chat, true),
            "<s>[INST] Be brief.\n\n Hi!  [/INST]Hello.</s>[INST] Why? [/INST]");
  EXPECT_EQ(apply_chat_template(chat_format::plain, chat, true),
            "system: Be brief.\nuser:  Hi! \nassistant: Hello.\nuser: Why?\nassistant: ");
}

TEST(Tokenizer, ChatTemplatesRejectBadConversations) {
  const std::vector<chat_message> tool = {{"user", "hi"}, {"tool", "{}"}};
  for (chat_format f :
       {chat_format::llama3, chat_format::llama2, chat_format::mistral, chat_format::plain}) {
    EXPECT_NE(error_of([&] { apply_chat_template(f, tool, true); }).find("role 'tool'"),
              std::string::npos);
    EXPECT_NE(error_of([&] { apply_chat_template(f, {}, true); }).find("no messages"),
              std::string::npos);
  }
  const std::vector<chat_message> twice = {{"user", "a"}, {"user", "b"}};
  EXPECT_NE(error_of([&] {
              apply_chat_template(chat_format::llama2, twice, true);
            }).find("'assistant' was expected"),
            std::string::npos);
  EXPECT_NO_THROW(apply_chat_template(chat_format::llama3, twice, true));
  const std::vector<chat_message> late_system = {
      {"user", "a"}, {"assistant", "b"}, {"system", "c"}};
  EXPECT_THROW(apply_chat_template(chat_format::mistral, late_system, true), std::invalid_argument);
  EXPECT_EQ(parse_chat_format("mistral"), chat_format::mistral);
  EXPECT_THROW(parse_chat_format("chatml"), std::invalid_argument);
}

TEST(Tokenizer, ChatFormatAndPromptIds) {
  temp_dir dir;
  const tokenizer l3 = load(dir, byte_level_bpe_json(), "l3.json");
  const tokenizer sp = load(dir, sentencepiece_json(), "sp.json");
  EXPECT_EQ(chat_format_for(l3), chat_format::llama3);
  EXPECT_EQ(chat_format_for(sp), chat_format::llama2);
  EXPECT_EQ(chat_format_for(sp, "Mistral-7B-Instruct-v0.2"), chat_format::mistral);
  const std::vector<chat_message> chat = {{"user", "hi"}};
  // BOS once: the template writes it as text, the post_processor adds none.
  const ids_t ids = encode_chat(l3, chat_format::llama3, chat, true);
  EXPECT_EQ(ids, (ids_t{265, 268, 'u', 's', 'e', 'r', 269, '\n', '\n', 'h', 'i',  267, 268,
                        'a', 's', 's', 'i', 's', 't', 'a', 'n',  't',  269, '\n', '\n'}));
  EXPECT_EQ(encode_chat(tokenizer::byte_level(300), chat_format::plain, chat, false),
            (ids_t{256, 'u', 's', 'e', 'r', ':', ' ', 'h', 'i', '\n'}));
}
