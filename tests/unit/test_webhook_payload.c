/* test_webhook_payload.c — webhook bodies per format from ledger entries:
 * the fields each format carries, Slack's escaping, Discord's 2000
 * character cut on a character boundary, and the docs showing the
 * receiver's verification code (tests/verify_signature.py) verbatim. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "alerts/alert_payload.h"
#include "base/alert_config.h"
#include "testutil.h"

static json_t *recovery_entry(void) {
  json_t *e = json_loads(
      "{\"time\": \"2026-11-23T16:40:01.250Z\", \"event\": \"recovery\","
      " \"cause\": \"activation\", \"action\": \"halve-micro-batch\","
      " \"summary\": \"micro-batch 8 -> 4, accumulation 4 -> 8, effective 32"
      " unchanged\", \"attempt\": 2,"
      " \"before\": {\"micro\": 8, \"accum\": 4, \"effective\": 32},"
      " \"after\": {\"micro\": 4, \"accum\": 8, \"effective\": 32},"
      " \"effective\": 32, \"backoff_s\": 1.0, \"failed_step\": 121,"
      " \"trim_after_eval\": false, \"run_id\": \"run-x\"}",
      0, NULL);
  assert_non_null(e);
  return e;
}

static json_t *body_of(int format, const json_t *e) {
  char *text = nw_alert_payload(format, e, "gpu7", "fallback-run");
  assert_non_null(text);
  json_t *b = json_loads(text, 0, NULL);
  assert_non_null(b);
  free(text);
  return b;
}

static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

static void test_slack(void **state) {
  (void)state;
  json_t *e = recovery_entry();
  json_t *b = body_of(NW_ALERT_SLACK, e);
  assert_int_equal(json_object_size(b), 1);
  const char *t = json_string_value(json_object_get(b, "text"));
  assert_non_null(t);
  /* run, host, event, cause, action, what changed, the step */
  assert_non_null(strstr(t, ":rotating_light: nightwatch *run-x* on gpu7: "
                            "recovery (attempt 2)"));
  assert_non_null(strstr(t, "activation: halve-micro-batch\n"));
  assert_non_null(strstr(t, "micro-batch 8 -&gt; 4, accumulation 4 -&gt; 8, "
                            "effective 32 unchanged"));
  assert_non_null(strstr(t, "failed at step 121, restarting in 1.0 s"));
  assert_int_equal(count(t, "\n"), 1);
  json_decref(b);

  /* Slack's control characters in text are escaped: no <!channel> ping */
  json_object_set_new(e, "summary", json_string("<!channel> & <@U1>"));
  b = body_of(NW_ALERT_SLACK, e);
  t = json_string_value(json_object_get(b, "text"));
  assert_non_null(strstr(t, "&lt;!channel&gt; &amp; &lt;@U1&gt;"));
  assert_null(strchr(t, '<'));
  json_decref(b);
  json_decref(e);
}

static void test_discord(void **state) {
  (void)state;
  json_t *e = recovery_entry();
  json_t *b = body_of(NW_ALERT_DISCORD, e);
  assert_int_equal(json_object_size(b), 3);
  assert_string_equal(json_string_value(json_object_get(b, "username")),
                      "nightwatch");
  json_t *parse =
      json_object_get(json_object_get(b, "allowed_mentions"), "parse");
  assert_true(json_is_array(parse));
  assert_int_equal(json_array_size(parse), 0);
  const char *c = json_string_value(json_object_get(b, "content"));
  assert_non_null(strstr(c, "nightwatch **run-x** on gpu7: recovery"));
  assert_non_null(strstr(c, "micro-batch 8 -> 4")); /* not escaped here */
  assert_non_null(strstr(c, "failed at step 121"));
  json_decref(b);

  /* a long evidence: cut to 2000 bytes, on a character boundary (jansson
   * refuses invalid UTF-8, so a parse proves it), with an ellipsis */
  char *big = malloc(6001);
  for (int i = 0; i < 2000; i++)
    memcpy(big + 3 * i, i % 7 == 6 ? " \xc3\xa9" : "\xe2\x82\xac", 3);
  big[6000] = 0;
  json_object_set_new(e, "summary", json_string(big));
  free(big);
  b = body_of(NW_ALERT_DISCORD, e);
  c = json_string_value(json_object_get(b, "content"));
  size_t n = strlen(c);
  assert_true(n <= NW_DISCORD_CONTENT_MAX);
  assert_true(n > NW_DISCORD_CONTENT_MAX - 100);
  assert_string_equal(c + n - 3, "\xe2\x80\xa6");
  assert_int_not_equal(c[n - 4], ' ');
  json_decref(b);
  json_decref(e);
}

static void test_json(void **state) {
  (void)state;
  json_t *e = recovery_entry();
  json_t *b = body_of(NW_ALERT_JSON, e);
  /* every field of the entry, unchanged */
  const char *k;
  json_t *v;
  json_object_foreach(e, k, v) {
    assert_non_null(json_object_get(b, k));
    assert_true(json_equal(v, json_object_get(b, k)));
  }
  assert_string_equal(json_string_value(json_object_get(b, "source")),
                      "nightwatch");
  assert_string_equal(json_string_value(json_object_get(b, "host")), "gpu7");
  assert_int_equal(json_integer_value(json_object_get(b, "schema")),
                   NW_ALERT_SCHEMA);
  assert_int_equal(json_object_size(b), json_object_size(e) + 3);
  json_decref(b);
  /* an entry without run_id gets the alerter's */
  json_object_del(e, "run_id");
  b = body_of(NW_ALERT_JSON, e);
  assert_string_equal(json_string_value(json_object_get(b, "run_id")),
                      "fallback-run");
  json_decref(b);
  json_decref(e);
  assert_null(nw_alert_payload(7, e, "h", "r"));
}

static void test_other_events(void **state) {
  (void)state;
  char t[1024];
  json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "event", "give-up",
                        "cause", "activation", "action", "give-up", "evidence",
                        "every link of [activation] is exhausted", "recoveries",
                        3, "run_id", "r1");
  nw_alert_text(NW_ALERT_SLACK, e, "gpu7", NULL, t, sizeof t);
  assert_string_equal(t, ":x: nightwatch *r1* on gpu7: gave up \xe2\x80\x94 "
                         "activation\nevery link of [activation] is "
                         "exhausted; after 3 recoveries");
  json_decref(e);
  /* the classifier's evidence is a list of sentences */
  e = json_pack("{s:s, s:s, s:[s,s], s:o}", "event", "alert", "cause",
                "duplicate-process", "evidence", "pid 7 holds the device",
                "it is not ours", "pids", json_array());
  nw_alert_text(NW_ALERT_DISCORD, e, "gpu7", "r2", t, sizeof t);
  assert_non_null(strstr(t, "**r2** on gpu7: alert \xe2\x80\x94 "
                            "duplicate-process\npid 7 holds the device; it "
                            "is not ours"));
  json_decref(e);
  e = json_pack("{s:s, s:s, s:i, s:b}", "event", "stop", "evidence",
                "stopped on request", "step", 300, "checkpoint", 1);
  nw_alert_text(NW_ALERT_SLACK, e, "h", "r3", t, sizeof t);
  assert_non_null(strstr(t, "stopped at step 300\nstopped on request; "
                            "stop checkpoint written"));
  /* a tiny buffer: cut, terminated, ellipsis */
  char small[24];
  nw_alert_text(NW_ALERT_SLACK, e, "h", "r3", small, sizeof small);
  assert_true(strlen(small) < sizeof small);
  assert_non_null(strstr(small, "\xe2\x80\xa6"));
  json_decref(e);
}

static char *slurp(const char *path) { return nw_test_slurp(path, NULL); }

/* The receiver's code in the docs is the tested file, not a copy that can
 * drift. */
static void test_docs_show_verifier(void **state) {
  (void)state;
  char *code = slurp(NW_SOURCE_DIR "/tests/verify_signature.py");
  char *ops = slurp(NW_SOURCE_DIR "/docs/operations.md");
  assert_non_null(code);
  assert_non_null(ops);
  assert_non_null(strstr(ops, "X-Nightwatch-Signature"));
  if (!strstr(ops, code))
    fail_msg("docs/operations.md does not show tests/verify_signature.py");
  free(code);
  free(ops);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slack),
      cmocka_unit_test(test_discord),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_other_events),
      cmocka_unit_test(test_docs_show_verifier),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
