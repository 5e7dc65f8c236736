/* alert_config.h — the [alert] part of a run config: the webhooks that hear
 * of every recovery, and how hard delivery tries. docs/operations.md.
 * defines: nw_alert_config, nw_alert_hook, nw_alert_format, NW_ALERT_EV_*,
 *          nw_alert_format_name, nw_alert_event_bit, nw_alert_hook_set,
 *          nw_alert_validate, nw_alert_url_host
 *
 * A hook lives in [alert] (named "default") or in [alert.NAME]:
 *
 *   [alert]                      # delivery settings, and one hook
 *   url = https://hooks.slack.com/services/T0/B0/XXXX
 *   format = slack               # slack, discord or json (every ledger field)
 *   events = give-up, finish     # recovery is always sent
 *   secret_file = /etc/nightwatch/hook.secret   # HMAC-SHA256 signature
 *
 *   [alert.pager]                # a second hook
 *   url = https://example.org/nightwatch
 *
 * The URL carries the token of Slack and Discord webhooks: only its host is
 * ever logged, written to the ledger or dumped into a checkpoint. */
#ifndef NW_ALERT_CONFIG_H
#define NW_ALERT_CONFIG_H

#include <stddef.h>

#define NW_ALERT_MAX_HOOKS 4
#define NW_ALERT_NAME_MAX 32
#define NW_ALERT_URL_MAX 1024
#define NW_ALERT_PATH_MAX 1024

typedef enum {
  NW_ALERT_JSON = 0,    /* the ledger entry with every field, as JSON */
  NW_ALERT_SLACK = 1,   /* {"text": ...} for a Slack incoming webhook */
  NW_ALERT_DISCORD = 2, /* {"content": ...} for a Discord webhook */
} nw_alert_format;

/* Ledger events a hook can be sent. Recovery (the "recovery" entry and the
 * "alert" entries of a duplicate-process wait) is always sent. */
enum {
  NW_ALERT_EV_RECOVERY = 1u << 0, /* "recovery" and "alert" entries */
  NW_ALERT_EV_GIVE_UP = 1u << 1,  /* "give-up" (and a refused config) */
  NW_ALERT_EV_FINISH = 1u << 2,   /* "finish": ran to the last step */
  NW_ALERT_EV_START = 1u << 3,    /* the run's first trainer start */
  NW_ALERT_EV_STOP = 1u << 4,     /* "stop": stopped on request */
};
#define NW_ALERT_EV_DEFAULT (NW_ALERT_EV_RECOVERY | NW_ALERT_EV_GIVE_UP)

typedef struct {
  char name[NW_ALERT_NAME_MAX]; /* "default" for [alert], else NAME */
  char url[NW_ALERT_URL_MAX];   /* http:// or https://; secret (token) */
  int format;                   /* nw_alert_format */
  unsigned events;              /* NW_ALERT_EV_* bits; RECOVERY always set */
  char secret_file[NW_ALERT_PATH_MAX]; /* "" = unsigned */
  int line;                            /* where the hook was first named */
} nw_alert_hook;

typedef struct {
  /* delivery: the table keys alert.connect_timeout ... (config.c) */
  double connect_timeout; /* seconds to connect (and resolve) */
  double timeout;         /* seconds for one whole attempt */
  int attempts;           /* tries per message, the first included */
  double max_backoff;     /* cap of the exponential backoff, seconds */
  int queue;              /* messages waiting at most; then the oldest goes */
  double drain_timeout;   /* at exit: seconds to finish what is queued */
  /* the hooks */
  int n_hooks;
  nw_alert_hook hooks[NW_ALERT_MAX_HOOKS];
} nw_alert_config;

const char *nw_alert_format_name(int format);

/* The bit of a ledger event name ("recovery", "alert", "give-up",
 * "config-error", "finish", "start", "stop"); 0 for events no hook gets. */
unsigned nw_alert_event_bit(const char *event);

/* Sets key (url, format, events, secret_file) of the hook called name
 * ("default" for [alert]), creating the hook on first use. line is where it
 * was written (0 for --set). On error writes the reason, without a key
 * prefix, into why and returns NW_ECONFIG; cfg is unchanged then. */
int nw_alert_hook_set(nw_alert_config *cfg, const char *name, const char *key,
                      const char *value, int line, char *why, size_t whylen);

/* Cross-checks: every hook has a url. err names the section. */
int nw_alert_validate(const nw_alert_config *cfg, char *err, size_t errlen);

/* "https://hooks.slack.com/..." -> "hooks.slack.com" (with :port when
 * given): the one part of a URL that may be shown. */
void nw_alert_url_host(const char *url, char *host, size_t len);

#endif
