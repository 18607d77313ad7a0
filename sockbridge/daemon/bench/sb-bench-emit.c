/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ceiling: a bare GDBus emitter of ServerDataIn-shaped signals.
 *
 *   sb-bench-emit ADDRESS COUNT SIZE [--progress FILE --window W]
 *   sb-bench-emit ADDRESS ping COUNT
 *
 * Owns io.github.Sockbridge1 on the bus at ADDRESS (so a subscriber that
 * matches on the daemon's name sees these signals exactly as it sees the
 * daemon's), prints "ready", waits for a line on stdin, then emits COUNT
 * signals ServerDataIn(u, ay, s, q, s) from /io/github/Sockbridge1 with
 * SIZE-byte frames, built the way sockbridged builds them, as fast as
 * GDBus takes them, or, with --progress, paced as the UDP load generator
 * paces its datagrams: at most W frames ahead of the subscriber's count.
 * It prints "done" once everything reached the bus and exits at end of
 * input, so the caller can read its CPU time first.
 *
 * ping is the D-Bus floor of the latency round trip: the same path as
 * sockbridged's without the sockets. After "go" it emits one 32-byte
 * ServerDataIn, waits for the echo subscriber's ServerSend, answers it,
 * and so on, 500 times to warm up and COUNT times measured from the emit to
 * the arrival of the call; then it prints the percentiles as
 * sb-bench-load rtt does. */
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

/* The same construction as the daemon's on_client_data(): the fields that
 * never change for a client are built once and shared. */
typedef struct
{
  GVariant *handle[10];
  GVariant *address;
  GVariant *port;
  GVariant *identifier;
} Fields;

static void
fields_init (Fields *fields)
{
  for (guint i = 0; i < G_N_ELEMENTS (fields->handle); i++)
    fields->handle[i] = g_variant_ref_sink (g_variant_new_uint32 (i + 1));
  fields->address = g_variant_ref_sink (g_variant_new_string (SB_BENCH_ADDRESS));
  fields->port = g_variant_ref_sink (g_variant_new_uint16 (40000));
  fields->identifier = g_variant_ref_sink (g_variant_new_string (SB_BENCH_IDENTIFIER));
}

static void
emit_frame (GDBusConnection *connection,
            const Fields    *fields,
            const guint8    *frame,
            gsize            size,
            guint            client)
{
  GVariant *args[] = {
    fields->handle[client],
    g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, frame, size, 1),
    fields->address,
    fields->port,
    fields->identifier,
  };
  g_autoptr(GError) error = NULL;

  if (!g_dbus_connection_emit_signal (connection, NULL, SB_BENCH_OBJECT_PATH,
                                      SB_BENCH_INTERFACE, "ServerDataIn",
                                      g_variant_new_tuple (args, G_N_ELEMENTS (args)),
                                      &error))
    sb_bench_die ("emit", error->message);
}

typedef struct
{
  GDBusConnection *connection;
  const Fields    *fields;
  guint8          *frame;
  GMainLoop       *loop;
  gint64          *samples;
  guint            warmup;
  guint            count;
  guint            done;
  gint64           sent_at;
} Ping;

static void
ping_send (Ping *ping)
{
  ping->sent_at = sb_bench_now_ns ();
  emit_frame (ping->connection, ping->fields, ping->frame, 32, 0);
}

static void
on_server_send (GDBusConnection       *connection,
                const char            *sender,
                const char            *object_path,
                const char            *interface_name,
                const char            *method_name,
                GVariant              *parameters,
                GDBusMethodInvocation *invocation,
                gpointer               user_data)
{
  Ping *ping = user_data;
  gint64 now = sb_bench_now_ns ();

  g_dbus_method_invocation_return_value (invocation, NULL);
  if (ping->done >= ping->warmup)
    ping->samples[ping->done - ping->warmup] = now - ping->sent_at;
  if (++ping->done == ping->warmup + ping->count)
    g_main_loop_quit (ping->loop);
  else
    ping_send (ping);
}

static const char ping_xml[] =
  "<node><interface name='" SB_BENCH_INTERFACE "'>"
  "<method name='ServerSend'><arg type='u' direction='in'/><arg type='ay' direction='in'/></method>"
  "</interface></node>";

static int
run_ping (GDBusConnection *connection,
          const Fields    *fields,
          guint            count)
{
  static const GDBusInterfaceVTable vtable = { on_server_send, NULL, NULL, { 0 } };
  g_autoptr(GDBusNodeInfo) info = g_dbus_node_info_new_for_xml (ping_xml, NULL);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autofree gint64 *samples = g_new (gint64, MAX (count, 1));
  g_autofree guint8 *frame = sb_bench_make_frame (32);
  Ping ping = { connection, fields, frame, loop, samples, 500, count, 0, 0 };
  g_autoptr(GError) error = NULL;

  if (g_dbus_connection_register_object (connection, SB_BENCH_OBJECT_PATH,
                                         info->interfaces[0], &vtable, &ping, NULL,
                                         &error) == 0)
    sb_bench_die ("register", error->message);
  printf ("ready\n");
  fflush (stdout);
  wait_line ();
  ping_send (&ping);
  g_main_loop_run (loop);
  if (count > 0)
    sb_bench_print_rtt (samples, count);
  fflush (stdout);
  wait_line ();
  return 0;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GDBusConnection) connection = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *frame = NULL;
  const guint64 *progress = NULL;
  guint64 window = 0;
  Fields fields;
  guint64 count;
  gsize size;

  if (argc == 8 && g_str_equal (argv[4], "--progress") && g_str_equal (argv[6], "--window")) {
    progress = sb_bench_map_progress (argv[5], FALSE);
    window = sb_bench_parse_uint (argv[7], "W");
  } else if (argc != 4) {
    sb_bench_die ("usage", "sb-bench-emit ADDRESS COUNT SIZE [--progress FILE --window W] | "
                  "ADDRESS ping COUNT");
  }
  fields_init (&fields);

  connection = g_dbus_connection_new_for_address_sync (
      argv[1],
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
      G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &error);
  if (connection == NULL)
    sb_bench_die ("connect", error->message);
  own_name (connection);
  if (g_str_equal (argv[2], "ping"))
    return run_ping (connection, &fields, sb_bench_parse_uint (argv[3], "COUNT"));

  count = sb_bench_parse_uint (argv[2], "COUNT");
  size = sb_bench_parse_uint (argv[3], "SIZE");
  frame = sb_bench_make_frame (size);
  printf ("ready\n");
  fflush (stdout);
  wait_line ();

  for (guint64 i = 0; i < count; i++) {
    sb_bench_pace (progress, i, window);
    emit_frame (connection, &fields, frame, size, i % G_N_ELEMENTS (fields.handle));
  }
  if (!g_dbus_connection_flush_sync (connection, NULL, &error))
    sb_bench_die ("flush", error->message);

  printf ("done\n");
  fflush (stdout);
  wait_line ();
  return 0;
}
