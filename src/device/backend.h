/* backend.h — the arithmetic a trainer needs, behind one table of functions
 * so that the CPU (backend_cpu.c: OpenBLAS + OpenMP) and CUDA (cuda/) run the
 * same model code.
 * defines: nw_backend, nw_backend_cpu
 *
 * Every pointer is device memory of that backend. Shapes: B batch, T time,
 * C channels, NH heads, V vocabulary, N = B*T rows. All matrices row-major.
 * Backward functions ACCUMULATE (+=) into every gradient they write, both
 * parameter gradients and input gradients, so callers zero what must start
 * at zero. All memory is the caller's. The arithmetic cannot fail on the
 * CPU; a GPU can (a launch refused, a library out of memory, a device
 * fault), so the functions stay void and keep the first error, which
 * `status` hands to the caller at its step boundaries. */
#ifndef NW_BACKEND_H
#define NW_BACKEND_H

#include <stddef.h>

typedef struct nw_backend {
  const char *name;

  /* out (B,T,C) = wte[inp] + wpe[t]; inp (B,T) token ids */
  void (*encoder_forward)(float *out, const int *inp, const float *wte,
                          const float *wpe, int B, int T, int C);
  void (*encoder_backward)(float *dwte, float *dwpe, const float *dout,
                           const int *inp, int B, int T, int C);

  /* out (N,C); mean, rstd (N) saved for backward */
  void (*layernorm_forward)(float *out, float *mean, float *rstd,
                            const float *inp, const float *weight,
                            const float *bias, int N, int C);
  void (*layernorm_backward)(float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp,
                             const float *weight, const float *mean,
                             const float *rstd, int N, int C);

  /* out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC, may be NULL) */
  void (*matmul_forward)(float *out, const float *inp, const float *weight,
                         const float *bias, int N, int C, int OC);
  void (*matmul_backward)(float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp,
                          const float *weight, int N, int C, int OC);

  /* qkv (B,T,3C) -> out (B,T,C); att (B,NH,T,T) causal softmax scores */
  void (*attention_forward)(float *out, float *att, const float *qkv, int B,
                            int T, int C, int NH);
  /* datt (B,NH,T,T) is scratch the caller zeroes */
  void (*attention_backward)(float *dqkv, float *datt, const float *dout,
                             const float *qkv, const float *att, int B, int T,
                             int C, int NH);

  void (*gelu_forward)(float *out, const float *inp, size_t n);
  void (*gelu_backward)(float *dinp, const float *inp, const float *dout,
                        size_t n);
  void (*residual_forward)(float *out, const float *a, const float *b,
                           size_t n);
  /* dinp1 += dout; dinp2 += dout */
  void (*residual_backward)(float *dinp1, float *dinp2, const float *dout,
                            size_t n);

  /* Fused softmax + cross-entropy over logits (N,V), in place: losses (N)
   * receives -log p[target] (0 where target < 0) and logits is overwritten
   * with dloss = scale * (p - onehot) (0 rows where target < 0). When
   * `grad` is 0 the logits are left as they are. */
  void (*crossentropy)(float *losses, float *logits, const int *targets, int N,
                       int V, float scale, int grad);

  /* Generation: q (B,C) at position pos attends over kcache/vcache
   * (B,NH,Tmax,C/NH) positions 0..pos; out (B,C). */
  void (*attention_decode)(float *out, const float *q, const float *kcache,
                           const float *vcache, int B, int C, int NH, int Tmax,
                           int pos);
  /* next (B) = argmax over logits (B,V) */
  void (*argmax)(int *next, const float *logits, int B, int V);

  /* AdamW on n floats: m = b1 m + (1-b1) g*gs; v = b2 v + (1-b2) (g*gs)^2;
   * p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + wd * p) */
  void (*adamw)(float *p, const float *g, float *m, float *v, size_t n,
                float lr, float b1, float b2, float eps, float wd, float bc1,
                float bc2, float gs);
  /* sum of squares in double, for the global gradient norm */
  double (*sumsq)(const float *x, size_t n);

  /* host <-> device copies and fills; to_host returns when dst holds the
   * data (a GPU waits for the work queued before it) */
  void (*to_device)(void *dst, const void *src, size_t bytes);
  void (*to_host)(void *dst, const void *src, size_t bytes);
  void (*memset0)(void *dst, size_t bytes);

  /* 0, or the first error since the last call (then cleared): NW_ENOMEM
   * when the device refused memory (recorded in the memory domain too),
   * another NW_E* for any other fault. Does not wait for queued work: a
   * fault of that work shows at the next to_host. */
  int (*status)(void);
  /* Optional (NULL on the CPU): page-lock a host buffer that device state
   * is copied into often (the checkpoint buffers), and release it. */
  int (*host_pin)(void *p, size_t bytes);
  void (*host_unpin)(void *p);
} nw_backend;

/* The CPU backend: OpenBLAS sgemm for every matrix product, OpenMP loops. */
extern const nw_backend nw_backend_cpu;
/* The CUDA backend (cuda/): defined only in builds with NW_HAVE_CUDA, and
 * usable only after nw_device_open (device.h) chose and set up a GPU. */
extern const nw_backend nw_backend_cuda;

#endif
