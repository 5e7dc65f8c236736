/* alert_payload.h — the body of a webhook message, per format, from a
 * ledger entry (docs/supervisor.md lists the entries' fields).
 * defines: nw_alert_payload, nw_alert_text, NW_ALERT_SCHEMA,
 *          NW_DISCORD_CONTENT_MAX
 *
 *   slack    {"text": "<one or two mrkdwn lines>"}
 *   discord  {"content": "<the same, at most 2000 characters>",
 *             "username": "nightwatch", "allowed_mentions": {"parse": []}}
 *   json     the entry with every field, plus "source": "nightwatch",
 *            "host": HOST, "schema": NW_ALERT_SCHEMA
 *
 * The text reads like a pager line: run, host, event, cause, what was done,
 * the step. Nothing here knows about URLs or secrets. */
#ifndef NW_ALERT_PAYLOAD_H
#define NW_ALERT_PAYLOAD_H

#include <stddef.h>

#include <jansson.h>

#define NW_ALERT_SCHEMA 1
/* Discord refuses a "content" longer than 2000 characters; counted in
 * bytes here, which is never fewer than Discord's count. */
#define NW_DISCORD_CONTENT_MAX 2000
/* Slack shows about 4000 characters of "text" and truncates the rest. */
#define NW_SLACK_TEXT_MAX 3500

/* The body for format (nw_alert_format) as a malloc'd NUL-terminated JSON
 * text (free it), or NULL when out of memory or the format is unknown.
 * entry is borrowed; host is this machine's name; run_id stands in for an
 * entry without "run_id". */
char *nw_alert_payload(int format, const json_t *entry, const char *host,
                       const char *run_id);

/* The human text of the slack and discord formats, into buf (always NUL
 * terminated; cut at a UTF-8 character boundary, on a space when one is
 * near, with "…" when it does not fit). format picks the markup: Slack's
 * *bold* and &amp;-escapes, or Discord's **bold**. */
void nw_alert_text(int format, const json_t *entry, const char *host,
                   const char *run_id, char *buf, size_t len);

#endif
