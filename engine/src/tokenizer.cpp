// Hugging Face tokenizer.json, read into one immutable table set (engine/tokenizer.hpp says what
// is supported). Encoding runs the file's pipeline in the order Hugging Face runs it:
//   added tokens split out of the raw text -> normalizer per remaining section -> added tokens
//   marked `normalized` split out again -> pre-tokenizer (regexes by ICU) -> BPE per word
//   (rank-ordered merges over a linked list of symbols, a heap of candidate pairs) -> byte
//   fallback / unk -> post_processor.
// Decoding is written once, as the streaming detokenizer; decode() pushes every id through one.
#include "ridgeline/engine/tokenizer.hpp"

#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "checkpoint_json.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline {

using json = nlohmann::json;

namespace detail {
namespace {

constexpr char32_t k_replacement_char = 0xFFFD;

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes UTF-8 `bytes` into `out` by the WHATWG Encoding rules (what TextDecoder does): each
// maximal invalid subpart becomes one U+FFFD. Unless `final`, a valid but unfinished sequence at
// the end is left undecoded; returns the bytes consumed. Streaming is exact: decoding in chunks,
// carrying the unconsumed tail over, gives the same text as decoding everything at once.
std::size_t decode_utf8(std::string_view bytes, bool final, std::string& out) {
  std::size_t i = 0, seq_start = 0;
  int needed = 0, seen = 0;
  unsigned lower = 0x80, upper = 0xBF;
  char32_t cp = 0;
  while (i < bytes.size()) {
    const unsigned b = static_cast<unsigned char>(bytes[i]);
    if (needed == 0) {
      seq_start = i;
      ++i;
      if (b < 0x80) {
        out.push_back(static_cast<char>(b));
      } else if (b >= 0xC2 && b <= 0xDF) {
        needed = 1;
        cp = b & 0x1F;
      } else if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) lower = 0xA0;
        if (b == 0xED) upper = 0x9F;
        needed = 2;
        cp = b & 0x0F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) lower = 0x90;
        if (b == 0xF4) upper = 0x8F;
        needed = 3;
        cp = b & 0x07;
      } else {
        append_utf8(out, k_replacement_char);
      }
      seen = 0;
      continue;
    }
    if (b < lower || b > upper) {  // the sequence ends here; this byte starts the next one
      needed = 0;
      lower = 0x80;
      upper = 0xBF;
      append_utf8(out, k_replacement_char);
      continue;
    }
    lower = 0x80;
    upper = 0xBF;
    cp = (cp << 6) | (b & 0x3F);
    ++i;
    if (++seen == needed) {
      append_utf8(out, cp);
      needed = 0;
    }
  }
  if (needed != 0) {
    if (!final) return seq_start;
    append_utf8(out, k_replacement_char);
  }
  return bytes.size();
}

// The code point at `i` of valid UTF-8 text; advances i.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  const unsigned b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  const int n = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
  char32_t cp = b & (0x3F >> n);
  for (int k = 1; k <= n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += static_cast<std::size_t>(n) + 1;
  return cp;
}

bool is_white_space(char32_t cp) {
  return u_isUWhiteSpace(static_cast<UChar32>(cp)) != 0;
}

std::string trim_start(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = i;
    if (!is_white_space(next_code_point(s, j))) break;
    i = j;
  }
  return std::string(s.substr(i));
}

std::string trim_end(std::string_view s) {
  std::size_t keep = 0;  // end of the last non-space character
  for (std::size_t i = 0; i < s.size();) {
    if (!is_white_space(next_code_point(s, i))) keep = i;
  }
  return std::string(s.substr(0, keep));
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  if (pos == 0) return;
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
using string_map = std::unordered_map<std::string, token_id, string_hash, std::equal_to<>>;

// A compiled ICU regex over UTF-8 text (ICU matches UTF-16; offsets are mapped back).
// RegexPattern is immutable and shared; each search makes its own matcher, so it is thread-safe.
class regex {
 public:
  regex(std::string_view pattern, bool literal, const std::string& where) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError parse{};
    const icu::UnicodeString p = icu::UnicodeString::fromUTF8(
        icu::StringPiece(pattern.data(), static_cast<int32_t>(pattern.size())));
    m_pattern.reset(icu::RegexPattern::compile(p, literal ? UREGEX_LITERAL : 0, parse, status));
    if (U_FAILURE(status) || !m_pattern) {
      throw std::invalid_argument(where + ": the regex " + printable(pattern, 80) +
                                  " does not compile (" + u_errorName(status) + " at offset " +
                                  std::to_string(parse.offset) + ")");
    }
  }

  // f(begin, end) in byte offsets for every non-empty match in `text` (valid UTF-8), in order.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    const icu::UnicodeString u = icu::UnicodeString::fromUTF8(
        icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
    std::vector<std::uint32_t> offset8;  // [utf16 length + 1] byte offset of each UTF-16 unit
    offset8.reserve(static_cast<std::size_t>(u.length()) + 1);
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t at = i;
      const char32_t cp = next_code_point(text, i);
      offset8.push_back(static_cast<std::uint32_t>(at));
      if (cp > 0xFFFF) offset8.push_back(static_cast<std::uint32_t>(at));
    }
    offset8.push_back(static_cast<std::uint32_t>(text.size()));
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> m(m_pattern->matcher(u, status));
    // ICU's backtracking stack is capped at 8 MB by default, which a few hundred KB of white
    // space exhausts under patterns like \s*[\r\n]+; it may grow with the input instead.
    if (U_SUCCESS(status)) m->setStackLimit(0, status);
    while (U_SUCCESS(status) && m->find(status)) {
      const int32_t b = m->start(status), e = m->end(status);
      if (U_FAILURE(status)) break;
      if (e > b)
        f(std::size_t{offset8[static_cast<std::size_t>(b)]},
          std::size_t{offset8[static_cast<std::size_t>(e)]});
    }
    if (U_FAILURE(status)) {
      throw std::invalid_argument(
          std::string("tokenizer: a pre-tokenizer regex failed on the input (") +
          u_errorName(status) + ")");
    }
  }

 private:
  std::unique_ptr<icu::RegexPattern> m_pattern;
};

// GPT-2's byte <-> printable character table (ByteLevel): bytes that are printable Latin-1 map to
// themselves, the other 68 to U+0100.. in byte order.
struct byte_level_table {
  std::array<std::string, 256> byte_to_utf8;
  std::array<std::int16_t, 324> char_to_byte;  // code point (< 324) -> byte, -1 for none
  byte_level_table() {
    char_to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable_byte = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp =
          printable_byte ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      append_utf8(byte_to_utf8[static_cast<std::size_t>(b)], cp);
      char_to_byte[cp] = static_cast<std::int16_t>(b);
    }
  }
};

// Added tokens found by longest match, left to right (a byte trie).
class token_trie {
 public:
  void add(std::string_view text, token_id id) {
    if (text.empty()) return;
    std::size_t node = 0;
    for (const char c : text) {
      auto& edges = m_nodes[node].edges;
      auto it =
          std::find_if(edges.begin(), edges.end(), [&](const auto& e) { return e.first == c; });
      if (it == edges.end()) {
        edges.emplace_back(c, static_cast<std::uint32_t>(m_nodes.size()));
        node = m_nodes.size();
        m_nodes.emplace_back();
      } else {
        node = it->second;
      }
    }
    m_nodes[node].id = id;
    m_first[static_cast<unsigned char>(text[0])] = true;
  }
  bool empty() const { return m_nodes.size() == 1; }
  // The longest token starting at `at`: {id, length}, or {-1, 0}.
  std::pair<token_id, std::size_t> match(std::string_view s, std::size_t at) const {
    if (!m_first[static_cast<unsigned char>(s[at])]) return {-1, 0};
    std::pair<token_id, std::size_t> best{-1, 0};
    std::size_t node = 0;
    for (std::size_t i = at; i < s.size(); ++i) {
      const auto& edges = m_nodes[node].edges;
      auto it =
          std::find_if(edges.begin(), edges.end(), [&](const auto& e) { return e.first == s[i]; });
      if (it == edges.end()) break;
      node = it->second;
      if (m_nodes[node].id >= 0) best = {m_nodes[node].id, i + 1 - at};
    }
    return best;
  }

 private:
  struct node_t {
    std::vector<std::pair<char, std::uint32_t>> edges;
    token_id id = -1;
  };
  std::vector<node_t> m_nodes = std::vector<node_t>(1);
  std::array<bool, 256> m_first{};
};

struct section {
  std::string text;
  token_id added = -1;  // the added token this section is, or -1 for text
};

// ---------------------------------------------------------------------------------------------
// The loaded tables.

struct normalizer_step {
  enum class kind { prepend, replace, replace_regex, unicode } k;
  std::string a, b;                        // prepend: a; replace: a -> b
  std::shared_ptr<const regex> re;         // replace_regex
  const icu::Normalizer2* form = nullptr;  // unicode (ICU-owned singleton)
};

struct pre_tokenizer_step {
  enum class kind { split, byte_level, metaspace } k = kind::split;
  std::shared_ptr<const regex> re;  // split; byte_level with use_regex
  bool removed = false;             // split: drop the matches instead of keeping them
  bool add_prefix_space = false;    // byte_level
  std::string replacement;          // metaspace
  enum class prepend { always, first, never } scheme = prepend::always;
  bool split_words = true;  // metaspace
};

struct added_token {
  std::string content;
  token_id id = -1;
  bool special = false, lstrip = false, rstrip = false, normalized = false;
};

}  // namespace
}  // namespace detail

struct tokenizer::impl {
  std::string source;
  bool random_bytes = false;  // byte_level(): bytes, BOS, EOS, printable characters
  std::int32_t vocab = 0;

  // Per id ([vocab]): the token's string, what the decoder makes of it, flags.
  enum : std::uint8_t { flag_present = 1, flag_special = 2, flag_added = 4 };
  std::vector<std::string> token;  // as the file writes it
  std::vector<std::string> piece;  // decoder: bytes (ByteLevel) or text after Replace steps
  std::vector<std::int16_t> byte;  // decoder ByteFallback: the byte of a <0xNN> token, else -1
  std::vector<std::uint8_t> flags;
  detail::string_map token_to_id;  // vocabulary and added tokens (added ones win)

  std::vector<detail::added_token> added_tokens;
  detail::token_trie raw_added, normalized_added;

  std::vector<detail::normalizer_step> normalizers;
  std::vector<detail::pre_tokenizer_step> pre_tokenizers;
  std::shared_ptr<const detail::byte_level_table> byte_table;

  // BPE
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, token_id>> merges;  // -> rank, result
  token_id unk = -1;
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::array<token_id, 256> byte_token{};  // <0xNN> ids, -1 when absent

  std::vector<token_id> prefix, suffix;  // post_processor with add_special_tokens

  // Decoder
  enum class decoder_kind { byte_level, pieces } dec = decoder_kind::pieces;
  bool dec_byte_fallback = false;
  bool dec_metaspace_first = false;  // Metaspace: the first token's leading space goes
  char32_t strip_char = U' ';
  std::size_t strip_start = 0;  // Strip after Fuse: leading strip_chars removed

  token_id bos = -1;
  std::vector<token_id> eos;

  bool has(token_id id) const {
    return id >= 0 && id < vocab &&
           (random_bytes || (flags[static_cast<std::size_t>(id)] & flag_present));
  }
  bool is_special(token_id id) const {
    if (random_bytes) return id == 256 || id == 257;
    return has(id) && (flags[static_cast<std::size_t>(id)] & flag_special);
  }

  void split_added(std::string_view text, const detail::token_trie& trie,
                   std::vector<detail::section>& out) const;
  std::string normalize(std::string s) const;
  std::vector<std::string> pre_tokenize(const std::string& s, std::size_t section_index) const;
  void encode_word(std::string_view word, std::vector<token_id>& out) const;
  std::vector<token_id> encode(std::string_view text, bool add_special_tokens) const;
};

namespace detail {
namespace {

using impl = tokenizer::impl;

// ---------------------------------------------------------------------------------------------
// Reading tokenizer.json: every error names the file and the field.

class reader {
 public:
  explicit reader(std::string file) : m_file(std::move(file)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw std::invalid_argument(m_file + ": " + field + ": " + what);
  }
  const json& member(const json& obj, const std::string& field, const char* key) const {
    if (!obj.is_object()) fail(field, "is not an object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(join(field, key), "missing");
    return *it;
  }
  std::string string_member(const json& obj, const std::string& field, const char* key) const {
    const json& v = member(obj, field, key);
    if (!v.is_string()) fail(join(field, key), "not a string (" + quoted(v) + ")");
    return v.get<std::string>();
  }
  // An optional field of the format: absent or null gives the format's default.
  bool optional_bool(const json& obj, const std::string& field, const char* key, bool dflt) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail(join(field, key), "not true or false (" + quoted(*it) + ")");
    return it->get<bool>();
  }
  std::string type_of(const json& obj, const std::string& field) const {
    return string_member(obj, field, "type");
  }
  [[noreturn]] void unsupported(const std::string& field, const std::string& value,
                                const char* supported) const {
    fail(field, "'" + printable(value, 60) + "' is not supported (supported: " + supported + ")");
  }
  static std::string join(const std::string& field, const char* key) {
    return field.empty() ? std::string(key) : field + "." + key;
  }
  static std::string at(const std::string& field, std::size_t i) {
    return field + "[" + std::to_string(i) + "]";
  }
  const std::string& file() const { return m_file; }

  // {"String": s} or {"Regex": r}, compiled by ICU.
  std::shared_ptr<const regex> pattern(const json& obj, const std::string& field) const {
    const json& p = member(obj, field, "pattern");
    const std::string f = join(field, "pattern");
    if (p.is_object() && p.contains("String") && p["String"].is_string()) {
      return std::make_shared<regex>(p["String"].get<std::string>(), true, m_file + ": " + f);
    }
    if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) {
      return std::make_shared<regex>(p["Regex"].get<std::string>(), false, m_file + ": " + f);
    }
    fail(f, "neither {\"String\": ...} nor {\"Regex\": ...} (" + quoted(p) + ")");
  }

 private:
  std::string m_file;
};

void read_normalizer(const reader& r, const json& n, const std::string& field,
                     std::vector<normalizer_step>& out) {
  if (n.is_null()) return;
  const std::string type = r.type_of(n, field);
  if (type == "Sequence") {
    const json& list = r.member(n, field, "normalizers");
    if (!list.is_array()) r.fail(field + ".normalizers", "not an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      read_normalizer(r, list[i], reader::at(field + ".normalizers", i), out);
    }
  } else if (type == "Prepend") {
    out.push_back(
        {normalizer_step::kind::prepend, r.string_member(n, field, "prepend"), {}, {}, {}});
  } else if (type == "Replace") {
    const std::string content = r.string_member(n, field, "content");
    const json& p = r.member(n, field, "pattern");
    if (p.is_object() && p.contains("String") && p["String"].is_string()) {
      out.push_back(
          {normalizer_step::kind::replace, p["String"].get<std::string>(), content, {}, {}});
    } else {
      out.push_back({normalizer_step::kind::replace_regex, {}, content, r.pattern(n, field), {}});
    }
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* form = type == "NFC"    ? icu::Normalizer2::getNFCInstance(status)
                                   : type == "NFD"  ? icu::Normalizer2::getNFDInstance(status)
                                   : type == "NFKC" ? icu::Normalizer2::getNFKCInstance(status)
                                                    : icu::Normalizer2::getNFKDInstance(status);
    if (U_FAILURE(status) || !form) r.fail(field, "ICU has no " + type + " data");
    out.push_back({normalizer_step::kind::unicode, {}, {}, {}, form});
  } else {
    r.unsupported(field + ".type", type, "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD");
  }
}

void read_pre_tokenizer(const reader& r, const json& p, const std::string& field, impl& t) {
  if (p.is_null()) return;
  const std::string type = r.type_of(p, field);
  if (type == "Sequence") {
    const json& list = r.member(p, field, "pretokenizers");
    if (!list.is_array()) r.fail(field + ".pretokenizers", "not an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      read_pre_tokenizer(r, list[i], reader::at(field + ".pretokenizers", i), t);
    }
  } else if (type == "Split") {
    pre_tokenizer_step s;
    s.k = pre_tokenizer_step::kind::split;
    s.re = r.pattern(p, field);
    if (r.optional_bool(p, field, "invert", false)) {
      r.fail(field + ".invert", "true is not supported");
    }
    const std::string behavior = r.string_member(p, field, "behavior");
    if (behavior == "Removed") {
      s.removed = true;
    } else if (behavior != "Isolated") {
      r.unsupported(field + ".behavior", behavior, "Isolated, Removed");
    }
    t.pre_tokenizers.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    pre_tokenizer_step s;
    s.k = pre_tokenizer_step::kind::byte_level;
    s.add_prefix_space = r.optional_bool(p, field, "add_prefix_space", true);
    if (r.optional_bool(p, field, "use_regex", true)) {
      // GPT-2's pattern, which ByteLevel applies itself when use_regex is true.
      s.re = std::make_shared<regex>(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
          false, r.file() + ": " + field);
    }
    if (!t.byte_table) t.byte_table = std::make_shared<byte_level_table>();
    t.pre_tokenizers.push_back(std::move(s));
  } else if (type == "Metaspace") {
    pre_tokenizer_step s;
    s.k = pre_tokenizer_step::kind::metaspace;
    s.replacement = p.contains("replacement") ? r.string_member(p, field, "replacement") : "▁";
    if (s.replacement.empty()) r.fail(field + ".replacement", "empty");
    if (p.contains("prepend_scheme") && !p["prepend_scheme"].is_null()) {
      const std::string scheme = r.string_member(p, field, "prepend_scheme");
      if (scheme == "always") {
        s.scheme = pre_tokenizer_step::prepend::always;
      } else if (scheme == "first") {
        s.scheme = pre_tokenizer_step::prepend::first;
      } else if (scheme == "never") {
        s.scheme = pre_tokenizer_step::prepend::never;
      } else {
        r.unsupported(field + ".prepend_scheme", scheme, "always, first, never");
      }
    } else {
      s.scheme = r.optional_bool(p, field, "add_prefix_space", true)
                     ? pre_tokenizer_step::prepend::always
                     : pre_tokenizer_step::prepend::never;
    }
    s.split_words = r.optional_bool(p, field, "split", true);
    t.pre_tokenizers.push_back(std::move(s));
  } else {
    r.unsupported(field + ".type", type, "Sequence, Split, ByteLevel, Metaspace");
  }
}

void read_post_processor(const reader& r, const json& p, const std::string& field, impl& t) {
  if (p.is_null()) return;
  const std::string type = r.type_of(p, field);
  if (type == "Sequence") {
    const json& list = r.member(p, field, "processors");
    if (!list.is_array()) r.fail(field + ".processors", "not an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      read_post_processor(r, list[i], reader::at(field + ".processors", i), t);
    }
  } else if (type == "ByteLevel") {
    // Only moves offsets; the ids are unchanged.
  } else if (type == "TemplateProcessing") {
    const json& single = r.member(p, field, "single");
    const json& specials = r.member(p, field, "special_tokens");
    if (!single.is_array()) r.fail(field + ".single", "not an array");
    std::vector<token_id> before, after;
    int sequences = 0;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const std::string f = reader::at(field + ".single", i);
      const json& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        const std::string id = r.string_member(item["Sequence"], f + ".Sequence", "id");
        if (id != "A")
          r.fail(f + ".Sequence.id", "'" + printable(id, 20) + "' in the single template");
        ++sequences;
      } else if (item.is_object() && item.contains("SpecialToken")) {
        const std::string name = r.string_member(item["SpecialToken"], f + ".SpecialToken", "id");
        const std::string sf = field + ".special_tokens";
        if (!specials.is_object() || !specials.contains(name))
          r.fail(sf, "no entry '" + printable(name, 40) + "'");
        const json& ids = r.member(specials[name], sf + "." + name, "ids");
        if (!ids.is_array()) r.fail(sf + "." + name + ".ids", "not an array");
        for (const json& id : ids) {
          if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
              id.get<std::int64_t>() >= t.vocab) {
            r.fail(sf + "." + name + ".ids", "id " + quoted(id) + " is not in the vocabulary");
          }
          (sequences == 0 ? before : after).push_back(id.get<token_id>());
        }
      } else {
        r.fail(f, "neither a Sequence nor a SpecialToken (" + quoted(item) + ")");
      }
    }
    if (sequences != 1) r.fail(field + ".single", "must hold the sequence $A exactly once");
    // A later processor wraps what the earlier ones made.
    t.prefix.insert(t.prefix.begin(), before.begin(), before.end());
    t.suffix.insert(t.suffix.end(), after.begin(), after.end());
  } else {
    r.unsupported(field + ".type", type, "Sequence, ByteLevel, TemplateProcessing");
  }
}

void read_decoder(const reader& r, const json& d, const std::string& field, impl& t) {
  if (d.is_null()) r.fail(field, "null is not supported (a decoder is needed to decode)");
  const std::string type = r.type_of(d, field);
  if (type == "ByteLevel") {
    t.dec = impl::decoder_kind::byte_level;
    if (!t.byte_table) t.byte_table = std::make_shared<byte_level_table>();
    return;
  }
  t.dec = impl::decoder_kind::pieces;
  std::vector<std::pair<std::string, std::string>> replaces;
  if (type == "Metaspace") {
    const std::string rep =
        d.contains("replacement") ? r.string_member(d, field, "replacement") : "▁";
    replaces.emplace_back(rep, " ");
    bool prepend = r.optional_bool(d, field, "add_prefix_space", true);
    if (d.contains("prepend_scheme") && !d["prepend_scheme"].is_null()) {
      prepend = r.string_member(d, field, "prepend_scheme") != "never";
    }
    t.dec_metaspace_first = prepend;
  } else if (type == "Sequence") {
    const json& list = r.member(d, field, "decoders");
    if (!list.is_array()) r.fail(field + ".decoders", "not an array");
    if (list.size() == 1) return read_decoder(r, list[0], field + ".decoders[0]", t);
    // Replace* ByteFallback? Fuse? Strip?: the order the Llama 2 / Mistral files use.
    int stage = 0;  // 0 replaces, 1 after ByteFallback, 2 after Fuse, 3 after Strip
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string f = reader::at(field + ".decoders", i);
      const std::string step = r.type_of(list[i], f);
      if (step == "Replace" && stage == 0) {
        const json& p = r.member(list[i], f, "pattern");
        if (!p.is_object() || !p.contains("String") || !p["String"].is_string()) {
          r.fail(f + ".pattern", "only {\"String\": ...} is supported in a decoder");
        }
        replaces.emplace_back(p["String"].get<std::string>(),
                              r.string_member(list[i], f, "content"));
      } else if (step == "ByteFallback" && stage == 0) {
        t.dec_byte_fallback = true;
        stage = 1;
      } else if (step == "Fuse" && stage <= 1) {
        stage = 2;
      } else if (step == "Strip" && stage == 2) {
        const std::string content = r.string_member(list[i], f, "content");
        std::size_t k = 0;
        if (content.empty() || (t.strip_char = next_code_point(content, k), k != content.size())) {
          r.fail(f + ".content", "must be one character");
        }
        const json& start = r.member(list[i], f, "start");
        const json& stop = r.member(list[i], f, "stop");
        if (!start.is_number_unsigned() || !stop.is_number_unsigned())
          r.fail(f, "start and stop must be counts");
        if (stop.get<std::uint64_t>() != 0) r.fail(f + ".stop", "only 0 is supported");
        t.strip_start = start.get<std::size_t>();
        stage = 3;
      } else {
        r.unsupported(f + ".type", step,
                      "Replace (String), then ByteFallback, then Fuse, then Strip, in that order");
      }
    }
  } else {
    r.unsupported(field + ".type", type, "ByteLevel, Metaspace, Sequence");
  }
  for (std::size_t id = 0; id < t.token.size(); ++id) {
    std::string s = t.token[id];
    for (const auto& [from, to] : replaces) replace_all(s, from, to);
    t.piece[id] = std::move(s);
  }
}

// "<0xNN>" -> NN (the form byte_fallback writes), -1 otherwise.
int byte_token_value(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  int v = 0;
  for (const char c : s.substr(3, 2)) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return -1;
    v = v * 16 +
        (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::toupper(c) - 'A' + 10);
  }
  return v;
}

void read_model(const reader& r, const json& m, impl& t) {
  const std::string type = r.type_of(m, "model");
  if (type != "BPE") r.unsupported("model.type", type, "BPE");
  if (m.contains("dropout") && !m["dropout"].is_null() &&
      !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0)) {
    r.fail("model.dropout", "BPE dropout is not supported (" + quoted(m["dropout"]) + ")");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && !m[key].is_null() &&
        !(m[key].is_string() && m[key].get<std::string>().empty())) {
      r.fail(std::string("model.") + key, "is not supported (" + quoted(m[key]) + ")");
    }
  }
  t.fuse_unk = r.optional_bool(m, "model", "fuse_unk", false);
  t.byte_fallback = r.optional_bool(m, "model", "byte_fallback", false);
  t.ignore_merges = r.optional_bool(m, "model", "ignore_merges", false);
}

// Ids are dense tables' indexes; real vocabularies stay under 300000.
constexpr std::int64_t k_max_ids = std::int64_t{1} << 24;

void read_vocab(const reader& r, const json& m, const json& added_tokens, impl& t) {
  const json& vocab = r.member(m, "model", "vocab");
  if (!vocab.is_object()) r.fail("model.vocab", "not an object of token: id");
  std::int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
        it.value().get<std::int64_t>() >= k_max_ids) {
      r.fail("model.vocab", "token " + printable(it.key(), 40) + " has id " + quoted(it.value()) +
                                " (ids are 0 .. 2^24 - 1)");
    }
    max_id = std::max(max_id, it.value().get<std::int64_t>());
  }
  if (!added_tokens.is_array()) r.fail("added_tokens", "not an array");
  for (std::size_t i = 0; i < added_tokens.size(); ++i) {
    const std::string f = reader::at("added_tokens", i);
    added_token a;
    a.content = r.string_member(added_tokens[i], f, "content");
    const json& id = r.member(added_tokens[i], f, "id");
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
        id.get<std::int64_t>() >= k_max_ids) {
      r.fail(f + ".id", "not a token id of 0 .. 2^24 - 1 (" + quoted(id) + ")");
    }
    a.id = id.get<token_id>();
    a.special = r.optional_bool(added_tokens[i], f, "special", false);
    a.lstrip = r.optional_bool(added_tokens[i], f, "lstrip", false);
    a.rstrip = r.optional_bool(added_tokens[i], f, "rstrip", false);
    a.normalized = r.optional_bool(added_tokens[i], f, "normalized", !a.special);
    if (r.optional_bool(added_tokens[i], f, "single_word", false)) {
      r.fail(f + ".single_word", "true is not supported");
    }
    if (a.content.empty()) r.fail(f + ".content", "empty");
    max_id = std::max<std::int64_t>(max_id, a.id);
    t.added_tokens.push_back(std::move(a));
  }
  if (max_id < 0) r.fail("model.vocab", "empty");
  t.vocab = static_cast<std::int32_t>(max_id + 1);
  const auto n = static_cast<std::size_t>(t.vocab);
  t.token.assign(n, {});
  t.piece.assign(n, {});
  t.byte.assign(n, -1);
  t.flags.assign(n, 0);
  t.token_to_id.reserve(vocab.size() + t.added_tokens.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<std::size_t>();
    t.token[id] = it.key();
    t.flags[id] |= impl::flag_present;
    t.token_to_id[it.key()] = static_cast<token_id>(id);
  }
  for (const added_token& a : t.added_tokens) {
    const auto id = static_cast<std::size_t>(a.id);
    t.token[id] = a.content;
    t.flags[id] |= static_cast<std::uint8_t>(impl::flag_present | impl::flag_added |
                                             (a.special ? impl::flag_special : 0));
    t.token_to_id[a.content] = a.id;
  }
}

void read_merges(const reader& r, const json& m, impl& t) {
  const json& merges = r.member(m, "model", "merges");
  if (!merges.is_array()) r.fail("model.merges", "not an array");
  t.merges.reserve(merges.size());
  auto id_of = [&](const std::string& s, std::size_t i) {
    auto it = t.token_to_id.find(s);
    if (it == t.token_to_id.end()) {
      r.fail(reader::at("model.merges", i),
             "token '" + printable(s, 40) + "' is not in the vocabulary");
    }
    return it->second;
  };
  std::string a, b;
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    if (e.is_string()) {  // "a b"
      const std::string& s = e.get_ref<const std::string&>();
      const std::size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        r.fail(reader::at("model.merges", i),
               "'" + printable(s, 40) + "' is not two tokens split by one space");
      }
      a.assign(s, 0, space);
      b.assign(s, space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // [a, b]
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      r.fail(reader::at("model.merges", i), "neither \"a b\" nor [a, b] (" + quoted(e) + ")");
    }
    const token_id left = id_of(a, i), right = id_of(b, i), result = id_of(a + b, i);
    const std::uint64_t key = (std::uint64_t(std::uint32_t(left)) << 32) | std::uint32_t(right);
    t.merges.insert_or_assign(
        key, std::pair<std::int32_t, token_id>(static_cast<std::int32_t>(i), result));
  }
}

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Encoding.

// Splits `text` around the added tokens of `trie` (longest match, left to right).
void tokenizer::impl::split_added(std::string_view text, const detail::token_trie& trie,
                                  std::vector<detail::section>& out) const {
  const std::size_t first = out.size();
  if (trie.empty()) {
    out.push_back({std::string(text), -1});
    return;
  }
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size();) {
    const auto [id, len] = trie.match(text, i);
    if (id < 0) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({std::string(text.substr(start, i - start)), -1});
    out.push_back({std::string(text.substr(i, len)), id});
    i += len;
    start = i;
  }
  if (start < text.size()) out.push_back({std::string(text.substr(start)), -1});
  // lstrip / rstrip take the white space next to the token with them.
  for (std::size_t i = first; i < out.size(); ++i) {
    if (out[i].added < 0) continue;
    const auto a = std::find_if(added_tokens.begin(), added_tokens.end(),
                                [&](const detail::added_token& x) { return x.id == out[i].added; });
    if (a == added_tokens.end()) continue;
    if (a->lstrip && i > first && out[i - 1].added < 0)
      out[i - 1].text = detail::trim_end(out[i - 1].text);
    if (a->rstrip && i + 1 < out.size() && out[i + 1].added < 0) {
      out[i + 1].text = detail::trim_start(out[i + 1].text);
    }
  }
}

std::string tokenizer::impl::normalize(std::string s) const {
  for (const detail::normalizer_step& n : normalizers) {
    switch (n.k) {
      case detail::normalizer_step::kind::prepend:
        if (!s.empty()) s.insert(0, n.a);
        break;
      case detail::normalizer_step::kind::replace:
        detail::replace_all(s, n.a, n.b);
        break;
      case detail::normalizer_step::kind::replace_regex: {
        std::string out;
        std::size_t pos = 0;
        n.re->for_each_match(s, [&](std::size_t b, std::size_t e) {
          out.append(s, pos, b - pos);
          out.append(n.b);
          pos = e;
        });
        out.append(s, pos, std::string::npos);
        s = std::move(out);
        break;
      }
      case detail::normalizer_step::kind::unicode: {
        UErrorCode status = U_ZERO_ERROR;
        const icu::UnicodeString u =
            n.form->normalize(icu::UnicodeString::fromUTF8(
                                  icu::StringPiece(s.data(), static_cast<int32_t>(s.size()))),
                              status);
        if (U_FAILURE(status)) {
          throw std::invalid_argument(std::string("tokenizer: Unicode normalization failed (") +
                                      u_errorName(status) + ")");
        }
        s.clear();
        u.toUTF8String(s);
        break;
      }
    }
  }
  return s;
}

std::vector<std::string> tokenizer::impl::pre_tokenize(const std::string& s,
                                                       std::size_t section_index) const {
  std::vector<std::string> words{s}, next;
  for (const detail::pre_tokenizer_step& p : pre_tokenizers) {
    next.clear();
    for (std::string& w : words) {
      switch (p.k) {
        case detail::pre_tokenizer_step::kind::split: {
          std::size_t pos = 0;
          p.re->for_each_match(w, [&](std::size_t b, std::size_t e) {
            if (b > pos) next.push_back(w.substr(pos, b - pos));
            if (!p.removed) next.push_back(w.substr(b, e - b));
            pos = e;
          });
          if (pos < w.size()) next.push_back(w.substr(pos));
          break;
        }
        case detail::pre_tokenizer_step::kind::byte_level: {
          if (p.add_prefix_space && (w.empty() || w[0] != ' ')) w.insert(0, " ");
          auto map_bytes = [&](std::string_view text) {
            std::string mapped;
            mapped.reserve(text.size() * 2);
            for (const char c : text)
              mapped += byte_table->byte_to_utf8[static_cast<unsigned char>(c)];
            next.push_back(std::move(mapped));
          };
          if (p.re) {
            p.re->for_each_match(w, [&](std::size_t b, std::size_t e) {
              map_bytes(std::string_view(w).substr(b, e - b));
            });
          } else {
            map_bytes(w);
          }
          break;
        }
        case detail::pre_tokenizer_step::kind::metaspace: {
          detail::replace_all(w, " ", p.replacement);
          const bool prepend =
              p.scheme == detail::pre_tokenizer_step::prepend::always ||
              (p.scheme == detail::pre_tokenizer_step::prepend::first && section_index == 0);
          if (prepend && w.compare(0, p.replacement.size(), p.replacement) != 0)
            w.insert(0, p.replacement);
          if (!p.split_words) {
            next.push_back(std::move(w));
            break;
          }
          // Each replacement character starts a word (Hugging Face's MergedWithNext).
          std::size_t start = 0;
          for (std::size_t hit = w.find(p.replacement, 1); hit != std::string::npos;
               hit = w.find(p.replacement, hit + p.replacement.size())) {
            if (hit > start) next.push_back(w.substr(start, hit - start));
            start = hit;
          }
          if (start < w.size()) next.push_back(w.substr(start));
          break;
        }
      }
    }
    words.swap(next);
  }
  std::erase_if(words, [](const std::string& w) { return w.empty(); });
  return words;
}

// BPE over one word: symbols are code points (their vocabulary id, -1 when not in it); the
// adjacent pair with the lowest merge rank merges first, the leftmost on ties. Candidates wait in
// a heap and are checked against the current list when they come out.
void tokenizer::impl::encode_word(std::string_view word, std::vector<token_id>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    auto it = token_to_id.find(word);
    if (it != token_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct symbol {
    token_id id;
    std::int32_t prev, next;
    std::uint32_t begin, end;  // bytes of the word
  };
  std::vector<symbol> s;
  s.reserve(word.size());
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t b = i;
    detail::next_code_point(word, i);
    auto it = token_to_id.find(word.substr(b, i - b));
    const auto n = static_cast<std::int32_t>(s.size());
    s.push_back({it == token_to_id.end() ? -1 : it->second, n - 1, n + 1,
                 static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(i)});
  }
  s.back().next = -1;

  struct candidate {
    std::int32_t rank, pos;
    token_id left, right, result;
    bool operator>(const candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<candidate, std::vector<candidate>, std::greater<>> heap;
  auto consider = [&](std::int32_t pos) {
    if (pos < 0) return;
    const std::int32_t nx = s[static_cast<std::size_t>(pos)].next;
    if (nx < 0) return;
    const token_id l = s[static_cast<std::size_t>(pos)].id, r = s[static_cast<std::size_t>(nx)].id;
    if (l < 0 || r < 0) return;
    auto it = merges.find((std::uint64_t(std::uint32_t(l)) << 32) | std::uint32_t(r));
    if (it != merges.end()) heap.push({it->second.first, pos, l, r, it->second.second});
  };
  for (std::int32_t i = 0; i + 1 < static_cast<std::int32_t>(s.size()); ++i) consider(i);
  constexpr token_id k_dead = -2;
  while (!heap.empty()) {
    const candidate c = heap.top();
    heap.pop();
    symbol& left = s[static_cast<std::size_t>(c.pos)];
    if (left.id != c.left || left.next < 0) continue;
    symbol& right = s[static_cast<std::size_t>(left.next)];
    if (right.id != c.right) continue;
    left.id = c.result;
    left.end = right.end;
    left.next = right.next;
    if (right.next >= 0) s[static_cast<std::size_t>(right.next)].prev = c.pos;
    right.id = k_dead;
    consider(left.prev);
    consider(c.pos);
  }
  for (std::int32_t i = 0; i >= 0; i = s[static_cast<std::size_t>(i)].next) {
    const symbol& x = s[static_cast<std::size_t>(i)];
    if (x.id >= 0) {
      out.push_back(x.id);
      continue;
    }
    if (byte_fallback) {  // every byte as <0xNN>, when the vocabulary has them all
      const std::string_view bytes = word.substr(x.begin, x.end - x.begin);
      if (std::all_of(bytes.begin(), bytes.end(),
                      [&](char c) { return byte_token[static_cast<unsigned char>(c)] >= 0; })) {
        for (const char c : bytes) out.push_back(byte_token[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk >= 0) out.push_back(unk);
  }
}

std::vector<token_id> tokenizer::impl::encode(std::string_view raw, bool add_special_tokens) const {
  std::vector<token_id> ids;
  if (random_bytes) {
    ids.reserve(raw.size() + 1);
    if (add_special_tokens) ids.push_back(256);
    for (const char c : raw) ids.push_back(static_cast<unsigned char>(c));
    return ids;
  }
  std::string text;
  detail::decode_utf8(raw, true, text);

  std::vector<detail::section> sections, parts;
  split_added(text, raw_added, sections);
  if (add_special_tokens) ids = prefix;
  for (std::size_t si = 0; si < sections.size(); ++si) {
    const detail::section& sec = sections[si];
    if (sec.added >= 0) {
      ids.push_back(sec.added);
      continue;
    }
    if (sec.text.empty()) continue;
    const std::string normalized = normalize(sec.text);
    if (normalized.empty()) continue;
    parts.clear();
    split_added(normalized, normalized_added, parts);
    for (const detail::section& part : parts) {
      if (part.added >= 0) {
        ids.push_back(part.added);
        continue;
      }
      if (part.text.empty()) continue;
      const std::size_t first = ids.size();
      for (const std::string& w : pre_tokenize(part.text, si)) encode_word(w, ids);
      if (fuse_unk && unk >= 0) {  // runs of unknowns become one
        auto end = std::unique(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end(),
                               [&](token_id a, token_id b) { return a == unk && b == unk; });
        ids.erase(end, ids.end());
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix.begin(), suffix.end());
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Loading.

tokenizer tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  const std::string file = tokenizer_json.string();
  std::string text;
  try {
    text = read_text_file(tokenizer_json);
  } catch (const io_error& e) {
    throw std::invalid_argument(std::string("tokenizer: ") + e.what());
  }
  const json j = detail::parse_json(text, file, "the tokenizer");
  const detail::reader r(file);
  if (!j.is_object()) r.fail("(top level)", "not an object");

  auto t = std::make_shared<impl>();
  t->source = file;
  const json& model = r.member(j, "", "model");
  detail::read_model(r, model, *t);
  detail::read_vocab(r, model, j.value("added_tokens", json::array()), *t);
  detail::read_merges(r, model, *t);

  t->byte_token.fill(-1);
  for (std::size_t id = 0; id < t->token.size(); ++id) {
    if (!(t->flags[id] & impl::flag_present)) continue;
    const int b = detail::byte_token_value(t->token[id]);
    if (b >= 0 && t->byte_token[static_cast<std::size_t>(b)] < 0) {
      t->byte_token[static_cast<std::size_t>(b)] = static_cast<token_id>(id);
    }
  }
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    const std::string unk = r.string_member(model, "model", "unk_token");
    auto it = t->token_to_id.find(unk);
    if (it == t->token_to_id.end())
      r.fail("model.unk_token", "'" + printable(unk, 40) + "' is not in the vocabulary");
    t->unk = it->second;
  }

  detail::read_normalizer(r, j.value("normalizer", json()), "normalizer", t->normalizers);
  detail::read_pre_tokenizer(r, j.value("pre_tokenizer", json()), "pre_tokenizer", *t);
  detail::read_post_processor(r, j.value("post_processor", json()), "post_processor", *t);
  if (!t->prefix.empty()) t->bos = t->prefix.front();
  detail::read_decoder(r, r.member(j, "", "decoder"), "decoder", *t);

  for (const detail::added_token& a : t->added_tokens) {
    if (a.normalized && !t->normalizers.empty()) {
      t->normalized_added.add(t->normalize(a.content), a.id);
    } else {
      t->raw_added.add(a.content, a.id);
    }
  }
  for (std::size_t id = 0; id < t->token.size(); ++id) {
    if (!(t->flags[id] & impl::flag_present)) continue;
    if (t->dec == impl::decoder_kind::byte_level) {
      // ByteLevel: characters back to bytes; added tokens and tokens with characters outside the
      // table stay as they are written.
      std::string bytes;
      const std::string& s = t->token[id];
      bool mapped = !(t->flags[id] & impl::flag_added);
      for (std::size_t i = 0; mapped && i < s.size();) {
        const char32_t cp = detail::next_code_point(s, i);
        if (cp >= t->byte_table->char_to_byte.size() || t->byte_table->char_to_byte[cp] < 0) {
          mapped = false;
        } else {
          bytes.push_back(static_cast<char>(t->byte_table->char_to_byte[cp]));
        }
      }
      t->piece[id] = mapped ? std::move(bytes) : s;
    } else if (t->dec_byte_fallback) {
      t->byte[id] = static_cast<std::int16_t>(detail::byte_token_value(t->token[id]));
    }
  }
  if (t->bos < 0) {
    for (const char* name : {"<|begin_of_text|>", "<s>"}) {
      auto it = t->token_to_id.find(std::string_view(name));
      if (it != t->token_to_id.end()) {
        t->bos = it->second;
        break;
      }
    }
  }
  for (const char* name : {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "</s>"}) {
    auto it = t->token_to_id.find(std::string_view(name));
    if (it != t->token_to_id.end()) t->eos.push_back(it->second);
  }
  std::sort(t->eos.begin(), t->eos.end());
  return tokenizer(std::move(t));
}

tokenizer tokenizer::byte_level(std::int32_t vocab) {
  if (vocab < 258) {
    throw std::invalid_argument(
        "tokenizer: the byte-level tokenizer needs a vocabulary of at least "
        "258 ids (256 bytes, BOS, EOS); the model has " +
        std::to_string(vocab));
  }
  auto t = std::make_shared<impl>();
  t->source = "byte_level(" + std::to_string(vocab) + ")";
  t->random_bytes = true;
  t->vocab = vocab;
  t->dec = impl::decoder_kind::byte_level;
  t->bos = 256;
  t->eos = {257};
  t->token_to_id["<bos>"] = 256;
  t->token_to_id["<eos>"] = 257;
  return tokenizer(std::move(t));
}

// ---------------------------------------------------------------------------------------------
// Queries.

std::vector<token_id> tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return m_impl->encode(text, add_special_tokens);
}

std::string tokenizer::decode(std::span<const token_id> ids, bool skip_special_tokens) const {
  detokenizer d(*this, skip_special_tokens);
  std::string out;
  for (const token_id id : ids) out += d.push(id);
  out += d.finish();
  return out;
}

token_id tokenizer::bos_id() const {
  return m_impl->bos;
}
std::span<const token_id> tokenizer::eos_ids() const {
  return m_impl->eos;
}
std::int32_t tokenizer::vocab_size() const {
  return m_impl->vocab;
}
const std::string& tokenizer::source() const {
  return m_impl->source;
}
bool tokenizer::is_special(token_id id) const {
  return m_impl->is_special(id);
}

std::string tokenizer::token_text(token_id id) const {
  const impl& t = *m_impl;
  if (!t.has(id)) {
    throw std::invalid_argument("tokenizer " + t.source + ": no token " + std::to_string(id) +
                                " (vocabulary of " + std::to_string(t.vocab) + ")");
  }
  if (!t.random_bytes) return t.token[static_cast<std::size_t>(id)];
  if (id == 256) return "<bos>";
  if (id == 257) return "<eos>";
  if (id > 257) return std::string(1, static_cast<char>(32 + (id - 258) % 95));
  static constexpr char k_hex[] = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', k_hex[id >> 4], k_hex[id & 15], '>'};
}

std::string tokenizer::token_bytes(token_id id) const {
  const impl& t = *m_impl;
  if (!t.has(id)) return {};
  const auto i = static_cast<std::size_t>(id);
  if (t.random_bytes) {
    if (id == 256) return "<bos>";
    if (id == 257) return "<eos>";
    return std::string(1, static_cast<char>(id < 256 ? id : 32 + (id - 258) % 95));
  }
  if (t.dec == impl::decoder_kind::pieces && t.dec_byte_fallback && t.byte[i] >= 0) {
    return std::string(1, static_cast<char>(t.byte[i]));
  }
  return t.piece[i];
}

std::optional<token_id> tokenizer::find_token(std::string_view token_text) const {
  auto it = m_impl->token_to_id.find(token_text);
  if (it == m_impl->token_to_id.end()) return std::nullopt;
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Decoding, one token at a time.

detokenizer::detokenizer(const tokenizer& t, bool skip_special_tokens)
    : m_impl(t.m_impl), m_skip_special(skip_special_tokens), m_strip_left(t.m_impl->strip_start) {}

// Applies the decoder's leading Strip to the text as it goes out.
std::string detokenizer::emit(std::string text) {
  if (m_strip_left == 0 || text.empty()) return text;
  std::size_t cut = 0;
  while (m_strip_left > 0 && cut < text.size()) {
    std::size_t next = cut;
    if (detail::next_code_point(text, next) != m_impl->strip_char) break;
    cut = next;
    --m_strip_left;
  }
  text.erase(0, cut);
  if (!text.empty()) m_strip_left = 0;  // a character that is not stripped ends the strip
  return text;
}

std::string detokenizer::push(token_id id) {
  const tokenizer::impl& t = *m_impl;
  if (!t.has(id) || (m_skip_special && t.is_special(id))) return {};
  const bool first = m_tokens++ == 0;
  std::string out;
  auto flush = [&] {
    detail::decode_utf8(m_pending, true, out);
    m_pending.clear();
  };
  auto drain = [&] { m_pending.erase(0, detail::decode_utf8(m_pending, false, out)); };
  const auto i = static_cast<std::size_t>(id);
  if (t.random_bytes) {
    if (id == 256 || id == 257) {
      flush();
      out += id == 256 ? "<bos>" : "<eos>";
    } else {
      m_pending.push_back(static_cast<char>(id < 256 ? id : 32 + (id - 258) % 95));
      drain();
    }
  } else if (t.dec == tokenizer::impl::decoder_kind::byte_level) {
    if (t.flags[i] & tokenizer::impl::flag_added) {
      flush();
      out += t.piece[i];
    } else {
      m_pending += t.piece[i];
      drain();
    }
  } else if (t.dec_byte_fallback && t.byte[i] >= 0) {
    m_pending.push_back(static_cast<char>(t.byte[i]));
    drain();
  } else {
    flush();  // a byte run ends at the next token that is not a byte
    const std::string& p = t.piece[i];
    out.append(p, first && t.dec_metaspace_first && !p.empty() && p[0] == ' ' ? 1 : 0);
  }
  return emit(std::move(out));
}

std::string detokenizer::finish() {
  std::string out;
  detail::decode_utf8(m_pending, true, out);
  m_pending.clear();
  return emit(std::move(out));
}

// ---------------------------------------------------------------------------------------------
// Chat templates.

namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// Python's str.strip(), which the Jinja templates call (trim / .strip()).
std::string strip(std::string_view s) {
  auto space = [](char32_t cp) { return detail::is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F); };
  std::size_t begin = 0, end = 0;
  bool seen = false;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t at = i;
    if (!space(detail::next_code_point(s, i))) {
      if (!seen) begin = at;
      seen = true;
      end = i;
    }
  }
  return seen ? std::string(s.substr(begin, end - begin)) : std::string();
}

void check_roles(chat_format f, std::span<const chat_message> messages) {
  if (messages.empty()) {
    throw std::invalid_argument(std::string("chat template ") + chat_format_name(f) +
                                ": no messages");
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      throw std::invalid_argument(std::string("chat template ") + chat_format_name(f) +
                                  ": message " + std::to_string(i) + " has role '" +
                                  printable(role, 40) + "' (roles are system, user, assistant)");
    }
  }
  if (f != chat_format::llama2 && f != chat_format::mistral) return;
  const std::size_t first = messages[0].role == "system" ? 1 : 0;
  if (first == messages.size()) {
    throw std::invalid_argument(std::string("chat template ") + chat_format_name(f) +
                                ": a system message needs a user message after it");
  }
  for (std::size_t i = first; i < messages.size(); ++i) {
    const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
    if (messages[i].role != want) {
      throw std::invalid_argument(std::string("chat template ") + chat_format_name(f) +
                                  ": message " + std::to_string(i) + " is '" + messages[i].role +
                                  "' where '" + want +
                                  "' was expected (a first system message, then user and "
                                  "assistant turns in turn)");
    }
  }
}

}  // namespace

chat_format chat_format_for(const tokenizer& t, std::string_view model_name) {
  if (t.find_token("<|start_header_id|>")) return chat_format::llama3;
  if (t.find_token("[INST]")) return chat_format::mistral;
  if (t.find_token("<s>"))
    return starts_with_ci(model_name, "mistral") ? chat_format::mistral : chat_format::llama2;
  return chat_format::plain;
}

const char* chat_format_name(chat_format f) {
  switch (f) {
    case chat_format::llama3:
      return "llama3";
    case chat_format::llama2:
      return "llama2";
    case chat_format::mistral:
      return "mistral";
    case chat_format::plain:
      return "plain";
  }
  return "?";
}

chat_format parse_chat_format(std::string_view name) {
  for (chat_format f :
       {chat_format::llama3, chat_format::llama2, chat_format::mistral, chat_format::plain}) {
    if (name == chat_format_name(f)) return f;
  }
  throw std::invalid_argument("unknown chat format '" + printable(name, 40) +
                              "' (llama3, llama2, mistral, plain)");
}

std::string apply_chat_template(chat_format f, std::span<const chat_message> messages,
                                bool add_generation_prompt) {
  check_roles(f, messages);
  std::string out;
  switch (f) {
    case chat_format::llama3:
      out = "<|begin_of_text|>";
      for (const chat_message& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) +
               "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case chat_format::llama2: {
      const bool system = messages[0].role == "system";
      for (std::size_t i = system ? 1 : 0; i < messages.size(); ++i) {
        const chat_message& m = messages[i];
        std::string content = m.content;
        if (system && i == 1)
          content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + content;
        if (m.role == "user") {
          out += "<s>[INST] " + strip(content) + " [/INST]";
        } else {
          out += " " + strip(content) + " </s>";
        }
      }
      break;
    }
    case chat_format::mistral: {
      const bool system = messages[0].role == "system";
      out = "<s>";
      for (std::size_t i = system ? 1 : 0; i < messages.size(); ++i) {
        const chat_message& m = messages[i];
        if (m.role == "user") {
          out += "[INST] " + (system && i == 1 ? messages[0].content + "\n\n" : std::string()) +
                 m.content + " [/INST]";
        } else {
          out += m.content + "</s>";
        }
      }
      break;
    }
    case chat_format::plain:
      for (const chat_message& m : messages) out += m.role + ": " + m.content + "\n";
      if (add_generation_prompt) out += "assistant: ";
      break;
  }
  return out;
}

std::vector<token_id> encode_chat(const tokenizer& t, chat_format f,
                                  std::span<const chat_message> messages,
                                  bool add_generation_prompt) {
  return t.encode(apply_chat_template(f, messages, add_generation_prompt), f == chat_format::plain);
}

}  // namespace ridgeline
