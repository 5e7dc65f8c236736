/* crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every checkpoint dataset.
 * defines: nw_crc32c, nw_crc32c_sw */
#ifndef NW_CRC32C_H
#define NW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc over buf: start with 0; nw_crc32c(0, "123456789", 9) is
 * 0xE3069283. Uses the SSE4.2 instruction when the CPU has it, else
 * nw_crc32c_sw. */
uint32_t nw_crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable slicing-by-8 table version (same result; for tests). */
uint32_t nw_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
