// The few libtorch calls tch 0.24's C API does not expose: the autocast dtype per device type
// (tch::autocast only switches CUDA autocast on, in its default dtype fp16) and tensors in a
// given memory format (tch's `contiguous()` takes none, so no channels-last).
//
// Every function returns nullptr on success or a malloc'd error message the caller frees with
// sf_free_error; no C++ exception crosses the boundary. Tensors are tch's `C_tensor`, which is
// libtch's `torch::Tensor*` (= `at::Tensor*`).
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "shim_error.h"

namespace {

// Device type codes of the Rust side (src/precision.rs).
bool to_device_type(int code, at::DeviceType* out) {
  switch (code) {
    case 0: *out = at::kCPU; return true;
    case 1: *out = at::kCUDA; return true;
    default: return false;
  }
}

// Scalar type codes of the Rust side: 0 bf16, 1 fp16, 2 fp32.
bool to_scalar_type(int code, at::ScalarType* out) {
  switch (code) {
    case 0: *out = at::kBFloat16; return true;
    case 1: *out = at::kHalf; return true;
    case 2: *out = at::kFloat; return true;
    default: return false;
  }
}

int from_scalar_type(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return 0;
    case at::kHalf: return 1;
    case at::kFloat: return 2;
    default: return -1;
  }
}

// Memory format codes: 0 contiguous (NCHW), 1 channels-last (NHWC strides).
bool to_memory_format(int code, at::MemoryFormat* out) {
  switch (code) {
    case 0: *out = at::MemoryFormat::Contiguous; return true;
    case 1: *out = at::MemoryFormat::ChannelsLast; return true;
    default: return false;
  }
}

}  // namespace

extern "C" {

void sf_free_error(char* err) { std::free(err); }

// Reads this thread's autocast state for a device type.
char* sf_autocast_get(int device, bool* enabled, int* dtype) {
  SF_TRY({
    at::DeviceType d;
    if (!to_device_type(device, &d)) return sf::dup_error("unknown device type code");
    *enabled = at::autocast::is_autocast_enabled(d);
    *dtype = from_scalar_type(at::autocast::get_autocast_dtype(d));
  })
}

// Sets the autocast state for a device type (enabled is thread-local, dtype is process-wide, as
// in PyTorch). Entering increments the autocast nesting; leaving decrements it and clears the
// cast cache when it reaches 0, as torch.autocast's __enter__/__exit__ do.
char* sf_autocast_set(int device, bool enabled, int dtype) {
  SF_TRY({
    at::DeviceType d;
    at::ScalarType t;
    if (!to_device_type(device, &d)) return sf::dup_error("unknown device type code");
    if (!to_scalar_type(dtype, &t)) return sf::dup_error("unknown scalar type code");
    at::autocast::set_autocast_dtype(d, t);
    at::autocast::set_autocast_enabled(d, enabled);
  })
}

char* sf_autocast_enter() {
  SF_TRY({ at::autocast::increment_nesting(); })
}

char* sf_autocast_exit() {
  SF_TRY({
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  })
}

// out = self.contiguous(memory_format): a new tensor handle (the same storage when the tensor
// already is in that format).
char* sf_contiguous(const at::Tensor* self, int format, at::Tensor** out) {
  SF_TRY({
    at::MemoryFormat f;
    if (!to_memory_format(format, &f)) return sf::dup_error("unknown memory format code");
    *out = new at::Tensor(self->contiguous(f));
  })
}

char* sf_is_contiguous(const at::Tensor* self, int format, bool* out) {
  SF_TRY({
    at::MemoryFormat f;
    if (!to_memory_format(format, &f)) return sf::dup_error("unknown memory format code");
    *out = self->is_contiguous(f);
  })
}

// self.grad = grad (a view into a flat gradient buffer): autograd then accumulates into it in
// place, as `param.grad = view` does in Python.
char* sf_set_grad(at::Tensor* self, const at::Tensor* grad) {
  SF_TRY({ self->mutable_grad() = *grad; })
}

// self.grad = None: the next backward stores autograd's own gradient tensor there (it "steals"
// the freshly computed gradient) instead of adding it into a view.
char* sf_clear_grad(at::Tensor* self) {
  SF_TRY({ self->mutable_grad() = at::Tensor(); })
}

}  // extern "C"
