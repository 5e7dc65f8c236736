/* http_server.c — the test HTTP/1.1 server: an acceptor thread and one
 * thread per connection, all woken for stop by one pipe that becomes
 * readable (never read from, so every poll sees it). */
#define _GNU_SOURCE
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#define NW_TEST_HTTP_MAX_CONNS 64
#define NW_TEST_HTTP_MAX_SCRIPT 32

struct nw_test_http {
  int lfd, port;
  int wake[2];
  pthread_t acceptor;
  pthread_mutex_t mu;
  nw_test_http_reply script[NW_TEST_HTTP_MAX_SCRIPT];
  int n_script;
  int script_base; /* requests before the script was set: not counted */
  nw_test_http_request *reqs[NW_TEST_HTTP_MAX_REQUESTS];
  int n_reqs; /* also the index of the next request */
  pthread_t conns[NW_TEST_HTTP_MAX_CONNS];
  int n_conns;
};

typedef struct {
  nw_test_http *s;
  int fd;
} nw__conn;

static void nw__die(const char *what) {
  fprintf(stderr, "http_server: %s: %s\n", what, strerror(errno));
  abort();
}

/* 1: fd is readable; 0: stop began (or timeout seconds passed, < 0: no
 * timeout). */
static int nw__wait(nw_test_http *s, int fd, double timeout) {
  struct pollfd p[2] = {{s->wake[0], POLLIN, 0}, {fd, POLLIN, 0}};
  for (;;) {
    int r = poll(p, fd >= 0 ? 2 : 1, timeout < 0 ? -1 : (int)(timeout * 1000));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0 || p[0].revents)
      return 0;
    return (p[1].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
  }
}

static int nw__write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static const char *nw__reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 410:
    return "Gone";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  }
  return "Status";
}

const char *nw_test_http_header(const nw_test_http_request *r, const char *name,
                                char *buf, size_t len) {
  size_t nl = strlen(name);
  for (const char *p = r->headers; *p;) {
    const char *eol = strstr(p, "\r\n");
    size_t n = eol ? (size_t)(eol - p) : strlen(p);
    if (n > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      snprintf(buf, len, "%.*s", (int)(p + n - v), v);
      return buf;
    }
    p += n + (eol ? 2 : 0);
  }
  return NULL;
}

/* A connection's bytes received and not yet taken. */
typedef struct {
  char *buf;
  size_t cap, len;
} nw__rbuf;

/* Receives more into b (growing it to hold want bytes); 0, or -1 at stop,
 * end of stream or error. */
static int nw__recv_more(nw_test_http *s, int fd, nw__rbuf *b, size_t want) {
  if (want > b->cap) {
    b->cap = want;
    if (!(b->buf = realloc(b->buf, b->cap)))
      nw__die("realloc");
  }
  if (!nw__wait(s, fd, -1))
    return -1;
  ssize_t r = recv(fd, b->buf + b->len, b->cap - b->len, 0);
  if (r <= 0)
    return -1;
  b->len += (size_t)r;
  return 0;
}

/* The next request of the connection (its bytes taken from b), or NULL at
 * stop or when the client is gone. */
static nw_test_http_request *nw__read_request(nw_test_http *s, int fd,
                                              nw__rbuf *b) {
  char *end; /* the request line and headers */
  while (!(end = memmem(b->buf, b->len, "\r\n\r\n", 4)))
    if (nw__recv_more(s, fd, b, b->len + 4096 > b->cap ? b->cap * 2 : 0) < 0)
      return NULL;
  nw_test_http_request *q = calloc(1, sizeof *q);
  if (!q)
    nw__die("calloc");
  size_t hlen = (size_t)(end - b->buf) + 4;
  const char *line_end = memmem(b->buf, hlen, "\r\n", 2);
  sscanf(b->buf, "%15s %2047s", q->method, q->path);
  size_t hstart = (size_t)(line_end - b->buf) + 2;
  snprintf(q->headers, sizeof q->headers, "%.*s", (int)(hlen - 2 - hstart),
           b->buf + hstart);
  char v[64];
  size_t clen = 0;
  if (nw_test_http_header(q, "Content-Length", v, sizeof v))
    clen = strtoul(v, NULL, 10);
  if (nw_test_http_header(q, "Expect", v, sizeof v) &&
      strcasecmp(v, "100-continue") == 0 &&
      nw__write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0) {
    free(q);
    return NULL;
  }
  while (b->len < hlen + clen) /* the body */
    if (nw__recv_more(s, fd, b, hlen + clen) < 0) {
      free(q);
      return NULL;
    }
  if (!(q->body = malloc(clen + 1)))
    nw__die("malloc");
  memcpy(q->body, b->buf + hlen, clen);
  q->body[clen] = 0;
  q->body_len = clen;
  q->t = nw_test_now();
  memmove(b->buf, b->buf + hlen + clen, b->len - hlen - clen);
  b->len -= hlen + clen;
  return q;
}

/* Keeps q in the record (or frees it, beyond the record's size) and
 * returns the scripted reply of its index. */
static nw_test_http_reply nw__record(nw_test_http *s, nw_test_http_request *q) {
  nw_test_http_reply rep = {0};
  pthread_mutex_lock(&s->mu);
  int i = s->n_reqs;
  if (i < NW_TEST_HTTP_MAX_REQUESTS) {
    s->reqs[i] = q;
    s->n_reqs++;
    q = NULL;
  }
  int k = i - s->script_base;
  if (s->n_script > 0)
    rep = s->script[k < s->n_script ? k : s->n_script - 1];
  pthread_mutex_unlock(&s->mu);
  if (q) { /* beyond the record's size: answered, not kept */
    free(q->body);
    free(q);
  }
  return rep;
}

/* Answers as rep says: 0 to go on with the connection, -1 to close it. */
static int nw__answer(nw_test_http *s, int fd, const nw_test_http_reply *rep) {
  if (rep->delay > 0)
    nw__wait(s, -1, rep->delay); /* ends early at stop */
  struct pollfd stop = {s->wake[0], POLLIN, 0};
  if (poll(&stop, 1, 0) > 0 || rep->mode == NW_TEST_HTTP_CLOSE)
    return -1;
  if (rep->mode == NW_TEST_HTTP_NEVER) {
    /* until stop, or until the client gives up and hangs up */
    while (nw__wait(s, fd, -1)) {
      char junk[512];
      if (recv(fd, junk, sizeof junk, 0) <= 0)
        break;
    }
    return -1;
  }
  int status = rep->status ? rep->status : 200;
  const char *body = rep->body ? rep->body : "ok";
  char head[1024];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\n%s\r\n",
                   status, nw__reason(status), strlen(body),
                   rep->headers ? rep->headers : "");
  if (nw__write_all(fd, head, (size_t)n) < 0 ||
      nw__write_all(fd, body, strlen(body)) < 0)
    return -1;
  return 0;
}

static void *nw__conn_main(void *arg) {
  nw__conn c = *(nw__conn *)arg;
  free(arg);
  nw__rbuf b = {malloc(16384), 16384, 0};
  if (!b.buf)
    nw__die("malloc");
  for (;;) {
    nw_test_http_request *q = nw__read_request(c.s, c.fd, &b);
    if (!q)
      break;
    nw_test_http_reply rep = nw__record(c.s, q);
    if (nw__answer(c.s, c.fd, &rep) < 0)
      break;
  }
  free(b.buf);
  close(c.fd);
  return NULL;
}

static void *nw__accept_main(void *arg) {
  nw_test_http *s = arg;
  while (nw__wait(s, s->lfd, -1)) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    pthread_mutex_lock(&s->mu);
    int full = s->n_conns == NW_TEST_HTTP_MAX_CONNS;
    nw__conn *c = full ? NULL : malloc(sizeof *c);
    if (c) {
      *c = (nw__conn){s, fd};
      if (pthread_create(&s->conns[s->n_conns], NULL, nw__conn_main, c) == 0)
        s->n_conns++;
      else {
        free(c);
        c = NULL;
      }
    }
    pthread_mutex_unlock(&s->mu);
    if (!c)
      close(fd);
  }
  return NULL;
}

nw_test_http *nw_test_http_start(void) {
  nw_test_http *s = calloc(1, sizeof *s);
  if (!s)
    nw__die("calloc");
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(s->lfd, 64) < 0 ||
      getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0)
    nw__die("listen on 127.0.0.1");
  s->port = ntohs(sa.sin_port);
  if (pipe2(s->wake, O_CLOEXEC) < 0)
    nw__die("pipe2");
  pthread_mutex_init(&s->mu, NULL);
  if (pthread_create(&s->acceptor, NULL, nw__accept_main, s) != 0)
    nw__die("pthread_create");
  return s;
}

int nw_test_http_port(const nw_test_http *s) { return s->port; }

void nw_test_http_script(nw_test_http *s, const nw_test_http_reply *replies,
                         int n) {
  if (n > NW_TEST_HTTP_MAX_SCRIPT)
    n = NW_TEST_HTTP_MAX_SCRIPT;
  pthread_mutex_lock(&s->mu);
  memcpy(s->script, replies, (size_t)n * sizeof *replies);
  s->n_script = n;
  s->script_base = s->n_reqs;
  pthread_mutex_unlock(&s->mu);
}

int nw_test_http_count(nw_test_http *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->n_reqs;
  pthread_mutex_unlock(&s->mu);
  return n;
}

int nw_test_http_wait(nw_test_http *s, int n, double timeout) {
  double end = nw_test_now() + timeout;
  pthread_mutex_lock(&s->mu);
  while (s->n_reqs < n && nw_test_now() < end) {
    /* polled: a test waits for a few requests, a few times */
    pthread_mutex_unlock(&s->mu);
    nw_test_sleep(0.005);
    pthread_mutex_lock(&s->mu);
  }
  int got = s->n_reqs;
  pthread_mutex_unlock(&s->mu);
  return got;
}

const nw_test_http_request *nw_test_http_get(nw_test_http *s, int i) {
  pthread_mutex_lock(&s->mu);
  const nw_test_http_request *r = i >= 0 && i < s->n_reqs ? s->reqs[i] : NULL;
  pthread_mutex_unlock(&s->mu);
  return r;
}

void nw_test_http_stop(nw_test_http *s) {
  if (!s)
    return;
  if (write(s->wake[1], "x", 1) != 1)
    nw__die("write wake pipe");
  pthread_join(s->acceptor, NULL);
  /* the acceptor is gone: the list of connections is final */
  for (int i = 0; i < s->n_conns; i++)
    pthread_join(s->conns[i], NULL);
  for (int i = 0; i < s->n_reqs; i++) {
    free(s->reqs[i]->body);
    free(s->reqs[i]);
  }
  close(s->lfd);
  close(s->wake[0]);
  close(s->wake[1]);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int nw_test_closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
    nw__die("bind 127.0.0.1:0");
  close(fd); /* bound, never listened on: nothing accepts there */
  return ntohs(sa.sin_port);
}
