// host_harness: call an exported closure model exactly the way an MD host does.
//
// Usage:
//   host_harness plumed  MODEL.pt  INPUT.txt   PLUMED PYTORCH_MODEL (src/pytorch/PytorchModel.cpp)
//   host_harness gromacs MODEL.pt  INPUT.txt   GROMACS NNPot (applied_forces/nnpot/torchmodel.cpp)
//   host_harness pt2     MODEL.pt2 INPUT.txt   torch::inductor::AOTIModelPackageLoader
//
// INPUT.txt holds tensors, each as a header line and its values (row-major):
//   tensor DTYPE NDIM DIM_1 ... DIM_NDIM      DTYPE: f32 f64 i32 i64 bool
//   v_1 v_2 ...
// plumed and gromacs read one tensor: the positions (n, 3) in nm. pt2 passes every
// tensor, in order, to AOTIModelPackageLoader::run.
//
// Output (stdout), one line a tensor: NAME NDIM DIM_1 ... values
//   plumed:  out (1, d) = node-0..; grad_j (1, 3n) = d node-j / d arguments
//   gromacs: energy (), forces (n, 3) = -dE/dpositions (kJ/mol/nm)
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

// GROMACS NNPot: positions float32 (N, 3) with requires_grad, atomic numbers int32 (N),
// box float32 (3, 3), pbc bool (3), in the order of nnpot-model-input1..4; forces by backward().
void run_gromacs(const std::string& model_path, const torch::Tensor& positions) {
  torch::jit::script::Module model = torch::jit::load(model_path, torch::kCPU);
  model.eval();
  const int64_t n = positions.size(0);
  std::vector<torch::jit::IValue> inputs;
  auto pos = positions.to(torch::kFloat32).clone().requires_grad_(true);
  inputs.push_back(pos);
  inputs.push_back(torch::ones({n}, torch::kInt32));
  inputs.push_back(torch::eye(3, torch::kFloat32));
  inputs.push_back(torch::tensor({true, true, true}, torch::kBool));
  c10::IValue out = model.forward(inputs);
  auto tuple = out.isTuple() ? out.toTuple() : c10::ivalue::Tuple::create({out.toTensor()});
  torch::Tensor energy = tuple->elements()[0].toTensor();
  inputs[0].toTensor().retain_grad();
  energy.backward();
  torch::Tensor forces = -1. * inputs[0].toTensor().grad();
  std::cout << "energy 0 ";
  std::cout.precision(17);
  std::cout << energy.item<float>() << "\n";
  print("forces", forces);
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
    std::cerr << "usage: host_harness plumed|gromacs|pt2 MODEL INPUT.txt\n";
    return 1;
  }
  try {
    torch::set_num_threads(1);
    const std::string mode = argv[1];
    auto tensors = read_tensors(argv[3]);
    if (tensors.empty()) throw std::runtime_error("no tensors in " + std::string(argv[3]));
    if (mode == "plumed") {
      run_plumed(argv[2], tensors[0]);
    } else if (mode == "gromacs") {
      run_gromacs(argv[2], tensors[0]);
    } else if (mode == "pt2") {
      run_pt2(argv[2], tensors);
    } else {
      throw std::runtime_error("unknown mode " + mode + " (plumed, gromacs or pt2)");
    }
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
