// One-pass CPU kernels for the stateful optimizers (jaxsched.optim), called through XLA's typed
// FFI.  Each kernel updates a parameter list (one buffer per leaf; in place, or into new buffers
// when the caller does not alias them) and, in place, the group's optimizer state held as one
// flat buffer per quantity (the leaves laid end to end), reading every element once and writing
// it once: XLA:CPU has no multi-output fusion, so the same update written in jnp takes three or
// more passes over memory.
//
// The arithmetic is the elementwise part of jaxsched.sgd / jaxsched.adam(w), operation for
// operation and in the parameter dtype (compile with -ffp-contract=off: no FMA contraction);
// the scalars (learning rate, bias corrections, ...) are computed by the caller in jnp, exactly
// as the transforms compute them, and passed as one small buffer.

#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// The scalars each kernel reads, by name.  The Python side packs them in the order that
// jaxsched_{sgd,adam}_scalar_names() lists (checked against its own names at load), so no
// position is written twice.
template <typename T>
struct SgdScalars {
  T neg_lr, momentum, one_minus_dampening, weight_decay, no_buffer;
};
constexpr const char kSgdScalarNames[] =
    "neg_lr,momentum,one_minus_dampening,weight_decay,no_buffer";

template <typename T>
struct AdamScalars {
  T neg_step_size, bias_correction2_sqrt, eps, one_minus_beta1, beta2, one_minus_beta2,
      weight_decay, decay_factor;
};
constexpr const char kAdamScalarNames[] =
    "neg_step_size,bias_correction2_sqrt,eps,one_minus_beta1,beta2,one_minus_beta2,"
    "weight_decay,decay_factor";

static_assert(sizeof(SgdScalars<double>) == 5 * sizeof(double), "no padding");
static_assert(sizeof(AdamScalars<float>) == 8 * sizeof(float), "no padding");

// The leaves of one parameter group, laid end to end: leaf l covers [offset[l], offset[l+1]).
// A leaf's new value goes to param_out; it is read from param_in, the same buffer when the
// caller aliases them (opt.step: in place) or another one (a train step, where the loss reads
// the parameters too and XLA would otherwise copy them to keep the update from overwriting).
struct Leaves {
  std::vector<const void*> param_in;
  std::vector<void*> param_out;
  std::vector<const void*> grad;
  std::vector<int64_t> offset{0};
  int64_t total() const { return offset.back(); }
};

// Calls fn(leaf, first element in the flat layout, begin, end) for the parts of the leaves that
// fall in the flat range [lo, hi).
template <typename Fn>
void ForEachPart(const Leaves& leaves, int64_t lo, int64_t hi, Fn fn) {
  for (size_t l = 0; l + 1 < leaves.offset.size(); ++l) {
    int64_t start = leaves.offset[l], end = leaves.offset[l + 1];
    if (end <= lo) continue;
    if (start >= hi) break;
    fn(l, start, (lo > start ? lo : start) - start, (hi < end ? hi : end) - start);
  }
}

// Splits [0, total) into one part per thread of XLA's intra-op pool.  The caller takes parts
// too, so the call completes even when no pool thread is free (no deadlock when two kernels
// run at once); parts scheduled but started late find nothing left and return.
template <typename Fn>
void Parallel(ffi::ThreadPool& pool, int64_t total, const Fn& fn) {
  const int64_t parts = pool.num_threads();
  if (total < (int64_t{1} << 16) || parts < 2) {
    fn(int64_t{0}, total);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto shared = std::make_shared<Shared>();
  auto work = [shared, parts, total, &fn] {
    for (int64_t i; (i = shared->next.fetch_add(1)) < parts;) {
      fn(total * i / parts, total * (i + 1) / parts);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t i = 1; i < parts; ++i) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  while (shared->done.load(std::memory_order_acquire) < parts) std::this_thread::yield();
}

// Calls loop<kInPlace>(param in, param out, grad) on leaf l from its element `first` on: in
// place (param in = nullptr, read from out) when the caller aliased the two buffers, else from
// in to out; the loops' pointers stay __restrict__ either way.
template <typename T, typename Loop>
void LeafPart(const Leaves& leaves, size_t l, int64_t first, const Loop& loop) {
  T* out = static_cast<T*>(leaves.param_out[l]) + first;
  const T* grad = static_cast<const T*>(leaves.grad[l]) + first;
  if (leaves.param_in[l] == leaves.param_out[l]) {
    loop.template operator()<true>(nullptr, out, grad);
  } else {
    loop.template operator()<false>(static_cast<const T*>(leaves.param_in[l]) + first, out, grad);
  }
}

// ---- SGD --------------------------------------------------------------------------------------
// no_buffer: 1 before the first step with momentum, else 0.
// kMomentum: momentum != 0 (at 0 torch neither uses nor touches the buffer); kRestart: the first
// step with momentum, where torch's buffer starts as the gradient.
template <typename T, bool kMaximize, bool kNesterov, bool kDecay, bool kMomentum, bool kRestart,
          bool kInPlace>
[[gnu::always_inline]] inline void SgdBody(const T* __restrict__ p_in, T* __restrict__ p, const T* __restrict__ g,
             T* __restrict__ b, int64_t n, const SgdScalars<T>& s) {
  const T neg_lr = s.neg_lr, mom = s.momentum, one_minus_damp = s.one_minus_dampening,
          wd = s.weight_decay;
  for (int64_t i = 0; i < n; ++i) {
    const T pi = kInPlace ? p[i] : p_in[i];
    T d = kMaximize ? -g[i] : g[i];
    if (kDecay) d = d + wd * pi;
    if (!kMomentum) {
      p[i] = pi + neg_lr * d;
      continue;
    }
    const T buf = kRestart ? d : b[i] * mom + d * one_minus_damp;
    b[i] = buf;
    const T dir = kNesterov ? d + mom * buf : buf;
    p[i] = pi + neg_lr * dir;
  }
}

template <typename T>
ffi::Error Sgd(ffi::ThreadPool pool, ffi::AnyBuffer scalars, ffi::RemainingArgs args,
               ffi::RemainingRets rets, bool maximize, bool nesterov);

// ---- Adam / AdamW -----------------------------------------------------------------------------
// scalars: -lr / (1 - beta1^t), sqrt(1 - beta2^t), eps, 1 - beta1, beta2, 1 - beta2,
// weight_decay, 1 - lr * weight_decay.  kDecay: 0 none, 1 coupled (L2), 2 decoupled (AdamW).
template <typename T, bool kMaximize, bool kAmsgrad, int kDecay, bool kInPlace>
[[gnu::always_inline]] inline void AdamBody(const T* __restrict__ p_in, T* __restrict__ p, const T* __restrict__ g,
              T* __restrict__ m, T* __restrict__ v, T* __restrict__ vmax, int64_t n,
              const AdamScalars<T>& s) {
  const T neg_step = s.neg_step_size, bc2_sqrt = s.bias_correction2_sqrt, eps = s.eps,
          one_minus_b1 = s.one_minus_beta1, b2 = s.beta2, one_minus_b2 = s.one_minus_beta2,
          wd = s.weight_decay, shrink = s.decay_factor;
  for (int64_t i = 0; i < n; ++i) {
    const T pi = kInPlace ? p[i] : p_in[i];
    T gi = kMaximize ? -g[i] : g[i];
    if (kDecay == 1) gi = gi + wd * pi;
    const T mi = m[i] + (gi - m[i]) * one_minus_b1;
    const T vi = v[i] * b2 + gi * gi * one_minus_b2;
    m[i] = mi;
    v[i] = vi;
    T vhat = vi;
    if (kAmsgrad) {
      const T x = vmax[i];
      vhat = (x != x || x > vi) ? x : vi;  // jnp.maximum: NaN wins
      vmax[i] = vhat;
    }
    T u = neg_step * (mi / (std::sqrt(vhat) / bc2_sqrt + eps));
    if (kDecay == 2) u = (pi * shrink - pi) + u;
    p[i] = pi + u;
  }
}

// Each loop is compiled twice: for any x86-64 (or other) CPU, and with AVX2 (8 float lanes for
// Adam's division and square root, ~5-8% on memory-bound trees), picked at run time, so one
// build runs everywhere.  No FMA in either (-ffp-contract=off): the same numbers on both.
#if defined(__x86_64__) && defined(__GNUC__)
#define JAXSCHED_AVX2 __attribute__((target("avx2")))
inline bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#else
#define JAXSCHED_AVX2
inline bool HasAvx2() { return false; }
#endif

template <typename T, bool... kFlags>
void SgdPlain(const T* p_in, T* p, const T* g, T* b, int64_t n, const SgdScalars<T>& s) {
  SgdBody<T, kFlags...>(p_in, p, g, b, n, s);
}
template <typename T, bool... kFlags>
JAXSCHED_AVX2 void SgdWide(const T* p_in, T* p, const T* g, T* b, int64_t n,
                           const SgdScalars<T>& s) {
  SgdBody<T, kFlags...>(p_in, p, g, b, n, s);
}
template <typename T, bool kMaximize, bool kNesterov, bool kDecay, bool kMomentum, bool kRestart,
          bool kInPlace>
void SgdLoop(const T* p_in, T* p, const T* g, T* b, int64_t n, const SgdScalars<T>& s) {
  if (HasAvx2()) {
    SgdWide<T, kMaximize, kNesterov, kDecay, kMomentum, kRestart, kInPlace>(p_in, p, g, b, n, s);
  } else {
    SgdPlain<T, kMaximize, kNesterov, kDecay, kMomentum, kRestart, kInPlace>(p_in, p, g, b, n, s);
  }
}

template <typename T, bool kMaximize, bool kAmsgrad, int kDecay, bool kInPlace>
void AdamPlain(const T* p_in, T* p, const T* g, T* m, T* v, T* vmax, int64_t n,
               const AdamScalars<T>& s) {
  AdamBody<T, kMaximize, kAmsgrad, kDecay, kInPlace>(p_in, p, g, m, v, vmax, n, s);
}
template <typename T, bool kMaximize, bool kAmsgrad, int kDecay, bool kInPlace>
JAXSCHED_AVX2 void AdamWide(const T* p_in, T* p, const T* g, T* m, T* v, T* vmax, int64_t n,
                            const AdamScalars<T>& s) {
  AdamBody<T, kMaximize, kAmsgrad, kDecay, kInPlace>(p_in, p, g, m, v, vmax, n, s);
}
template <typename T, bool kMaximize, bool kAmsgrad, int kDecay, bool kInPlace>
void AdamLoop(const T* p_in, T* p, const T* g, T* m, T* v, T* vmax, int64_t n,
              const AdamScalars<T>& s) {
  if (HasAvx2()) {
    AdamWide<T, kMaximize, kAmsgrad, kDecay, kInPlace>(p_in, p, g, m, v, vmax, n, s);
  } else {
    AdamPlain<T, kMaximize, kAmsgrad, kDecay, kInPlace>(p_in, p, g, m, v, vmax, n, s);
  }
}

// Reads the k parameter leaves (arguments 0..k-1 after `scalars`; their new values go to
// results 0..k-1, aliased or not), the k gradients (arguments k..2k-1) and `state` flat
// buffers (results k.., aliased).
template <typename T>
ffi::ErrorOr<Leaves> Gather(ffi::RemainingArgs& args, ffi::RemainingRets& rets, size_t state,
                            std::vector<T*>& flat) {
  if (args.size() < state || (args.size() - state) % 2 != 0) {
    return ffi::Unexpected(ffi::Error::InvalidArgument("jaxsched fused step: argument count"));
  }
  const size_t k = (args.size() - state) / 2;
  Leaves leaves;
  for (size_t l = 0; l < k; ++l) {
    auto p = rets.get<ffi::AnyBuffer>(l);
    auto p_in = args.get<ffi::AnyBuffer>(l);
    auto g = args.get<ffi::AnyBuffer>(k + l);
    if (!p.has_value() || !p_in.has_value() || !g.has_value()) {
      return ffi::Unexpected(ffi::Error::InvalidArgument("jaxsched fused step: missing leaf"));
    }
    leaves.param_in.push_back(p_in->untyped_data());
    leaves.param_out.push_back((*p)->untyped_data());
    leaves.grad.push_back(g->untyped_data());
    leaves.offset.push_back(leaves.offset.back() + static_cast<int64_t>(g->element_count()));
  }
  for (size_t j = 0; j < state; ++j) {
    auto r = rets.get<ffi::AnyBuffer>(k + j);
    if (!r.has_value()) {
      return ffi::Unexpected(ffi::Error::InvalidArgument("jaxsched fused step: missing state"));
    }
    if (static_cast<int64_t>((*r)->element_count()) != leaves.total()) {
      return ffi::Unexpected(ffi::Error::InvalidArgument("jaxsched fused step: state size"));
    }
    flat.push_back(static_cast<T*>((*r)->untyped_data()));
  }
  return leaves;
}

template <bool... kFlags>
struct Flags {};

// Turns N run-time booleans into template arguments: calls fn(Flags<b0, ..., bN-1>{}).
template <size_t N, typename Fn, bool... kDone>
void Dispatch(const Fn& fn, const bool* rest, Flags<kDone...> = {}) {
  if constexpr (sizeof...(kDone) == N) {
    fn(Flags<kDone...>{});
  } else if (rest[0]) {
    Dispatch<N>(fn, rest + 1, Flags<kDone..., true>{});
  } else {
    Dispatch<N>(fn, rest + 1, Flags<kDone..., false>{});
  }
}

template <typename T>
ffi::Error Sgd(ffi::ThreadPool pool, ffi::AnyBuffer scalars, ffi::RemainingArgs args,
               ffi::RemainingRets rets, bool maximize, bool nesterov) {
  std::vector<T*> flat;
  auto leaves = Gather<T>(args, rets, 1, flat);
  if (leaves.has_error()) return leaves.error();
  if (scalars.element_count() != sizeof(SgdScalars<T>) / sizeof(T)) {
    return ffi::Error::InvalidArgument("jaxsched sgd: scalar count");
  }
  const auto& s = *static_cast<const SgdScalars<T>*>(scalars.untyped_data());
  const bool flags[5] = {maximize, nesterov, s.weight_decay != T(0), s.momentum != T(0),
                         s.no_buffer != T(0)};
  Dispatch<5>(
      [&](auto f) {
        [&]<bool kMax, bool kNes, bool kDecay, bool kMom, bool kRestart>(
            Flags<kMax, kNes, kDecay, kMom, kRestart>) {
          Parallel(pool, leaves->total(), [&](int64_t lo, int64_t hi) {
            ForEachPart(*leaves, lo, hi, [&](size_t l, int64_t start, int64_t a, int64_t b) {
              LeafPart<T>(*leaves, l, a, [&]<bool kInPlace>(const T* in, T* out, const T* g) {
                SgdLoop<T, kMax, kNes, kDecay, kMom, kRestart, kInPlace>(
                    in, out, g, flat[0] + start + a, b - a, s);
              });
            });
          });
        }(f);
      },
      flags);
  return ffi::Error::Success();
}

template <typename T>
ffi::Error Adam(ffi::ThreadPool pool, ffi::AnyBuffer scalars, ffi::RemainingArgs args,
                ffi::RemainingRets rets, bool maximize, bool amsgrad, bool decoupled) {
  std::vector<T*> flat;
  auto leaves = Gather<T>(args, rets, amsgrad ? 3 : 2, flat);
  if (leaves.has_error()) return leaves.error();
  if (scalars.element_count() != sizeof(AdamScalars<T>) / sizeof(T)) {
    return ffi::Error::InvalidArgument("jaxsched adam: scalar count");
  }
  const auto& s = *static_cast<const AdamScalars<T>*>(scalars.untyped_data());
  const bool decay = s.weight_decay != T(0);
  const bool flags[4] = {maximize, amsgrad, decay && !decoupled, decay && decoupled};
  Dispatch<4>(
      [&](auto f) {
        [&]<bool kMax, bool kAms, bool kCoupled, bool kDecoupled>(
            Flags<kMax, kAms, kCoupled, kDecoupled>) {
          constexpr int kDecay = kCoupled ? 1 : (kDecoupled ? 2 : 0);
          Parallel(pool, leaves->total(), [&](int64_t lo, int64_t hi) {
            ForEachPart(*leaves, lo, hi, [&](size_t l, int64_t start, int64_t a, int64_t b) {
              LeafPart<T>(*leaves, l, a, [&]<bool kInPlace>(const T* in, T* out, const T* g) {
                const int64_t at = start + a;
                AdamLoop<T, kMax, kAms, kDecay, kInPlace>(in, out, g, flat[0] + at, flat[1] + at,
                                                          kAms ? flat[2] + at : nullptr, b - a, s);
              });
            });
          });
        }(f);
      },
      flags);
  return ffi::Error::Success();
}

// What every kernel takes: the pool, the scalars, then parameters, gradients and state
// buffers as the remaining arguments / results; the flags follow as attributes.
auto GroupBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::AnyBuffer>()
      .RemainingArgs()
      .RemainingRets();
}

}  // namespace

// The kernels' interface version: raise it whenever a kernel's arguments, scalars, flags or
// semantics change.  jaxsched.optim._fused refuses a library reporting another one (a stale
// build left by an editable install) and runs the XLA engine instead.
extern "C" int64_t jaxsched_kernels_version() { return 3; }
extern "C" const char* jaxsched_sgd_scalar_names() { return kSgdScalarNames; }
extern "C" const char* jaxsched_adam_scalar_names() { return kAdamScalarNames; }

#define JAXSCHED_SGD(name, T)                \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, Sgd<T>, \
                                GroupBinding().Attr<bool>("maximize").Attr<bool>("nesterov"));
#define JAXSCHED_ADAM(name, T)                                                              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(                                                            \
      name, Adam<T>,                                                                        \
      GroupBinding().Attr<bool>("maximize").Attr<bool>("amsgrad").Attr<bool>("decoupled"));

JAXSCHED_SGD(jaxsched_sgd_f32, float)
JAXSCHED_SGD(jaxsched_sgd_f64, double)
JAXSCHED_ADAM(jaxsched_adam_f32, float)
JAXSCHED_ADAM(jaxsched_adam_f64, double)
