/* strbuf.c — appending to a fixed buffer, exact doubles, escaped echoes. */
#include "base/strbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nw_strbuf nw_strbuf_init(char *buf, size_t cap) {
  if (buf && cap)
    buf[0] = '\0';
  return (nw_strbuf){buf, buf ? cap : 0, 0};
}

nw_strbuf nw_strbuf_at(char *buf, size_t cap) {
  size_t len = buf && cap ? strnlen(buf, cap - 1) : 0;
  return (nw_strbuf){buf, buf ? cap : 0, len};
}

void nw_strbuf_vprintf(nw_strbuf *b, const char *fmt, va_list ap) {
  char *dst = b->len < b->cap ? b->buf + b->len : NULL;
  size_t room = b->len < b->cap ? b->cap - b->len : 0;
  int n = vsnprintf(dst, room, fmt, ap);
  if (n > 0)
    b->len += (size_t)n;
}

void nw_strbuf_printf(nw_strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  nw_strbuf_vprintf(b, fmt, ap);
  va_end(ap);
}

void nw_strbuf_double(nw_strbuf *b, double x) {
  char num[40];
  if (x == floor(x) && fabs(x) < 1e15) {
    snprintf(num, sizeof num, "%.0f", x);
  } else {
    /* %.17g always reads back; most values need far fewer digits */
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(num, sizeof num, "%.*g", prec, x);
      if (strtod(num, NULL) == x)
        break;
    }
  }
  nw_strbuf_printf(b, "%s", num);
}

void nw_strbuf_escape(nw_strbuf *b, const char *s, size_t max) {
  for (size_t i = 0; i < max && s[i]; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      nw_strbuf_printf(b, "\\x%02x", c);
    else
      nw_strbuf_printf(b, "%c", c);
  }
}

void nw_strbuf_quote(nw_strbuf *b, char q, const char *s, size_t max) {
  nw_strbuf_printf(b, "%c", q);
  nw_strbuf_escape(b, s, max);
  nw_strbuf_printf(b, "%s%c", strlen(s) > max ? "..." : "", q);
}
