/* hmac.h — HMAC-SHA256 (OpenSSL's libcrypto) and the signature a webhook
 * receiver checks: docs/operations.md, "Signatures".
 * defines: nw_hmac_sha256_hex, nw_hmac_sign, NW_HMAC_HEX_LEN,
 *          NW_HMAC_SIG_LEN, NW_HMAC_TS_HEADER, NW_HMAC_SIG_HEADER
 *
 * A signed POST carries two headers:
 *
 *   X-Nightwatch-Timestamp: 1700000000
 *   X-Nightwatch-Signature: sha256=<hex HMAC-SHA256(secret, "1700000000" "."
 * body)>
 *
 * The timestamp is inside the signed bytes, so a receiver that rejects old
 * timestamps cannot be fed a captured request again (replay). The scheme
 * is GitHub's ("sha256=" and lowercase hex), plus the timestamp. */
#ifndef NW_HMAC_H
#define NW_HMAC_H

#include <stddef.h>

#define NW_HMAC_HEX_LEN 65 /* 64 lowercase hex digits and the NUL */
#define NW_HMAC_SIG_LEN 72 /* "sha256=" + 64 hex digits and the NUL */
#define NW_HMAC_TS_HEADER "X-Nightwatch-Timestamp"
#define NW_HMAC_SIG_HEADER "X-Nightwatch-Signature"

/* hex = lowercase hex HMAC-SHA256(key, the concatenation of the n_parts
 * parts): parts[i] of lens[i] bytes. The parts save the caller a copy of
 * the body. key may hold any bytes; keylen may be 0. Returns 0, or
 * NW_EINTERNAL when libcrypto fails (hex is then ""). */
int nw_hmac_sha256_hex(const void *key, size_t keylen, int n_parts,
                       const void *const parts[], const size_t lens[],
                       char hex[NW_HMAC_HEX_LEN]);

/* sig = "sha256=<hex HMAC-SHA256(secret, TIMESTAMP "." body)>" where
 * TIMESTAMP is timestamp in decimal: the X-Nightwatch-Signature value. */
int nw_hmac_sign(const void *secret, size_t secretlen, long long timestamp,
                 const void *body, size_t bodylen, char sig[NW_HMAC_SIG_LEN]);

#endif
