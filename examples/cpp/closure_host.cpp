// closure_host: load the exported closure models with libtorch, encode one
// configuration and extrapolate it with the learned dynamics.
//
// Usage:
//   closure_host ENCODER.pt DYNAMICS.pt CONFIG.txt [STEPS [SAMPLES [SEED]]]
//
// CONFIG.txt (whitespace separated, lines starting with '#' are comments):
//   n m                 particles, macroscopic observables
//   x y z type          n lines: positions in nm, species index (0-based)
//   zbar_1 ... zbar_m   the m observables z̄ of this configuration (raw units)
//
// Output (stdout):
//   # FILE: kind K, system S, torch T, libtorch C++11 ABI A, openmm O, openmm-closure V
//                                          one header line per model (its metadata)
//   zhat v_1 ... v_d                       closure variables ẑ (raw encoder output)
//   names n_1 ... n_D                      state components [z̄, ẑ]
//   step i t_ps mean_1 ... mean_D std_1 ... std_D   one line per step, unscaled (std ddof 0)
//
// Exit code 0 on success, 1 on bad input or a TorchScript error (one line on stderr). A
// model whose metadata records another torch major.minor or C++ ABI than the libtorch this
// program links is refused (one line), before it is run.

#include <torch/script.h>
#include <torch/version.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Config {
  torch::Tensor positions;  // (n, 3) float64, nm
  torch::Tensor types;      // (n,) int64
  torch::Tensor zbar;       // (m,) float64, raw units
};

// Next token that is not inside a '#' comment line.
bool next_token(std::istream& in, std::string& token) {
  while (in >> token) {
    if (token[0] == '#') {
      std::string rest;
      std::getline(in, rest);
      continue;
    }
    return true;
  }
  return false;
}

double read_double(std::istream& in, const char* what) {
  std::string token;
  if (!next_token(in, token)) throw std::runtime_error(std::string("unexpected end of file reading ") + what);
  size_t used = 0;
  double value = std::stod(token, &used);
  if (used != token.size()) throw std::runtime_error(std::string("not a number for ") + what + ": " + token);
  return value;
}

long read_int(std::istream& in, const char* what) {
  std::string token;
  if (!next_token(in, token)) throw std::runtime_error(std::string("unexpected end of file reading ") + what);
  size_t used = 0;
  long value = std::stol(token, &used);
  if (used != token.size()) throw std::runtime_error(std::string("not an integer for ") + what + ": " + token);
  return value;
}

Config read_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  long n = read_int(in, "n");
  long m = read_int(in, "m");
  if (n <= 0 || m < 0) throw std::runtime_error("need n >= 1 and m >= 0 in the first line of " + path);
  Config c;
  c.positions = torch::empty({n, 3}, torch::kFloat64);
  c.types = torch::empty({n}, torch::kInt64);
  c.zbar = torch::empty({m}, torch::kFloat64);
  auto pos = c.positions.accessor<double, 2>();
  auto typ = c.types.accessor<int64_t, 1>();
  auto zb = c.zbar.accessor<double, 1>();
  for (long i = 0; i < n; ++i) {
    for (int k = 0; k < 3; ++k) pos[i][k] = read_double(in, "a coordinate");
    typ[i] = read_int(in, "a species index");
  }
  for (long j = 0; j < m; ++j) zb[j] = read_double(in, "an observable");
  return c;
}

// The value of "key" at nesting depth `depth` (1: top level, 2: inside "versions") of the
// metadata JSON, which json.dumps writes with two spaces of indent a level, without quotes;
// empty when the key is absent.
std::string json_value(const std::string& json, const std::string& key, int depth) {
  const std::string needle = "\n" + std::string(2 * depth, ' ') + "\"" + key + "\": ";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  size_t begin = at + needle.size();
  if (begin < json.size() && json[begin] == '"') {
    const size_t end = json.find('"', begin + 1);
    return end == std::string::npos ? "" : json.substr(begin + 1, end - begin - 1);
  }
  size_t end = json.find_first_of(",}\n", begin);
  return json.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// One header line from a model's metadata; refuses a torch major.minor or a C++ ABI other
// than the libtorch linked here (TorchScript files are read by the libtorch that wrote
// them or a compatible one; a C++ host built against another ABI fails at load or later).
void check_and_print_header(const std::string& file, const std::string& json) {
  const std::string torch_version = json_value(json, "torch", 2);
  const std::string abi = json_value(json, "libtorch_cxx11_abi", 2);
  std::printf("# %s: kind %s, system %s, torch %s, libtorch C++11 ABI %s, openmm %s, openmm-closure %s\n",
              file.c_str(), json_value(json, "kind", 1).c_str(), json_value(json, "system", 1).c_str(),
              torch_version.empty() ? "(not recorded)" : torch_version.c_str(), abi.empty() ? "?" : abi.c_str(),
              json_value(json, "openmm", 2).c_str(), json_value(json, "openmm_closure", 2).c_str());
  if (torch_version.empty()) return;  // exported before versions were recorded
  const std::string here = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  const bool here_abi = _GLIBCXX_USE_CXX11_ABI != 0;
  const bool same_version = torch_version.compare(0, here.size() + 1, here + ".") == 0;
  const bool same_abi = abi.empty() || (abi == "true") == here_abi;
  if (!same_version || !same_abi) {
    throw std::runtime_error(file + " was exported with torch " + torch_version + " (C++11 ABI " +
                             (abi.empty() ? "?" : abi) + "), this program links libtorch " + TORCH_VERSION +
                             " (C++11 ABI " + (here_abi ? "true" : "false") +
                             "): build it against the matching libtorch or export again");
  }
}

void print_row(const char* head, const std::vector<double>& values) {
  std::printf("%s", head);
  for (double v : values) std::printf(" %.9g", v);
  std::printf("\n");
}

std::vector<double> to_vector(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat64).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 7) {
    std::cerr << "usage: " << argv[0] << " ENCODER.pt DYNAMICS.pt CONFIG.txt [STEPS [SAMPLES [SEED]]]\n";
    return 1;
  }
  try {
    const long steps = argc > 4 ? std::stol(argv[4]) : 10;
    const long samples = argc > 5 ? std::stol(argv[5]) : 1;
    const long seed = argc > 6 ? std::stol(argv[6]) : 0;
    if (steps < 0 || samples < 1) throw std::runtime_error("need STEPS >= 0 and SAMPLES >= 1");
    torch::NoGradGuard no_grad;

    // The metadata travel inside the files (read here, printed as a size check).
    torch::jit::ExtraFilesMap encoder_extra{{"metadata.json", ""}};
    torch::jit::Module encoder = torch::jit::load(argv[1], torch::kCPU, encoder_extra);
    torch::jit::ExtraFilesMap dynamics_extra{{"metadata.json", ""}};
    torch::jit::Module dynamics = torch::jit::load(argv[2], torch::kCPU, dynamics_extra);
    check_and_print_header(argv[1], encoder_extra["metadata.json"]);
    check_and_print_header(argv[2], dynamics_extra["metadata.json"]);
    encoder.eval();
    dynamics.eval();
    Config config = read_config(argv[3]);

    // ẑ = encoder(positions [nm], types): (d,)
    torch::Tensor zhat = encoder.forward({config.positions, config.types}).toTensor();
    print_row("zhat", to_vector(zhat));

    const long macro_dim = dynamics.attr("macro_dim").toInt();
    if (config.zbar.size(0) != macro_dim) {
      throw std::runtime_error("the configuration has " + std::to_string(config.zbar.size(0)) +
                               " observables, the model expects " + std::to_string(macro_dim));
    }
    const double dt = dynamics.attr("dt").toDouble();
    const bool stochastic = dynamics.attr("stochastic").toBool();
    std::printf("names");
    for (const auto& name : dynamics.attr("names").toListRef()) std::printf(" %s", name.toStringRef().c_str());
    std::printf("\n");
    std::printf("# metadata: encoder %zu bytes, dynamics %zu bytes; dt %g ps, %s\n",
                encoder_extra["metadata.json"].size(), dynamics_extra["metadata.json"].size(), dt,
                stochastic ? "SDE (Euler-Maruyama)" : "ODE (RK4)");

    // z = scale([z̄, ẑ]), K copies, rolled out; then back to raw units.
    torch::Tensor raw0 = torch::cat({config.zbar, zhat.to(torch::kFloat64)});
    torch::Tensor z0 = dynamics.run_method("scale", raw0).toTensor();
    z0 = z0.unsqueeze(0).expand({samples, z0.size(0)}).contiguous();
    torch::manual_seed(static_cast<uint64_t>(seed));
    torch::Tensor noise = torch::randn({steps, samples, z0.size(1)}, torch::kFloat64);
    torch::Tensor traj = dynamics.run_method("rollout", z0, steps, dt, noise).toTensor();
    torch::Tensor raw = dynamics.run_method("unscale", traj).toTensor().to(torch::kFloat64);  // (K, T, D)
    torch::Tensor mean = raw.mean(0);
    torch::Tensor std = (raw - mean).pow(2).mean(0).sqrt();  // over the K members, ddof 0
    for (long t = 0; t <= steps; ++t) {
      std::vector<double> row = to_vector(mean[t]);
      std::vector<double> spread = to_vector(std[t]);
      row.insert(row.begin(), t * dt);
      row.insert(row.end(), spread.begin(), spread.end());
      print_row(("step " + std::to_string(t)).c_str(), row);
    }
  } catch (const std::exception& exc) {
    std::string what = exc.what();
    std::cerr << "closure_host: error: " << what.substr(0, what.find('\n')) << "\n";
    return 1;
  }
  return 0;
}
