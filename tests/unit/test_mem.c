/* test_mem.c — the memory domain: categories, peaks, the cache, trim, the
 * cap, and the device underneath. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/error.h"
#include "device/mem.h"

static void test_categories_and_peaks(void **state) {
  (void)state;
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 0), 0);
  void *a, *b, *c;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_PARAMS, 1000, &a), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ACTIVATIONS, 5000, &b), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_KV_CACHE, 256, &c), 0);
  nw_mem_stats st;
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.live[NW_MEM_PARAMS], 1024); /* rounded to 256 */
  assert_int_equal(st.live[NW_MEM_ACTIVATIONS], 5120);
  assert_int_equal(st.live[NW_MEM_KV_CACHE], 256);
  assert_int_equal(st.live_total, 1024 + 5120 + 256);
  nw_mem_free(m, b);
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.live[NW_MEM_ACTIVATIONS], 0);
  assert_int_equal(st.peak[NW_MEM_ACTIVATIONS], 5120);
  assert_int_equal(st.cached, 5120);
  assert_int_equal(st.reserved, 1024 + 5120 + 256);
  assert_string_equal(nw_mem_category_name(NW_MEM_KV_CACHE), "kv-cache");
  nw_mem_free(m, a);
  nw_mem_free(m, c);
  nw_mem_destroy(m);
}

static void test_cache_reuse_and_trim(void **state) {
  (void)state;
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 0), 0);
  void *a, *b, *c;
  nw_mem_stats st;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ACTIVATIONS, 4096, &a), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_WORKSPACE, 2048, &c), 0);
  memset(a, 0xab, 4096);
  nw_mem_free(m, a);
  /* a request within 1/8 of a cached block reuses it, zeroed */
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ATTENTION, 3900, &b), 0);
  assert_ptr_equal(a, b);
  assert_int_equal(((unsigned char *)b)[100], 0);
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.cached, 0);
  assert_int_equal(st.live[NW_MEM_ATTENTION], 4096);
  nw_mem_free(m, b);
  /* a smaller one (3072 + 3072/8 < 4096) gets a block of its own, and
   * since that would hold more than the peak working set (6144), the cache
   * is returned first */
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ATTENTION, 3000, &b), 0);
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.cached, 0);
  assert_int_equal(st.reserved, 3072 + 2048);
  nw_mem_free(m, b);
  nw_mem_free(m, c);
  assert_int_equal(nw_mem_trim(m), 3072 + 2048);
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.cached, 0);
  assert_int_equal(st.reserved, 0);
  nw_mem_destroy(m);
}

static void test_cap(void **state) {
  (void)state;
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 10240), 0);
  void *a, *b;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_PARAMS, 8192, &a), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ACTIVATIONS, 4096, &b), NW_ENOMEM);
  assert_null(b);
  nw_mem_stats st;
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.failed_request, 4096);
  assert_int_equal(st.failed_category, NW_MEM_ACTIVATIONS);
  assert_true(st.reserved <= st.cap);
  /* a cached block is trimmed to make room for a request of another size */
  nw_mem_free(m, a);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ACTIVATIONS, 9000, &b), 0);
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.cached, 0);
  assert_true(st.peak_total <= st.cap);
  nw_mem_free(m, b);
  nw_mem_destroy(m);
}

typedef struct {
  uint64_t used, capacity;
} fake_counter;

/* A device that is a byte counter: enough to check that the domain reserves
 * and releases exactly what it holds. (The real CPU device is the shared-
 * memory virtual device, tested in test_vdev and test_oom.) */
static int counter_reserve(void *ctx, uint64_t bytes) {
  fake_counter *d = ctx;
  if (d->used + bytes > d->capacity)
    return NW_ENOMEM;
  d->used += bytes;
  return 0;
}
static void counter_release(void *ctx, uint64_t bytes) {
  ((fake_counter *)ctx)->used -= bytes;
}

static void test_device_accounting(void **state) {
  (void)state;
  fake_counter d = {0, 8192};
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 0), 0);
  nw_mem_device dev = {
      .ctx = &d, .reserve = counter_reserve, .release = counter_release};
  nw_mem_attach_device(m, &dev);
  void *a, *b;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_PARAMS, 4096, &a), 0);
  assert_int_equal(d.used, 4096);
  d.used += 2048; /* another process takes some */
  assert_int_equal(nw_mem_alloc(m, NW_MEM_GRADS, 4096, &b), NW_ENOMEM);
  d.used -= 2048;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_GRADS, 4096, &b), 0);
  nw_mem_free(m, a);
  nw_mem_free(m, b);
  assert_int_equal(d.used, 8192); /* cached blocks stay reserved */
  nw_mem_trim(m);
  assert_int_equal(d.used, 0);
  nw_mem_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_categories_and_peaks),
      cmocka_unit_test(test_cache_reuse_and_trim),
      cmocka_unit_test(test_cap),
      cmocka_unit_test(test_device_accounting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
