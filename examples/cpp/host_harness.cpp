// host_harness: call an exported closure model exactly the way an MD host does.
//
// Usage:
//   host_harness plumed  MODEL.pt  INPUT.txt   PLUMED PYTORCH_MODEL (src/pytorch/PytorchModel.cpp)
//   host_harness colvars MODEL.pt  INPUT.txt   GROMACS Colvars torchANN (colvarcomp_torchann.cpp),
//                                               float32 input (doubleInputTensor no)
//   host_harness colvars-f64 MODEL.pt INPUT.txt the same with doubleInputTensor yes
//   host_harness pt2     MODEL.pt2 INPUT.txt   torch::inductor::AOTIModelPackageLoader
//
// INPUT.txt holds tensors, each as a header line and its values (row-major):
//   tensor DTYPE NDIM DIM_1 ... DIM_NDIM      DTYPE: f32 f64 i32 i64 bool
//   v_1 v_2 ...
// plumed and colvars read one tensor: the positions (n, 3) in nm. pt2 passes every
// tensor, in order, to AOTIModelPackageLoader::run.
//
// Output (stdout), one line a tensor: NAME NDIM DIM_1 ... values
//   plumed:  out (1, d) = node-0..; grad_j (1, 3n) = d node-j / d arguments
//   colvars: value_j () = output[0][j] and grad_j (1, 3n) = d value_j / d inputs, every j
//   pt2:     metadata lines "meta KEY" + value, then out_i for each output
// Exit code 0 on success, 1 on bad input or a torch error (one line on stderr).

#include <torch/script.h>
#include <torch/torch.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::vector<torch::Tensor> read_tensors(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<torch::Tensor> out;
  std::string word;
  while (in >> word) {
    if (word != "tensor") throw std::runtime_error("expected 'tensor', got '" + word + "'");
    std::string dtype;
    int ndim = 0;
    if (!(in >> dtype >> ndim) || ndim < 0) throw std::runtime_error("bad tensor header");
    std::vector<int64_t> shape(ndim);
    int64_t numel = 1;
    for (auto& d : shape) {
      if (!(in >> d) || d < 0) throw std::runtime_error("bad tensor shape");
      numel *= d;
    }
    std::vector<double> v(numel);
    for (auto& x : v)
      if (!(in >> x)) throw std::runtime_error("unexpected end of file in tensor values");
    auto t = torch::tensor(v, torch::kFloat64).reshape(shape);
    if (dtype == "f32") t = t.to(torch::kFloat32);
    else if (dtype == "i32") t = t.to(torch::kInt32);
    else if (dtype == "i64") t = t.to(torch::kInt64);
    else if (dtype == "bool") t = t.to(torch::kBool);
    else if (dtype != "f64") throw std::runtime_error("unknown dtype " + dtype);
    out.push_back(t);
  }
  return out;
}

void print(const std::string& name, const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
  std::cout << name << " " << c.dim();
  for (auto d : c.sizes()) std::cout << " " << d;
  std::cout.precision(17);
  const double* p = c.data_ptr<double>();
  for (int64_t i = 0; i < c.numel(); ++i) std::cout << " " << p[i];
  std::cout << "\n";
}

// PLUMED: float32 (1, n_args) arguments, a zero probe at start-up to count the outputs,
// then autograd of each output column with respect to the arguments.
void run_plumed(const std::string& model_path, const torch::Tensor& positions) {
  torch::jit::script::Module model = torch::jit::load(model_path);
  const int64_t n_in = positions.numel();
  std::vector<float> probe(n_in);
  auto probe_out = model.forward({torch::tensor(probe).view({1, n_in})}).toTensor();
  const int64_t n_out = probe_out.numel();

  auto flat = positions.to(torch::kFloat32).contiguous().view({-1});
  std::vector<float> args(flat.data_ptr<float>(), flat.data_ptr<float>() + n_in);
  torch::Tensor input = torch::tensor(args).view({1, n_in});
  input.set_requires_grad(true);
  torch::Tensor output = model.forward({input}).toTensor();
  if (output.scalar_type() != torch::kFloat32) throw std::runtime_error("output is not float32");
  print("out", output);
  for (int64_t j = 0; j < n_out; ++j) {
    auto grad_output = torch::ones({1}).expand({1, 1});
    auto g = torch::autograd::grad({output.slice(1, j, j + 1)}, {input}, {grad_output},
                                   /*retain_graph=*/true, /*create_graph=*/false);
    print("grad_" + std::to_string(j), g[0]);
  }
}

// Colvars torchANN inside GROMACS: the module goes to the CPU (and to float64 with
// doubleInputTensor); the input is one (1, n_inputs) tensor with requires_grad whose values
// are written under NoGradGuard (here the cartesian x, y, z of each atom); a zero input is
// evaluated once at start-up; each component j is forward(input)[0][j], its derivatives
// torch::autograd::grad of it with respect to the input.
void run_colvars(const std::string& model_path, const torch::Tensor& positions, bool use_double) {
  torch::jit::script::Module nn = torch::jit::load(model_path);
  nn.to(torch::kCPU);
  auto options = torch::TensorOptions().dtype(torch::kFloat32).requires_grad(true);
  if (use_double) {
    options = options.dtype(torch::kFloat64);
    nn.to(torch::kFloat64);
  }
  const int64_t n_in = positions.numel();
  torch::Tensor input = torch::zeros({1, n_in}, options);
  const int64_t n_out = nn.forward({input}).toTensor().size(1);  // the start-up check
  {
    torch::NoGradGuard no_grad;
    auto flat = positions.to(torch::kFloat64).contiguous().view({-1});
    for (int64_t i = 0; i < n_in; ++i) input[0][i] = flat[i].item<double>();
  }
  for (int64_t j = 0; j < n_out; ++j) {
    torch::Tensor value = nn.forward({input}).toTensor()[0][j];
    torch::Tensor grad = torch::autograd::grad({value}, {input})[0];
    print("value_" + std::to_string(j), value);
    print("grad_" + std::to_string(j), grad);
  }
}

void run_pt2(const std::string& package, const std::vector<torch::Tensor>& inputs) {
  torch::inductor::AOTIModelPackageLoader loader(package);
  for (const auto& kv : loader.get_metadata())
    if (kv.first == "metadata.json") std::cout << "meta_bytes 0 " << kv.second.size() << "\n";
  std::vector<torch::Tensor> outputs = loader.run(inputs);
  for (size_t i = 0; i < outputs.size(); ++i) print("out_" + std::to_string(i), outputs[i]);
}

// One line on stderr: a TorchScript error ends with the raised exception
// ("builtins.ValueError: ..."), so the last non-empty line is the one that says why.
int fail(const std::string& what) {
  std::istringstream lines(what);
  std::string line, last;
  while (std::getline(lines, line))
    if (line.find_first_not_of(" \t") != std::string::npos) last = line;
  std::cerr << "error: " << last.substr(last.find_first_not_of(" \t")) << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: host_harness plumed|colvars|colvars-f64|pt2 MODEL INPUT.txt\n";
    return 1;
  }
  try {
    torch::set_num_threads(1);
    const std::string mode = argv[1];
    auto tensors = read_tensors(argv[3]);
    if (tensors.empty()) throw std::runtime_error("no tensors in " + std::string(argv[3]));
    if (mode == "plumed") {
      run_plumed(argv[2], tensors[0]);
    } else if (mode == "colvars" || mode == "colvars-f64") {
      run_colvars(argv[2], tensors[0], mode == "colvars-f64");
    } else if (mode == "pt2") {
      run_pt2(argv[2], tensors);
    } else {
      throw std::runtime_error("unknown mode " + mode + " (plumed, colvars, colvars-f64 or pt2)");
    }
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
