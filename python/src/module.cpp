// tokenprune._core: the Python binding of the header-only library (pybind11).
//
// Every method is driven through the registry (tokenprune::method_info / create_pruner): the binding knows no
// method by name. Inputs are read in place: numpy arrays through __array_interface__, torch tensors (and any other
// DLPack producer) through __dlpack__; the views the library gets point at the caller's memory. An input that
// cannot be viewed (wrong dtype, not on the CPU, elements of a row not contiguous) is a tokenprune::Error, never a
// copy. prune() runs with the GIL released; one pruner object serializes its own calls with a mutex.

#include <pybind11/eval.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <dlpack/dlpack.h>

#include <tokenprune/tokenprune.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;
namespace tp = tokenprune;
using tp::index_t;

namespace {

// ------------------------------------------------------------------------------------------------ errors

PyObject* g_error_type = nullptr;  // tokenprune.Error (a ValueError subclass), created at import; never freed

[[noreturn]] void error(std::string argument, std::string value, std::string reason) {
  throw tp::Error(std::move(argument), std::move(value), std::move(reason));
}

std::string text_of(py::handle obj) {
  try {
    return py::str(obj).cast<std::string>();
  } catch (...) {
    return "?";
  }
}

std::string type_name(py::handle obj) {
  const py::handle type = py::type::handle_of(obj);
  const std::string module = py::getattr(type, "__module__", py::str("")).cast<std::string>();
  const std::string name = py::getattr(type, "__qualname__", py::str("?")).cast<std::string>();
  return module.empty() || module == "builtins" ? name : module + "." + name;
}

// ------------------------------------------------------------------------------------------------ array views

// A strided view of a caller's buffer: data pointer, dtype, shape and strides in elements. Owns what keeps the
// buffer alive while the library reads it (the object, or the DLPack capsule's managed tensor).
struct ArrayView {
  const void* data = nullptr;
  tp::DType dtype = tp::DType::f32;
  bool writable = false;
  std::vector<index_t> shape;
  std::vector<index_t> strides;  // elements
  py::object owner;
  DLManagedTensor* managed = nullptr;

  ArrayView() = default;
  ArrayView(const ArrayView&) = delete;
  ArrayView& operator=(const ArrayView&) = delete;
  ArrayView(ArrayView&& o) noexcept { *this = std::move(o); }
  ArrayView& operator=(ArrayView&& o) noexcept {
    release();
    data = o.data;
    dtype = o.dtype;
    writable = o.writable;
    shape = std::move(o.shape);
    strides = std::move(o.strides);
    owner = std::move(o.owner);
    managed = std::exchange(o.managed, nullptr);
    return *this;
  }
  ~ArrayView() { release(); }
  void release() noexcept {
    if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
    managed = nullptr;
  }
  [[nodiscard]] std::size_t ndim() const noexcept { return shape.size(); }

  // Drops leading dimensions of size 1 until `rank` are left (a [1, n, d] batch of one is an [n, d] matrix).
  void squeeze_to(std::size_t rank, const std::string& name) {
    while (shape.size() > rank && shape.front() == 1) {
      shape.erase(shape.begin());
      strides.erase(strides.begin());
    }
    if (shape.size() != rank) error(name + ".shape", shape_text(), "must have " + std::to_string(rank) + " dimensions");
  }
  [[nodiscard]] std::string shape_text() const { return tuple_text(shape); }
  [[nodiscard]] std::string strides_text() const { return tuple_text(strides); }
  static std::string tuple_text(const std::vector<index_t>& v) {
    std::string t = "(";
    for (std::size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + std::to_string(v[i]);
    return t + (v.size() == 1 ? ",)" : ")");
  }
};

constexpr const char* kDtypes = "float32, float16 or bfloat16 (bfloat16: a torch tensor)";

tp::DType dtype_from_typestr(const std::string& typestr, const std::string& name, const std::string& shown) {
  // '<f4' / '=f4' / '|f4' on a little-endian host; '>f4' is big-endian and cannot be read in place.
  if (typestr.size() == 3 && (typestr[0] == '<' || typestr[0] == '=' || typestr[0] == '|') && typestr[1] == 'f') {
    if (typestr[2] == '4') return tp::DType::f32;
    if (typestr[2] == '2') return tp::DType::f16;
  }
  error(name + ".dtype", shown, std::string("unsupported: must be ") + kDtypes);
}

ArrayView from_array_interface(py::handle obj, const std::string& name) {
  const py::dict ai = obj.attr("__array_interface__");
  ArrayView v;
  const std::string typestr = ai["typestr"].cast<std::string>();
  const std::string shown = py::hasattr(obj, "dtype") ? text_of(obj.attr("dtype")) : typestr;
  v.dtype = dtype_from_typestr(typestr, name, shown);
  for (py::handle d : ai["shape"].cast<py::tuple>()) v.shape.push_back(d.cast<index_t>());
  const py::tuple data = ai["data"].cast<py::tuple>();
  v.data = reinterpret_cast<const void*>(data[0].cast<std::uintptr_t>());
  v.writable = !data[1].cast<bool>();
  const index_t item = tp::dtype_size(v.dtype);
  if (ai.contains("mask") && !ai["mask"].is_none()) error(name, "masked", "masked arrays are not supported");
  if (!ai.contains("strides") || ai["strides"].is_none()) {  // C-contiguous
    v.strides.assign(v.shape.size(), 1);
    for (std::size_t i = v.shape.size(); i-- > 1;) v.strides[i - 1] = v.strides[i] * std::max<index_t>(v.shape[i], 1);
  } else {
    for (py::handle s : ai["strides"].cast<py::tuple>()) {
      const auto bytes = s.cast<index_t>();
      if (bytes % item != 0)
        error(name + ".strides", std::to_string(bytes) + " bytes",
              "must be a multiple of the element size (" + std::to_string(item) + " bytes)");
      v.strides.push_back(bytes / item);
    }
  }
  v.owner = py::reinterpret_borrow<py::object>(obj);
  return v;
}

ArrayView from_dlpack(py::handle given, const std::string& name) {
  py::object obj = py::reinterpret_borrow<py::object>(given);
  constexpr const char* kCpu = "must be on the CPU: tokenprune reads host memory in place (call .cpu() yourself)";
  // torch names its device (also the ones DLPack cannot describe, such as "meta").
  if (py::hasattr(obj, "device") && py::hasattr(obj.attr("device"), "type") &&
      text_of(obj.attr("device").attr("type")) != "cpu")
    error(name + ".device", text_of(obj.attr("device")), kCpu);
  py::object capsule;
  try {
    if (py::hasattr(obj, "__dlpack_device__")) {
      const py::tuple device = obj.attr("__dlpack_device__")();
      if (device[0].cast<int>() != kDLCPU) {
        const std::string shown = py::hasattr(obj, "device") ? text_of(obj.attr("device")) : text_of(device);
        error(name + ".device", shown, kCpu);
      }
    }
    // A tensor that requires grad is exported after detach(): the same storage, no copy.
    if (py::hasattr(obj, "requires_grad") && obj.attr("requires_grad").cast<bool>()) obj = obj.attr("detach")();
    capsule = obj.attr("__dlpack__")();
  } catch (py::error_already_set& e) {
    if (py::hasattr(obj, "dtype"))  // torch refuses to export e.g. bool tensors
      error(name + ".dtype", text_of(obj.attr("dtype")),
            std::string("unsupported: must be ") + kDtypes + " (DLPack export failed: " + text_of(e.value()) + ")");
    error(name, type_name(obj), std::string("cannot be read through DLPack: ") + text_of(e.value()));
  }
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) throw py::error_already_set();
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");  // ours now: the capsule must not free it
  ArrayView v;
  v.managed = managed;
  v.owner = obj;
  const DLTensor& t = managed->dl_tensor;
  if (t.device.device_type != kDLCPU)
    error(name + ".device", "device type " + std::to_string(t.device.device_type), "must be on the CPU");
  const std::string shown = py::hasattr(obj, "dtype") ? text_of(obj.attr("dtype")) : "dlpack code " + std::to_string(t.dtype.code);
  if (t.dtype.lanes != 1) error(name + ".dtype", shown, std::string("unsupported: must be ") + kDtypes);
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32) {
    v.dtype = tp::DType::f32;
  } else if (t.dtype.code == kDLFloat && t.dtype.bits == 16) {
    v.dtype = tp::DType::f16;
  } else if (t.dtype.code == kDLBfloat && t.dtype.bits == 16) {
    v.dtype = tp::DType::bf16;
  } else {
    error(name + ".dtype", shown, std::string("unsupported: must be ") + kDtypes);
  }
  v.data = static_cast<const char*>(t.data) + t.byte_offset;
  v.writable = true;
  v.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides == nullptr) {
    v.strides.assign(v.shape.size(), 1);
    for (std::size_t i = v.shape.size(); i-- > 1;) v.strides[i - 1] = v.strides[i] * std::max<index_t>(v.shape[i], 1);
  } else {
    v.strides.assign(t.strides, t.strides + t.ndim);
  }
  return v;
}

// numpy arrays (and anything with __array_interface__) first, then DLPack producers (torch tensors).
ArrayView acquire(py::handle obj, const std::string& name) {
  if (py::hasattr(obj, "__array_interface__")) return from_array_interface(obj, name);
  if (py::hasattr(obj, "__dlpack__")) return from_dlpack(obj, name);
  error(name, type_name(obj), std::string("must be a numpy array or a CPU torch tensor (") + kDtypes + ")");
}

void check_non_negative(const ArrayView& v, const std::string& name) {
  for (std::size_t i = 0; i < v.ndim(); ++i)
    if (v.strides[i] < 0 && v.shape[i] > 1)
      error(name + ".strides", v.strides_text(), "negative strides (a reversed view) cannot be read in place");
}

// The elements of the last dimension must be contiguous (a row-major buffer with a row stride).
void check_rows_contiguous(const ArrayView& v, const std::string& name) {
  check_non_negative(v, name);
  if (!v.shape.empty() && v.shape.back() > 1 && v.strides.back() != 1)
    error(name + ".strides", v.strides_text() + " elements",
          "the elements of a row must be contiguous (row-major, optionally with a row stride): a column-major or "
          "transposed array would need a copy, which tokenprune never makes silently (np.ascontiguousarray(x) or "
          "x.contiguous() makes one explicitly)");
}

// What the library was handed, for tests and debugging (the proof that nothing was copied).
struct SeenInput {
  std::uintptr_t data = 0;
  std::string dtype;
  std::vector<index_t> shape;
  std::vector<index_t> strides;  // elements
};

class InputSet {
 public:
  std::vector<ArrayView> holders;
  std::map<std::string, SeenInput> seen;

  tp::TokenMatrix matrix(py::handle obj, const std::string& name, bool allow_vector = false) {
    ArrayView v = acquire(obj, name);
    if (allow_vector && v.ndim() == 1) {
      v.shape.insert(v.shape.begin(), 1);
      v.strides.insert(v.strides.begin(), v.shape[1]);
    }
    v.squeeze_to(2, name);
    check_rows_contiguous(v, name);
    const index_t rows = v.shape[0], cols = v.shape[1];
    const index_t row_stride = rows <= 1 ? cols : v.strides[0];
    if (row_stride < cols)
      error(name + ".strides", v.strides_text() + " elements", "rows overlap: the row stride must be >= the row length");
    tp::TokenMatrix m = tp::visit_dtype(v.dtype, [&]<class T>(T) {
      return tp::TokenMatrix(static_cast<const T*>(v.data), rows, cols, row_stride);
    });
    note(name, v, {row_stride, 1});
    holders.push_back(std::move(v));
    return m;
  }

  tp::AttentionMaps maps(py::handle obj, const std::string& name) {
    ArrayView v = acquire(obj, name);
    if (v.ndim() == 2) {
      v.shape.insert(v.shape.begin(), 1);
      v.strides.insert(v.strides.begin(), v.shape[1] * v.shape[2]);
    }
    v.squeeze_to(3, name);
    check_rows_contiguous(v, name);
    const index_t heads = v.shape[0], n = v.shape[1];
    if (v.shape[2] != n) error(name + ".shape", v.shape_text(), "must be [heads, n_tokens, n_tokens]: square maps");
    const index_t row_stride = n <= 1 ? n : v.strides[1];
    const index_t head_stride = heads <= 1 ? std::max<index_t>((n - 1) * row_stride + n, 0) : v.strides[0];
    tp::AttentionMaps m = tp::visit_dtype(v.dtype, [&]<class T>(T) {
      return tp::AttentionMaps(static_cast<const T*>(v.data), heads, n, head_stride, row_stride);
    });
    note(name, v, {head_stride, row_stride, 1});
    holders.push_back(std::move(v));
    return m;
  }

  // [heads, n, head_dim] (any head and row strides), or [n, heads * head_dim] with `heads` given (fused layout).
  tp::HeadMatrices heads(py::handle obj, const std::string& name, std::optional<index_t> heads_given) {
    ArrayView v = acquire(obj, name);
    if (v.ndim() == 2) {
      if (!heads_given) error("heads", "missing", "2-D " + name + " [tokens, heads * head_dim] need heads=");
      const index_t h = *heads_given;
      if (h < 1 || v.shape[1] % h != 0)
        error("heads", std::to_string(h), "must be >= 1 and divide the last dimension of " + name + " (" + std::to_string(v.shape[1]) + ")");
      check_rows_contiguous(v, name);
      const index_t n = v.shape[0], hd = v.shape[1] / h;
      const index_t row_stride = n <= 1 ? v.shape[1] : v.strides[0];
      if (row_stride < v.shape[1]) error(name + ".strides", v.strides_text() + " elements", "rows overlap");
      tp::HeadMatrices m = tp::visit_dtype(v.dtype, [&]<class T>(T) {
        return tp::HeadMatrices(static_cast<const T*>(v.data), h, n, hd, hd, row_stride);
      });
      note(name, v, {row_stride, 1});
      holders.push_back(std::move(v));
      return m;
    }
    v.squeeze_to(3, name);
    check_rows_contiguous(v, name);
    if (heads_given && *heads_given != v.shape[0])
      error("heads", std::to_string(*heads_given), "disagrees with " + name + ".shape " + v.shape_text());
    const index_t h = v.shape[0], n = v.shape[1], hd = v.shape[2];
    const index_t row_stride = n <= 1 ? hd : v.strides[1];
    const index_t head_stride = h <= 1 ? n * row_stride : v.strides[0];
    tp::HeadMatrices m = tp::visit_dtype(v.dtype, [&]<class T>(T) {
      return tp::HeadMatrices(static_cast<const T*>(v.data), h, n, hd, head_stride, row_stride);
    });
    note(name, v, {head_stride, row_stride, 1});
    holders.push_back(std::move(v));
    return m;
  }

  // A float32 vector, contiguous (the library takes a span of floats).
  std::span<const float> vector(py::handle obj, const std::string& name) {
    ArrayView v = acquire(obj, name);
    v.squeeze_to(1, name);
    check_non_negative(v, name);
    if (v.dtype != tp::DType::f32)
      error(name + ".dtype", std::string(tp::dtype_name(v.dtype)), "must be float32 (it is read as a span of floats)");
    if (v.shape[0] > 1 && v.strides[0] != 1)
      error(name + ".strides", v.strides_text() + " elements", "must be contiguous (stride 1)");
    const std::span<const float> s(static_cast<const float*>(v.data), static_cast<std::size_t>(v.shape[0]));
    note(name, v, {1});
    holders.push_back(std::move(v));
    return s;
  }

 private:
  void note(const std::string& name, const ArrayView& v, std::vector<index_t> strides) {
    seen[name] = SeenInput{reinterpret_cast<std::uintptr_t>(v.data), std::string(tp::dtype_name(v.dtype)), v.shape,
                           std::move(strides)};
  }
};

// ------------------------------------------------------------------------------------------------ small values

std::optional<index_t> optional_count(py::handle obj, const char* name) {
  if (obj.is_none()) return std::nullopt;
  if (PyBool_Check(obj.ptr()) || PyFloat_Check(obj.ptr())) error(name, text_of(obj), "must be an integer");
  PyObject* index = PyNumber_Index(obj.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    error(name, text_of(obj), "must be an integer");
  }
  const long long value = PyLong_AsLongLong(index);
  Py_DECREF(index);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    error(name, text_of(obj), "out of range");
  }
  return static_cast<index_t>(value);
}

std::optional<double> optional_number(py::handle obj, const char* name) {
  if (obj.is_none()) return std::nullopt;
  if (PyBool_Check(obj.ptr())) error(name, text_of(obj), "must be a number");
  const double value = PyFloat_AsDouble(obj.ptr());
  if (value == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    error(name, text_of(obj), "must be a number");
  }
  return value;
}

std::vector<index_t> int_tuple(py::handle obj, const char* name, std::size_t size) {
  std::vector<index_t> out;
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    error(name, text_of(obj), "must be a tuple of " + std::to_string(size) + " integers");
  const py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  if (seq.size() != size) error(name, text_of(obj), "must be a tuple of " + std::to_string(size) + " integers");
  for (py::handle item : seq) out.push_back(*optional_count(item, name));
  return out;
}

tp::Grid grid_of(py::handle obj) {
  if (obj.is_none()) return {};
  const auto v = int_tuple(obj, "grid", 2);
  return tp::Grid{v[0], v[1]};
}

tp::VideoGrid video_of(py::handle obj) {
  if (obj.is_none()) return {};
  const auto v = int_tuple(obj, "video", 3);
  return tp::VideoGrid{v[0], v[1], v[2]};
}

std::optional<tp::Budget> budget_of(py::handle keep, py::handle ratio) {
  const auto k = optional_count(keep, "keep");
  const auto r = optional_number(ratio, "ratio");
  if (k && r) error("keep", std::to_string(*k), "give keep (a count) or ratio, not both");
  if (k) return tp::Budget::count(*k);
  if (r) return tp::Budget::ratio(*r);
  return std::nullopt;
}

// An int64 index vector (a copy: indices are small, and the library's spans need int64).
std::vector<index_t> indices_of(py::handle obj, const char* name) {
  py::array any;
  try {
    any = py::module_::import("numpy").attr("asarray")(obj);
  } catch (py::error_already_set&) {
    error(name, type_name(obj), "must be a sequence of integers");
  }
  if (any.size() > 0 && any.dtype().kind() != 'i' && any.dtype().kind() != 'u')
    error(name, text_of(any.dtype()), "must be integers");
  if (any.ndim() != 1) error(name, "ndim " + std::to_string(any.ndim()), "must be 1-D");
  auto a = py::array_t<index_t, py::array::c_style | py::array::forcecast>::ensure(any);
  if (!a) {
    PyErr_Clear();
    error(name, type_name(obj), "must be a sequence of integers");
  }
  return {a.data(), a.data() + a.size()};
}

py::array_t<index_t> index_array(std::span<const index_t> values) {
  py::array_t<index_t> out(static_cast<py::ssize_t>(values.size()));
  if (!values.empty()) std::memcpy(out.mutable_data(), values.data(), values.size() * sizeof(index_t));
  return out;
}

py::array_t<float> float_array(std::span<const float> values, std::vector<py::ssize_t> shape) {
  py::array_t<float> out(shape);
  if (!values.empty()) std::memcpy(out.mutable_data(), values.data(), values.size() * sizeof(float));
  return out;
}

const char* input_name(tp::Input input) {
  switch (input) {
    case tp::Input::features: return "features";
    case tp::Input::attention: return "attention";
    case tp::Input::query_keys: return "query_keys";
    case tp::Input::significance: return "significance";
    case tp::Input::grid: return "grid";
    case tp::Input::cls_attention: return "cls_attention";
    case tp::Input::hidden_states: return "hidden_states";
    case tp::Input::keys: return "keys";
    case tp::Input::image_embeds: return "image_embeds";
    case tp::Input::text_embeds: return "text_embeds";
    case tp::Input::relevance: return "relevance";
    case tp::Input::video: return "video";
  }
  return "?";
}

py::dict info_dict(const tp::MethodInfo& info) {
  py::dict d;
  d["name"] = info.name;
  d["summary"] = info.summary;
  py::list inputs, parameters, outputs;
  for (tp::Input i : info.inputs) inputs.append(input_name(i));
  for (const tp::ParameterInfo& p : info.parameters) {
    py::dict e;
    e["name"] = p.name;
    e["default"] = p.default_value;
    e["help"] = p.help;
    e["sets_budget"] = p.sets_budget;
    parameters.append(e);
  }
  for (const tp::OutputInfo& o : info.outputs) {
    py::dict e;
    e["name"] = o.name;
    e["help"] = o.help;
    outputs.append(e);
  }
  d["inputs"] = inputs;
  d["parameters"] = parameters;
  d["outputs"] = outputs;
  d["budget_from_parameters"] = static_cast<bool>(info.budget_from);
  return d;
}

tp::Parameters parameters_of(const py::kwargs& kwargs) {
  tp::Parameters p;
  for (auto [key, value] : kwargs) {
    const std::string name = key.cast<std::string>();
    if (value.is_none()) continue;  // None: the method's default
    if (PyBool_Check(value.ptr())) {
      p.set(name, tp::Parameters::Value(value.cast<bool>()));
    } else if (py::isinstance<py::str>(value)) {
      p.set(name, tp::Parameters::Value(value.cast<std::string>()));
    } else if (PyIndex_Check(value.ptr())) {  // int, numpy integers
      p.set(name, tp::Parameters::Value(static_cast<std::int64_t>(*optional_count(value, name.c_str()))));
    } else if (PyFloat_Check(value.ptr()) || py::hasattr(value, "__float__")) {
      p.set(name, tp::Parameters::Value(*optional_number(value, name.c_str())));
    } else {
      error(name, text_of(value), "must be a bool, an integer, a number or text");
    }
  }
  return p;
}

// ------------------------------------------------------------------------------------------------ layouts

struct PySegment {
  std::vector<index_t> tokens;
  tp::Budget budget = tp::Budget::count(0);
  tp::Grid grid{};
  tp::VideoGrid video{};
  std::optional<index_t> keep;
  std::optional<double> ratio;
};

class PyLayout {
 public:
  virtual ~PyLayout() = default;
  [[nodiscard]] virtual tp::SegmentLayout layout() const = 0;
};

class PyLlavaNext final : public PyLayout {
 public:
  PyLlavaNext(index_t rows, index_t cols, double ratio, index_t base)
      : layout_(rows, cols, ratio, base), rows_(rows), cols_(cols), ratio_(ratio), base_(base) {}
  [[nodiscard]] tp::SegmentLayout layout() const override { return layout_.layout(); }
  tp::LlavaNextLayout layout_;
  index_t rows_, cols_;
  double ratio_;
  index_t base_;
};

class PySegments final : public PyLayout {
 public:
  PySegments(index_t n_tokens, std::vector<PySegment> segments, std::vector<index_t> always_keep)
      : n_tokens_(n_tokens), segments_(std::move(segments)), always_keep_(std::move(always_keep)) {
    if (n_tokens_ < 0) error("n_tokens", std::to_string(n_tokens_), "must be >= 0");
    for (const PySegment& s : segments_) views_.push_back(tp::Segment{s.tokens, s.budget, s.grid, s.video});
  }
  [[nodiscard]] tp::SegmentLayout layout() const override { return tp::SegmentLayout{n_tokens_, views_, always_keep_}; }
  index_t n_tokens_;
  std::vector<PySegment> segments_;
  std::vector<index_t> always_keep_;
  std::vector<tp::Segment> views_;
};

const PyLayout& layout_of(py::handle obj) {
  try {
    return obj.cast<const PyLayout&>();
  } catch (const py::cast_error&) {
    error("layout", type_name(obj), "must be a tokenprune.LlavaNext or tokenprune.Segments");
  }
}

// ------------------------------------------------------------------------------------------------ the pruner

class PyPruner {
 public:
  PyPruner(const std::string& method, const py::kwargs& kwargs)
      : info_(&tp::method_info(method)), parameters_(parameters_of(kwargs)),
        segmented_(tp::create_pruner(method, parameters_)) {
    for (auto [key, value] : kwargs)
      if (!value.is_none()) given_[key.cast<std::string>()] = py::reinterpret_borrow<py::object>(value);
  }

  [[nodiscard]] const tp::MethodInfo& info() const { return *info_; }

  py::array_t<index_t> prune(py::handle features, py::handle attention, py::handle significance, py::handle queries,
                             py::handle keys, py::handle grid, py::handle keep, py::handle ratio,
                             py::handle cls_attention, py::handle hidden_states, py::handle image_embeds,
                             py::handle text_embeds, py::handle relevance, py::handle video, py::handle layout,
                             py::handle heads, double scale, bool softmax, index_t skip_tokens) {
    InputSet set;
    tp::PruneInputs in;
    if (!features.is_none()) in.features = set.matrix(features, "features");
    if (!attention.is_none()) in.attention = set.maps(attention, "attention");
    if (!significance.is_none()) in.significance = set.vector(significance, "significance");
    const auto heads_given = optional_count(heads, "heads");
    if (!queries.is_none()) {
      if (keys.is_none()) error("keys", "missing", "queries need the same layer's keys (same shape)");
      if (skip_tokens < 0) error("skip_tokens", std::to_string(skip_tokens), "must be >= 0");
      in.query_keys.queries = set.heads(queries, "queries", heads_given);
      in.query_keys.keys = set.heads(keys, "keys", heads_given);
      in.query_keys.scale = scale;
      in.query_keys.softmax = softmax;
      in.query_keys.skip_tokens = skip_tokens;
    } else if (!keys.is_none()) {
      if (info_->reads(tp::Input::query_keys) && !info_->reads(tp::Input::keys))
        error("queries", "missing", "keys without queries: method " + info_->name + " reads queries and keys together");
      in.keys = set.matrix(keys, "keys");
    }
    in.grid = grid_of(grid);
    if (!cls_attention.is_none()) in.cls_attention = set.matrix(cls_attention, "cls_attention", true);
    if (!hidden_states.is_none()) in.hidden_states = set.matrix(hidden_states, "hidden_states");
    if (!image_embeds.is_none()) in.image_embeds = set.matrix(image_embeds, "image_embeds");
    if (!text_embeds.is_none()) in.text_embeds = set.matrix(text_embeds, "text_embeds", true);
    if (!relevance.is_none()) in.relevance = set.vector(relevance, "relevance");
    in.video = video_of(video);

    std::vector<index_t> kept;
    if (!layout.is_none()) {
      const PyLayout& l = layout_of(layout);
      if (!keep.is_none() || !ratio.is_none())
        error(keep.is_none() ? "ratio" : "keep", text_of(keep.is_none() ? ratio : keep),
              "a layout carries its own budgets: give keep or ratio per segment, not here");
      const tp::SegmentLayout segments = l.layout();
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto span = segmented_.prune(in, segments);
      kept.assign(span.begin(), span.end());
      last_segmented_ = true;
    } else {
      const tp::Budget budget = resolve_budget(keep, ratio);
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      last_segmented_ = false;
      const auto span = segmented_.pruner().prune(in, budget);
      kept.assign(span.begin(), span.end());
    }
    seen_ = std::move(set.seen);
    return index_array(kept);  // the holders in `set` (and DLPack deleters) go with the GIL held
  }

  index_t kept_count(py::handle n_tokens, py::handle keep, py::handle ratio, py::handle grid, py::handle video,
                     py::handle layout) {
    if (!layout.is_none()) {
      const PyLayout& l = layout_of(layout);
      const tp::SegmentLayout segments = l.layout();
      if (!n_tokens.is_none() && *optional_count(n_tokens, "n_tokens") != segments.n_tokens)
        error("n_tokens", text_of(n_tokens), "disagrees with the layout's n_tokens = " + std::to_string(segments.n_tokens));
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      return segmented_.kept_count(segments);
    }
    const auto n = optional_count(n_tokens, "n_tokens");
    if (!n) error("n_tokens", "missing", "kept_count needs n_tokens (or a layout)");
    const tp::TokenShape shape{*n, grid_of(grid), video_of(video)};
    const tp::Budget budget = resolve_budget(keep, ratio);
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(mutex_);
    return segmented_.pruner().kept_count(shape, budget);
  }

  py::array_t<float> scores() {
    std::vector<float> copy;
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto s = last_segmented_ ? segmented_.scores() : segmented_.pruner().scores();
      copy.assign(s.begin(), s.end());
    }
    return float_array(copy, {static_cast<py::ssize_t>(copy.size())});
  }

  py::object output(const std::string& name) {
    if (info_->output(name) == nullptr) {
      std::string known;
      for (const tp::OutputInfo& o : info_->outputs) known += (known.empty() ? "" : ", ") + o.name;
      error("output", name, "not an output of method " + info_->name + (known.empty() ? " (it has none)" : " (it has: " + known + ")"));
    }
    std::optional<tp::ExtraOutput> out;
    std::vector<index_t> indices;
    std::vector<float> values;
    std::string text;
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      out = segmented_.pruner().output(name);
      if (out) {
        indices.assign(out->indices.begin(), out->indices.end());
        values.assign(out->values.begin(), out->values.end());
        text.assign(out->text.begin(), out->text.end());
      }
    }
    if (!out) error("output", name, "method " + info_->name + " produced no such output (has prune() run?)");
    // A word (FoPru's axis), float values [rows, cols] (a vector when cols == 1), or int64 indices.
    if (!text.empty()) return py::str(text);
    const bool is_values = !values.empty() || (indices.empty() && out->cols > 0);
    if (!is_values) return index_array(indices);
    if (out->cols == 1) return float_array(values, {static_cast<py::ssize_t>(out->rows)});
    return float_array(values, {static_cast<py::ssize_t>(out->rows), static_cast<py::ssize_t>(out->cols)});
  }

  void reserve(index_t max_tokens, index_t dim) {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(mutex_);
    segmented_.reserve(max_tokens, dim);
  }

  py::object chosen_axis() {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto* f = segmented_.pruner().target<tp::FoPru>();
    if (f == nullptr) return py::none();
    return py::str(f->chosen_axis() == tp::FoPruAxis::received ? "received" : "given");
  }

  py::dict last_inputs() const {
    py::dict d;
    for (const auto& [name, s] : seen_) {
      py::dict e;
      e["data"] = s.data;
      e["dtype"] = s.dtype;
      e["shape"] = py::tuple(py::cast(s.shape));
      e["strides"] = py::tuple(py::cast(s.strides));
      d[py::str(name)] = e;
    }
    return d;
  }

  py::dict parameters() const {
    py::dict d;
    for (const auto& [name, value] : given_) d[py::str(name)] = value;
    return d;
  }

 private:
  tp::Budget resolve_budget(py::handle keep, py::handle ratio) const {
    if (auto b = budget_of(keep, ratio)) return *b;
    if (info_->budget_from)
      if (auto b = info_->budget_from(parameters_)) return *b;
    error("keep", "missing", "give keep (a count of tokens) or ratio (in [0, 1])");
  }

  const tp::MethodInfo* info_;
  tp::Parameters parameters_;
  std::map<std::string, py::object> given_;
  tp::Segmented<tp::AnyPruner> segmented_;
  std::mutex mutex_;
  bool last_segmented_ = false;
  std::map<std::string, SeenInput> seen_;
};

// ------------------------------------------------------------------------------------------------ gather, positions

void gather_rows_into(py::handle src, py::handle kept_obj, py::handle dst) {
  InputSet set;
  const tp::TokenMatrix source = set.matrix(src, "src");
  const std::vector<index_t> kept = indices_of(kept_obj, "kept");
  ArrayView out = acquire(dst, "out");
  out.squeeze_to(2, "out");
  check_rows_contiguous(out, "out");
  if (!out.writable) error("out", "read-only", "must be writable");
  if (out.dtype != source.dtype())
    error("out.dtype", std::string(tp::dtype_name(out.dtype)), "must match the source's " + std::string(tp::dtype_name(source.dtype())));
  if (out.shape[0] != static_cast<index_t>(kept.size()) || out.shape[1] != source.dim())
    error("out.shape", out.shape_text(),
          "must be [len(kept), dim] = [" + std::to_string(kept.size()) + ", " + std::to_string(source.dim()) + "]");
  const index_t stride = out.shape[0] <= 1 ? out.shape[1] : out.strides[0];
  const void* dst_data = out.data;
  py::gil_scoped_release release;
  tp::visit_dtype(source.dtype(), [&]<class T>(T) {
    tp::gather_rows(source, kept, static_cast<T*>(const_cast<void*>(dst_data)), stride);
  });
}

py::tuple original_positions(py::handle kept_obj, py::handle ids_obj) {
  const auto kept = indices_of(kept_obj, "kept");
  const auto ids = indices_of(ids_obj, "position_ids");
  std::vector<index_t> out(kept.size());
  const index_t next = tp::original_positions(kept, ids, out);
  return py::make_tuple(index_array(out), next);
}

py::tuple compacted_positions(index_t count, index_t start) {
  if (count < 0) error("count", std::to_string(count), "must be >= 0");
  std::vector<index_t> out(static_cast<std::size_t>(count));
  const index_t next = tp::compacted_positions(count, start, out);
  return py::make_tuple(index_array(out), next);
}

std::vector<index_t> mrope_of(py::handle obj, index_t& length) {
  py::array_t<index_t, py::array::c_style | py::array::forcecast> a;
  a = py::array_t<index_t, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a) {
    PyErr_Clear();
    error("positions", type_name(obj), "must be an integer array of shape (3, L)");
  }
  if (a.ndim() != 2 || a.shape(0) != 3) {
    std::vector<index_t> shape(a.shape(), a.shape() + a.ndim());
    error("positions.shape", ArrayView::tuple_text(shape), "must be (3, L): the t, h, w position rows");
  }
  length = a.shape(1);
  return {a.data(), a.data() + a.size()};
}

py::array_t<index_t> mrope_array(const std::vector<index_t>& out, std::size_t k) {
  py::array_t<index_t> a({py::ssize_t{3}, static_cast<py::ssize_t>(k)});
  if (!out.empty()) std::memcpy(a.mutable_data(), out.data(), out.size() * sizeof(index_t));
  return a;
}

py::tuple original_mrope_positions(py::handle kept_obj, py::handle positions) {
  const auto kept = indices_of(kept_obj, "kept");
  index_t length = 0;
  const auto pos = mrope_of(positions, length);
  std::vector<index_t> out(3 * kept.size());
  const index_t next = tp::original_mrope_positions(kept, tp::MropePositions{pos.data(), length, length}, out.data(),
                                                    static_cast<index_t>(kept.size()));
  return py::make_tuple(mrope_array(out, kept.size()), next);
}

py::tuple compacted_mrope_positions(py::handle kept_obj, py::handle positions) {
  const auto kept = indices_of(kept_obj, "kept");
  index_t length = 0;
  const auto pos = mrope_of(positions, length);
  std::vector<index_t> out(3 * kept.size()), scratch(kept.size());
  const index_t next = tp::compacted_mrope_positions(kept, tp::MropePositions{pos.data(), length, length}, out.data(),
                                                     static_cast<index_t>(kept.size()), scratch);
  return py::make_tuple(mrope_array(out, kept.size()), next);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tokenprune: training-free visual-token pruning (the C++ library, read in place)";
  m.attr("__version__") = std::to_string(tp::kVersionMajor) + "." + std::to_string(tp::kVersionMinor) + "." +
                          std::to_string(tp::kVersionPatch);

  // tokenprune.Error: a ValueError with the library's three fields.
  {
    py::dict scope;
    scope["__builtins__"] = py::module_::import("builtins");
    py::exec(R"(
class Error(ValueError):
    """An invalid input, parameter or budget: .argument (the name), .value (the bad value as text), .reason."""

    def __init__(self, argument, value, reason):
        self.argument = argument
        self.value = value
        self.reason = reason
        super().__init__("tokenprune: " + argument + (" = " + value if value else "") + ": " + reason)

    def __reduce__(self):
        return (type(self), (self.argument, self.value, self.reason))
)",
             scope);
    py::object cls = scope["Error"];
    cls.attr("__module__") = "tokenprune";
    g_error_type = cls.inc_ref().ptr();  // lives as long as the process
    m.attr("Error") = cls;
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tp::Error& e) {
      PyObject* instance = PyObject_CallFunction(g_error_type, "sss", e.argument().c_str(), e.value().c_str(), e.reason().c_str());
      if (instance == nullptr) return;  // the constructor's own exception is set
      PyErr_SetObject(g_error_type, instance);
      Py_DECREF(instance);
    }
  });

  m.def("methods", &tp::method_names, "The registered method names (the tool's --method values), in registration order.");
  m.def("method_info", [](const std::string& name) { return info_dict(tp::method_info(name)); }, py::arg("name"),
        "What a method reads, its parameters (name, default, help) and its extra outputs.");

  m.def("active_isa", [] { return std::string(tp::isa_name(tp::active_isa())); });
  m.def("set_isa", [](const std::string& name) { tp::set_isa(name); }, py::arg("name"));
  m.def("supported_isas", &tp::supported_isas);

  py::class_<PyPruner>(m, "Pruner", "A pruner of any registered method (see tokenprune.create).")
      .def(py::init([](const std::string& method, const py::kwargs& kwargs) {
             return std::make_unique<PyPruner>(method, kwargs);
           }),
           py::arg("method"))
      .def("prune", &PyPruner::prune, py::arg("features") = py::none(), py::arg("attention") = py::none(),
           py::arg("significance") = py::none(), py::arg("queries") = py::none(), py::arg("keys") = py::none(),
           py::arg("grid") = py::none(), py::arg("keep") = py::none(), py::arg("ratio") = py::none(), py::kw_only(),
           py::arg("cls_attention") = py::none(), py::arg("hidden_states") = py::none(),
           py::arg("image_embeds") = py::none(), py::arg("text_embeds") = py::none(),
           py::arg("relevance") = py::none(), py::arg("video") = py::none(), py::arg("layout") = py::none(),
           py::arg("heads") = py::none(), py::arg("scale") = 0.0, py::arg("softmax") = true,
           py::arg("skip_tokens") = 0,
           "Kept token indices (numpy int64, 1-D, strictly ascending). Inputs are read in place; the GIL is released.")
      .def("kept_count", &PyPruner::kept_count, py::arg("n_tokens") = py::none(), py::arg("keep") = py::none(),
           py::arg("ratio") = py::none(), py::arg("grid") = py::none(), py::kw_only(), py::arg("video") = py::none(),
           py::arg("layout") = py::none(), "How many indices prune() will return, before any data exists.")
      .def_property_readonly("scores", &PyPruner::scores, "float32 per-token scores of the last prune() (a copy).")
      .def("output", &PyPruner::output, py::arg("name"), "Extra output `name` of the last prune() (a copy).")
      .def("reserve", &PyPruner::reserve, py::arg("max_tokens"), py::arg("dim"))
      .def_property_readonly("method", [](const PyPruner& p) { return p.info().name; })
      .def_property_readonly("info", [](const PyPruner& p) { return info_dict(p.info()); })
      .def_property_readonly("inputs", [](const PyPruner& p) {
        std::vector<std::string> out;
        for (tp::Input i : p.info().inputs) out.emplace_back(input_name(i));
        return out;
      })
      .def_property_readonly("outputs", [](const PyPruner& p) {
        std::vector<std::string> out;
        for (const tp::OutputInfo& o : p.info().outputs) out.push_back(o.name);
        return out;
      })
      .def_property_readonly("parameters", &PyPruner::parameters, "The parameters given at construction.")
      .def_property_readonly("chosen_axis", &PyPruner::chosen_axis, "FoPru: the axis the last prune() used; else None.")
      .def_property_readonly("last_inputs", &PyPruner::last_inputs,
                             "What the library was handed in the last prune(): per input, the data pointer, dtype, "
                             "shape and strides (elements) of the view (the caller's own memory).")
      .def("__repr__", [](const PyPruner& p) {
        std::string text = "tokenprune.Pruner('" + p.info().name + "'";
        for (auto [k, v] : p.parameters()) text += ", " + k.cast<std::string>() + "=" + py::repr(v).cast<std::string>();
        return text + ")";
      });

  py::class_<PyLayout>(m, "_Layout");
  py::class_<PyLlavaNext, PyLayout>(m, "LlavaNext",
                                    "LLaVA-NeXT anyres sequence: base_tokens global-view tokens, then grid_rows rows of "
                                    "grid_cols tokens plus one newline each (kept); both parts keep floor(ratio * size).")
      .def(py::init([](index_t rows, index_t cols, double ratio, index_t base) {
             return std::make_unique<PyLlavaNext>(rows, cols, ratio, base);
           }),
           py::arg("grid_rows"), py::arg("grid_cols"), py::arg("ratio"), py::arg("base_tokens") = 576)
      .def_property_readonly("n_tokens", [](const PyLlavaNext& l) { return l.layout_.n_tokens(); })
      .def_property_readonly("grid_rows", [](const PyLlavaNext& l) { return l.rows_; })
      .def_property_readonly("grid_cols", [](const PyLlavaNext& l) { return l.cols_; })
      .def_property_readonly("ratio", [](const PyLlavaNext& l) { return l.ratio_; })
      .def_property_readonly("base_tokens", [](const PyLlavaNext& l) { return l.base_; })
      .def("__repr__", [](const PyLlavaNext& l) {
        std::ostringstream t;
        t << "tokenprune.LlavaNext(" << l.rows_ << ", " << l.cols_ << ", " << l.ratio_ << ", base_tokens=" << l.base_ << ")";
        return t.str();
      });

  py::class_<PySegment>(m, "Segment", "Token indices (strictly ascending) pruned together, with their own budget.")
      .def(py::init([](py::handle tokens, py::handle keep, py::handle ratio, py::handle grid, py::handle video) {
             auto s = std::make_unique<PySegment>();
             s->tokens = indices_of(tokens, "tokens");
             const auto b = budget_of(keep, ratio);
             if (!b) error("keep", "missing", "a segment needs keep (a count) or ratio");
             s->budget = *b;
             s->keep = optional_count(keep, "keep");
             s->ratio = optional_number(ratio, "ratio");
             s->grid = grid_of(grid);
             s->video = video_of(video);
             return s;
           }),
           py::arg("tokens"), py::arg("keep") = py::none(), py::arg("ratio") = py::none(), py::arg("grid") = py::none(),
           py::arg("video") = py::none())
      .def_property_readonly("tokens", [](const PySegment& s) { return index_array(s.tokens); })
      .def_property_readonly("keep", [](const PySegment& s) { return s.keep; })
      .def_property_readonly("ratio", [](const PySegment& s) { return s.ratio; });

  py::class_<PySegments, PyLayout>(m, "Segments",
                                   "A sequence of n_tokens: disjoint segments, each pruned on its own, plus indices that "
                                   "are always kept (text, newlines); tokens in neither are dropped.")
      .def(py::init([](index_t n, std::vector<PySegment> segments, py::handle always_keep) {
             return std::make_unique<PySegments>(n, std::move(segments),
                                                 always_keep.is_none() ? std::vector<index_t>{} : indices_of(always_keep, "always_keep"));
           }),
           py::arg("n_tokens"), py::arg("segments"), py::arg("always_keep") = py::none())
      .def_property_readonly("n_tokens", [](const PySegments& s) { return s.n_tokens_; })
      .def_property_readonly("always_keep", [](const PySegments& s) { return index_array(s.always_keep_); })
      .def_property_readonly("segments", [](const PySegments& s) { return s.segments_; });

  m.def("_gather_rows_into", &gather_rows_into, py::arg("src"), py::arg("kept"), py::arg("out"));
  m.def("original_positions", &original_positions, py::arg("kept"), py::arg("position_ids"),
        "(positions[kept], next): each kept token keeps its position id; next = 1 + the largest kept one.");
  m.def("compacted_positions", &compacted_positions, py::arg("count"), py::arg("start") = 0,
        "(start + arange(count), start + count): the kept tokens renumbered contiguously.");
  m.def("original_mrope_positions", &original_mrope_positions, py::arg("kept"), py::arg("positions"),
        "M-RoPE (3, L) positions of the kept tokens, unchanged: ((3, k) array, next).");
  m.def("compacted_mrope_positions", &compacted_mrope_positions, py::arg("kept"), py::arg("positions"),
        "M-RoPE positions renumbered densely per axis (a pruned grid row or column leaves no gap): ((3, k), next).");
}
