// The strict JSON walker every result-format reader (core/schemas/*.hpp) is built on, and the one
// error those readers throw. A field that must be there and is missing, or has the wrong type,
// fails with a message naming the file, the JSON path of the field (rows[3].step_seconds.median),
// what was expected and the schema id with its version; there are no silent defaults. Optional
// fields are read into std::optional only where a producer really omits them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::schema {

// Bad input: a result document that does not match its schema. An std::invalid_argument, so the
// CLI reports it as bad input (exit 2) in one line:
//   "<source>: <path>: <what> (schema <id>)"
class schema_error : public std::invalid_argument {
 public:
  schema_error(std::string source, std::string path, std::string what, std::string schema_id);
  const std::string& source() const { return m_source; }
  const std::string& path() const { return m_path; }
  const std::string& schema_id() const { return m_schema; }

 private:
  std::string m_source, m_path, m_schema;
};

// The file a document came from (or another label such as "<stdin>") and the schema it is read as.
struct document_context {
  std::string source;
  std::string schema_id;
};

// One JSON value at a path inside a document. Accessors taking a key read a member of this value
// (which must be an object); each names the member's full path when it fails.
class node {
 public:
  node(const nlohmann::json& value, const document_context& context, std::string path);

  const nlohmann::json& value() const { return *m_value; }
  const std::string& path() const { return m_path; }
  const document_context& context() const { return *m_context; }

  [[noreturn]] void fail(const std::string& what) const;
  [[noreturn]] void fail_member(std::string_view key, const std::string& what) const;

  bool has(std::string_view key) const;  // member present (any value, null included)
  node member(std::string_view key) const;  // required member, any type
  node object(std::string_view key) const;  // required member that is an object
  node array(std::string_view key) const;   // required member that is an array
  std::optional<node> optional_object(std::string_view key) const;  // absent -> nullopt
  std::optional<node> optional_array(std::string_view key) const;   // absent -> nullopt
  std::optional<node> nullable_object(std::string_view key) const;  // present; null -> nullopt
  std::vector<node> elements() const;  // this value must be an array
  std::vector<std::pair<std::string, node>> members() const;  // this value must be an object

  double number(std::string_view key) const;          // required finite number
  std::int64_t integer(std::string_view key) const;   // required integer
  std::string string(std::string_view key) const;     // required string
  bool boolean(std::string_view key) const;           // required bool
  nlohmann::json raw(std::string_view key) const;     // required, any value, kept as JSON
  std::optional<double> optional_number(std::string_view key) const;  // absent -> nullopt
  std::optional<std::int64_t> optional_integer(std::string_view key) const;
  std::optional<std::string> optional_string(std::string_view key) const;
  std::optional<bool> optional_boolean(std::string_view key) const;
  std::optional<double> nullable_number(std::string_view key) const;  // present; null -> nullopt
  std::optional<std::int64_t> nullable_integer(std::string_view key) const;
  std::optional<std::string> nullable_string(std::string_view key) const;
  std::optional<bool> nullable_boolean(std::string_view key) const;
  std::vector<double> numbers(std::string_view key) const;          // array of numbers
  std::vector<std::int64_t> integers(std::string_view key) const;   // array of integers
  std::vector<std::string> strings(std::string_view key) const;     // array of strings

  // This value itself as a scalar (for array elements).
  double as_number() const;
  std::int64_t as_integer() const;
  std::string as_string() const;

 private:
  std::string child_path(std::string_view key) const;
  const nlohmann::json& require(std::string_view key) const;

  const nlohmann::json* m_value;
  const document_context* m_context;
  std::string m_path;
};

// The top of a document: checks that `doc` is an object whose "schema" equals `schema_id`.
// The returned node refers to `doc` and `context`, which must outlive it.
node open_document(const nlohmann::json& doc, const document_context& context);

// Reads and parses a file as JSON: io_error when unreadable, schema_error (path "") when it is
// not JSON.
nlohmann::json read_json(const std::filesystem::path& path, std::string_view schema_id);

// The engine's weight format of a result's config (`weight_format`: "bf16", "fp8", "int8" or
// "int4"; sweep, replay and diverge files since --weights); absent in files written before it,
// which all ran bf16 weights. Any other value fails naming the member.
std::optional<std::string> optional_weight_format(const node& config, std::string_view key);
// What a config's optional weight format stands for: the value, else "bf16".
inline std::string weight_format_or_bf16(const std::optional<std::string>& f) {
  return f.value_or("bf16");
}

// The "schema" string of a parsed document, or "" when it has none.
std::string schema_of(const nlohmann::json& doc);

// Writers: `doc.dump(2) + "\n"`, the text every ridgeline result file is written as.
std::string to_text(const nlohmann::json& doc);

// An optional value as a JSON member: written only when set.
template <typename T>
void put_optional(nlohmann::json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}
// A nullable value: always written, null when unset.
template <typename T>
nlohmann::json nullable(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace ridgeline::schema
