/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The C subscriber of the benchmarks: a plain GDBus client of the daemon.
 *
 *   sb-bench-sub ADDRESS count N [--progress FILE] [--idle-ms MS] [--timeout-s S]
 *   sb-bench-sub ADDRESS echo
 *   sb-bench-sub ADDRESS online N [--idle-ms MS] [--timeout-s S]
 *
 * It subscribes to io.github.Sockbridge1's signals and prints "ready" once
 * the bus has the match rule. Then:
 *   count:  counts frames, of ServerDataIn and of ServerDataInBatch
 *           signals, until N arrived (or none came for MS
 *           milliseconds once one did, or S seconds passed), prints
 *           "count=… bytes=… first_us=… last_us=…" and exits. With
 *           --progress, keeps the running count in FILE (a shared 64-bit
 *           counter a load generator may read to pace itself).
 *   echo:   answers every ServerDataIn with ServerSend(handle, data), until
 *           SIGTERM: the far end of the latency round trip.
 *   online: counts ServerConnectionStatusChanged ONLINE as count does
 *           ServerDataIn.
 * After its report it stays until stdin ends, so the caller can read its
 * CPU time. Times are CLOCK_MONOTONIC microseconds (g_get_monotonic_time()), the
 * clock of the load generator too. */
#define G_LOG_DOMAIN "sb-bench"

#include <gio/gio.h>
#include <glib-unix.h>
#include <unistd.h>

#include "sb-bench-util.h"

typedef enum {
  MODE_COUNT,
  MODE_ECHO,
  MODE_ONLINE,
} Mode;

typedef struct
{
  GMainLoop       *loop;
  GDBusConnection *connection;
  Mode             mode;
  guint64          target;
  guint64          count;
  guint64          counted_at_rearm;
  guint64          bytes;
  gint64           first_us;
  gint64           last_us;
  guint64         *progress;
  guint            idle_ms;
  guint            idle_id;
  guint            send_errors;
} Sub;

static void
finish (Sub *sub)
{
  g_main_loop_quit (sub->loop);
}

static gboolean
on_idle_timeout (gpointer user_data)
{
  Sub *sub = user_data;

  sub->idle_id = 0;
  finish (sub);
  return G_SOURCE_REMOVE;
}

static gboolean
on_timeout (gpointer user_data)
{
  finish (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
on_quit_signal (gpointer user_data)
{
  finish (user_data);
  return G_SOURCE_CONTINUE;
}

/* @n more events counted; re-arms the idle timer only every 1024 events,
 * which is plenty for a timeout of many milliseconds. */
static void
count_events (Sub     *sub,
              guint64  n,
              gsize    bytes)
{
  gint64 now = g_get_monotonic_time ();

  if (sub->count == 0)
    sub->first_us = now;
  sub->last_us = now;
  sub->count += n;
  sub->bytes += bytes;
  if (sub->progress != NULL)
    __atomic_store_n (sub->progress, sub->count, __ATOMIC_RELAXED);
  if (sub->idle_ms > 0 && (sub->idle_id == 0 || sub->count - sub->counted_at_rearm >= 1024)) {
    g_clear_handle_id (&sub->idle_id, g_source_remove);
    sub->idle_id = g_timeout_add (sub->idle_ms, on_idle_timeout, sub);
    sub->counted_at_rearm = sub->count;
  }
  if (sub->count >= sub->target)
    finish (sub);
}

static void
on_sent (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Sub *sub = user_data;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (reply == NULL && sub->send_errors++ == 0)
    g_printerr ("ServerSend: %s\n", error->message);
}

static void
echo (Sub      *sub,
      GVariant *parameters)
{
  guint32 handle = 0;
  GVariant *data = NULL;

  g_variant_get (parameters, "(u@aysqs)", &handle, &data, NULL, NULL, NULL);
  g_dbus_connection_call (sub->connection, SB_BENCH_BUS_NAME, SB_BENCH_OBJECT_PATH,
                          SB_BENCH_INTERFACE, "ServerSend",
                          g_variant_new ("(u@ay)", handle, data), NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, on_sent, sub);
  g_variant_unref (data);
}

static void
on_data_in (GDBusConnection *connection,
            const char      *sender_name,
            const char      *object_path,
            const char      *interface_name,
            const char      *signal_name,
            GVariant        *parameters,
            gpointer         user_data)
{
  Sub *sub = user_data;
  g_autoptr(GVariant) data = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(uaysqs)")))
    return;
  if (sub->mode == MODE_ECHO) {
    echo (sub, parameters);
    return;
  }
  data = g_variant_get_child_value (parameters, 1);
  count_events (sub, 1, g_variant_get_size (data));
}

/* Reads every frame, as a real subscriber would. */
static void
on_data_in_batch (GDBusConnection *connection,
                  const char      *sender_name,
                  const char      *object_path,
                  const char      *interface_name,
                  const char      *signal_name,
                  GVariant        *parameters,
                  gpointer         user_data)
{
  g_autoptr(GVariant) frames = NULL;
  GVariantIter iter;
  GVariant *data;
  guint64 n = 0;
  gsize bytes = 0;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(a(uaysq)s)")))
    return;
  frames = g_variant_get_child_value (parameters, 0);
  g_variant_iter_init (&iter, frames);
  while (g_variant_iter_next (&iter, "(u@aysq)", NULL, &data, NULL, NULL)) {
    bytes += g_variant_get_size (data);
    n++;
    g_variant_unref (data);
  }
  count_events (user_data, n, bytes);
}

static void
on_connection_status (GDBusConnection *connection,
                      const char      *sender_name,
                      const char      *object_path,
                      const char      *interface_name,
                      const char      *signal_name,
                      GVariant        *parameters,
                      gpointer         user_data)
{
  const char *status = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(uqsss)")))
    return;
  g_variant_get (parameters, "(uq&sss)", NULL, NULL, &status, NULL, NULL);
  if (g_str_equal (status, "ONLINE"))
    count_events (user_data, 1, 0);
}

static void
subscribe (Sub *sub)
{
  gboolean online = sub->mode == MODE_ONLINE;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) error = NULL;

  g_dbus_connection_signal_subscribe (sub->connection, SB_BENCH_BUS_NAME, SB_BENCH_INTERFACE,
                                      online ? "ServerConnectionStatusChanged" : "ServerDataIn",
                                      SB_BENCH_OBJECT_PATH, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                      online ? on_connection_status : on_data_in, sub, NULL);
  if (sub->mode == MODE_COUNT)
    g_dbus_connection_signal_subscribe (sub->connection, SB_BENCH_BUS_NAME, SB_BENCH_INTERFACE,
                                        "ServerDataInBatch", SB_BENCH_OBJECT_PATH, NULL,
                                        G_DBUS_SIGNAL_FLAGS_NONE, on_data_in_batch, sub, NULL);
  /* The bus handles our messages in order: once this returns, it has the
   * AddMatch that signal_subscribe() sent. */
  reply = g_dbus_connection_call_sync (sub->connection, "org.freedesktop.DBus",
                                       "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId",
                                       NULL, G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, -1,
                                       NULL, &error);
  if (reply == NULL)
    sb_bench_die ("GetId", error->message);
}

static void
parse_mode (Sub   *sub,
            int    argc,
            char **argv)
{
  if (argc >= 3 && g_str_equal (argv[2], "echo")) {
    sub->mode = MODE_ECHO;
    return;
  }
  if (argc < 4)
    sb_bench_die ("usage", "sb-bench-sub ADDRESS count|online N [options] | ADDRESS echo");
  if (g_str_equal (argv[2], "count"))
    sub->mode = MODE_COUNT;
  else if (g_str_equal (argv[2], "online"))
    sub->mode = MODE_ONLINE;
  else
    sb_bench_die ("mode", argv[2]);
  sub->target = sb_bench_parse_uint (argv[3], "N");
}

static guint
parse_options (Sub   *sub,
               int    argc,
               char **argv)
{
  guint timeout_s = 0;

  for (int i = 4; i + 1 < argc; i += 2) {
    if (g_str_equal (argv[i], "--progress"))
      sub->progress = sb_bench_map_progress (argv[i + 1], TRUE);
    else if (g_str_equal (argv[i], "--idle-ms"))
      sub->idle_ms = sb_bench_parse_uint (argv[i + 1], "--idle-ms");
    else if (g_str_equal (argv[i], "--timeout-s"))
      timeout_s = sb_bench_parse_uint (argv[i + 1], "--timeout-s");
    else
      sb_bench_die ("unknown option", argv[i]);
  }
  return timeout_s;
}

int
main (int   argc,
      char *argv[])
{
  Sub sub = { 0 };
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GDBusConnection) connection = NULL;
  g_autoptr(GError) error = NULL;
  guint timeout_s;
  char line[64];

  if (argc < 3)
    sb_bench_die ("usage", "sb-bench-sub ADDRESS count|online N [options] | ADDRESS echo");
  parse_mode (&sub, argc, argv);
  timeout_s = parse_options (&sub, argc, argv);

  connection = g_dbus_connection_new_for_address_sync (
      argv[1],
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
      G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &error);
  if (connection == NULL)
    sb_bench_die ("connect", error->message);
  sub.loop = loop;
  sub.connection = connection;
  subscribe (&sub);

  g_unix_signal_add (SIGTERM, on_quit_signal, &sub);
  g_unix_signal_add (SIGINT, on_quit_signal, &sub);
  if (timeout_s > 0)
    g_timeout_add_seconds (timeout_s, on_timeout, &sub);

  printf ("ready\n");
  fflush (stdout);
  if (sub.mode == MODE_ECHO || sub.target > 0)
    g_main_loop_run (loop);

  if (sub.mode == MODE_ECHO)
    printf ("send_errors=%u\n", sub.send_errors);
  else
    printf ("count=%" G_GUINT64_FORMAT " bytes=%" G_GUINT64_FORMAT " first_us=%" G_GINT64_FORMAT
            " last_us=%" G_GINT64_FORMAT "\n", sub.count, sub.bytes, sub.first_us, sub.last_us);
  fflush (stdout);
  /* Stay until stdin ends, so the caller can read our CPU time first. */
  while (fgets (line, sizeof line, stdin) != NULL)
    ;
  return 0;
}
