/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ceiling: a bare GDBus emitter of ServerDataIn-shaped signals.
 *
 *   sb-bench-emit ADDRESS COUNT SIZE
 *
 * Owns io.github.Sockbridge1 on the bus at ADDRESS (so a subscriber that
 * matches on the daemon's name sees these signals exactly as it sees the
 * daemon's), prints "ready", waits for a line on stdin, then emits COUNT
 * signals ServerDataIn(u, ay, s, q, s) from /io/github/Sockbridge1 with
 * SIZE-byte frames, built the way sockbridged builds them, as fast as
 * GDBus takes them. It prints "done" once everything reached the bus and
 * exits at end of input, so the caller can read its CPU time first. */
#define G_LOG_DOMAIN "sb-bench"

#include <gio/gio.h>

#include "sb-bench-util.h"

#define DBUS_NAME_FLAG_DO_NOT_QUEUE       4
#define DBUS_REQUEST_NAME_REPLY_PRIMARY   1

static void
own_name (GDBusConnection *connection)
{
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) error = NULL;
  guint32 result = 0;

  reply = g_dbus_connection_call_sync (connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "RequestName",
                                       g_variant_new ("(su)", SB_BENCH_BUS_NAME,
                                                      DBUS_NAME_FLAG_DO_NOT_QUEUE),
                                       G_VARIANT_TYPE ("(u)"), G_DBUS_CALL_FLAGS_NONE, -1,
                                       NULL, &error);
  if (reply == NULL)
    sb_bench_die ("RequestName", error->message);
  g_variant_get (reply, "(u)", &result);
  if (result != DBUS_REQUEST_NAME_REPLY_PRIMARY)
    sb_bench_die ("RequestName", "the name " SB_BENCH_BUS_NAME " is taken");
}

static void
wait_line (void)
{
  char line[64];

  if (fgets (line, sizeof line, stdin) == NULL)
    exit (0);
}

/* The same construction as the daemon's on_client_data(). */
static void
emit_frame (GDBusConnection *connection,
            const guint8    *frame,
            gsize            size,
            guint32          handle)
{
  GVariant *bytes = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, frame, size, 1);
  g_autoptr(GError) error = NULL;

  if (!g_dbus_connection_emit_signal (connection, NULL, SB_BENCH_OBJECT_PATH,
                                      SB_BENCH_INTERFACE, "ServerDataIn",
                                      g_variant_new ("(u@aysqs)", handle, bytes,
                                                     SB_BENCH_ADDRESS, (guint16) 40000,
                                                     SB_BENCH_IDENTIFIER),
                                      &error))
    sb_bench_die ("emit", error->message);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GDBusConnection) connection = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *frame = NULL;
  guint64 count;
  gsize size;

  if (argc != 4)
    sb_bench_die ("usage", "sb-bench-emit ADDRESS COUNT SIZE");
  count = sb_bench_parse_uint (argv[2], "COUNT");
  size = sb_bench_parse_uint (argv[3], "SIZE");
  frame = sb_bench_make_frame (size);

  connection = g_dbus_connection_new_for_address_sync (
      argv[1],
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
      G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &error);
  if (connection == NULL)
    sb_bench_die ("connect", error->message);
  own_name (connection);

  printf ("ready\n");
  fflush (stdout);
  wait_line ();

  for (guint64 i = 0; i < count; i++)
    emit_frame (connection, frame, size, (guint32) (i % 10) + 1);
  if (!g_dbus_connection_flush_sync (connection, NULL, &error))
    sb_bench_die ("flush", error->message);

  printf ("done\n");
  fflush (stdout);
  wait_line ();
  return 0;
}
