#pragma once
#include <tokenprune/core/abi.hpp>
// AnyPruner: any TokenPruner behind one type, for code that chooses the method at run time (by name through the
// registry, core/registry.hpp; the command-line tool; the Python binding). It satisfies TokenPruner itself, so
// Segmented<AnyPruner> runs any method per segment. Calls cost one indirect call each; the pruner's own
// guarantees (kept_count before data, no allocation after reserve, determinism) carry over unchanged.
//
// Methods with outputs besides the selection (DivPrune's pick order, VisionZip's merged tokens, ...) expose them by
// name through output(); target<P>() reaches the concrete pruner for anything else (VisionZip's engine-buffer
// overload, FoPru's chosen axis).

#include <tokenprune/core/concept.hpp>
#include <tokenprune/core/executor.hpp>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tokenprune::inline TOKENPRUNE_ABI {

// One extra output of the last prune(): integer indices, float values as a rows x cols row-major matrix (a vector
// is rows x 1), or a word (FoPru's chosen axis). Views into the pruner, valid until its next prune().
struct ExtraOutput {
  std::span<const index_t> indices{};
  std::span<const float> values{};
  index_t rows = 0;
  index_t cols = 0;
  std::string_view text{};
};

// How a concrete pruner type names its extra outputs: returns nullopt for a name it does not have.
template <class P>
using ExtraOutputs = std::optional<ExtraOutput> (*)(const P& pruner, std::string_view name);

class AnyPruner {
 public:
  AnyPruner() = default;

  template <TokenPruner P>
    requires(!std::same_as<std::remove_cvref_t<P>, AnyPruner>)
  explicit AnyPruner(P pruner, std::string name = {}, ExtraOutputs<P> outputs = nullptr)
      : model_(std::make_unique<Model<P>>(std::move(pruner), outputs)), name_(std::move(name)) {}

  // The registry name it was built under (empty when wrapped by hand).
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] bool empty() const noexcept { return model_ == nullptr; }

  [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const { return model().kept_count(shape, budget); }
  void reserve(index_t max_tokens, index_t dim) { model().reserve(max_tokens, dim); }
  std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) { return model().prune(inputs, budget); }
  [[nodiscard]] std::span<const float> scores() const { return model().scores(); }

  // Extra output `name` of the last prune(), or nullopt when the method has none of that name.
  [[nodiscard]] std::optional<ExtraOutput> output(std::string_view name) const { return model().output(name); }

  // Forwarded to pruners that take an executor; the others run on the calling thread anyway.
  void set_executor(const Executor& executor) { model().set_executor(executor); }

  // Whether the pruner reads a segment's scattered feature rows in place (see FeatureRowPruner in
  // core/concept.hpp); prune_feature_rows() fails for a pruner that does not.
  [[nodiscard]] bool reads_feature_rows() const { return model().reads_feature_rows(); }
  std::span<const index_t> prune_feature_rows(const TokenMatrix& features, std::span<const index_t> rows, Budget budget) {
    return model().prune_feature_rows(features, rows, budget);
  }

  // The concrete pruner, or nullptr when it is not a P.
  template <class P>
  [[nodiscard]] P* target() noexcept {
    auto* m = dynamic_cast<Model<P>*>(model_.get());
    return m ? &m->pruner : nullptr;
  }
  template <class P>
  [[nodiscard]] const P* target() const noexcept {
    const auto* m = dynamic_cast<const Model<P>*>(model_.get());
    return m ? &m->pruner : nullptr;
  }

 private:
  struct Concept {
    virtual ~Concept() = default;
    [[nodiscard]] virtual index_t kept_count(const TokenShape& shape, Budget budget) const = 0;
    virtual void reserve(index_t max_tokens, index_t dim) = 0;
    virtual std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) = 0;
    [[nodiscard]] virtual std::span<const float> scores() const = 0;
    [[nodiscard]] virtual std::optional<ExtraOutput> output(std::string_view name) const = 0;
    virtual void set_executor(const Executor& executor) = 0;
    [[nodiscard]] virtual bool reads_feature_rows() const = 0;
    virtual std::span<const index_t> prune_feature_rows(const TokenMatrix& features, std::span<const index_t> rows,
                                                        Budget budget) = 0;
  };

  template <class P>
  struct Model final : Concept {
    Model(P p, ExtraOutputs<P> o) : pruner(std::move(p)), outputs(o) {}
    [[nodiscard]] index_t kept_count(const TokenShape& shape, Budget budget) const override {
      return pruner.kept_count(shape, budget);
    }
    void reserve(index_t max_tokens, index_t dim) override { pruner.reserve(max_tokens, dim); }
    std::span<const index_t> prune(const PruneInputs& inputs, Budget budget) override { return pruner.prune(inputs, budget); }
    [[nodiscard]] std::span<const float> scores() const override { return pruner.scores(); }
    [[nodiscard]] std::optional<ExtraOutput> output(std::string_view name) const override {
      return outputs ? outputs(pruner, name) : std::nullopt;
    }
    void set_executor(const Executor& executor) override {
      if constexpr (requires { pruner.set_executor(executor); }) pruner.set_executor(executor);
    }
    [[nodiscard]] bool reads_feature_rows() const override {
      if constexpr (FeatureRowPruner<P>) {
        return pruner.reads_feature_rows();
      } else {
        return false;
      }
    }
    std::span<const index_t> prune_feature_rows(const TokenMatrix& features, std::span<const index_t> rows,
                                                Budget budget) override {
      if constexpr (FeatureRowPruner<P>) {
        return pruner.prune_feature_rows(features, rows, budget);
      } else {
        fail("prune_feature_rows", "called", "this method reads whole inputs only: pass a PruneInputs to prune()");
      }
    }
    P pruner;
    ExtraOutputs<P> outputs;
  };

  [[nodiscard]] Concept& model() const {
    if (!model_) fail("pruner", "empty", "this AnyPruner holds no pruner (default-constructed or moved from)");
    return *model_;
  }

  std::unique_ptr<Concept> model_;
  std::string name_;
};

static_assert(TokenPruner<AnyPruner>);

}  // namespace tokenprune
