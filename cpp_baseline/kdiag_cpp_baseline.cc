// kdiag_cpp_baseline: the C++ floor for a Keras model's inference latency.
//
// Loads a SavedModel through the TensorFlow C API (TF_LoadSessionFromSavedModel),
// feeds inputs read from .npy files, and times TF_SessionRun: one cold call,
// warm-up calls, then timed calls until a time budget AND a minimum count are met
// (or a wall-time cap is hit). Prints one JSON object on stdout:
//
//   {"cold_s": ..., "load_s": ..., "samples_s": [...], "stopped_early": false,
//    "outputs": [{"name": "StatefulPartitionedCall:0", "file": ".../out_0.npy",
//                 "dtype": "<f4", "shape": [1, 1]}], ...}
//
// The outputs of the cold call are written as .npy files into --out-dir so the
// caller can compare them with Keras predict. Errors: a non-zero exit status and
// one line on stderr starting with "kdiag_cpp_baseline: error: ".
//
// Tensor names are graph names ("serving_default_x:0"), not signature keys: the
// caller reads the SignatureDef (kdiag/cpp.py does) and passes them in.

#include <tensorflow/c/c_api.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kProgram = "kdiag_cpp_baseline";

// A failure to report: one line on stderr, then exit with `status`.
struct Failure : std::runtime_error {
  int status;
  Failure(const std::string& msg, int st = 1) : std::runtime_error(msg), status(st) {}
};
struct UsageError : Failure {
  explicit UsageError(const std::string& msg) : Failure(msg, 2) {}
};

const char* kUsage =
    "usage: kdiag_cpp_baseline --saved-model DIR --input NAME[:INDEX]=FILE.npy ...\n"
    "                          --output NAME[:INDEX] ... --out-dir DIR\n"
    "                          [--tag serve] [--budget-s 1.0] [--min-calls 5]\n"
    "                          [--max-wall-s 6.0] [--warmup 1]\n"
    "                          [--intra-op-threads N] [--inter-op-threads N]\n"
    "\n"
    "Times TF_SessionRun on a SavedModel: a cold call, warm-up, then timed calls\n"
    "until --budget-s seconds of calls AND --min-calls calls (or --max-wall-s).\n"
    "Inputs are .npy files (little-endian float32/float64/int32/int64, C order).\n"
    "Prints JSON on stdout; writes the cold call's outputs as .npy into --out-dir.\n";

bool HostIsLittleEndian() {
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

// ---------------------------------------------------------------- .npy files

struct NpyDtype {
  const char* descr;
  TF_DataType tf;
  size_t itemsize;
};

// What we read: only these four.
const NpyDtype kReadable[] = {
    {"<f4", TF_FLOAT, 4},
    {"<f8", TF_DOUBLE, 8},
    {"<i4", TF_INT32, 4},
    {"<i8", TF_INT64, 8},
};

// What we can write back (outputs may have other dtypes than inputs).
const NpyDtype kWritable[] = {
    {"<f4", TF_FLOAT, 4},   {"<f8", TF_DOUBLE, 8},   {"<f2", TF_HALF, 2},
    {"<i4", TF_INT32, 4},   {"<i8", TF_INT64, 8},    {"<i2", TF_INT16, 2},
    {"|i1", TF_INT8, 1},    {"|u1", TF_UINT8, 1},    {"<u2", TF_UINT16, 2},
    {"<u4", TF_UINT32, 4},  {"<u8", TF_UINT64, 8},   {"|b1", TF_BOOL, 1},
    {"<c8", TF_COMPLEX64, 8}, {"<c16", TF_COMPLEX128, 16},
};

std::string DtypeName(TF_DataType t) {
  switch (t) {
    case TF_FLOAT: return "float32";
    case TF_DOUBLE: return "float64";
    case TF_HALF: return "float16";
    case TF_BFLOAT16: return "bfloat16";
    case TF_INT8: return "int8";
    case TF_INT16: return "int16";
    case TF_INT32: return "int32";
    case TF_INT64: return "int64";
    case TF_UINT8: return "uint8";
    case TF_UINT16: return "uint16";
    case TF_UINT32: return "uint32";
    case TF_UINT64: return "uint64";
    case TF_BOOL: return "bool";
    case TF_STRING: return "string";
    case TF_COMPLEX64: return "complex64";
    case TF_COMPLEX128: return "complex128";
    case TF_RESOURCE: return "resource";
    case TF_VARIANT: return "variant";
    default: return "dtype#" + std::to_string(static_cast<int>(t));
  }
}

std::string ShapeString(const std::vector<int64_t>& dims, bool python_tuple) {
  std::string s = python_tuple ? "(" : "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += dims[i] < 0 ? std::string("?") : std::to_string(dims[i]);
  }
  if (python_tuple && dims.size() == 1) s += ",";
  s += python_tuple ? ")" : "]";
  return s;
}

// A strict parser for the header dict numpy writes:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (1, 784), }
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  void Parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    Skip();
    Expect('{');
    for (;;) {
      Skip();
      if (Peek() == '}') { ++i_; break; }
      std::string key = String();
      Skip();
      Expect(':');
      Skip();
      if (key == "descr") {
        if (have_descr) Fail("duplicate key 'descr'");
        *descr = String();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_fortran) Fail("duplicate key 'fortran_order'");
        *fortran = Bool();
        have_fortran = true;
      } else if (key == "shape") {
        if (have_shape) Fail("duplicate key 'shape'");
        *shape = Tuple();
        have_shape = true;
      } else {
        Fail("unexpected key '" + key + "'");
      }
      Skip();
      if (Peek() == ',') { ++i_; continue; }
      Skip();
      Expect('}');
      break;
    }
    Skip();
    if (i_ != s_.size()) Fail("trailing characters after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
      Fail("header lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  [[noreturn]] void Fail(const std::string& why) {
    throw Failure(path_ + ": not a valid .npy header (" + why + ")");
  }
  char Peek() { return i_ < s_.size() ? s_[i_] : '\0'; }
  void Skip() { while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n')) ++i_; }
  void Expect(char c) {
    if (Peek() != c) Fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string String() {
    char q = Peek();
    if (q != '\'' && q != '"') Fail("expected a quoted string");
    ++i_;
    size_t end = s_.find(q, i_);
    if (end == std::string::npos) Fail("unterminated string");
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    return out;
  }
  bool Bool() {
    if (s_.compare(i_, 4, "True") == 0) { i_ += 4; return true; }
    if (s_.compare(i_, 5, "False") == 0) { i_ += 5; return false; }
    Fail("expected True or False");
  }
  std::vector<int64_t> Tuple() {
    std::vector<int64_t> dims;
    Expect('(');
    for (;;) {
      Skip();
      if (Peek() == ')') { ++i_; break; }
      if (Peek() < '0' || Peek() > '9') Fail("expected a non-negative integer in 'shape'");
      int64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        int d = Peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - d) / 10) Fail("dimension too large");
        v = v * 10 + d;
        ++i_;
      }
      if (Peek() == 'L') ++i_;  // Python 2 longs
      dims.push_back(v);
      Skip();
      if (Peek() == ',') { ++i_; continue; }
      Skip();
      Expect(')');
      break;
    }
    return dims;
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

void DeleteTensor(TF_Tensor* t) { if (t) TF_DeleteTensor(t); }
using TensorPtr = std::unique_ptr<TF_Tensor, decltype(&DeleteTensor)>;

// Reads a .npy file straight into a newly allocated TF_Tensor.
TensorPtr ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Failure("cannot open input file " + path);
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw Failure(path + ": not a .npy file (bad magic string)");
  const unsigned char major = static_cast<unsigned char>(magic[6]);
  const unsigned char minor = static_cast<unsigned char>(magic[7]);
  uint32_t header_len = 0;
  if (major == 1 && minor == 0) {
    unsigned char b[2];
    if (!f.read(reinterpret_cast<char*>(b), 2)) throw Failure(path + ": truncated .npy header");
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 && minor == 0) {
    unsigned char b[4];
    if (!f.read(reinterpret_cast<char*>(b), 4)) throw Failure(path + ": truncated .npy header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    throw Failure(path + ": .npy format version " + std::to_string(major) + "." +
                  std::to_string(minor) + " is not supported (only 1.0 and 2.0)");
  }
  if (header_len > (1u << 24)) throw Failure(path + ": .npy header is implausibly long");
  std::string header(header_len, '\0');
  if (!f.read(&header[0], header_len)) throw Failure(path + ": truncated .npy header");

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(header, path).Parse(&descr, &fortran, &shape);

  const NpyDtype* dtype = nullptr;
  for (const auto& d : kReadable)
    if (descr == d.descr) dtype = &d;
  if (!dtype)
    throw Failure(path + ": dtype '" + descr +
                  "' is not supported (only little-endian float32, float64, int32, int64: "
                  "'<f4', '<f8', '<i4', '<i8')");
  if (fortran)
    throw Failure(path + ": Fortran-order arrays are not supported (save a C-order array, "
                  "e.g. numpy.ascontiguousarray)");

  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
      throw Failure(path + ": shape is too large");
    count *= static_cast<uint64_t>(d);
  }
  if (count > std::numeric_limits<uint64_t>::max() / dtype->itemsize)
    throw Failure(path + ": shape is too large");
  const uint64_t nbytes = count * dtype->itemsize;

  // The data must be exactly what the header announces: no more, no less.
  const std::streamoff data_start = f.tellg();
  f.seekg(0, std::ios::end);
  const std::streamoff file_end = f.tellg();
  f.seekg(data_start);
  if (file_end < data_start || static_cast<uint64_t>(file_end - data_start) != nbytes)
    throw Failure(path + ": holds " + std::to_string(file_end - data_start) +
                  " bytes of data, its header " + ShapeString(shape, true) + " " + descr +
                  " needs " + std::to_string(nbytes));

  TF_Tensor* t = TF_AllocateTensor(dtype->tf, shape.data(), static_cast<int>(shape.size()),
                                   static_cast<size_t>(nbytes));
  if (!t) throw Failure(path + ": cannot allocate a tensor of " + std::to_string(nbytes) + " bytes");
  TensorPtr tensor(t, &DeleteTensor);
  if (nbytes && !f.read(static_cast<char*>(TF_TensorData(t)), static_cast<std::streamsize>(nbytes)))
    throw Failure(path + ": could not read the array data");
  return tensor;
}

// Writes a tensor as a version 1.0 .npy file (header padded to 64 bytes, as numpy does).
std::string WriteNpy(const std::string& path, const TF_Tensor* t) {
  const TF_DataType type = TF_TensorType(t);
  const NpyDtype* dtype = nullptr;
  for (const auto& d : kWritable)
    if (d.tf == type) dtype = &d;
  if (!dtype)
    throw Failure("cannot write an output of dtype " + DtypeName(type) + " as .npy");
  std::vector<int64_t> dims;
  for (int i = 0; i < TF_NumDims(t); ++i) dims.push_back(TF_Dim(t, i));

  std::string header = std::string("{'descr': '") + dtype->descr +
                       "', 'fortran_order': False, 'shape': " + ShapeString(dims, true) + ", }";
  const size_t preamble = 10;  // magic (6) + version (2) + header length (2)
  size_t total = preamble + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) throw Failure("output shape too long for a .npy 1.0 header");

  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Failure("cannot write output file " + path);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(TF_TensorData(t)),
          static_cast<std::streamsize>(TF_TensorByteSize(t)));
  f.close();
  if (!f) throw Failure("could not write output file " + path);
  return dtype->descr;
}

// ---------------------------------------------------------------- JSON

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// ---------------------------------------------------------------- arguments

struct TensorArg {
  std::string spec;  // as given: "serving_default_x:0"
  std::string op;
  int index = 0;
  std::string file;  // inputs only
};

struct Options {
  std::string saved_model;
  std::string tag = "serve";
  std::string out_dir;
  std::vector<TensorArg> inputs, outputs;
  double budget_s = 1.0;
  long min_calls = 5;
  double max_wall_s = 6.0;
  long warmup = 1;
  long intra_op_threads = -1;
  long inter_op_threads = -1;
};

TensorArg ParseTensorName(const std::string& spec, const std::string& flag) {
  TensorArg a;
  a.spec = spec;
  a.op = spec;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos) {
    a.op = spec.substr(0, colon);
    const std::string idx = spec.substr(colon + 1);
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos || idx.size() > 6)
      throw UsageError(flag + " " + spec + ": the output index after ':' must be a number");
    a.index = std::stoi(idx);
  }
  if (a.op.empty()) throw UsageError(flag + " " + spec + ": empty operation name");
  a.spec = a.op + ":" + std::to_string(a.index);
  return a;
}

double ParseDouble(const std::string& flag, const std::string& v, bool allow_zero) {
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno || !std::isfinite(d) || d < 0 || (!allow_zero && d == 0))
    throw UsageError(flag + " needs a " + (allow_zero ? "non-negative" : "positive") +
                     " number of seconds, got '" + v + "'");
  return d;
}

long ParseCount(const std::string& flag, const std::string& v, long min_value) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno || n < min_value || n > 100000000)
    throw UsageError(flag + " needs an integer >= " + std::to_string(min_value) + ", got '" + v + "'");
  return n;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    bool have_value = false;
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + flag + "' (see --help)");
    const size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      have_value = true;
    } else if (i + 1 < argc) {
      value = argv[++i];
      have_value = true;
    }
    if (!have_value) throw UsageError(flag + " needs a value (see --help)");

    if (flag == "--saved-model") {
      o.saved_model = value;
    } else if (flag == "--tag") {
      o.tag = value;
    } else if (flag == "--out-dir") {
      o.out_dir = value;
    } else if (flag == "--input") {
      const size_t sep = value.find('=');
      if (sep == std::string::npos || sep + 1 == value.size())
        throw UsageError("--input " + value + ": expected NAME[:INDEX]=FILE.npy");
      TensorArg a = ParseTensorName(value.substr(0, sep), "--input");
      a.file = value.substr(sep + 1);
      o.inputs.push_back(a);
    } else if (flag == "--output") {
      o.outputs.push_back(ParseTensorName(value, "--output"));
    } else if (flag == "--budget-s") {
      o.budget_s = ParseDouble(flag, value, true);
    } else if (flag == "--max-wall-s") {
      o.max_wall_s = ParseDouble(flag, value, false);
    } else if (flag == "--min-calls") {
      o.min_calls = ParseCount(flag, value, 1);
    } else if (flag == "--warmup") {
      o.warmup = ParseCount(flag, value, 0);
    } else if (flag == "--intra-op-threads") {
      o.intra_op_threads = ParseCount(flag, value, 0);
    } else if (flag == "--inter-op-threads") {
      o.inter_op_threads = ParseCount(flag, value, 0);
    } else {
      throw UsageError("unknown option " + flag + " (see --help)");
    }
  }
  if (o.saved_model.empty()) throw UsageError("--saved-model DIR is required");
  if (o.out_dir.empty()) throw UsageError("--out-dir DIR is required");
  if (o.inputs.empty()) throw UsageError("at least one --input NAME=FILE.npy is required");
  if (o.outputs.empty()) throw UsageError("at least one --output NAME is required");
  for (size_t i = 0; i < o.inputs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (o.inputs[i].spec == o.inputs[j].spec)
        throw UsageError("--input " + o.inputs[i].spec + " is given twice");
  return o;
}

// ---------------------------------------------------------------- TensorFlow

struct Status {
  TF_Status* s = TF_NewStatus();
  ~Status() { TF_DeleteStatus(s); }
  bool ok() const { return TF_GetCode(s) == TF_OK; }
  void Check(const std::string& what) const {
    if (!ok()) throw Failure(what + ": " + TF_Message(s));
  }
};

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// A serialized tensorflow.ConfigProto with only the thread counts set
// (field 2: intra_op_parallelism_threads, field 5: inter_op_parallelism_threads).
std::string ThreadConfig(long intra, long inter) {
  std::string proto;
  if (intra >= 0) { proto.push_back(0x10); AppendVarint(&proto, static_cast<uint64_t>(intra)); }
  if (inter >= 0) { proto.push_back(0x28); AppendVarint(&proto, static_cast<uint64_t>(inter)); }
  return proto;
}

TF_Output Resolve(TF_Graph* graph, const TensorArg& a, const char* role) {
  TF_Operation* op = TF_GraphOperationByName(graph, a.op.c_str());
  if (!op)
    throw Failure(std::string(role) + " tensor '" + a.spec +
                  "' is not in the SavedModel's graph (check the serving signature's tensor names)");
  const int n = TF_OperationNumOutputs(op);
  if (a.index >= n)
    throw Failure(std::string(role) + " tensor '" + a.spec + "': operation '" + a.op + "' has only " +
                  std::to_string(n) + " output(s)");
  return TF_Output{op, a.index};
}

// Checks an input file's dtype and shape against the graph's placeholder.
void CheckInput(TF_Graph* graph, TF_Output port, const TensorArg& a, const TF_Tensor* t) {
  const TF_DataType want = TF_OperationOutputType(port);
  if (TF_TensorType(t) != want)
    throw Failure("input '" + a.spec + "' expects " + DtypeName(want) + ", file " + a.file + " holds " +
                  DtypeName(TF_TensorType(t)));
  Status status;
  const int rank = TF_GraphGetTensorNumDims(graph, port, status.s);
  if (!status.ok() || rank < 0) return;  // unknown rank: let TensorFlow judge
  std::vector<int64_t> want_dims(rank);
  TF_GraphGetTensorShape(graph, port, want_dims.data(), rank, status.s);
  if (!status.ok()) return;
  std::vector<int64_t> got(TF_NumDims(t));
  for (int i = 0; i < TF_NumDims(t); ++i) got[i] = TF_Dim(t, i);
  bool fits = static_cast<int>(got.size()) == rank;
  for (int i = 0; fits && i < rank; ++i) fits = want_dims[i] < 0 || want_dims[i] == got[i];
  if (!fits)
    throw Failure("input '" + a.spec + "' expects shape " + ShapeString(want_dims, false) + ", file " +
                  a.file + " has shape " + ShapeString(got, false));
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int Run(const Options& o) {
  if (!HostIsLittleEndian()) throw Failure("this program only runs on little-endian machines");

  // Read every input before paying for the model load: bad files fail fast.
  std::vector<TensorPtr> input_values;
  for (const auto& a : o.inputs) input_values.push_back(ReadNpy(a.file));

  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw Failure("cannot create output directory " + o.out_dir + ": " + ec.message());

  Status status;
  TF_SessionOptions* session_options = TF_NewSessionOptions();
  const std::string config = ThreadConfig(o.intra_op_threads, o.inter_op_threads);
  if (!config.empty()) {
    TF_SetConfig(session_options, config.data(), config.size(), status.s);
    status.Check("setting the thread counts");
  }
  TF_Graph* graph = TF_NewGraph();
  const char* tags[] = {o.tag.c_str()};

  const Clock::time_point load_start = Clock::now();
  TF_Session* session = TF_LoadSessionFromSavedModel(session_options, nullptr, o.saved_model.c_str(),
                                                     tags, 1, graph, nullptr, status.s);
  const double load_s = Seconds(load_start, Clock::now());
  TF_DeleteSessionOptions(session_options);
  if (!status.ok() || !session) {
    const std::string msg = TF_Message(status.s);
    TF_DeleteGraph(graph);
    throw Failure("cannot load SavedModel " + o.saved_model + " with tag '" + o.tag + "': " + msg);
  }

  struct Cleanup {
    TF_Session* session;
    TF_Graph* graph;
    ~Cleanup() {
      Status st;
      TF_CloseSession(session, st.s);
      TF_DeleteSession(session, st.s);
      TF_DeleteGraph(graph);
    }
  } cleanup{session, graph};

  std::vector<TF_Output> in_ports, out_ports;
  std::vector<TF_Tensor*> in_raw;
  for (size_t i = 0; i < o.inputs.size(); ++i) {
    in_ports.push_back(Resolve(graph, o.inputs[i], "input"));
    CheckInput(graph, in_ports.back(), o.inputs[i], input_values[i].get());
    in_raw.push_back(input_values[i].get());
  }
  for (const auto& a : o.outputs) out_ports.push_back(Resolve(graph, a, "output"));

  const int n_in = static_cast<int>(in_ports.size());
  const int n_out = static_cast<int>(out_ports.size());
  std::vector<TF_Tensor*> out_values(n_out, nullptr);
  volatile unsigned char sink = 0;

  // One call: run, then touch every output so it is materialised in host memory
  // before the clock stops (TF_SessionRun is synchronous on CPU; this costs nothing).
  auto call = [&](bool keep) {
    TF_SessionRun(session, nullptr, in_ports.data(), in_raw.data(), n_in, out_ports.data(),
                  out_values.data(), n_out, nullptr, 0, nullptr, status.s);
    if (!status.ok()) {
      for (auto*& t : out_values) { DeleteTensor(t); t = nullptr; }
      throw Failure(std::string("TF_SessionRun failed: ") + TF_Message(status.s));
    }
    for (TF_Tensor* t : out_values)
      if (t && TF_TensorByteSize(t)) sink = sink + *static_cast<const unsigned char*>(TF_TensorData(t));
    if (!keep)
      for (auto*& t : out_values) { DeleteTensor(t); t = nullptr; }
  };

  // The cold call: its outputs are the ones written back for the outputs check.
  Clock::time_point t0 = Clock::now();
  call(true);
  const double cold_s = Seconds(t0, Clock::now());
  std::vector<std::string> files, descrs;
  std::vector<std::vector<int64_t>> shapes;
  for (int i = 0; i < n_out; ++i) {
    const std::string file =
        (std::filesystem::path(o.out_dir) / ("out_" + std::to_string(i) + ".npy")).string();
    std::vector<int64_t> dims;
    for (int d = 0; d < TF_NumDims(out_values[i]); ++d) dims.push_back(TF_Dim(out_values[i], d));
    std::string descr;
    try {
      descr = WriteNpy(file, out_values[i]);
    } catch (...) {
      for (auto*& t : out_values) { DeleteTensor(t); t = nullptr; }
      throw;
    }
    files.push_back(file);
    descrs.push_back(descr);
    shapes.push_back(dims);
  }
  for (auto*& t : out_values) { DeleteTensor(t); t = nullptr; }

  // Warm-up and timed calls share the wall cap (as kdiag.measure does).
  double spent_s = 0.0;
  for (long i = 0; i < o.warmup; ++i) {
    t0 = Clock::now();
    call(false);
    spent_s += Seconds(t0, Clock::now());
  }
  std::vector<double> samples;
  double timed_s = 0.0;
  for (;;) {
    const bool satisfied = timed_s >= o.budget_s && static_cast<long>(samples.size()) >= o.min_calls;
    if (satisfied || spent_s >= o.max_wall_s) break;
    t0 = Clock::now();
    call(false);
    const double dt = Seconds(t0, Clock::now());
    samples.push_back(dt);
    timed_s += dt;
    spent_s += dt;
  }
  const bool stopped_early = static_cast<long>(samples.size()) < o.min_calls;

  std::string json = "{";
  json += "\"tf_version\": " + JsonString(TF_Version());
  json += ", \"load_s\": " + JsonNumber(load_s);
  json += ", \"cold_s\": " + JsonNumber(cold_s);
  json += ", \"warmup_calls\": " + std::to_string(o.warmup);
  json += ", \"stopped_early\": " + std::string(stopped_early ? "true" : "false");
  json += ", \"samples_s\": [";
  for (size_t i = 0; i < samples.size(); ++i) json += (i ? ", " : "") + JsonNumber(samples[i]);
  json += "], \"outputs\": [";
  for (int i = 0; i < n_out; ++i) {
    if (i) json += ", ";
    json += "{\"name\": " + JsonString(o.outputs[i].spec) + ", \"file\": " + JsonString(files[i]) +
            ", \"dtype\": " + JsonString(descrs[i]) + ", \"shape\": [";
    for (size_t d = 0; d < shapes[i].size(); ++d)
      json += (d ? ", " : "") + std::to_string(shapes[i][d]);
    json += "]}";
  }
  json += "]}\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

std::string OneLine(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const Failure& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProgram, OneLine(e.what()).c_str());
    return e.status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProgram, OneLine(e.what()).c_str());
    return 1;
  }
}
