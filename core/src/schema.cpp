// The strict JSON walker of the result-format readers (see schema.hpp): every accessor either
// returns the typed value or throws schema_error naming file, field path, expectation and schema.
#include "ridgeline/core/schema.hpp"

#include <cmath>

#include "ridgeline/core/files.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

std::string type_of(const json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a bool";
  if (j.is_number_integer()) return "an integer";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  return "an object";
}

std::string message(const std::string& source, const std::string& path, const std::string& what,
                    const std::string& schema_id) {
  std::string m = source + ": ";
  if (!path.empty()) m += path + ": ";
  return m + what + " (schema " + (schema_id.empty() ? std::string("unknown") : schema_id) + ")";
}

bool is_finite_number(const json& j) {
  return j.is_number() && std::isfinite(j.get<double>());
}

}  // namespace

schema_error::schema_error(std::string source, std::string path, std::string what,
                           std::string schema_id)
    : std::invalid_argument(message(source, path, what, schema_id)),
      m_source(std::move(source)),
      m_path(std::move(path)),
      m_schema(std::move(schema_id)) {}

node::node(const json& value, const document_context& context, std::string path)
    : m_value(&value), m_context(&context), m_path(std::move(path)) {}

void node::fail(const std::string& what) const {
  throw schema_error(m_context->source, m_path, what, m_context->schema_id);
}

void node::fail_member(std::string_view key, const std::string& what) const {
  throw schema_error(m_context->source, child_path(key), what, m_context->schema_id);
}

std::string node::child_path(std::string_view key) const {
  return m_path.empty() ? std::string(key) : m_path + "." + std::string(key);
}

bool node::has(std::string_view key) const {
  return m_value->is_object() && m_value->contains(key);
}

const json& node::require(std::string_view key) const {
  if (!m_value->is_object()) fail("expected an object, found " + type_of(*m_value));
  const auto it = m_value->find(key);
  if (it == m_value->end()) fail_member(key, "missing");
  return *it;
}

node node::member(std::string_view key) const {
  return node(require(key), *m_context, child_path(key));
}

node node::object(std::string_view key) const {
  const json& j = require(key);
  if (!j.is_object()) fail_member(key, "expected an object, found " + type_of(j));
  return node(j, *m_context, child_path(key));
}

node node::array(std::string_view key) const {
  const json& j = require(key);
  if (!j.is_array()) fail_member(key, "expected an array, found " + type_of(j));
  return node(j, *m_context, child_path(key));
}

std::optional<node> node::optional_object(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return object(key);
}

std::optional<node> node::optional_array(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return array(key);
}

std::optional<node> node::nullable_object(std::string_view key) const {
  if (require(key).is_null()) return std::nullopt;
  return object(key);
}

std::vector<node> node::elements() const {
  if (!m_value->is_array()) fail("expected an array, found " + type_of(*m_value));
  std::vector<node> out;
  out.reserve(m_value->size());
  for (std::size_t i = 0; i < m_value->size(); ++i) {
    out.emplace_back((*m_value)[i], *m_context, m_path + "[" + std::to_string(i) + "]");
  }
  return out;
}

std::vector<std::pair<std::string, node>> node::members() const {
  if (!m_value->is_object()) fail("expected an object, found " + type_of(*m_value));
  std::vector<std::pair<std::string, node>> out;
  for (const auto& [k, v] : m_value->items()) out.emplace_back(k, node(v, *m_context, child_path(k)));
  return out;
}

double node::number(std::string_view key) const {
  const json& j = require(key);
  if (!is_finite_number(j)) fail_member(key, "expected a finite number, found " + type_of(j));
  return j.get<double>();
}

std::int64_t node::integer(std::string_view key) const {
  const json& j = require(key);
  if (!j.is_number_integer()) fail_member(key, "expected an integer, found " + type_of(j));
  return j.get<std::int64_t>();
}

std::string node::string(std::string_view key) const {
  const json& j = require(key);
  if (!j.is_string()) fail_member(key, "expected a string, found " + type_of(j));
  return j.get<std::string>();
}

bool node::boolean(std::string_view key) const {
  const json& j = require(key);
  if (!j.is_boolean()) fail_member(key, "expected a bool, found " + type_of(j));
  return j.get<bool>();
}

json node::raw(std::string_view key) const { return require(key); }

std::optional<double> node::optional_number(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return number(key);
}
std::optional<std::int64_t> node::optional_integer(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return integer(key);
}
std::optional<std::string> node::optional_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return string(key);
}
std::optional<bool> node::optional_boolean(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return boolean(key);
}

std::optional<double> node::nullable_number(std::string_view key) const {
  if (require(key).is_null()) return std::nullopt;
  return number(key);
}
std::optional<std::int64_t> node::nullable_integer(std::string_view key) const {
  if (require(key).is_null()) return std::nullopt;
  return integer(key);
}
std::optional<std::string> node::nullable_string(std::string_view key) const {
  if (require(key).is_null()) return std::nullopt;
  return string(key);
}
std::optional<bool> node::nullable_boolean(std::string_view key) const {
  if (require(key).is_null()) return std::nullopt;
  return boolean(key);
}

std::vector<double> node::numbers(std::string_view key) const {
  std::vector<double> out;
  for (const auto& e : array(key).elements()) out.push_back(e.as_number());
  return out;
}
std::vector<std::int64_t> node::integers(std::string_view key) const {
  std::vector<std::int64_t> out;
  for (const auto& e : array(key).elements()) out.push_back(e.as_integer());
  return out;
}
std::vector<std::string> node::strings(std::string_view key) const {
  std::vector<std::string> out;
  for (const auto& e : array(key).elements()) out.push_back(e.as_string());
  return out;
}

double node::as_number() const {
  if (!is_finite_number(*m_value)) fail("expected a finite number, found " + type_of(*m_value));
  return m_value->get<double>();
}
std::int64_t node::as_integer() const {
  if (!m_value->is_number_integer()) fail("expected an integer, found " + type_of(*m_value));
  return m_value->get<std::int64_t>();
}
std::string node::as_string() const {
  if (!m_value->is_string()) fail("expected a string, found " + type_of(*m_value));
  return m_value->get<std::string>();
}

node open_document(const json& doc, const document_context& context) {
  const node top(doc, context, "");
  if (!doc.is_object()) top.fail("expected a JSON object, found " + type_of(doc));
  const std::string found = top.string("schema");
  if (found != context.schema_id) {
    top.fail_member("schema", "expected \"" + context.schema_id + "\", found \"" + found + "\"");
  }
  return top;
}

json read_json(const std::filesystem::path& path, std::string_view schema_id) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw schema_error(path.string(), "", std::string("not valid JSON (") + e.what() + ")",
                       std::string(schema_id));
  }
}

std::string schema_of(const json& doc) {
  if (!doc.is_object()) return "";
  const auto it = doc.find("schema");
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string to_text(const json& doc) { return doc.dump(2) + "\n"; }

std::optional<std::string> optional_weight_format(const node& config, std::string_view key) {
  std::optional<std::string> f = config.optional_string(key);
  if (f && *f != "bf16" && *f != "fp8" && *f != "int8" && *f != "int4") {
    config.fail_member(key, "expected \"bf16\", \"fp8\", \"int8\" or \"int4\", found \"" + *f + "\"");
  }
  return f;
}

}  // namespace ridgeline::schema
