/* alert_config.c — the webhooks of [alert] and [alert.NAME]: parsing one key
 * at a time (config.c routes them here), cross-checks, and the one safe
 * view of a URL (its host). A URL is never echoed in a message: Slack and
 * Discord put the webhook's token in its path. */
#include "base/alert_config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"

static const char *const nw_alert_formats[] = {"json", "slack", "discord",
                                               NULL};

static const struct {
  const char *name;
  unsigned bit;
} nw_alert_events[] = {
    {"recovery", NW_ALERT_EV_RECOVERY}, {"give-up", NW_ALERT_EV_GIVE_UP},
    {"finish", NW_ALERT_EV_FINISH},     {"start", NW_ALERT_EV_START},
    {"stop", NW_ALERT_EV_STOP},
};
#define NW_ALERT_NEVENTS (sizeof nw_alert_events / sizeof nw_alert_events[0])

const char *nw_alert_format_name(int format) {
  if (format < 0 || format > NW_ALERT_DISCORD)
    return "invalid";
  return nw_alert_formats[format];
}

unsigned nw_alert_event_bit(const char *event) {
  if (!event)
    return 0;
  /* An "alert" entry is part of a recovery (the duplicate-process wait); a
   * refused config is how a run gives up before its first step. */
  if (!strcmp(event, "alert"))
    return NW_ALERT_EV_RECOVERY;
  if (!strcmp(event, "config-error"))
    return NW_ALERT_EV_GIVE_UP;
  for (size_t i = 0; i < NW_ALERT_NEVENTS; i++)
    if (!strcmp(event, nw_alert_events[i].name))
      return nw_alert_events[i].bit;
  return 0;
}

void nw_alert_url_host(const char *url, char *host, size_t len) {
  if (!len)
    return;
  host[0] = '\0';
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  size_t n = strcspn(p, "/?#");
  /* user:password@ is a credential too: keep what follows the last '@' */
  const char *at = memchr(p, '@', n);
  while (at) {
    n -= (size_t)(at + 1 - p);
    p = at + 1;
    at = memchr(p, '@', n);
  }
  snprintf(host, len, "%.*s", (int)n, p);
}

static int nw_alert_url_check(const char *v, char *why, size_t whylen) {
  size_t n = strlen(v);
  if (n >= NW_ALERT_URL_MAX) {
    snprintf(why, whylen, "the URL is %zu bytes long; the limit is %d", n,
             NW_ALERT_URL_MAX - 1);
    return NW_ECONFIG;
  }
  const char *rest = NULL;
  if (!strncasecmp(v, "https://", 8))
    rest = v + 8;
  else if (!strncasecmp(v, "http://", 7))
    rest = v + 7;
  if (!rest) {
    snprintf(why, whylen,
             "must start with https:// or http:// (the URL is not shown "
             "here: it may hold the webhook's token)");
    return NW_ECONFIG;
  }
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
      snprintf(why, whylen,
               "contains a space or a control character at byte %zu (the "
               "URL is not shown here: it may hold the webhook's token)",
               (size_t)(p - v));
      return NW_ECONFIG;
    }
  char host[256];
  nw_alert_url_host(v, host, sizeof host);
  if (!host[0] || host[0] == ':') {
    snprintf(why, whylen, "has no host after the scheme");
    return NW_ECONFIG;
  }
  return 0;
}

/* "give-up, finish" -> bits; the separators are commas and blanks. */
static int nw_alert_events_parse(const char *v, unsigned *out, char *why,
                                 size_t whylen) {
  unsigned bits = NW_ALERT_EV_RECOVERY;
  const char *p = v;
  while (*p) {
    p += strspn(p, ", \t");
    size_t n = strcspn(p, ", \t");
    if (!n)
      break;
    size_t i;
    for (i = 0; i < NW_ALERT_NEVENTS; i++)
      if (strlen(nw_alert_events[i].name) == n &&
          !strncmp(p, nw_alert_events[i].name, n))
        break;
    if (i == NW_ALERT_NEVENTS) {
      snprintf(why, whylen,
               "\"%.*s\" is not an event; events: recovery (always sent), "
               "give-up, finish, start, stop",
               (int)(n > 64 ? 64 : n), p);
      return NW_ECONFIG;
    }
    bits |= nw_alert_events[i].bit;
    p += n;
  }
  *out = bits;
  return 0;
}

static nw_alert_hook *nw_alert_hook_get(nw_alert_config *cfg, const char *name,
                                        int line, char *why, size_t whylen) {
  for (int i = 0; i < cfg->n_hooks; i++)
    if (!strcmp(cfg->hooks[i].name, name))
      return &cfg->hooks[i];
  if (strlen(name) >= NW_ALERT_NAME_MAX) {
    snprintf(why, whylen, "the hook name \"%.40s...\" is longer than %d bytes",
             name, NW_ALERT_NAME_MAX - 1);
    return NULL;
  }
  if (cfg->n_hooks == NW_ALERT_MAX_HOOKS) {
    snprintf(why, whylen, "more than %d hooks ([alert] and [alert.NAME])",
             NW_ALERT_MAX_HOOKS);
    return NULL;
  }
  nw_alert_hook *h = &cfg->hooks[cfg->n_hooks++];
  memset(h, 0, sizeof *h);
  snprintf(h->name, sizeof h->name, "%s", name);
  h->format = NW_ALERT_JSON;
  h->events = NW_ALERT_EV_DEFAULT;
  h->line = line;
  return h;
}

int nw_alert_hook_set(nw_alert_config *cfg, const char *name, const char *key,
                      const char *value, int line, char *why, size_t whylen) {
  if (strcmp(key, "url") && strcmp(key, "format") && strcmp(key, "events") &&
      strcmp(key, "secret_file")) {
    snprintf(why, whylen,
             "unknown key \"%.64s\" for a hook; hook keys: url format events "
             "secret_file",
             key);
    return NW_ECONFIG;
  }
  /* Check the value before creating the hook: a failed key leaves cfg as
   * it was. */
  int format = 0;
  unsigned events = 0;
  if (!strcmp(key, "url")) {
    if (nw_alert_url_check(value, why, whylen) < 0)
      return NW_ECONFIG;
  } else if (!strcmp(key, "format")) {
    for (format = 0; nw_alert_formats[format]; format++)
      if (!strcmp(nw_alert_formats[format], value))
        break;
    if (!nw_alert_formats[format]) {
      snprintf(why, whylen, "\"%.64s\" is not json, slack or discord", value);
      return NW_ECONFIG;
    }
  } else if (!strcmp(key, "events")) {
    if (nw_alert_events_parse(value, &events, why, whylen) < 0)
      return NW_ECONFIG;
  } else if (strlen(value) >= NW_ALERT_PATH_MAX || !value[0]) {
    snprintf(why, whylen, "must be a path of 1 to %d bytes",
             NW_ALERT_PATH_MAX - 1);
    return NW_ECONFIG;
  }
  nw_alert_hook *h = nw_alert_hook_get(cfg, name, line, why, whylen);
  if (!h)
    return NW_ECONFIG;
  if (!strcmp(key, "url")) {
    memset(h->url, 0, sizeof h->url);
    memcpy(h->url, value, strlen(value));
  } else if (!strcmp(key, "format")) {
    h->format = format;
  } else if (!strcmp(key, "events")) {
    h->events = events;
  } else {
    memset(h->secret_file, 0, sizeof h->secret_file);
    memcpy(h->secret_file, value, strlen(value));
  }
  return 0;
}

int nw_alert_validate(const nw_alert_config *cfg, char *err, size_t errlen) {
  for (int i = 0; i < cfg->n_hooks; i++) {
    const nw_alert_hook *h = &cfg->hooks[i];
    if (!h->url[0]) {
      char sec[64];
      if (!strcmp(h->name, "default"))
        snprintf(sec, sizeof sec, "[alert]");
      else
        snprintf(sec, sizeof sec, "[alert.%s]", h->name);
      if (h->line > 0)
        snprintf(err, errlen, "%s (line %d) has no url: every hook needs one",
                 sec, h->line);
      else
        snprintf(err, errlen, "%s has no url: every hook needs one", sec);
      return NW_ECONFIG;
    }
  }
  return 0;
}
