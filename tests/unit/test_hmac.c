/* test_hmac.c — HMAC-SHA256 against published vectors (GitHub's webhook
 * example, RFC 4231), and the X-Nightwatch-Signature value against one
 * computed by Python's hmac module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alerts/hmac.h"

static void hex1(const void *key, size_t keylen, const char *msg, char *hex) {
  const void *parts[] = {msg};
  const size_t lens[] = {strlen(msg)};
  assert_int_equal(nw_hmac_sha256_hex(key, keylen, 1, parts, lens, hex), 0);
}

/* docs.github.com, "Validating webhook deliveries", "Testing the webhook
 * payload validation" */
static void test_github_vector(void **state) {
  (void)state;
  static const char secret[] = "It's a Secret to Everybody";
  char hex[NW_HMAC_HEX_LEN];
  hex1(secret, strlen(secret), "Hello, World!", hex);
  assert_string_equal(
      hex, "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

static void test_rfc4231(void **state) {
  (void)state;
  char hex[NW_HMAC_HEX_LEN];
  unsigned char k1[20], k6[131];
  memset(k1, 0x0b, sizeof k1);
  memset(k6, 0xaa, sizeof k6);
  /* test case 1 */
  hex1(k1, sizeof k1, "Hi There", hex);
  assert_string_equal(
      hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  /* test case 2: a key shorter than the output */
  hex1("Jefe", 4, "what do ya want for nothing?", hex);
  assert_string_equal(
      hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  /* test case 6: a key longer than the block is hashed first */
  hex1(k6, sizeof k6, "Test Using Larger Than Block-Size Key - Hash Key First",
       hex);
  assert_string_equal(
      hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  /* test case 7, the message in three parts: parts are one message */
  const char *m7 = "This is a test using a larger than block-size key and a "
                   "larger than block-size data. The key needs to be hashed "
                   "before being used by the HMAC algorithm.";
  const void *parts[] = {m7, m7 + 10, m7 + 60};
  const size_t lens[] = {10, 50, strlen(m7) - 60};
  assert_int_equal(nw_hmac_sha256_hex(k6, sizeof k6, 3, parts, lens, hex), 0);
  assert_string_equal(
      hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void test_sign(void **state) {
  (void)state;
  /* python3: hmac.new(b"whsec-test", b'1700000000.{"event":"recovery"}',
   *                   hashlib.sha256).hexdigest() */
  static const char body[] = "{\"event\":\"recovery\"}";
  char sig[NW_HMAC_SIG_LEN];
  assert_int_equal(
      nw_hmac_sign("whsec-test", 10, 1700000000LL, body, strlen(body), sig), 0);
  assert_string_equal(sig, "sha256=ee14715990b919a7e8fd33f996bd86af13f30fcb40"
                           "858f69870e4f7b12a48f4c");
  /* the timestamp is signed: another second, another signature */
  char sig2[NW_HMAC_SIG_LEN];
  assert_int_equal(
      nw_hmac_sign("whsec-test", 10, 1700000001LL, body, strlen(body), sig2),
      0);
  assert_string_not_equal(sig, sig2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_github_vector),
      cmocka_unit_test(test_rfc4231),
      cmocka_unit_test(test_sign),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
