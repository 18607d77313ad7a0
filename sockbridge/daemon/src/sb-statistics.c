/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-statistics.h"

SbStatistics sb_statistics;

void
sb_statistics_count (guint64    *counter,
                     const char *format,
                     ...)
{
  g_autofree char *message = NULL;
  guint64 count = ++*counter;
  va_list args;

  if ((count & (count - 1)) != 0)
    return;
  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_message ("%s (%" G_GUINT64_FORMAT " so far)", message, count);
}
