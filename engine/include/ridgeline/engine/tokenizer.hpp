// Text <-> token ids for `ridgeline serve` and `ridgeline load`: a Hugging Face tokenizer.json
// reader for the two families the engine serves, the byte-level tokenizer that random weights
// use, a streaming detokenizer, and the chat templates of those families (hard-coded, no Jinja).
//   const tokenizer t = tokenizer::from_file("Llama-3.1-8B-Instruct/tokenizer.json");
//   std::vector<token_id> ids = t.encode("Hello world");          // {128000, 9906, 1917}
//   std::string text = t.decode(ids);                             // "Hello world"
//   detokenizer d(t);  for (token_id id : sampled) send(d.push(id));  send(d.finish());
//   encode_chat(t, chat_format_for(t), messages, true);           // the prompt's ids
//
// Supported tokenizer.json (anything else is a std::invalid_argument naming the file and field):
//  - model: BPE (vocab; merges as "a b" strings or [a, b] pairs; byte_fallback, fuse_unk,
//    ignore_merges, unk_token); no dropout, continuing_subword_prefix or end_of_word_suffix.
//  - normalizer: null, Sequence, Prepend, Replace (String or Regex), NFC, NFD, NFKC, NFKD.
//  - pre_tokenizer: null, Sequence, Split (String or Regex, behavior Isolated or Removed, not
//    inverted), ByteLevel (add_prefix_space, use_regex), Metaspace (replacement, prepend_scheme
//    or add_prefix_space, split).
//  - post_processor: null, ByteLevel, TemplateProcessing (its "single" template), Sequence.
//  - decoder: ByteLevel; Metaspace; or a Sequence of Replace (String), ByteFallback, Fuse and a
//    final Strip of leading characters, in that order (the Llama 2 / Mistral decoder).
//  - added_tokens: matched in the raw text first (longest match, left to right), lstrip/rstrip
//    honoured; `normalized` ones are matched again after the normalizer.
// That covers Llama 3 (byte-level BPE: Split with the file's regex, run by ICU, then ByteLevel)
// and Llama 2 / Mistral (sentencepiece-style BPE: Prepend "▁" and Replace " " -> "▁", or the
// Metaspace pre-tokenizer; <0xNN> byte fallback). Regexes are the file's own, compiled by ICU.
// Encoding matches Hugging Face's tokenizers.js on real Llama 2, Llama 3 and Mistral vocabularies
// (tests/integration/tokenizer_reference_test.sh); docs/serving.md#tokenizers lists where the two
// differ on purpose.
//
// Input text that is not valid UTF-8 is read as a UTF-8 decoder would (each maximal invalid
// subpart becomes U+FFFD) before the BPE families see it. decode() always returns valid UTF-8:
// byte sequences that do not form UTF-8 come back as U+FFFD (WHATWG rules, as TextDecoder).
// A tokenizer is immutable after loading: copies share it and every const method is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/engine/kv_cache.hpp"  // token_id

namespace ridgeline {

class tokenizer {
 public:
  // A Hugging Face tokenizer.json (see above). Throws std::invalid_argument naming the file and
  // the field for a file that is missing, not JSON, or uses something not supported.
  static tokenizer from_file(const std::filesystem::path& tokenizer_json);

  // The tokenizer for random weights (no vocabulary file): ids 0..255 are the bytes, 256 is BOS
  // ("<bos>"), 257 is EOS ("<eos>"); vocab must be >= 258 (else std::invalid_argument). encode()
  // gives one id per byte of the text (BOS first with add_special_tokens). A random model samples
  // any id, so every id decodes to something: ids >= 258 decode to the printable ASCII character
  // 32 + (id - 258) % 95 (' ' .. '~'); ids outside [0, vocab) decode to nothing.
  static tokenizer byte_level(std::int32_t vocab);

  // Text to ids. add_special_tokens applies the file's post_processor (Llama 2, Mistral and Llama
  // 3.1 files put BOS first; the Llama 3.0 file adds nothing). Special-token text in `text`
  // ("<|eot_id|>", "<s>") becomes that token whatever add_special_tokens says, as in Hugging Face.
  std::vector<token_id> encode(std::string_view text, bool add_special_tokens = true) const;

  // Ids to text, as the file's decoder does it. Special tokens are left out with
  // skip_special_tokens; ids outside [0, vocab_size()) or not in the vocabulary give nothing.
  std::string decode(std::span<const token_id> ids, bool skip_special_tokens = true) const;

  // The token the model expects first: the post_processor's first special token, else
  // "<|begin_of_text|>" or "<s>" when the vocabulary has one; -1 when there is none.
  token_id bos_id() const;
  // The tokens that end a generation: those of "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>" and
  // "</s>" that the vocabulary has (Llama 3.1: 128001, 128008, 128009), ascending.
  std::span<const token_id> eos_ids() const;
  // One more than the largest id of the vocabulary and the added tokens (Llama 3: 128256).
  std::int32_t vocab_size() const;
  // The token's string as the vocabulary writes it ("Ġworld", "▁Hello", "<0x0A>", "<|eot_id|>");
  // byte_level(): "<0xNN>" for bytes, "<bos>", "<eos>", the character for ids >= 258.
  // Throws std::invalid_argument for an id outside [0, vocab_size()) or a hole in the vocabulary.
  std::string token_text(token_id id) const;
  // What the decoder makes of this one token alone, as raw bytes: "world" with its leading space
  // (" world"), the byte of a byte token ("\n" for <0x0A>; not valid UTF-8 on its own for the
  // bytes of a multi-byte character), a special token's text ("<|eot_id|>"). No strip of a
  // leading space, no skipping of special tokens. Empty for an id the tokenizer does not have.
  // (Per-token text for logprobs: the `bytes` of OpenAI's API.)
  std::string token_bytes(token_id id) const;
  // The id of a vocabulary or added token's string, if there is one.
  std::optional<token_id> find_token(std::string_view token_text) const;
  // Whether the id is an added token marked special (left out by decode's skip_special_tokens).
  bool is_special(token_id id) const;
  // Where it came from: the file's path, or "byte_level(VOCAB)".
  const std::string& source() const;

  struct impl;  // engine/src/tokenizer.cpp

 private:
  explicit tokenizer(std::shared_ptr<const impl> p) : m_impl(std::move(p)) {}
  std::shared_ptr<const impl> m_impl;
  friend class detokenizer;
};

// Streaming decode: one token in, the new text out. A piece is always complete UTF-8 (a token
// that ends inside a multi-byte character holds its bytes back until the character is complete)
// and the sentencepiece leading-space rule is applied once, to the start of the whole text, so
// the pieces of push() for every id followed by finish() concatenate to exactly
// decode(ids, skip_special_tokens). Cheap to make: one per request.
class detokenizer {
 public:
  explicit detokenizer(const tokenizer& t, bool skip_special_tokens = true);
  // The text that token completes (often empty while a character is unfinished).
  std::string push(token_id id);
  // The bytes still held back, as decode() would end them (U+FFFD for an unfinished character).
  std::string finish();

 private:
  std::shared_ptr<const tokenizer::impl> m_impl;
  bool m_skip_special = true;
  std::string m_pending;         // bytes of a byte run whose last character is not complete yet
  std::size_t m_tokens = 0;      // tokens decoded so far (Metaspace: the first one drops a space)
  std::size_t m_strip_left = 0;  // leading characters the decoder's Strip may still remove
  std::string emit(std::string text);
};

// Chat templates of the supported families, written out by hand (what their Hugging Face
// tokenizer_config.json chat_template renders):
//  - llama3:  "<|begin_of_text|>" then per message
//             "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>" (content trimmed);
//             the generation prompt is "<|start_header_id|>assistant<|end_header_id|>\n\n".
//  - llama2:  "<s>[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s><s>[INST] ..."
//             (content stripped; the system block only in the first turn).
//  - mistral: "<s>[INST] USER [/INST]ASSISTANT</s>[INST] ..."; a system message is put before
//             the first user message's content, followed by "\n\n".
//  - plain:   "ROLE: CONTENT\n" per message; the generation prompt is "assistant: " (for the
//             byte-level tokenizer of random weights).
// Roles are "system", "user" and "assistant"; anything else is std::invalid_argument, as are no
// messages at all and, for llama2 and mistral, a system message that is not first or turns that
// do not alternate user/assistant starting with user. llama2 and mistral have no generation
// prompt: their text ends with "[/INST]" after a user turn whatever add_generation_prompt says.
enum class chat_format { llama3, llama2, mistral, plain };

struct chat_message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The format a tokenizer's model was trained with: llama3 when the vocabulary has
// "<|start_header_id|>", mistral when it has "[INST]" (Mistral v0.3 and later) or when
// model_name starts with "mistral" (any case) and it has "<s>", llama2 when it has "<s>", plain
// otherwise (byte_level()). Mistral 7B v0.1/v0.2 and Llama 2 share their special tokens, so only
// the model name tells them apart.
chat_format chat_format_for(const tokenizer& t, std::string_view model_name = {});
const char* chat_format_name(chat_format f);           // "llama3", "llama2", "mistral", "plain"
chat_format parse_chat_format(std::string_view name);  // std::invalid_argument for other names

std::string apply_chat_template(chat_format f, std::span<const chat_message> messages,
                                bool add_generation_prompt);

// The prompt's ids: the template's text encoded without the post_processor's special tokens
// (the llama formats write BOS as text, as Hugging Face's templates do), and with them for plain.
std::vector<token_id> encode_chat(const tokenizer& t, chat_format f,
                                  std::span<const chat_message> messages,
                                  bool add_generation_prompt);

}  // namespace ridgeline
