/* settings.c — the list of settings recovery may change, and what is
 * generated from it. */
#include "protocol/settings.h"

#include <stdio.h>

#include "base/error.h" // defines: NW_EDATA

const nw_setting_info nw_settings_table[NW_SETTING_COUNT] = {
#define NW_SETTING_INFO(id, key, env, report, ledger, type, value)             \
  {#id, key, env, report, ledger, type},
    NW_SETTINGS(NW_SETTING_INFO)
#undef NW_SETTING_INFO
};

void nw_settings_of(const nw_config *c, nw_settings *out) {
#define NW_SETTING_VALUE(id, key, env, report, ledger, type, value)            \
  out->id = (int)(value);
  NW_SETTINGS(NW_SETTING_VALUE)
#undef NW_SETTING_VALUE
}

json_t *nw_settings_json(const nw_settings *s, int report) {
  json_t *o = json_object();
  for (int i = 0; o && i < NW_SETTING_COUNT; i++) {
    const nw_setting_info *t = &nw_settings_table[i];
    json_t *v = t->type == NW_SETTING_BOOL ? json_boolean(s->v[i])
                                           : json_integer(s->v[i]);
    if (json_object_set_new(o, report ? t->report : t->ledger, v) < 0) {
      json_decref(o);
      return NULL;
    }
  }
  return o;
}

int nw_settings_from_json(json_t *o, nw_settings *out, char *err,
                          size_t errlen) {
  for (int i = 0; i < NW_SETTING_COUNT; i++) {
    const nw_setting_info *t = &nw_settings_table[i];
    json_t *v = json_object_get(o, t->report);
    if (t->type == NW_SETTING_BOOL && json_is_boolean(v)) {
      out->v[i] = json_is_true(v);
    } else if (t->type == NW_SETTING_INT && json_is_integer(v) &&
               json_integer_value(v) >= 0 &&
               json_integer_value(v) <= 0x7fffffff) {
      out->v[i] = (int)json_integer_value(v);
    } else {
      snprintf(err, errlen, "field %s: %s", t->report,
               !v                           ? "missing"
               : t->type == NW_SETTING_BOOL ? "not true or false"
                                            : "not a non-negative integer");
      return NW_EDATA;
    }
  }
  return 0;
}

static void nw_settings_value(const nw_settings *s, int i, char *buf,
                              size_t len, int words) {
  if (nw_settings_table[i].type == NW_SETTING_BOOL && words)
    snprintf(buf, len, "%s", s->v[i] ? "true" : "false");
  else
    snprintf(buf, len, "%d", s->v[i]);
}

int nw_settings_args(const nw_settings *s, char (*buf)[NW_SETTING_TEXT_MAX],
                     int max) {
  int n = 0;
  for (int i = 0; i < NW_SETTING_COUNT && n < max; i++) {
    if (!nw_settings_table[i].key)
      continue;
    char v[32];
    nw_settings_value(s, i, v, sizeof v, 1);
    snprintf(buf[n++], NW_SETTING_TEXT_MAX, "%s=%s", nw_settings_table[i].key,
             v);
  }
  return n;
}

int nw_settings_env(const nw_settings *s, char (*buf)[NW_SETTING_TEXT_MAX],
                    int max) {
  int n = 0;
  for (int i = 0; i < NW_SETTING_COUNT && n < max; i++) {
    if (!nw_settings_table[i].env)
      continue;
    char v[32];
    nw_settings_value(s, i, v, sizeof v, 0);
    snprintf(buf[n++], NW_SETTING_TEXT_MAX, "%s=%s", nw_settings_table[i].env,
             v);
  }
  return n;
}
