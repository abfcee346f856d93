// See ../../README.md: only what c10d/ProcessGroupGloo.hpp names.
#pragma once
namespace gloo::transport {
class Device;
class UnboundBuffer;
}  // namespace gloo::transport
