// libtorch's c10d, as PyTorch DDP uses it, for the Rust side (src/dist/c10d.rs): the TCPStore
// rendezvous, ProcessGroupGloo (CPU) and ProcessGroupNCCL (CUDA, when built with the wheel's
// CUDA and NCCL headers), blocking collectives, and the bucketed gradient all-reduce that starts
// each bucket from autograd post-hooks while backward is still running.
//
// Every function returns nullptr on success or a malloc'd error message (sf_free_error); no C++
// exception crosses the boundary. Tensors are tch's `C_tensor` (`at::Tensor*`).
#define USE_C10D_GLOO 1
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef SHARDFEED_C10D_NCCL
#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shim_error.h"

struct SfStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct SfGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
};

namespace {

// What the post-hooks of one bucketed all-reduce share (kept alive by the hooks themselves, so a
// hook that outlives its SfBuckets finds `armed == false` and does nothing).
struct BucketState {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::vector<at::Tensor> params;        // leaf parameters
  std::vector<at::Tensor> slots;         // each parameter's gradient slot
  std::vector<int32_t> bucket_of;        // parameter -> bucket
  std::vector<at::Tensor> buckets;       // each bucket's range of the flat buffer
  std::vector<int32_t> size;             // parameters per bucket

  std::mutex mu;
  bool armed = false;
  std::vector<int32_t> pending;          // parameters not yet ready, per bucket
  std::vector<bool> ready;               // parameter ready this step
  size_t next_launch = 0;                // buckets launch in index order on every rank
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::string error;
  std::chrono::steady_clock::time_point armed_at;
  double launched_ms_last = 0;           // when the last bucket was launched, from arming

  // Copies parameter i's gradient into its slot (unless autograd accumulated into the slot),
  // or zeros the slot when the parameter has none. Caller holds `mu`.
  void fill_slot(size_t i) {
    const at::Tensor& grad = params[i].grad();
    at::Tensor& slot = slots[i];
    if (!grad.defined()) {
      slot.zero_();
    } else if (grad.data_ptr() != slot.data_ptr()) {
      slot.copy_(grad);
    }
  }

  // Launches every ready bucket from `next_launch` on. Caller holds `mu`.
  void launch_ready() {
    while (next_launch < buckets.size() && pending[next_launch] == 0) {
      std::vector<at::Tensor> one{buckets[next_launch]};
      try {
        works.push_back(backend->allreduce(one));
      } catch (const std::exception& e) {
        if (error.empty()) error = e.what();
        pending[next_launch] = -1;  // never again
        return;
      }
      launched_ms_last = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - armed_at)
                             .count();
      next_launch++;
    }
  }

  // A parameter's gradient is final (its AccumulateGrad ran).
  void on_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || ready[i]) return;
    ready[i] = true;
    try {
      fill_slot(i);
    } catch (const std::exception& e) {
      if (error.empty()) error = e.what();
      return;
    }
    int32_t b = bucket_of[i];
    if (--pending[b] == 0) launch_ready();
  }
};

class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::shared_ptr<BucketState> state, size_t index)
      : state_(std::move(state)), index_(index) {}
  torch::autograd::variable_list operator()(
      const torch::autograd::variable_list& outputs,
      const torch::autograd::variable_list& /*inputs*/) override {
    state_->on_ready(index_);
    return outputs;
  }

 private:
  std::shared_ptr<BucketState> state_;
  size_t index_;
};

}  // namespace

struct SfBuckets {
  std::shared_ptr<BucketState> state;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hook_keys;
};

extern "C" {

// --- Store ---------------------------------------------------------------------------------

// A TCPStore at host:port; the server when `is_server` (expecting `world` members), a client
// otherwise. `prefix` (may be empty) scopes every key, as torchrun's agent store is scoped.
char* sf_store_connect(const char* host, uint16_t port, int world, bool is_server,
                       int64_t timeout_ms, const char* prefix, SfStore** out) {
  SF_TRY({
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<size_t>(world);
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    opts.useLibUV = true;
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = new SfStore{store};
  })
}

void sf_store_free(SfStore* s) { delete s; }

char* sf_store_set(SfStore* s, const char* key, const uint8_t* data, size_t len) {
  SF_TRY({ s->store->set(std::string(key), std::vector<uint8_t>(data, data + len)); })
}

// Waits up to `timeout_ms` for `key`, then reads it into a malloc'd buffer (sf_free_bytes).
char* sf_store_get(SfStore* s, const char* key, int64_t timeout_ms, uint8_t** data,
                   size_t* len) {
  SF_TRY({
    std::string k(key);
    s->store->wait({k}, std::chrono::milliseconds(timeout_ms));
    std::vector<uint8_t> v = s->store->get(k);
    *len = v.size();
    *data = static_cast<uint8_t*>(std::malloc(v.empty() ? 1 : v.size()));
    if (*data == nullptr) throw std::bad_alloc();
    if (!v.empty()) std::memcpy(*data, v.data(), v.size());
  })
}

void sf_free_bytes(uint8_t* data) { std::free(data); }

char* sf_store_check(SfStore* s, const char* key, bool* present) {
  SF_TRY({ *present = s->store->check({std::string(key)}); })
}

char* sf_store_add(SfStore* s, const char* key, int64_t delta, int64_t* out) {
  SF_TRY({ *out = s->store->add(std::string(key), delta); })
}

// --- Process groups ------------------------------------------------------------------------

// ProcessGroupGloo over `store`: one TCP device on `interface` (GLOO_SOCKET_IFNAME) or
// `hostname` when given, else gloo's default (this host's name, or loopback); `timeout_ms`
// bounds every collective.
char* sf_group_gloo(SfStore* s, int rank, int size, int64_t timeout_ms, const char* interface,
                    const char* hostname, int threads, SfGroup** out) {
  SF_TRY({
    auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    if (interface != nullptr && interface[0] != '\0') {
      options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(std::string(interface)));
    } else if (hostname != nullptr && hostname[0] != '\0') {
      options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(std::string(hostname)));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = threads;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, options);
    *out = new SfGroup{c10::static_intrusive_pointer_cast<c10d::Backend>(pg)};
  })
}

// Whether this build has ProcessGroupNCCL (the wheel's CUDA and NCCL headers were found).
bool sf_has_nccl() {
#ifdef SHARDFEED_C10D_NCCL
  return true;
#else
  return false;
#endif
}

// ProcessGroupNCCL over `store` on the current CUDA device; `timeout_ms` bounds collectives
// (the watchdog aborts the communicator past it).
char* sf_group_nccl(SfStore* s, int rank, int size, int64_t timeout_ms, SfGroup** out) {
#ifdef SHARDFEED_C10D_NCCL
  SF_TRY({
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, size, options);
    *out = new SfGroup{c10::static_intrusive_pointer_cast<c10d::Backend>(pg)};
  })
#else
  (void)s; (void)rank; (void)size; (void)timeout_ms; (void)out;
  return sf::dup_error("this shardfeed-train was built without ProcessGroupNCCL (no CUDA/NCCL headers in the torch venv)");
#endif
}

void sf_group_free(SfGroup* g) { delete g; }

// In-place sum of `t` over the group; returns when this rank's result is ready.
char* sf_group_allreduce_sum(SfGroup* g, at::Tensor* t) {
  SF_TRY({
    std::vector<at::Tensor> one{*t};
    g->backend->allreduce(one)->wait();
  })
}

// `t` <- root's `t`.
char* sf_group_broadcast(SfGroup* g, at::Tensor* t, int root) {
  SF_TRY({
    std::vector<at::Tensor> one{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    g->backend->broadcast(one, opts)->wait();
  })
}

// --- Bucketed all-reduce overlapped with backward -------------------------------------------

// `params[i]` (leaf tensors) have their gradient slot `slots[i]` (a view of `flat`, in the
// parameter's shape and memory format); parameter i belongs to bucket `bucket_of[i]`, and bucket
// b is `flat[bucket_start[b] .. + bucket_len[b]]`. A post-hook on each parameter's gradient
// accumulator marks it ready (copying its gradient into its slot unless autograd accumulated
// into the slot itself); a bucket whose parameters are all ready is all-reduced (summed) at
// once, asynchronously, buckets strictly in index order on every rank.
char* sf_buckets_new(SfGroup* g, at::Tensor* flat, at::Tensor** params, at::Tensor** slots,
                     const int32_t* bucket_of, size_t n, const int64_t* bucket_start,
                     const int64_t* bucket_len, size_t nbuckets, SfBuckets** out) {
  SF_TRY({
    auto state = std::make_shared<BucketState>();
    state->backend = g->backend;
    state->size.assign(nbuckets, 0);
    for (size_t b = 0; b < nbuckets; b++) {
      state->buckets.push_back(flat->narrow(0, bucket_start[b], bucket_len[b]));
    }
    for (size_t i = 0; i < n; i++) {
      if (bucket_of[i] < 0 || static_cast<size_t>(bucket_of[i]) >= nbuckets) {
        throw std::invalid_argument("parameter " + std::to_string(i) + " has no bucket");
      }
      state->params.push_back(*params[i]);
      state->slots.push_back(*slots[i]);
      state->bucket_of.push_back(bucket_of[i]);
      state->size[bucket_of[i]]++;
    }
    state->pending = state->size;
    state->ready.assign(n, false);
    auto buckets = std::make_unique<SfBuckets>();
    buckets->state = state;
    for (size_t i = 0; i < n; i++) {
      auto acc = torch::autograd::impl::grad_accumulator(state->params[i]);
      if (!acc) {
        throw std::invalid_argument("parameter " + std::to_string(i) +
                                    " is not a leaf that requires grad");
      }
      buckets->hook_keys.push_back(acc->add_post_hook(std::make_unique<ReadyHook>(state, i)));
      buckets->accumulators.push_back(std::move(acc));
    }
    *out = buckets.release();
  })
}

// Before backward: every bucket waits for all its parameters again.
char* sf_buckets_arm(SfBuckets* b) {
  SF_TRY({
    auto& s = *b->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.pending = s.size;
    std::fill(s.ready.begin(), s.ready.end(), false);
    s.next_launch = 0;
    s.works.clear();
    s.error.clear();
    s.armed = true;
    s.armed_at = std::chrono::steady_clock::now();
  })
}

// After backward: parameters backward gave no gradient get zeros, the remaining buckets are
// launched in order, and every bucket's all-reduce is waited for. `launched_ms` is when the
// last bucket was launched (from arming); `waited_ms` how long this call waited.
char* sf_buckets_finish(SfBuckets* b, double* launched_ms, double* waited_ms) {
  SF_TRY({
    auto& s = *b->state;
    auto start = std::chrono::steady_clock::now();
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.armed = false;
      if (s.error.empty()) {
        for (size_t i = 0; i < s.params.size(); i++) {
          if (!s.ready[i]) {
            s.ready[i] = true;
            s.fill_slot(i);
            s.pending[s.bucket_of[i]]--;
          }
        }
        s.launch_ready();
      }
      works.swap(s.works);
      *launched_ms = s.launched_ms_last;
    }
    std::string error;
    for (auto& w : works) {
      try {
        w->wait();
      } catch (const std::exception& e) {
        if (error.empty()) error = e.what();
      }
    }
    {
      std::lock_guard<std::mutex> lock(s.mu);
      if (!s.error.empty()) error = s.error;
    }
    *waited_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!error.empty()) throw std::runtime_error(error);
  })
}

void sf_buckets_free(SfBuckets* b) {
  if (b == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(b->state->mu);
    b->state->armed = false;
  }
  for (size_t i = 0; i < b->accumulators.size(); i++) {
    try {
      b->accumulators[i]->del_post_hook(b->hook_keys[i]);
    } catch (...) {
    }
  }
  delete b;
}

}  // extern "C"
