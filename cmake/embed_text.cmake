# Writes a text file into a C++ source as `std::string_view NAMESPACE::FUNCTION()`.
#   cmake -DINPUT=in.html -DOUTPUT=out.cpp -DNAMESPACE=ns -DFUNCTION=fn -P embed_text.cmake
# The text goes in as raw string literals of at most 8000 bytes each (well under compilers'
# literal limits), concatenated by the compiler.
file(READ "${INPUT}" content)
string(FIND "${content}" ")rl_embed\"" bad)
if(NOT bad EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )rl_embed\"")
endif()
string(LENGTH "${content}" total)
set(body "")
set(offset 0)
while(offset LESS total)
  string(SUBSTRING "${content}" ${offset} 8000 chunk)
  string(APPEND body "    R\"rl_embed(${chunk})rl_embed\"\n")
  math(EXPR offset "${offset} + 8000")
endwhile()
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\n"
"#include <string_view>\n"
"namespace ${NAMESPACE} {\n"
"std::string_view ${FUNCTION}() {\n"
"  static constexpr const char text[] =\n"
"${body}"
"      \"\";\n"
"  return {text, sizeof(text) - 1};\n"
"}\n"
"}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
