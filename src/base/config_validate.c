/* config_validate.c — the checks of a whole config: every key's own range
 * again (recovery edits settings in code, past the parser), then the checks
 * between keys, one function per section. Every problem is reported, one
 * per line, like the INI reader's errors. */
#include <stdarg.h>
#include <stdio.h>

#include "base/config.h"
#include "base/error.h"
#include "base/keytable.h"
#include "base/strbuf.h"

/* One line per problem; n counts them. */
typedef struct {
  nw_strbuf out;
  int n;
} nw__cfg_problems;

static void nw__cfg_problem(nw__cfg_problems *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nw__cfg_problem(nw__cfg_problems *p, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  nw_strbuf_printf(&p->out, "%s%s", p->n ? "\n" : "", line);
  p->n++;
}

static void nw__cfg_check_model(const nw_config *cfg, nw__cfg_problems *p) {
  const nw_model_config *m = &cfg->model;
  if (m->n_embd % m->n_head)
    nw__cfg_problem(p,
                    "model.n_embd (%d) is not divisible by model.n_head (%d)",
                    m->n_embd, m->n_head);
}

static void nw__cfg_check_batch(const nw_config *cfg, nw__cfg_problems *p) {
  const nw_batch_config *b = &cfg->batch;
  int world = b->world > 0 ? b->world : 1;
  if (b->effective % ((long long)b->micro * world))
    nw__cfg_problem(p,
                    "batch.effective (%d) is not divisible by batch.micro (%d) "
                    "x world.size (%d)",
                    b->effective, b->micro, world);
}

static void nw__cfg_check_train(const nw_config *cfg, nw__cfg_problems *p) {
  const nw_train_config *t = &cfg->train;
  if (t->min_lr > t->lr)
    nw__cfg_problem(p, "train.min_lr (%g) is greater than train.lr (%g)",
                    t->min_lr, t->lr);
}

static void nw__cfg_check_data(const nw_config *cfg, nw__cfg_problems *p) {
  const nw_data_config *d = &cfg->data;
  const nw_model_config *m = &cfg->model;
  const char *src = nw_config_source_name(d->source);
  if (d->max_len > m->max_seq_len)
    nw__cfg_problem(p,
                    "data.max_len (%d) is greater than model.max_seq_len (%d)",
                    d->max_len, m->max_seq_len);
  if (d->source != NW_DATA_SYNTHETIC && !d->path[0])
    nw__cfg_problem(p, "data.path is required when data.source = %s", src);
  if (d->source != NW_DATA_SHARDS && m->vocab_size < 256)
    nw__cfg_problem(p,
                    "model.vocab_size (%d) must be at least 256 for "
                    "data.source = %s (byte tokens)",
                    m->vocab_size, src);
  if (d->source == NW_DATA_SYNTHETIC &&
      d->long_max_digits < d->short_max_digits)
    nw__cfg_problem(p,
                    "data.long_max_digits (%d) is less than "
                    "data.short_max_digits (%d)",
                    d->long_max_digits, d->short_max_digits);
}

static void nw__cfg_check_eval(const nw_config *cfg, nw__cfg_problems *p) {
  const nw_eval_config *e = &cfg->eval;
  if (e->every && e->generate && e->max_new_tokens >= cfg->model.max_seq_len)
    nw__cfg_problem(p,
                    "eval.max_new_tokens (%d) must be less than "
                    "model.max_seq_len (%d) to leave room for the prompt",
                    e->max_new_tokens, cfg->model.max_seq_len);
}

static void nw__cfg_check_alert(const nw_config *cfg, nw__cfg_problems *p) {
  char alert_err[256];
  if (nw_alert_validate(&cfg->alert, alert_err, sizeof alert_err) < 0)
    nw__cfg_problem(p, "%s", alert_err);
}

static void nw__cfg_check_device(const nw_config *cfg, nw__cfg_problems *p) {
  for (const char *c = cfg->device.name; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.')) {
      nw__cfg_problem(p,
                      "device.name (\"%.64s\") may hold only letters, digits, "
                      "'_', '-' and '.' (it names a shared-memory segment)",
                      cfg->device.name);
      return;
    }
  }
}

/* In the order their problems are listed. */
static void (*const nw__cfg_checks[])(const nw_config *, nw__cfg_problems *) = {
    nw__cfg_check_model,  nw__cfg_check_batch, nw__cfg_check_train,
    nw__cfg_check_data,   nw__cfg_check_eval,  nw__cfg_check_alert,
    nw__cfg_check_device,
};

int nw_config_validate(const nw_config *cfg, char *err, size_t errlen) {
  nw__cfg_problems p = {nw_strbuf_init(err, errlen), 0};
  nw_kt_check(nw_config_keytable(), cfg, &p.out, &p.n);
  if (p.n)
    return NW_ECONFIG; /* the checks below assume sane ranges */
  for (size_t i = 0; i < sizeof nw__cfg_checks / sizeof nw__cfg_checks[0]; i++)
    nw__cfg_checks[i](cfg, &p);
  return p.n ? NW_ECONFIG : 0;
}
