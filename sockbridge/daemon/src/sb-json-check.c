/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-json-check.h"

/* json-glib 1.6 reads more than JSON (block comments, single quotes, hex
 * and octal numbers, unknown escapes, a second value after the first),
 * cuts strings at \u0000 and wraps negative integers past 64 bits into
 * range: misreads no check of the parsed values can see (octal 05000 is
 * port 2560). It also recurses once per level of nesting and overflows
 * its stack. So a strict RFC 8259 syntax check runs first, and json-glib
 * only ever sees JSON it reads exactly, nested at most
 * SB_JSON_MAX_DEPTH deep. tests/test-state.c (/state/json-glib/) shows
 * each case. */
#define SB_JSON_MAX_DEPTH          32
/* Every integer the file holds fits in 32 bits; 18 digits always fit in
 * json-glib's gint64. */
#define SB_JSON_MAX_INTEGER_DIGITS 18

typedef struct
{
  const char *p;
  const char *end;
  const char *problem;
} SbJsonCheck;

typedef gboolean (*SbJsonCheckFunc) (SbJsonCheck *c,
                                     guint        depth);

static gboolean
fail (SbJsonCheck *c,
      const char  *problem)
{
  c->problem = c->p == c->end ? "unexpected end of data" : problem;
  return FALSE;
}

static void
skip_space (SbJsonCheck *c)
{
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static gboolean
at (SbJsonCheck *c,
    char         ch)
{
  return c->p < c->end && *c->p == ch;
}

static gboolean
expect (SbJsonCheck *c,
        char         ch,
        const char  *problem)
{
  skip_space (c);
  if (!at (c, ch))
    return fail (c, problem);
  c->p++;
  return TRUE;
}

static gboolean
check_literal (SbJsonCheck *c,
               const char  *word)
{
  gsize len = strlen (word);

  if ((gsize) (c->end - c->p) < len || memcmp (c->p, word, len) != 0)
    return fail (c, "expected a value");
  c->p += len;
  return TRUE;
}

static gsize
skip_digits (SbJsonCheck *c)
{
  const char *start = c->p;

  while (c->p < c->end && g_ascii_isdigit (*c->p))
    c->p++;
  return (gsize) (c->p - start);
}

static gboolean
check_number (SbJsonCheck *c)
{
  gboolean integer = TRUE;
  gsize digits;

  if (at (c, '-'))
    c->p++;
  if (at (c, '0')) {
    c->p++;
    digits = 1;
  } else if ((digits = skip_digits (c)) == 0) {
    return fail (c, "expected a value");
  }
  if (at (c, '.')) {
    c->p++;
    integer = FALSE;
    if (skip_digits (c) == 0)
      return fail (c, "expected a digit");
  }
  if (at (c, 'e') || at (c, 'E')) {
    c->p++;
    integer = FALSE;
    if (at (c, '+') || at (c, '-'))
      c->p++;
    if (skip_digits (c) == 0)
      return fail (c, "expected a digit");
  }
  if (integer && digits > SB_JSON_MAX_INTEGER_DIGITS)
    return fail (c, "integer too large");
  return TRUE;
}

static gboolean
read_hex4 (SbJsonCheck *c,
           guint       *out)
{
  guint value = 0;

  if (c->end - c->p < 4)
    return fail (c, "expected four hex digits");
  for (guint i = 0; i < 4; i++) {
    int digit = g_ascii_xdigit_value (c->p[i]);

    if (digit < 0)
      return fail (c, "expected four hex digits");
    value = value << 4 | (guint) digit;
  }
  c->p += 4;
  *out = value;
  return TRUE;
}

/* \u0000 would cut the string short in json-glib, and a lone surrogate is
 * no character at all. */
static gboolean
check_unicode_escape (SbJsonCheck *c)
{
  guint unit, low;

  if (!read_hex4 (c, &unit))
    return FALSE;
  if (unit == 0)
    return fail (c, "\\u0000 is not allowed");
  if (unit < 0xd800 || unit > 0xdfff)
    return TRUE;
  if (unit >= 0xdc00 || c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
    return fail (c, "unpaired surrogate");
  c->p += 2;
  if (!read_hex4 (c, &low))
    return FALSE;
  if (low < 0xdc00 || low > 0xdfff)
    return fail (c, "unpaired surrogate");
  return TRUE;
}

static gboolean
check_escape (SbJsonCheck *c)
{
  if (c->p == c->end)
    return fail (c, "unterminated string");
  switch (*c->p++) {
  case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
    return TRUE;
  case 'u':
    return check_unicode_escape (c);
  default:
    c->p--;
    return fail (c, "invalid escape");
  }
}

static gboolean
check_string (SbJsonCheck *c)
{
  c->p++;
  while (c->p < c->end) {
    char ch = *c->p++;

    if (ch == '"')
      return TRUE;
    if ((guchar) ch < 0x20) {
      c->p--;
      return fail (c, "control character in a string");
    }
    if (ch == '\\' && !check_escape (c))
      return FALSE;
  }
  return fail (c, "unterminated string");
}

static gboolean check_value (SbJsonCheck *c,
                             guint        depth);

static gboolean
check_member (SbJsonCheck *c,
              guint        depth)
{
  skip_space (c);
  if (!at (c, '"'))
    return fail (c, "expected a member name");
  return check_string (c) &&
         expect (c, ':', "expected ':'") &&
         check_value (c, depth);
}

static gboolean
check_container (SbJsonCheck     *c,
                 guint            depth,
                 char             close,
                 SbJsonCheckFunc  check_item)
{
  if (depth >= SB_JSON_MAX_DEPTH)
    return fail (c, "nested too deeply");
  c->p++;
  skip_space (c);
  if (at (c, close)) {
    c->p++;
    return TRUE;
  }
  for (;;) {
    if (!check_item (c, depth + 1))
      return FALSE;
    skip_space (c);
    if (!at (c, ','))
      return expect (c, close, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    c->p++;
  }
}

static gboolean
check_value (SbJsonCheck *c,
             guint        depth)
{
  skip_space (c);
  if (c->p == c->end)
    return fail (c, "expected a value");
  switch (*c->p) {
  case '{':
    return check_container (c, depth, '}', check_member);
  case '[':
    return check_container (c, depth, ']', check_value);
  case '"':
    return check_string (c);
  case 't':
    return check_literal (c, "true");
  case 'f':
    return check_literal (c, "false");
  case 'n':
    return check_literal (c, "null");
  default:
    return check_number (c);
  }
}

gboolean
sb_json_check (const char  *data,
               gsize        len,
               GError     **error)
{
  SbJsonCheck c = { data, data + len, NULL };
  guint line = 1;
  const char *line_start = data;

  if (check_value (&c, 0)) {
    skip_space (&c);
    if (c.p == c.end)
      return TRUE;
    fail (&c, "more data after the JSON value");
  }
  for (const char *p = data; p < c.p; p++) {
    if (*p == '\n') {
      line++;
      line_start = p + 1;
    }
  }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
               "not valid JSON: line %u, column %u: %s",
               line, (guint) (c.p - line_start) + 1, c.problem);
  return FALSE;
}
