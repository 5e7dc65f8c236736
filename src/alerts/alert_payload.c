/* alert_payload.c — webhook bodies from ledger entries. The text is built
 * into a growing string, then cut to the format's limit, so that no field
 * (a long evidence) can overflow or be cut mid-character. */
#include "alerts/alert_payload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alert_config.h"

typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} nw__sb;

static void nw__sb_raw(nw__sb *b, const char *p, size_t n) {
  if (b->oom)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
      b->oom = 1;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
  memcpy(b->s + b->n, p, n);
  b->n += n;
  b->s[b->n] = 0;
}

/* Text from the entry: Slack wants &, < and > escaped (they start its
 * links and mentions); Discord's mentions are turned off in the payload
 * (allowed_mentions), so its text goes as it is. */
static void nw__sb_text(nw__sb *b, int format, const char *t) {
  for (; *t; t++) {
    if (format == NW_ALERT_SLACK && (*t == '&' || *t == '<' || *t == '>'))
      nw__sb_raw(b,
                 *t == '&'   ? "&amp;"
                 : *t == '<' ? "&lt;"
                             : "&gt;",
                 *t == '&' ? 5 : 4);
    else if (*t == '\n' || *t == '\r' || *t == '\t')
      nw__sb_raw(b, " ", 1); /* the layout is ours: one or two lines */
    else
      nw__sb_raw(b, t, 1);
  }
}

__attribute__((format(printf, 3, 4))) static void
nw__sb_printf(nw__sb *b, int format, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  nw__sb_text(b, format, tmp);
}

static const char *nw__str(const json_t *e, const char *key) {
  return json_string_value(json_object_get(e, key));
}

static int nw__has_num(const json_t *e, const char *key) {
  return json_is_number(json_object_get(e, key));
}

static double nw__num(const json_t *e, const char *key) {
  return json_number_value(json_object_get(e, key));
}

/* The evidence is a sentence (give-up, finish) or the classifier's list of
 * sentences (oom, crash, alert). */
static void nw__sb_evidence(nw__sb *b, int format, const json_t *ev) {
  if (json_is_string(ev)) {
    nw__sb_text(b, format, json_string_value(ev));
    return;
  }
  size_t i;
  json_t *v;
  json_array_foreach(ev, i, v) {
    if (!json_is_string(v))
      continue;
    if (i)
      nw__sb_raw(b, "; ", 2);
    nw__sb_text(b, format, json_string_value(v));
  }
}

typedef struct {
  const char *event, *slack, *discord, *phrase;
} nw__event_look;

static const nw__event_look nw__looks[] = {
    {"recovery", ":rotating_light:", "\xf0\x9f\x9a\xa8", "recovery"},
    {"alert", ":warning:", "\xe2\x9a\xa0\xef\xb8\x8f", "alert"},
    {"give-up", ":x:", "\xe2\x9d\x8c", "gave up"},
    {"config-error", ":x:", "\xe2\x9d\x8c", "config error"},
    {"finish", ":white_check_mark:", "\xe2\x9c\x85", "finished"},
    {"stop", ":octagonal_sign:", "\xf0\x9f\x9b\x91", "stopped"},
    {"start", ":arrow_forward:", "\xe2\x96\xb6\xef\xb8\x8f", "started"},
    {"resumed", ":arrows_counterclockwise:", "\xf0\x9f\x94\x84", "resumed"},
};

/* Cuts s (n bytes) to at most max bytes: on a character boundary, on a
 * space when one is within the last 80 bytes, never inside a Slack
 * &entity;, then "…". */
static void nw__cut(const char *s, size_t n, char *buf, size_t len) {
  if (len == 0)
    return;
  size_t max = len - 1;
  if (n <= max) {
    memcpy(buf, s, n);
    buf[n] = 0;
    return;
  }
  static const char ell[] = "\xe2\x80\xa6"; /* … */
  if (max < sizeof ell - 1) {
    buf[0] = 0;
    return;
  }
  size_t cut = max - (sizeof ell - 1);
  while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
    cut--; /* s[cut] starts a character: cutting before it splits none */
  for (size_t i = cut; i > 0 && cut - i < 80; i--)
    if (s[i - 1] == ' ') {
      cut = i - 1;
      break;
    }
  for (size_t i = cut; i > 0 && cut - i < 6; i--)
    if (s[i - 1] == ';')
      break;
    else if (s[i - 1] == '&') {
      cut = i - 1;
      break;
    }
  while (cut > 0 && s[cut - 1] == ' ')
    cut--;
  memcpy(buf, s, cut);
  memcpy(buf + cut, ell, sizeof ell);
}

/* Line 1: who, where, what happened and why. */
static void nw__text_headline(nw__sb *b, int format, const json_t *e,
                              const char *event, const char *host,
                              const char *run_id) {
  const nw__event_look *look = NULL;
  for (size_t i = 0; i < sizeof nw__looks / sizeof nw__looks[0]; i++)
    if (strcmp(nw__looks[i].event, event) == 0)
      look = &nw__looks[i];
  const char *bold = format == NW_ALERT_SLACK ? "*" : "**";
  const char *run = nw__str(e, "run_id");
  if (!run)
    run = run_id ? run_id : "?";
  nw__sb_raw(b, "", 0);
  if (look) {
    const char *icon = format == NW_ALERT_SLACK ? look->slack : look->discord;
    nw__sb_raw(b, icon, strlen(icon));
    nw__sb_raw(b, " ", 1);
  }
  nw__sb_raw(b, "nightwatch ", 11);
  nw__sb_raw(b, bold, strlen(bold));
  nw__sb_text(b, format, run);
  nw__sb_raw(b, bold, strlen(bold));
  nw__sb_raw(b, " on ", 4);
  nw__sb_text(b, format, host && *host ? host : "?");
  nw__sb_raw(b, ": ", 2);
  nw__sb_text(b, format, look ? look->phrase : event);
  if (strcmp(event, "recovery") == 0 && nw__has_num(e, "attempt"))
    nw__sb_printf(b, format, " (attempt %d)", (int)nw__num(e, "attempt"));
  const char *cause = nw__str(e, "cause");
  if (cause) {
    nw__sb_raw(b, " \xe2\x80\x94 ", 5); /* — */
    nw__sb_text(b, format, cause);
  }
  const char *action = nw__str(e, "action");
  if (action && strcmp(action, "give-up") != 0) {
    nw__sb_raw(b, cause ? ": " : " \xe2\x80\x94 ", cause ? 2 : 5);
    nw__sb_text(b, format, action);
  }
  if ((strcmp(event, "finish") == 0 || strcmp(event, "stop") == 0) &&
      nw__has_num(e, "step"))
    nw__sb_printf(b, format, " at step %d", (int)nw__num(e, "step"));
}

/* Line 2: what was changed or seen, and where the run stands. */
static void nw__text_detail(nw__sb *line, int format, const json_t *e,
                            const char *event) {
  const char *summary = nw__str(e, "summary");
  json_t *ev = json_object_get(e, "evidence");
  if (summary)
    nw__sb_text(line, format, summary);
  else if (ev && strcmp(event, "finish") != 0)
    nw__sb_evidence(line, format, ev);
  const char *sep = line->n ? "; " : "";
  if (strcmp(event, "resumed") == 0 && nw__has_num(e, "step")) {
    nw__sb_printf(line, format,
                  "%sresumed from step %d, first step %d, %d steps lost, "
                  "%.1f s to recover",
                  sep, (int)nw__num(e, "resumed_from"), (int)nw__num(e, "step"),
                  (int)nw__num(e, "steps_lost"),
                  nw__num(e, "seconds_to_recover"));
  } else if (nw__has_num(e, "failed_step")) {
    nw__sb_printf(line, format, "%sfailed at step %d", sep,
                  (int)nw__num(e, "failed_step"));
    if (nw__has_num(e, "backoff_s"))
      nw__sb_printf(line, format, ", restarting in %.1f s",
                    nw__num(e, "backoff_s"));
  }
  if (strcmp(event, "give-up") == 0 && nw__has_num(e, "recoveries"))
    nw__sb_printf(line, format, "%safter %d recoveries", line->n ? "; " : "",
                  (int)nw__num(e, "recoveries"));
  if (strcmp(event, "stop") == 0 &&
      json_is_boolean(json_object_get(e, "checkpoint")))
    nw__sb_printf(line, format, "%s%s", line->n ? "; " : "",
                  json_is_true(json_object_get(e, "checkpoint"))
                      ? "stop checkpoint written"
                      : "no stop checkpoint");
}

static void nw__build_text(nw__sb *b, int format, const json_t *e,
                           const char *host, const char *run_id) {
  const char *event = nw__str(e, "event");
  if (!event)
    event = "event";
  nw__text_headline(b, format, e, event, host, run_id);
  nw__sb line = {0};
  nw__text_detail(&line, format, e, event);
  if (line.oom)
    b->oom = 1;
  if (line.n) {
    nw__sb_raw(b, "\n", 1);
    nw__sb_raw(b, line.s, line.n);
  }
  free(line.s);
}

void nw_alert_text(int format, const json_t *entry, const char *host,
                   const char *run_id, char *buf, size_t len) {
  if (len == 0)
    return;
  nw__sb b = {0};
  nw__build_text(&b, format, entry, host, run_id);
  if (b.oom || !b.s)
    buf[0] = 0;
  else
    nw__cut(b.s, b.n, buf, len);
  free(b.s);
}

char *nw_alert_payload(int format, const json_t *entry, const char *host,
                       const char *run_id) {
  json_t *body = NULL;
  if (format == NW_ALERT_SLACK || format == NW_ALERT_DISCORD) {
    size_t max =
        format == NW_ALERT_SLACK ? NW_SLACK_TEXT_MAX : NW_DISCORD_CONTENT_MAX;
    char *text = malloc(max + 1);
    if (!text)
      return NULL;
    nw_alert_text(format, entry, host, run_id, text, max + 1);
    if (format == NW_ALERT_SLACK)
      body = json_pack("{s:s}", "text", text);
    else /* no @everyone or role pings, whatever the text says */
      body = json_pack("{s:s, s:s, s:{s:[]}}", "content", text, "username",
                       "nightwatch", "allowed_mentions", "parse");
    free(text);
  } else if (format == NW_ALERT_JSON) {
    body = json_deep_copy(entry);
    if (body && json_is_object(body)) {
      if (!json_object_get(body, "run_id") && run_id)
        json_object_set_new(body, "run_id", json_string(run_id));
      json_object_set_new(body, "source", json_string("nightwatch"));
      json_object_set_new(body, "host", json_string(host ? host : ""));
      json_object_set_new(body, "schema", json_integer(NW_ALERT_SCHEMA));
    } else {
      json_decref(body);
      body = NULL;
    }
  }
  if (!body)
    return NULL;
  /* 15 significant digits: 0.8, not 0.80000000000000004, and every value
   * the ledger's decimal settings can hold */
  char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
  json_decref(body);
  return text;
}
