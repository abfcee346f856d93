// The error convention of every shim function (shim.cpp, c10d.cpp): nullptr on success, else a
// malloc'd message the Rust side frees with sf_free_error; no C++ exception crosses the boundary.
#pragma once
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace sf {

inline char* dup_error(const std::string& msg) {
  size_t n = msg.size() + 1;
  char* out = static_cast<char*>(std::malloc(n));
  if (out != nullptr) std::memcpy(out, msg.c_str(), n);
  return out;
}

}  // namespace sf

// Runs the statements (commas allowed), turning any exception into the returned message.
#define SF_TRY(...)                                \
  try {                                            \
    __VA_ARGS__                                    \
  } catch (const std::exception& e) {              \
    return sf::dup_error(e.what());                \
  } catch (...) {                                  \
    return sf::dup_error("unknown C++ exception"); \
  }                                                \
  return nullptr;
