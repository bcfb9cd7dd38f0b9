# gpu_bundle_env.sh - source on a bare GPU machine, from the repository root,
# to run zeroflow from a bundle made by scripts/gpu_bundle.sh:
#
#   source scripts/gpu_bundle_env.sh [DIR]      (default .gpu-bundle)
#
# Unpacks the bundle (bin/ into the tree) and exports LD_LIBRARY_PATH (the
# bundle's libraries, then the machine's NCCL: the one PyTorch's wheel
# carries, which the bundle leaves out; Open MPI is the machine's own),
# ZF_PREBUILT=1 and the variables the tests and benchmarks read.  tests/gpu/run_kernel_tests.sh
# builds with the machine's nvcc: run it without this LD_LIBRARY_PATH.
zf_bundle=${1:-.gpu-bundle}
if [ ! -f "$zf_bundle/bundle.tar.xz" ]; then
  echo "gpu_bundle_env.sh: $zf_bundle/bundle.tar.xz: expected a bundle of scripts/gpu_bundle.sh" >&2
  return 1 2>/dev/null || exit 1
fi
tar xJf "$zf_bundle/bundle.tar.xz" -C "$zf_bundle" && cp -r "$zf_bundle/bin" .
zf_nccl=$(python3 -c 'import importlib.util as u, os; s = u.find_spec("nvidia.nccl"); print(os.path.join(list(s.submodule_search_locations)[0], "lib"))' 2>/dev/null)
[ -n "$zf_nccl" ] && [ -e "$zf_nccl/libnccl.so.2" ] || zf_nccl=$(dirname "$(ldconfig -p | awk '/libnccl.so.2/ {print $NF; exit}')" 2>/dev/null)
export LD_LIBRARY_PATH=$PWD/$zf_bundle/lib${zf_nccl:+:$zf_nccl} ZF_PREBUILT=1 ZF_ROOT=$PWD ZF_PYTHON=python3 \
  OMP_WAIT_POLICY=passive NCCL_NVLS_ENABLE=0
unset zf_bundle zf_nccl
