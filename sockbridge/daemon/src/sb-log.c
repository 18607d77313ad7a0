/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-log.h"

#include <string.h>

gboolean
sb_log_debug_enabled (void)
{
  return !g_log_writer_default_would_drop (G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN);
}

/* One byte as it would be written in C, in at most 4 characters. */
static void
escape_byte (guint8 byte,
             char   piece[5])
{
  static const char named[] = "\r\n\t\\\"";
  static const char letters[] = "rnt\\\"";
  const char *found = byte != 0 ? strchr (named, byte) : NULL;

  if (found != NULL)
    g_snprintf (piece, 5, "\\%c", letters[found - named]);
  else if (byte >= 0x20 && byte < 0x7f)
    g_snprintf (piece, 5, "%c", byte);
  else
    g_snprintf (piece, 5, "\\x%02x", byte);
}

static char *
escape_frame (const guint8 *data,
              gsize         len)
{
  GString *shown = g_string_sized_new (SB_LOG_FRAME_SHOWN + 5);
  gsize i;

  g_string_append_c (shown, '"');
  for (i = 0; i < len; i++) {
    char piece[5];

    escape_byte (data[i], piece);
    /* The opening quote is not shown text. */
    if (shown->len - 1 + strlen (piece) > SB_LOG_FRAME_SHOWN)
      break;
    g_string_append (shown, piece);
  }
  g_string_append_c (shown, '"');
  if (i < len)
    g_string_append (shown, "...");
  return g_string_free (shown, FALSE);
}

void
sb_log_frame (guint32       handle,
              const char   *direction,
              const guint8 *data,
              gsize         len)
{
  g_autofree char *shown = escape_frame (data, len);

  g_debug ("handle %u: frame %s, %" G_GSIZE_FORMAT " bytes: %s", handle, direction, len, shown);
}

void
sb_log_datagram (guint16       port,
                 const char   *destination,
                 const guint8 *data,
                 gsize         len)
{
  g_autofree char *shown = escape_frame (data, len);

  g_debug ("port %u/udp: datagram out to %s, %" G_GSIZE_FORMAT " bytes: %s",
           port, destination, len, shown);
}
