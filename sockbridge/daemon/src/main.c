/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "config.h"

#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <sys/resource.h>

#include "sb-daemon.h"
#include "sb-server.h"

/* Descriptors kept back from clients: listening sockets, the bus, files. */
#define SB_FD_RESERVE (2 * SB_MAX_SERVERS + 64)
#define SB_MAX_CLIENTS 65536

typedef struct
{
  GMainLoop       *loop;
  GDBusConnection *connection;
  SbDaemon        *daemon;
  char            *state_path;
  const char      *bus_name;      /* for messages: "the system bus", ... */
  guint            owner_id;
  gboolean         acquired;
  int              exit_status;
} SbMain;

static void
quit (SbMain *main_data,
      int     status)
{
  main_data->exit_status = status;
  g_main_loop_quit (main_data->loop);
}

static gboolean
on_quit_signal (gpointer user_data)
{
  quit (user_data, 0);
  return G_SOURCE_CONTINUE;
}

static void
on_bus_acquired (GDBusConnection *connection,
                 const char      *name,
                 gpointer         user_data)
{
  SbMain *main_data = user_data;
  g_autoptr(GError) error = NULL;

  /* The daemon stops its sockets itself when the bus goes away. */
  g_dbus_connection_set_exit_on_close (connection, FALSE);
  main_data->connection = g_object_ref (connection);
  main_data->daemon = sb_daemon_new (connection, main_data->state_path);
  if (!sb_daemon_export (main_data->daemon, &error)) {
    g_printerr ("sockbridged: cannot export %s: %s\n", SB_OBJECT_PATH, error->message);
    quit (main_data, 1);
  }
}

static void
on_name_acquired (GDBusConnection *connection,
                  const char      *name,
                  gpointer         user_data)
{
  SbMain *main_data = user_data;

  g_debug ("owning %s", name);
  main_data->acquired = TRUE;
  sb_daemon_restore (main_data->daemon);
}

static void
on_name_lost (GDBusConnection *connection,
              const char      *name,
              gpointer         user_data)
{
  SbMain *main_data = user_data;

  /* GDBus reports a connection that closed as no connection. */
  if (connection == NULL || g_dbus_connection_is_closed (connection)) {
    g_printerr ("sockbridged: the connection to %s closed\n", main_data->bus_name);
    quit (main_data, 1);
  } else if (!main_data->acquired) {
    g_printerr ("sockbridged: cannot own the name %s: another instance runs "
                "(start with --replace to take over) or the bus policy forbids it\n", name);
    quit (main_data, 1);
  } else {
    /* Non-zero, like every other loss of the name: a supervisor must
     * not take a take-over for a clean stop. */
    g_printerr ("sockbridged: another instance took over the name %s; exiting\n", name);
    quit (main_data, 1);
  }
}

/* Takes as many descriptors as allowed and caps clients below that, so
 * accept() never fails for want of one (GLib's socket service would spin
 * on such a failure) and a refused client is closed on purpose instead. */
static void
set_client_limit (void)
{
  struct rlimit limit;
  rlim_t clients;

  if (getrlimit (RLIMIT_NOFILE, &limit) != 0)
    return;
  limit.rlim_cur = MIN (limit.rlim_max, (rlim_t) SB_MAX_CLIENTS + SB_FD_RESERVE);
  if (setrlimit (RLIMIT_NOFILE, &limit) != 0)
    getrlimit (RLIMIT_NOFILE, &limit);
  clients = limit.rlim_cur > SB_FD_RESERVE + 64 ? limit.rlim_cur - SB_FD_RESERVE : 64;
  sb_server_set_total_limit (MIN (clients, SB_MAX_CLIENTS));
  g_debug ("serving at most %u clients in all", (guint) MIN (clients, SB_MAX_CLIENTS));
}

static char *
default_state_path (GBusType bus_type)
{
  const char *state_directory = g_getenv ("STATE_DIRECTORY");
  g_auto(GStrv) directories = NULL;

  if (bus_type != G_BUS_TYPE_SYSTEM)
    return g_build_filename (g_get_user_state_dir (), "sockbridge", "state.json", NULL);
  /* systemd's StateDirectory= sets it, possibly to several paths. */
  if (state_directory == NULL || *state_directory == '\0')
    return g_build_filename (SB_STATE_DIR, "state.json", NULL);
  directories = g_strsplit (state_directory, ":", 2);
  return g_build_filename (directories[0], "state.json", NULL);
}

/* The connection is made here rather than by g_bus_own_name(), which
 * reports an unreachable bus without saying which bus or why. */
static GDBusConnection *
connect_bus (GBusType     bus_type,
             const char  *address,
             const char  *bus_name)
{
  g_autofree char *bus_address = g_strdup (address);
  g_autoptr(GDBusConnection) connection = NULL;
  g_autoptr(GError) error = NULL;

  if (bus_address == NULL)
    bus_address = g_dbus_address_get_for_bus_sync (bus_type, NULL, &error);
  if (bus_address == NULL) {
    g_printerr ("sockbridged: cannot find %s: %s\n", bus_name, error->message);
    return NULL;
  }
  connection = g_dbus_connection_new_for_address_sync (bus_address,
                                                       G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                       G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                       NULL, NULL, &error);
  if (connection == NULL)
    g_printerr ("sockbridged: cannot connect to %s at %s: %s\n",
                bus_name, bus_address, error->message);
  return g_steal_pointer (&connection);
}

static gboolean
own_name (SbMain      *main_data,
          GBusType     bus_type,
          const char  *address,
          gboolean     replace)
{
  GBusNameOwnerFlags flags = G_BUS_NAME_OWNER_FLAGS_ALLOW_REPLACEMENT |
                             (replace ? G_BUS_NAME_OWNER_FLAGS_REPLACE : 0);
  g_autoptr(GDBusConnection) connection = NULL;

  connection = connect_bus (bus_type, address, main_data->bus_name);
  if (connection == NULL)
    return FALSE;
  on_bus_acquired (connection, SB_BUS_NAME, main_data);
  main_data->owner_id = g_bus_own_name_on_connection (connection, SB_BUS_NAME, flags,
                                                      on_name_acquired, on_name_lost,
                                                      main_data, NULL);
  return TRUE;
}

static void
shut_down (SbMain *main_data)
{
  if (main_data->daemon != NULL) {
    sb_daemon_shutdown (main_data->daemon);
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (main_data->daemon));
  }
  if (main_data->connection != NULL && !g_dbus_connection_is_closed (main_data->connection))
    g_dbus_connection_flush_sync (main_data->connection, NULL, NULL);
  g_clear_handle_id (&main_data->owner_id, g_bus_unown_name);
  g_clear_object (&main_data->daemon);
  g_clear_object (&main_data->connection);
  g_clear_pointer (&main_data->loop, g_main_loop_unref);
  g_clear_pointer (&main_data->state_path, g_free);
}

int
main (int    argc,
      char **argv)
{
  gboolean system_bus = FALSE, session_bus = FALSE, replace = FALSE;
  gboolean no_state = FALSE, verbose = FALSE, version = FALSE;
  g_autofree char *address = NULL;
  g_autofree char *state_file = NULL;
  const GOptionEntry entries[] = {
    { "system", 0, 0, G_OPTION_ARG_NONE, &system_bus, "Use the system bus (the default)", NULL },
    { "session", 0, 0, G_OPTION_ARG_NONE, &session_bus, "Use the session bus", NULL },
    { "address", 0, 0, G_OPTION_ARG_STRING, &address, "Use the bus at this D-Bus address", "ADDRESS" },
    { "replace", 0, 0, G_OPTION_ARG_NONE, &replace, "Take over from a running instance", NULL },
    { "state-file", 0, 0, G_OPTION_ARG_FILENAME, &state_file, "Remember servers in this file", "PATH" },
    { "no-state", 0, 0, G_OPTION_ARG_NONE, &no_state, "Remember no servers across restarts", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log debug messages", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) context = g_option_context_new ("- DriverWorks server sockets over D-Bus");
  g_autoptr(GError) error = NULL;
  SbMain main_data = { NULL, };
  GBusType bus_type;

  setlocale (LC_ALL, "");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("sockbridged: %s\n", error->message);
    return 2;
  }
  if (version) {
    g_print ("sockbridged %s\n", VERSION);
    return 0;
  }
  if (system_bus + session_bus + (address != NULL) > 1 || (no_state && state_file != NULL)) {
    g_printerr ("sockbridged: choose one of --system, --session and --address, "
                "and at most one of --state-file and --no-state\n");
    return 2;
  }
  if (verbose)
    g_log_set_debug_enabled (TRUE);

  /* Writes to a vanished peer must fail, not kill the daemon. */
  signal (SIGPIPE, SIG_IGN);
  set_client_limit ();
  bus_type = session_bus ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM;
  main_data.bus_name = address != NULL ? "the D-Bus bus"
                       : session_bus ? "the session bus" : "the system bus";
  if (!no_state)
    main_data.state_path = state_file ? g_strdup (state_file) : default_state_path (bus_type);
  main_data.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, on_quit_signal, &main_data);
  g_unix_signal_add (SIGINT, on_quit_signal, &main_data);

  if (own_name (&main_data, bus_type, address, replace))
    g_main_loop_run (main_data.loop);
  else
    main_data.exit_status = 1;
  shut_down (&main_data);
  return main_data.exit_status;
}
