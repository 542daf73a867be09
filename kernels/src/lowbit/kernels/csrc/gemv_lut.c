/* Batch-1 GEMVs by table lookup: the lowbit CPU decode path for "table", "binary" and "additive" weights.
 *
 * Each call first builds (in torch, per x) a table of partial dot products; the loops below then only
 * gather and add, reading the packed codes once.
 *
 * lowbit_gemv_lut4 (per-column tables, 4-bit codes):
 *   y[n] = sum_c u[c, q[n,c]],  u[c,k] = x[c] T[c,k]   (u: (K, 16) floats)
 *   Layout: blocks of 16 rows (N padded to a multiple of 16); block b, column pair p holds 16 bytes,
 *   byte r = q[16b + r, 2p] | q[16b + r, 2p + 1] << 4. With AVX-512 a column's 16-entry table is one
 *   register and the lookup for 16 rows is one permute (vpermps); otherwise a scalar loop.
 *
 * lowbit_gemv_lut8 (byte-indexed tables; AQLM's codes, and binary coding's bit planes):
 *   y[n] = s[n] * sum_j P[j, c[n,j]],   P: (J, 256) floats,  c: (N, J) bytes
 *   AQLM (arXiv 2401.06118), groups of 8: j runs over (group, codebook), P[(g,m), k] = <x_g, C_m[k]>.
 *   Binary coding (LUT-GEMM, arXiv 2206.09557) uses lowbit_gemv_bcq below.
 *
 * lowbit_gemv_bcq (binary coding, k bit planes per (row, group of gs inputs)):
 *   y[n] = sum_g ( c0[n,g] xs[g] + sum_i a2[n,g,i] sum_{b in g} P[b, plane_i[n,g,b]] )
 *   where P[b, v] = sum_{t<8, bit t of v} x[8b + t] (so the sum over a group's bytes is the sum of x
 *   over the inputs whose bit i is set), a2 = 2 alpha, c0 = offset - sum_i alpha_i, xs[g] = sum_{c in g} x[c].
 *   Planes: row n, group g holds k * gs/8 bytes, plane i (alpha_i, the code's most significant bit
 *   first) then the next.
 */
#include <stdint.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

void lowbit_gemv_lut4(const float* u, const uint8_t* p, float* y, long N, long K, int threads) {
  long P = K / 2;
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (long blk = 0; blk < N / 16; blk++) {
    const uint8_t* q = p + blk * P * 16;
#ifdef __AVX512F__
    /* the 16-entry table of a column is one register: a lookup for 16 rows is one permute */
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    long pp = 0;
    for (; pp + 2 <= P; pp += 2) {
      __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + pp * 16)));
      __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + pp * 16 + 16)));
      a0 = _mm512_add_ps(a0, _mm512_permutexvar_ps(v, _mm512_loadu_ps(u + (2 * pp) * 16)));
      a1 = _mm512_add_ps(a1, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), _mm512_loadu_ps(u + (2 * pp + 1) * 16)));
      a2 = _mm512_add_ps(a2, _mm512_permutexvar_ps(w, _mm512_loadu_ps(u + (2 * pp + 2) * 16)));
      a3 = _mm512_add_ps(a3, _mm512_permutexvar_ps(_mm512_srli_epi32(w, 4), _mm512_loadu_ps(u + (2 * pp + 3) * 16)));
    }
    for (; pp < P; pp++) {
      __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + pp * 16)));
      a0 = _mm512_add_ps(a0, _mm512_permutexvar_ps(v, _mm512_loadu_ps(u + (2 * pp) * 16)));
      a1 = _mm512_add_ps(a1, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), _mm512_loadu_ps(u + (2 * pp + 1) * 16)));
    }
    _mm512_storeu_ps(y + blk * 16, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
    float acc[16] = {0};
    for (long pp = 0; pp < P; pp++) {
      const float* u0 = u + (2 * pp) * 16;
      const float* u1 = u0 + 16;
      for (long r = 0; r < 16; r++) acc[r] += u0[q[pp * 16 + r] & 15] + u1[q[pp * 16 + r] >> 4];
    }
    for (long r = 0; r < 16; r++) y[blk * 16 + r] = acc[r];
#endif
  }
}

void lowbit_gemv_lut8(const float* P, const uint8_t* c, const float* s, float* y, long N, long J, int threads) {
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; n++) {
    const uint8_t* row = c + n * J;
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    long j = 0;
    for (; j + 4 <= J; j += 4) {
      a0 += P[(j + 0) * 256 + row[j + 0]];
      a1 += P[(j + 1) * 256 + row[j + 1]];
      a2 += P[(j + 2) * 256 + row[j + 2]];
      a3 += P[(j + 3) * 256 + row[j + 3]];
    }
    for (; j < J; j++) a0 += P[j * 256 + row[j]];
    y[n] = s[n] * ((a0 + a1) + (a2 + a3));
  }
}

void lowbit_gemv_bcq(const float* P, const uint8_t* planes, const float* a2, const float* c0, const float* xs,
                     float* y, long N, long K, long gs, long k, int threads) {
  long G = K / gs, bpg = gs / 8;
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; n++) {
    const uint8_t* row = planes + n * G * k * bpg;
    float out = 0.f;
    for (long g = 0; g < G; g++) {
      const float* Pg = P + g * bpg * 256;
      float acc = c0[n * G + g] * xs[g];
      for (long i = 0; i < k; i++) {
        const uint8_t* q = row + (g * k + i) * bpg;
        float s0 = 0.f, s1 = 0.f;
        long b = 0;
        for (; b + 2 <= bpg; b += 2) {
          s0 += Pg[b * 256 + q[b]];
          s1 += Pg[(b + 1) * 256 + q[b + 1]];
        }
        for (; b < bpg; b++) s0 += Pg[b * 256 + q[b]];
        acc += a2[(n * G + g) * k + i] * (s0 + s1);
      }
      out += acc;
    }
    y[n] = out;
  }
}
