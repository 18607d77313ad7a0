/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-source.h"

static gboolean
deadline_dispatch (GSource     *source,
                   GSourceFunc  callback,
                   gpointer     user_data)
{
  return callback (user_data);
}

static GSourceFuncs deadline_funcs = { .dispatch = deadline_dispatch };

GSource *
sb_deadline_source_new (gint64        ready_time,
                        GSourceFunc   func,
                        gpointer      user_data,
                        GMainContext *context)
{
  GSource *source = g_source_new (&deadline_funcs, sizeof (GSource));

  g_source_set_callback (source, func, user_data, NULL);
  g_source_set_ready_time (source, ready_time);
  g_source_attach (source, context);
  return source;
}

void
sb_clear_source (GSource **source)
{
  if (*source == NULL)
    return;
  g_source_destroy (*source);
  g_clear_pointer (source, g_source_unref);
}
