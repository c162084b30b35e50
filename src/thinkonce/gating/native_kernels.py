"""The C runtime of native gated inference: a handful of kernels and a loop that runs a program of them.

Why a runtime and not per-network generated code (as :mod:`thinkonce.native` does for streaming
steps): a gated layer's channel counts change from input to input, so its shapes are not constants;
the kernels take the engaged channels as index lists at run time. One library (compiled once per
toolchain and cached) serves every gated network; a network is a *program*: an array of instructions
(integers) and an array of pointers (weights, buffers, index lists) that :mod:`.native_model` builds.

Values are one sample's activations, channels first, ``(channels, positions)``. A *compact* value
holds only the engaged channels of a gate, densely, in the order of its index list ``idx[0..n)`` (full
channel numbers); ``slot`` says which index list (``-1``: every channel). Kernels:

* ``CONV``: a convolution (1-D as ``H = 1``) computing only the output kernels of ``out_slot`` from the
  input channels of ``in_slot``: the weights are read in place at the full channel numbers (nothing is
  gathered or copied). The input is first copied into a zero-padded scratch plane (padding and a slack
  for whole-vector loads); with stride 1 the output plane is computed as one flat range of the padded
  grid (each tap a constant offset), 4 kernels x 2 vectors of accumulators at a time.
* ``GATE``: the LKAM at inference: channel means of its compact input, ``z = b + W[:, idx] mean``,
  ``z > logit(threshold)``, an optional top-k budget, groups expanded: writes an index list.
* ``AFFINE`` (BatchNorm, gathered by index), ``ACT`` (activations), ``POOL`` (max/avg), ``GAP``,
  ``EXPAND`` (compact back to every channel, zeros for the others), ``LINEAR``, ``ADD``.
"""

RUNTIME_VERSION = 3

SOURCE = r"""
#include <math.h>
#include <string.h>
#include <stddef.h>

__OPAQUE__
#define VW __VW__
typedef float vf __attribute__((vector_size(VW * 4)));

enum { OP_CONV = 1, OP_GATE, OP_AFFINE, OP_ACT, OP_POOL, OP_GAP, OP_EXPAND, OP_LINEAR, OP_ADD, OP_COPY };
enum { NI = 24, NP = 8 };

static inline vf vload(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vf vsplat(float a) { vf v; for (int l = 0; l < VW; l++) v[l] = a; return v; }

/* sum of n floats: four vector accumulators (a sequential float sum is bound by the adder's latency) */
static inline float vsum(const float* q, size_t n) {
  vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
  size_t i = 0;
  for (; i + 4 * VW <= n; i += 4 * VW) {
    a0 += vload(q + i); a1 += vload(q + i + VW); a2 += vload(q + i + 2 * VW); a3 += vload(q + i + 3 * VW);
  }
  for (; i + VW <= n; i += VW) a0 += vload(q + i);
  vf a = (a0 + a1) + (a2 + a3);
  float s = 0;
  for (int l = 0; l < VW; l++) s += a[l];
  for (; i < n; i++) s += q[i];
  return s;
}

static inline int nch(int slot, int full, const int* counts) { return slot < 0 ? full : counts[slot]; }
static inline int chan(const int* idx, int i) { return idx ? idx[i] : i; }

/* NB output kernels x 2 vectors of the flat padded grid per tile, accumulators in registers. */
#define CONV_BLOCK(NB)                                                                                   \
static TK_OPAQUE void block##NB(const float* pad, int plane, const float* w, const float* bias, const int* oc,  \
                      int Cin, int KH, int KW, int dh, int dw, int Wpp, const int* iidx, int nin, int L, \
                      int Lr, float* grid) {                                                            \
  int KK = KH * KW;                                                                                     \
  for (int t0 = 0; t0 < L; t0 += 2 * VW) {                                                              \
    vf acc[NB][2];                                                                                      \
    _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) {                                             \
      vf z = {0}; acc[j][0] = z + (bias ? bias[oc[j]] : 0.0f); acc[j][1] = acc[j][0]; }                 \
    for (int ci = 0; ci < nin; ci++) {                                                                  \
      int cf = chan(iidx, ci);                                                                          \
      const float* base = pad + (size_t)ci * plane + t0;                                               \
      const float* wp[NB];                                                                              \
      _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) wp[j] = w + ((size_t)oc[j] * Cin + cf) * KK; \
      for (int ky = 0; ky < KH; ky++) {                                                                 \
        const float* srow = base + (size_t)ky * dh * Wpp;                                              \
        for (int kx = 0; kx < KW; kx++) {                                                               \
          const float* s = srow + kx * dw;                                                              \
          vf v0 = vload(s), v1 = vload(s + VW);                                                         \
          int k = ky * KW + kx;                                                                         \
          _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) {                                       \
            float wv = wp[j][k]; acc[j][0] += wv * v0; acc[j][1] += wv * v1; }                         \
        }                                                                                               \
      }                                                                                                 \
    }                                                                                                   \
    _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) {                                             \
      memcpy(grid + (size_t)j * Lr + t0, &acc[j][0], sizeof(vf));                                       \
      memcpy(grid + (size_t)j * Lr + t0 + VW, &acc[j][1], sizeof(vf)); }                                \
  }                                                                                                     \
}
CONV_BLOCK(8)
CONV_BLOCK(4)

/* ints: in_slot out_slot Cin Cout H W KH KW sh sw ph pw dh dw Ho Wo Hp Wpp plane
   ptrs: in out weight bias scratch in_idx out_idx grid */
static TK_OPAQUE void conv(const int* a, void* const* p, const int* counts) {
  int in_slot = a[0], out_slot = a[1], Cin = a[2], Cout = a[3], H = a[4], W = a[5], KH = a[6], KW = a[7];
  int sh = a[8], sw = a[9], ph = a[10], pw = a[11], dh = a[12], dw = a[13], Ho = a[14], Wo = a[15];
  int Hp = a[16], Wpp = a[17], plane = a[18];
  const float* in = p[0]; float* out = p[1]; const float* w = p[2]; const float* bias = p[3];
  float* pad = p[4]; const int* iidx = in_slot < 0 ? 0 : p[5]; const int* oidx = out_slot < 0 ? 0 : p[6];
  int nin = nch(in_slot, Cin, counts), nout = nch(out_slot, Cout, counts);
  int KK = KH * KW;
  for (int c = 0; c < nin; c++) {  /* zero-padded copy of each present input channel */
    float* q = pad + (size_t)c * plane;
    memset(q, 0, sizeof(float) * plane);
    for (int y = 0; y < H; y++) memcpy(q + (size_t)(y + ph) * Wpp + pw, in + ((size_t)c * H + y) * W, sizeof(float) * W);
  }
  size_t So = (size_t)Ho * Wo;
  if (sh == 1 && sw == 1) {
    int L = (Ho - 1) * Wpp + Wo;  /* flat output range on the padded grid */
    int Lr = (L + 2 * VW - 1) / (2 * VW) * (2 * VW);
    float* grid = p[7];  /* 8 x Lr: a block's outputs on the padded grid, rows copied out after */
    for (int jb = 0; jb < nout;) {
      int left = nout - jb, nb = left >= 8 ? 8 : 4, nj = left < nb ? left : nb;
      int oc[8];
      for (int j = 0; j < nb; j++) oc[j] = chan(oidx, jb + (j < nj ? j : nj - 1));
      if (nb == 8) block8(pad, plane, w, bias, oc, Cin, KH, KW, dh, dw, Wpp, iidx, nin, L, Lr, grid);
      else block4(pad, plane, w, bias, oc, Cin, KH, KW, dh, dw, Wpp, iidx, nin, L, Lr, grid);
      for (int j = 0; j < nj; j++) {
        float* o = out + (size_t)(jb + j) * So;
        const float* g = grid + (size_t)j * Lr;
        for (int yo = 0; yo < Ho; yo++) memcpy(o + (size_t)yo * Wo, g + (size_t)yo * Wpp, sizeof(float) * Wo);
      }
      jb += nj;
    }
    return;
  }
  for (int j = 0; j < nout; j++) {  /* any stride: direct loops */
    int o = chan(oidx, j);
    float* dst = out + (size_t)j * So;
    float b0 = bias ? bias[o] : 0.0f;
    for (size_t i = 0; i < So; i++) dst[i] = b0;
    for (int ci = 0; ci < nin; ci++) {
      const float* wk = w + ((size_t)o * Cin + chan(iidx, ci)) * KK;
      const float* q = pad + (size_t)ci * plane;
      for (int ky = 0; ky < KH; ky++)
        for (int kx = 0; kx < KW; kx++) {
          float wv = wk[ky * KW + kx];
          for (int yo = 0; yo < Ho; yo++) {
            const float* row = q + (size_t)(yo * sh + ky * dh) * Wpp + kx * dw;
            float* d = dst + (size_t)yo * Wo;
            for (int xo = 0; xo < Wo; xo++) d[xo] += wv * row[xo * sw];
          }
        }
    }
  }
}

/* ints: in_slot out_slot Cin S nsw group k_budget Cout
   ptrs: in W b thr in_idx out_idx scratch */
static TK_OPAQUE void gate(const int* a, void* const* p, int* counts) {
  int in_slot = a[0], out_slot = a[1], Cin = a[2], S = a[3], nsw = a[4], group = a[5], k = a[6];
  const float* in = p[0]; const float* W = p[1]; const float* b = p[2]; float thr = *(const float*)p[3];
  const int* iidx = in_slot < 0 ? 0 : p[4]; int* oidx = p[5]; float* scr = p[6];
  int nin = nch(in_slot, Cin, counts);
  float* pooled = scr; float* z = scr + Cin;
  for (int c = 0; c < nin; c++) pooled[c] = vsum(in + (size_t)c * S, S) / (float)S;
  for (int s = 0; s < nsw; s++) {
    const float* row = W + (size_t)s * Cin; float acc = b[s];
    for (int c = 0; c < nin; c++) acc += row[chan(iidx, c)] * pooled[c];
    z[s] = acc;
  }
  int n = 0;
  for (int s = 0; s < nsw; s++) {
    if (!(z[s] > thr)) continue;
    if (k > 0 && k < nsw) {  /* budget: on only if among the k largest logits */
      int above = 0;
      for (int r = 0; r < nsw; r++) above += (z[r] > z[s]) || (z[r] == z[s] && r < s);
      if (above >= k) continue;
    }
    for (int g = 0; g < group; g++) oidx[n++] = s * group + g;
  }
  counts[out_slot] = n;
}

/* ints: slot C S   ptrs: in out scale shift idx */
static TK_OPAQUE void affine(const int* a, void* const* p, const int* counts) {
  int slot = a[0], C = a[1], S = a[2];
  const float* in = p[0]; float* out = p[1]; const float* sc = p[2]; const float* sh = p[3];
  const int* idx = slot < 0 ? 0 : p[4];
  int n = nch(slot, C, counts);
  for (int c = 0; c < n; c++) {
    int f = chan(idx, c); float m = sc[f], d = sh[f];
    const float* q = in + (size_t)c * S; float* o = out + (size_t)c * S;
    for (int i = 0; i < S; i++) o[i] = q[i] * m + d;
  }
}

/* ints: slot C S kind   ptrs: in out param */
static TK_OPAQUE void act(const int* a, void* const* p, const int* counts) {
  int slot = a[0], C = a[1], S = a[2], kind = a[3];
  const float* in = p[0]; float* out = p[1];
  float prm = p[2] ? *(const float*)p[2] : 0.0f;
  size_t n = (size_t)nch(slot, C, counts) * S;
  switch (kind) {
    case 0: for (size_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : 0.0f; break;
    case 1: for (size_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : in[i] * prm; break;
    case 2: for (size_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + expf(-in[i])); break;
    case 3: for (size_t i = 0; i < n; i++) out[i] = tanhf(in[i]); break;
    case 4: for (size_t i = 0; i < n; i++) out[i] = in[i] / (1.0f + expf(-in[i])); break;
    case 5: for (size_t i = 0; i < n; i++) out[i] = 0.5f * in[i] * (1.0f + erff(in[i] * 0.70710678118654752f)); break;
    case 6: for (size_t i = 0; i < n; i++) { float v = in[i] < 0 ? 0.0f : in[i]; out[i] = v > 6.0f ? 6.0f : v; } break;
    case 7: for (size_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : prm * expm1f(in[i]); break;
  }
}

/* ints: slot C H W KH KW sh sw ph pw Ho Wo kind(0 max, 1 avg incl. pad) dh dw */
static TK_OPAQUE void pool(const int* a, void* const* p, const int* counts) {
  int slot = a[0], C = a[1], H = a[2], W = a[3], KH = a[4], KW = a[5], sh = a[6], sw = a[7], ph = a[8], pw = a[9];
  int Ho = a[10], Wo = a[11], kind = a[12], dh = a[13], dw = a[14];
  const float* in = p[0]; float* out = p[1];
  int n = nch(slot, C, counts);
  int inside = ph == 0 && pw == 0 && (Ho - 1) * sh + (KH - 1) * dh < H && (Wo - 1) * sw + (KW - 1) * dw < W;
  if (inside) {  /* every window lies inside the input: no bounds checks, branch-free selects */
    float inv = 1.0f / (float)(KH * KW);
    for (int c = 0; c < n; c++) {
      const float* q = in + (size_t)c * H * W; float* o = out + (size_t)c * Ho * Wo;
      for (int yo = 0; yo < Ho; yo++) {
        float* orow = o + (size_t)yo * Wo;
        const float* r0 = q + (size_t)yo * sh * W;
        if (kind == 0 && KH == 2 && KW == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1) {
          const float* r1 = r0 + W;
          for (int xo = 0; xo < Wo; xo++) {
            float a = r0[2 * xo], b = r0[2 * xo + 1], c = r1[2 * xo], d = r1[2 * xo + 1];
            float m = (b > a || b != b) ? b : a;
            m = (c > m || c != c) ? c : m;
            orow[xo] = (d > m || d != d) ? d : m;
          }
        } else if (kind == 0) {
          for (int xo = 0; xo < Wo; xo++) orow[xo] = r0[xo * sw];
          for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++) {
              if (ky == 0 && kx == 0) continue;
              const float* r = r0 + (size_t)ky * dh * W + kx * dw;
              for (int xo = 0; xo < Wo; xo++) { float v = r[xo * sw], m = orow[xo]; orow[xo] = (v > m || v != v) ? v : m; }
            }
        } else {
          for (int xo = 0; xo < Wo; xo++) orow[xo] = 0.0f;
          for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++) {
              const float* r = r0 + (size_t)ky * W + kx;
              for (int xo = 0; xo < Wo; xo++) orow[xo] += r[xo * sw];
            }
          for (int xo = 0; xo < Wo; xo++) orow[xo] *= inv;
        }
      }
    }
    return;
  }
  for (int c = 0; c < n; c++) {
    const float* q = in + (size_t)c * H * W; float* o = out + (size_t)c * Ho * Wo;
    for (int yo = 0; yo < Ho; yo++)
      for (int xo = 0; xo < Wo; xo++) {
        float m = kind == 0 ? -INFINITY : 0.0f;
        for (int ky = 0; ky < KH; ky++) {
          int y = yo * sh - ph + ky * dh;
          if (y < 0 || y >= H) continue;
          for (int kx = 0; kx < KW; kx++) {
            int x = xo * sw - pw + kx * dw;
            if (x < 0 || x >= W) continue;
            float v = q[(size_t)y * W + x];
            if (kind == 0) { if (v > m || v != v) m = v; } else m += v;
          }
        }
        o[(size_t)yo * Wo + xo] = kind == 0 ? m : m / (float)(KH * KW);
      }
  }
}

/* ints: slot C S   ptrs: in out */
static TK_OPAQUE void gap(const int* a, void* const* p, const int* counts) {
  int slot = a[0], C = a[1], S = a[2]; const float* in = p[0]; float* out = p[1];
  int n = nch(slot, C, counts);
  for (int c = 0; c < n; c++) out[c] = vsum(in + (size_t)c * S, S) / (float)S;
}

/* ints: slot C S   ptrs: in out idx */
static TK_OPAQUE void expand(const int* a, void* const* p, const int* counts) {
  int slot = a[0], C = a[1], S = a[2]; const float* in = p[0]; float* out = p[1]; const int* idx = p[2];
  if (slot < 0) { memcpy(out, in, sizeof(float) * (size_t)C * S); return; }
  memset(out, 0, sizeof(float) * (size_t)C * S);
  for (int c = 0; c < counts[slot]; c++) memcpy(out + (size_t)idx[c] * S, in + (size_t)c * S, sizeof(float) * S);
}

/* ints: nin nout   ptrs: in out W b */
static TK_OPAQUE void linear(const int* a, void* const* p) {
  int nin = a[0], nout = a[1]; const float* in = p[0]; float* out = p[1]; const float* W = p[2]; const float* b = p[3];
  for (int o = 0; o < nout; o++) {
    const float* r = W + (size_t)o * nin;
    vf a = {0};
    int i = 0;
    for (; i + VW <= nin; i += VW) a += vload(r + i) * vload(in + i);
    float s = b ? b[o] : 0.0f;
    for (int l = 0; l < VW; l++) s += a[l];
    for (; i < nin; i++) s += r[i] * in[i];
    out[o] = s;
  }
}

/* ints: n   ptrs: a b out */
static TK_OPAQUE void add(const int* a, void* const* p) {
  int n = a[0]; const float* x = p[0]; const float* y = p[1]; float* o = p[2];
  for (int i = 0; i < n; i++) o[i] = x[i] + y[i];
}

/* Runs the program on each sample of the batch. ops: n_ops x (1 + NI) ints (opcode, args); ptrs:
   n_ops x NP. Sample b reads x + b * x_stride into buffer in_buf and writes out_buf (out_n floats)
   to y + b * out_n; counts[slot] of every sample go to all_counts + b * n_slots (for MAC counting). */
void gated_run(int n_ops, const int* ops, void* const* ptrs, int n_slots, int* all_counts, int batch,
               const float* x, long x_n, float* in_buf, float* y, long out_n, const float* out_buf) {
  for (int b = 0; b < batch; b++) {
    int* counts = all_counts + (size_t)b * (n_slots > 0 ? n_slots : 1);
    memcpy(in_buf, x + (size_t)b * x_n, sizeof(float) * x_n);
    for (int i = 0; i < n_ops; i++) {
      const int* a = ops + (size_t)i * (1 + NI) + 1; void* const* p = ptrs + (size_t)i * NP;
      switch (ops[(size_t)i * (1 + NI)]) {
        case OP_CONV: conv(a, p, counts); break;
        case OP_GATE: gate(a, p, counts); break;
        case OP_AFFINE: affine(a, p, counts); break;
        case OP_ACT: act(a, p, counts); break;
        case OP_POOL: pool(a, p, counts); break;
        case OP_GAP: gap(a, p, counts); break;
        case OP_EXPAND: expand(a, p, counts); break;
        case OP_LINEAR: linear(a, p); break;
        case OP_ADD: add(a, p); break;
        case OP_COPY: memcpy(p[1], p[0], sizeof(float) * (size_t)a[0]); break;
      }
    }
    memcpy(y + (size_t)b * out_n, out_buf, sizeof(float) * out_n);
  }
}
"""

OPCODES = {"conv": 1, "gate": 2, "affine": 3, "act": 4, "pool": 5, "gap": 6, "expand": 7, "linear": 8, "add": 9,
           "copy": 10}
N_INTS = 24
N_PTRS = 8
ACTIVATIONS = {"relu": 0, "leaky_relu": 1, "sigmoid": 2, "tanh": 3, "silu": 4, "gelu": 5, "relu6": 6, "elu": 7}


def source(vector_width: int) -> str:
    """The runtime's C source for vectors of ``vector_width`` floats (at least 4: GCC lowers vector
    extensions to scalar code where the CPU has none). Every kernel is ``TK_OPAQUE`` (GCC's ``noipa``):
    GCC 12 can wrongly find a function pure and delete its calls (see
    :data:`thinkonce.native.codegen.OPAQUE_PRELUDE`); a kernel runs once per layer, so the call costs nothing."""
    from ..native.codegen import OPAQUE_PRELUDE

    return SOURCE.replace("__OPAQUE__", OPAQUE_PRELUDE).replace("__VW__", str(max(int(vector_width), 4)))
