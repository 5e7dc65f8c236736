/* webhook.h — alerts to webhooks, delivered by a worker thread so that a
 * slow, failing or unreachable receiver never delays a recovery.
 * defines: nw_alerter, nw_alerter_start, nw_alerter_post, nw_alerter_fd,
 *          nw_alerter_take, nw_alerter_describe, nw_alerter_stop
 *
 * The supervisor posts ledger entries; each hook's worker thread (its own
 * bounded queue and libcurl handle, CURLOPT_NOSIGNAL, the threaded resolver
 * so that timeouts cover DNS; one per hook so that a hook backing off never
 * holds back another's messages) formats them (alert_payload.h), signs them
 * when the hook has a secret (hmac.h), and POSTs them with connect and total
 * timeouts, retrying with exponential backoff and full jitter, honouring
 * Retry-After on 429 and 5xx (up to alert.max_backoff). Slack hooks send at
 * most one message a second. A Discord 404/410 means the webhook was
 * deleted: that hook is disabled. Each finished delivery becomes an outcome
 * the supervisor writes to its ledger.
 * Neither a hook's URL (beyond its host) nor its secret ever appears in a
 * log line or an outcome. docs/operations.md describes all of it. */
#ifndef NW_WEBHOOK_H
#define NW_WEBHOOK_H

#include <stddef.h>

#include <jansson.h>

#include "base/alert_config.h"

typedef struct nw_alerter nw_alerter;

/* Reads every hook's secret file (an error names the file and returns
 * NW_ECONFIG), starts the worker thread. Call with the supervisor's signals
 * blocked: the worker inherits the mask and must never take them. With no
 * hooks configured, *out = NULL and 0 is returned; every function below
 * accepts a NULL alerter and does nothing. */
int nw_alerter_start(nw_alerter **out, const nw_alert_config *cfg,
                     const char *run_id, char *err, size_t errlen);

/* Queues entry (a ledger entry; borrowed, copied) for every enabled hook
 * whose events include the entry's "event" (nw_alert_event_bit; the caller
 * decides which "start" counts). Never blocks on the network: a copy under
 * a mutex. A full queue drops its oldest message, which becomes an outcome
 * "dropped" at once. Returns how many hooks it was queued for. */
int nw_alerter_post(nw_alerter *a, const json_t *entry);

/* An eventfd, readable while outcomes wait to be taken; -1 for NULL. */
int nw_alerter_fd(const nw_alerter *a);

/* The next finished delivery as a ledger entry (new reference), NULL when
 * none waits:
 *   {"event": "delivery", "hook": NAME, "host": HOST, "format": FORMAT,
 *    "of": EVENT, "of_time": TIME of the entry, "outcome": "delivered" |
 *    "failed" | "gone" | "rejected" | "dropped" | "abandoned",
 *    "attempts": N (0: never sent), "http_status": S (0: no answer),
 *    "seconds": T (from the post), "error": TEXT (absent when delivered;
 *    scrubbed of the URL and the secret)}
 * "of_time" is absent when the entry had no "time". */
json_t *nw_alerter_take(nw_alerter *a);

/* For the "delivery" field of an entry just posted: "queued for default
 * (hooks.slack.com), pager (example.org)", or "ledger only (no webhook
 * configured)" / "ledger only (no hook takes EVENT)" / "ledger only
 * (webhook NAME is gone)". Shows hooks by name and host only. */
void nw_alerter_describe(const nw_alerter *a, const char *event, char *buf,
                         size_t len);

/* Gives the queues up to the config's drain_timeout to empty, then stops
 * the workers (what is left, the transfer in flight included, becomes
 * "abandoned"; an interrupted transfer ends within about a second) and
 * passes every outcome not yet taken to fn (borrowed; fn may be NULL)
 * before freeing everything. */
void nw_alerter_stop(nw_alerter *a, void (*fn)(void *user, json_t *outcome),
                     void *user);

#endif
