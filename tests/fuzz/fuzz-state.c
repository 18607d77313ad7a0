/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the state file parser must refuse or read any input
 * without crashing, and what it reads must survive a write and a read. */
#include <gio/gio.h>

#include "sb-state.h"

int LLVMFuzzerTestOneInput (const guint8 *data, gsize size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        gsize         size)
{
  g_autoptr(GPtrArray) configs = NULL;
  g_autoptr(GPtrArray) again = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *text_again = NULL;
  gsize len;

  configs = sb_state_parse ((const char *) data, size, &error);
  if (configs == NULL) {
    g_assert_true (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA));
    return 0;
  }
  text = sb_state_serialize (configs, &len);
  again = sb_state_parse (text, len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (again->len, ==, configs->len);
  text_again = sb_state_serialize (again, &len);
  g_assert_cmpstr (text, ==, text_again);
  return 0;
}
