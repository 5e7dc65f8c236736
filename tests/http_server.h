/* http_server.h — a real HTTP/1.1 server for tests, on 127.0.0.1 at an
 * ephemeral port, in its own thread (one more per connection). It records
 * every request and answers each from a script, so a test can play a
 * receiver that fails, throttles, hangs or hangs up.
 * defines: nw_test_http, nw_test_http_reply, nw_test_http_request,
 *          nw_test_http_start, nw_test_http_port, nw_test_http_script,
 *          nw_test_http_count, nw_test_http_wait, nw_test_http_get,
 *          nw_test_http_header, nw_test_http_stop, nw_test_closed_port
 *
 * Connections are kept alive (HTTP/1.1) unless a reply says otherwise. */
#ifndef NW_TEST_HTTP_SERVER_H
#define NW_TEST_HTTP_SERVER_H

#include <stddef.h>

typedef enum {
  NW_TEST_HTTP_ANSWER = 0, /* status, headers, body */
  NW_TEST_HTTP_NEVER,      /* hold the connection open until stop */
  NW_TEST_HTTP_CLOSE,      /* close the connection without an answer */
} nw_test_http_mode;

typedef struct {
  int status;          /* 0: 200 */
  const char *headers; /* extra lines, each ending "\r\n"; NULL: none */
  const char *body;    /* NULL: "ok" */
  double delay;        /* seconds before answering */
  nw_test_http_mode mode;
} nw_test_http_reply;

#define NW_TEST_HTTP_MAX_REQUESTS 64

typedef struct {
  char method[16];
  char path[2048];    /* with the query */
  char headers[8192]; /* the raw header lines, "Name: value\r\n" each */
  char *body;         /* body_len bytes and a NUL */
  size_t body_len;
  double t; /* nw_test_now() when it was read in full */
} nw_test_http_request;

typedef struct nw_test_http nw_test_http;

/* Listens on 127.0.0.1:0. Aborts the test process when it cannot. */
nw_test_http *nw_test_http_start(void);
int nw_test_http_port(const nw_test_http *s);

/* The i-th request from now on (0-based, in arrival order) gets
 * replies[i]; requests beyond n get replies[n - 1], or 200 "ok" when n is
 * 0. replies is copied (its strings are borrowed: keep them alive). */
void nw_test_http_script(nw_test_http *s, const nw_test_http_reply *replies,
                         int n);

int nw_test_http_count(nw_test_http *s);
/* Waits until count >= n or timeout seconds pass; returns the count. */
int nw_test_http_wait(nw_test_http *s, int n, double timeout);
/* Request i, or NULL; valid until nw_test_http_stop. */
const nw_test_http_request *nw_test_http_get(nw_test_http *s, int i);
/* The value of header name (case-insensitive) into buf; NULL if absent. */
const char *nw_test_http_header(const nw_test_http_request *r, const char *name,
                                char *buf, size_t len);

/* Closes every connection, joins every thread, frees everything. */
void nw_test_http_stop(nw_test_http *s);

/* A port on 127.0.0.1 that was bound a moment ago and is closed now:
 * connecting to it is refused. */
int nw_test_closed_port(void);

#endif
