/* ini.h — a small INI reader that reports the line of every key and of every
 * error, and keeps going after an error so that a checker can list them all.
 * defines: nw_ini_handler, nw_ini_error_sink, nw_ini_callbacks, nw_ini_errs,
 *          nw_ini_errs_init, nw_ini_errs_add, nw_ini_parse_buffer,
 *          nw_ini_parse_path, nw_ini_parse_string, nw_ini_parse_file,
 *          nw_ini_parse_string_cb, nw_ini_parse_file_cb
 *
 * Syntax, one construct per line:
 *   [section]            names: letters, digits, '_', '-', '.'
 *   key = value          key: same characters; value trimmed of whitespace
 *   key = "value"        quoted: keeps whitespace, '#' and ';'; escapes \" \\
 *   # comment / ; comment
 *   key = value  # note  a '#' or ';' after whitespace starts a comment
 * Blank lines are skipped; CRLF and a UTF-8 byte-order mark are accepted.
 *
 * Errors (each "NAME:LINE: message"): a header without ']', text after ']',
 * a line with no '=', an empty key, a key outside any section, a bad
 * character in a name, an unterminated quote, and a key given twice in one
 * section (the message names both lines). A section may be opened more than
 * once; its keys are then one set for the duplicate check.
 *
 * Text from the file echoed into a message has its control bytes escaped
 * (\xNN).
 *
 * Why not libinih: its handler gets no line number, and errors must name
 * FILE:LINE for every problem in a file, not only the first. */
#ifndef NW_INI_H
#define NW_INI_H

#include <stddef.h>

/* Called once per key in file order. section, key and value are
 * NUL-terminated and valid only during the call. Return 0 to accept; write a
 * reason into err (errlen bytes, e.g. "model.n_layer: 0 is out of range") and
 * return a positive value to record "NAME:LINE: reason" and go on; return a
 * negative NW_E* code to record it and stop parsing with that code. */
typedef int (*nw_ini_handler)(void *user, const char *section, const char *key,
                              const char *value, int line, char *err,
                              size_t errlen);

/* Receives each error as it is found: name is the file name (or the name
 * given to the string parser), msg is the message without the "NAME:LINE: "
 * prefix. For callers that list more errors than fit in one buffer. */
typedef void (*nw_ini_error_sink)(void *user, const char *name, int line,
                                  const char *msg);

typedef struct {
  nw_ini_handler handler;     /* may be NULL: syntax check only */
  nw_ini_error_sink on_error; /* may be NULL */
  void *user;                 /* passed to both */
} nw_ini_callbacks;

/* The errors of one parse (or of a parse and the checks after it): each
 * goes to the sink, and as a "NAME:LINE: message" line ("NAME: message" for
 * line 0) into buf, '\n' between lines, none after the last. The first
 * error is always written, cut if it must be; later ones only whole, and
 * when one does not fit, a last line says how many were left out. */
typedef struct {
  nw_ini_error_sink sink; /* may be NULL */
  void *user;
  char *buf; /* may be NULL when len is 0 */
  size_t len;
  size_t used; /* bytes of buf in use, without the NUL */
  int count;   /* errors added */
  int dropped; /* errors that did not fit into buf */
} nw_ini_errs;

void nw_ini_errs_init(nw_ini_errs *e, char *buf, size_t len,
                      nw_ini_error_sink sink, void *user);
void nw_ini_errs_add(nw_ini_errs *e, const char *name, int line,
                     const char *msg);

/* Parses len bytes of text (need not be NUL-terminated), naming it name in
 * messages; every error goes to errs. Returns the number of errors in this
 * text (0: clean), or a negative NW_E* code: NW_EHOSTMEM, or the code a
 * handler returned to stop. h may be NULL: a syntax check. */
int nw_ini_parse_buffer(const char *name, const char *text, size_t len,
                        nw_ini_handler h, void *user, nw_ini_errs *errs);

/* Reads the whole file, then parses it as above with path as the name. An
 * unreadable file returns NW_EIO (or NW_ENOTFOUND when it does not exist)
 * with "PATH: reason" as an error of line 0. */
int nw_ini_parse_path(const char *path, nw_ini_handler h, void *user,
                      nw_ini_errs *errs);

/* The same with the errors into a buffer err of errlen bytes (may be NULL
 * when errlen is 0), text NUL-terminated. */
int nw_ini_parse_string(const char *name, const char *text, nw_ini_handler h,
                        void *user, char *err, size_t errlen);
int nw_ini_parse_file(const char *path, nw_ini_handler h, void *user, char *err,
                      size_t errlen);

/* The same two with an error sink as well as the buffer. */
int nw_ini_parse_string_cb(const char *name, const char *text,
                           const nw_ini_callbacks *cb, char *err,
                           size_t errlen);
int nw_ini_parse_file_cb(const char *path, const nw_ini_callbacks *cb,
                         char *err, size_t errlen);

#endif
