// See ../README.md: only what c10d/ProcessGroupGloo.hpp names. Its inline
// ProcessGroupGloo::setTimeout calls Context::setTimeout, so the member is declared (as in gloo);
// the shim never calls it, and never sizes or constructs a Context.
#pragma once
#include <chrono>
namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
