/* backend_cuda.cuh - the GPU model (gpt2_cuda) as a zf_backend. */
#ifndef ZF_BACKEND_CUDA_CUH
#define ZF_BACKEND_CUDA_CUH

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bf16 or fp16 compute when the config enables them, else fp32; the GPU is
 * rank % device count.  NULL with err on failure, *no_device = 1 when no
 * GPU can be used at all (zf_backend_factory). */
zf_backend *zf_backend_cuda_create(const zf_backend_spec *s, int *no_device, zf_err *err);

#ifdef __cplusplus
}
#endif

#endif
