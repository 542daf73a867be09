/* Batch-1 GEMV over 4-bit codes with group scales: the lowbit CPU decode path.
 *
 * y[n] = sum_g ( s[n,g] * sum_{c in g} x[c] q[n,c]  -  sz[n,g] * xs[g] ),  sz = s * z,  xs[g] = sum_{c in g} x[c]
 *
 * which is x @ W_hat^T for W_hat[n,c] = s[n,g] (q[n,c] - z[n,g]). Layout: row n, group g holds gs/2
 * bytes; byte j of a group carries column j in its low nibble and column j + gs/2 in its high
 * nibble, so both halves read x contiguously and the loop vectorizes. Reads 4 bits per weight.
 */
#include <stdint.h>

void lowbit_gemv_u4(const float* x, const uint8_t* p, const float* s, const float* sz, const float* xs,
                    float* y, long N, long K, long gs, int threads) {
  long G = K / gs, hb = gs / 2;
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; n++) {
    const uint8_t* row = p + n * (K / 2);
    float out = 0.f;
    for (long g = 0; g < G; g++) {
      const uint8_t* b = row + g * hb;
      const float* xg = x + g * gs;
      float acc = 0.f;
      for (long j = 0; j < hb; j++) {
        acc += xg[j] * (float)(b[j] & 15) + xg[j + hb] * (float)(b[j] >> 4);
      }
      out += s[n * G + g] * acc - sz[n * G + g] * xs[g];
    }
    y[n] = out;
  }
}
