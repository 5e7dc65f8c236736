/* strbuf.h — text appended to a caller's fixed buffer, snprintf-style: the
 * length keeps counting past the end, so one pass with a NULL buffer tells
 * the size a second pass needs. Plus the two formatters every file writer
 * shares: a double that reads back exactly, and input echoed into a message
 * with its control bytes escaped.
 * defines: nw_strbuf, nw_strbuf_init, nw_strbuf_at, nw_strbuf_printf,
 *          nw_strbuf_vprintf, nw_strbuf_double, nw_strbuf_escape,
 *          nw_strbuf_quote */
#ifndef NW_STRBUF_H
#define NW_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
  char *buf;  /* may be NULL when cap is 0 */
  size_t cap; /* bytes of buf, the NUL included */
  size_t len; /* bytes wanted so far, without the NUL; may exceed cap - 1 */
} nw_strbuf;

/* An empty text in buf (buf[0] = '\0' when cap > 0). */
nw_strbuf nw_strbuf_init(char *buf, size_t cap);

/* Appending to the NUL-terminated text already in buf. */
nw_strbuf nw_strbuf_at(char *buf, size_t cap);

void nw_strbuf_printf(nw_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void nw_strbuf_vprintf(nw_strbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* The shortest text that strtod reads back as exactly x; whole numbers
 * below 1e15 plainly ("3600", not "3.6e+03"). */
void nw_strbuf_double(nw_strbuf *b, double x);

/* At most max bytes of s, each byte below 0x20 (tab excepted) or 0x7f as
 * \xNN: input echoed into a message can then not move a terminal's cursor
 * or recolour it. */
void nw_strbuf_escape(nw_strbuf *b, const char *s, size_t max);

/* q, s escaped and cut at max bytes ("..." after a cut), q. */
void nw_strbuf_quote(nw_strbuf *b, char q, const char *s, size_t max);

#endif
