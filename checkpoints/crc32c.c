/* crc32c.c — CRC-32C: slicing-by-8 tables, and the SSE4.2 crc32 instruction
 * where the CPU has it (a 1.5 GB checkpoint is checksummed on every write
 * and every verification, so the hardware path matters). The instruction
 * has a latency of 3 cycles and a throughput of 1: three independent
 * streams over thirds of a buffer, joined with the GF(2) combine of zlib's
 * crc32_combine, run about three times as fast as one. */
#include "checkpoints/crc32c.h"

#include <pthread.h>
#include <string.h>

#define NW_CRC32C_POLY 0x82F63B78u /* reflected Castagnoli */

static uint32_t nw_crc32c_table[8][256]; /* [slice][byte] */
static uint32_t nw_crc32c_x2n[32];       /* x^(2^k) mod P */
static pthread_once_t nw_crc32c_once = PTHREAD_ONCE_INIT;
static int nw_crc32c_have_hw;

/* a(x) b(x) mod P, reflected (bit 31 is x^0). */
static uint32_t nw_crc32c_mulmod(uint32_t a, uint32_t b) {
  uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0)
        break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ NW_CRC32C_POLY : b >> 1;
  }
  return p;
}

/* The CRC of A then B, from crc(A), crc(B) and B's length. */
static uint32_t nw_crc32c_combine(uint32_t crc_a, uint32_t crc_b,
                                  size_t len_b) {
  uint32_t op = 1u << 31; /* x^(8 len_b) mod P */
  for (unsigned k = 3; len_b; len_b >>= 1, k++)
    if (len_b & 1)
      op = nw_crc32c_mulmod(nw_crc32c_x2n[k & 31], op);
  return nw_crc32c_mulmod(op, crc_a) ^ crc_b;
}

static void nw_crc32c_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ NW_CRC32C_POLY : c >> 1;
    nw_crc32c_table[0][n] = c;
  }
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = nw_crc32c_table[0][n];
    for (int s = 1; s < 8; s++) {
      c = nw_crc32c_table[0][c & 0xff] ^ (c >> 8);
      nw_crc32c_table[s][n] = c;
    }
  }
  uint32_t p = 1u << 30; /* x^1, reflected */
  nw_crc32c_x2n[0] = p;
  for (int k = 1; k < 32; k++)
    nw_crc32c_x2n[k] = p = nw_crc32c_mulmod(p, p);
#if defined(__x86_64__)
  __builtin_cpu_init();
  nw_crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t nw_crc32c_sw(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&nw_crc32c_once, nw_crc32c_init);
  const unsigned char *p = buf;
  uint32_t c = ~crc;
  while (len > 0 && ((uintptr_t)p & 7) != 0) {
    c = nw_crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    len--;
  }
  while (len >= 8) { /* little-endian: the low word meets the crc */
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = nw_crc32c_table[7][lo & 0xff] ^ nw_crc32c_table[6][(lo >> 8) & 0xff] ^
        nw_crc32c_table[5][(lo >> 16) & 0xff] ^ nw_crc32c_table[4][lo >> 24] ^
        nw_crc32c_table[3][hi & 0xff] ^ nw_crc32c_table[2][(hi >> 8) & 0xff] ^
        nw_crc32c_table[1][(hi >> 16) & 0xff] ^ nw_crc32c_table[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len-- > 0)
    c = nw_crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
nw_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
  const unsigned char *p = buf;
  uint64_t c = ~crc;
  while (len > 0 && ((uintptr_t)p & 7) != 0) {
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    len--;
  }
  if (len >= 3 * 4096) {
    size_t third = (len / 3) & ~(size_t)7;
    uint64_t c1 = 0xffffffffu, c2 = 0xffffffffu;
    const unsigned char *p1 = p + third, *p2 = p + 2 * third;
    for (size_t i = 0; i < third; i += 8) {
      uint64_t w0, w1, w2;
      memcpy(&w0, p + i, 8);
      memcpy(&w1, p1 + i, 8);
      memcpy(&w2, p2 + i, 8);
      c = __builtin_ia32_crc32di(c, w0);
      c1 = __builtin_ia32_crc32di(c1, w1);
      c2 = __builtin_ia32_crc32di(c2, w2);
    }
    uint32_t crc01 = nw_crc32c_combine(~(uint32_t)c, ~(uint32_t)c1, third);
    c = ~nw_crc32c_combine(crc01, ~(uint32_t)c2, third);
    p += 3 * third;
    len -= 3 * third;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    len -= 8;
  }
  while (len-- > 0)
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return ~(uint32_t)c;
}
#endif

uint32_t nw_crc32c(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&nw_crc32c_once, nw_crc32c_init);
#if defined(__x86_64__)
  if (nw_crc32c_have_hw)
    return nw_crc32c_hw(crc, buf, len);
#endif
  return nw_crc32c_sw(crc, buf, len);
}
