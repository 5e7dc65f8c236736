/* hmac.c — HMAC-SHA256 through OpenSSL 3's EVP_MAC (the HMAC_CTX functions
 * are deprecated there). */
#include "alerts/hmac.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/error.h"

int nw_hmac_sha256_hex(const void *key, size_t keylen, int n_parts,
                       const void *const parts[], const size_t lens[],
                       char hex[NW_HMAC_HEX_LEN]) {
  hex[0] = 0;
  /* EVP_MAC_init treats a NULL key as "keep the key already set": an empty
   * key must still be a pointer. */
  static const unsigned char empty[1];
  if (keylen == 0)
    key = empty;
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t maclen = 0;
  int rc = NW_EINTERNAL;
  EVP_MAC *m = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
  EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
  if (!ctx)
    goto done;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (!EVP_MAC_init(ctx, key, keylen, params))
    goto done;
  for (int i = 0; i < n_parts; i++)
    if (lens[i] && !EVP_MAC_update(ctx, parts[i], lens[i]))
      goto done;
  if (!EVP_MAC_final(ctx, mac, &maclen, sizeof mac) || maclen != 32)
    goto done;
  for (size_t i = 0; i < maclen; i++)
    snprintf(hex + 2 * i, 3, "%02x", mac[i]);
  rc = 0;
done:
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(m);
  return rc;
}

int nw_hmac_sign(const void *secret, size_t secretlen, long long timestamp,
                 const void *body, size_t bodylen, char sig[NW_HMAC_SIG_LEN]) {
  char ts[32];
  int tslen = snprintf(ts, sizeof ts, "%lld.", timestamp);
  const void *parts[] = {ts, body};
  const size_t lens[] = {(size_t)tslen, bodylen};
  char hex[NW_HMAC_HEX_LEN];
  sig[0] = 0;
  NW_TRY(nw_hmac_sha256_hex(secret, secretlen, 2, parts, lens, hex));
  snprintf(sig, NW_HMAC_SIG_LEN, "sha256=%s", hex);
  return 0;
}
