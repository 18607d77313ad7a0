/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "config.h"

#include "sb-daemon.h"

#include "sb-backlog.h"
#include "sb-batch.h"
#include "sb-callers.h"
#include "sb-error.h"
#include "sb-log.h"
#include "sb-server.h"
#include "sb-source.h"
#include "sb-state.h"
#include "sb-statistics.h"
#include "sb-udp-server.h"
#include "sb-tcp-connection.h"
#include "sb-tls.h"

/* How often, and how far apart, a server of the state file whose port is
 * still taken is tried again: a replaced instance may not have let go of
 * its ports yet. */
#define SB_RESTORE_ATTEMPTS    10
#define SB_RESTORE_INTERVAL_MS 500

struct _SbDaemon
{
  SbSockbridge1Skeleton parent_instance;

  GDBusConnection *connection;
  SbCallers       *callers;
  SbBacklog       *backlog;
  GHashTable      *servers;        /* server_key() → SbServer*, owned */
  GHashTable      *clients;        /* handle → SbClient*, owned by servers */
  GHashTable      *batches;        /* SbServer* → SbBatch*: servers with the batch option */
  GSource         *batch_source;   /* takes the batches; exists while one is not empty */
  char            *state_path;
  GPtrArray       *dormant;        /* SbServerConfig*: not bound yet */
  guint            restore_id;
  guint            restore_attempts;
  gboolean         log_frames;     /* sb_log_debug_enabled(), asked once */
};

static void sb_daemon_iface_init (SbSockbridge1Iface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SbDaemon, sb_daemon, SB_TYPE_SOCKBRIDGE1_SKELETON,
                               G_IMPLEMENT_INTERFACE (SB_TYPE_SOCKBRIDGE1, sb_daemon_iface_init))

typedef void (*SbMethod) (SbDaemon              *self,
                          GDBusMethodInvocation *invocation,
                          guint32                uid);

static gpointer
server_key (guint16  port,
            gboolean use_udp)
{
  return GUINT_TO_POINTER (((guint) port << 1) | (use_udp ? 1 : 0));
}

static const char *
proto_name (gboolean use_udp)
{
  return use_udp ? "udp" : "tcp";
}

static gboolean
may_touch (guint32   uid,
           SbServer *server)
{
  return uid == 0 || sb_server_get_config (server)->owner_uid == uid;
}

/* ---- signals ------------------------------------------------------------ */

/* Roughly what a signal adds to the bus backlog: its body plus a header. */
#define SB_SIGNAL_OVERHEAD 160

static void
emit (SbDaemon   *self,
      const char *name,
      GVariant   *parameters,
      gsize       body_size)
{
  g_autoptr(GError) error = NULL;

  if (!g_dbus_connection_emit_signal (self->connection, NULL, SB_OBJECT_PATH, SB_INTERFACE,
                                      name, parameters, &error))
    g_debug ("cannot emit %s: %s", name, error->message);
  sb_backlog_add (self->backlog, body_size + SB_SIGNAL_OVERHEAD);
}

/* ---- batches ------------------------------------------------------------ */

static void
flush_batch (SbDaemon *self,
             SbServer *server)
{
  SbBatch *batch = g_hash_table_lookup (self->batches, server);
  gsize size;

  if (batch == NULL || sb_batch_is_empty (batch))
    return;
  size = sb_batch_get_size (batch);
  emit (self, "ServerDataInBatch",
        sb_batch_take (batch, sb_server_get_identifier_variant (server)), size);
}

/* A batch that is due leaves at the start of the next main loop
 * iteration, with everything read in this one; one that is not waits for
 * its due time. The source sleeps until the earliest due batch, and goes
 * once every batch is empty. */
static gboolean
on_batch_source (gpointer user_data)
{
  SbDaemon *self = user_data;
  gint64 now = g_source_get_time (self->batch_source);
  gint64 next = -1;
  GHashTableIter iter;
  gpointer server, batch;

  g_hash_table_iter_init (&iter, self->batches);
  while (g_hash_table_iter_next (&iter, &server, &batch)) {
    gint64 due;

    if (sb_batch_is_empty (batch))
      continue;
    due = sb_batch_get_due (batch);
    if (due <= now)
      flush_batch (self, server);
    else if (next == -1 || due < next)
      next = due;
  }
  if (next == -1) {
    g_clear_pointer (&self->batch_source, g_source_unref);
    return G_SOURCE_REMOVE;
  }
  g_source_set_ready_time (self->batch_source, next);
  return G_SOURCE_CONTINUE;
}

static gboolean
dispatch_batch_source (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  return callback (user_data);
}

/* Ready by its ready time alone. */
static GSourceFuncs batch_source_funcs = { NULL, NULL, dispatch_batch_source, NULL, NULL, NULL };

/* A high priority, so that a due batch leaves before any more input is
 * read. */
static void
schedule_batches (SbDaemon *self,
                  SbBatch  *batch)
{
  gint64 due = sb_batch_get_due (batch);
  gint64 ready;

  if (self->batch_source == NULL) {
    self->batch_source = g_source_new (&batch_source_funcs, sizeof (GSource));
    g_source_set_priority (self->batch_source, G_PRIORITY_HIGH);
    g_source_set_callback (self->batch_source, on_batch_source, self, NULL);
    g_source_set_ready_time (self->batch_source, due);
    g_source_attach (self->batch_source, NULL);
    return;
  }
  ready = g_source_get_ready_time (self->batch_source);
  if (ready == -1 || due < ready)
    g_source_set_ready_time (self->batch_source, due);
}

static void
add_to_batch (SbDaemon     *self,
              SbServer     *server,
              SbBatch      *batch,
              SbClient     *client,
              const guint8 *data,
              gsize         len)
{
  if (sb_batch_add (batch, client, data, len))
    flush_batch (self, server);
  else
    schedule_batches (self, batch);
}

/* ---- status -------------------------------------------------------------- */

/* Status signals flush the server's batch first, so that a batch server
 * keeps the contract's order: a handle's data before its OFFLINE. */
static void
emit_server_status (SbDaemon   *self,
                    SbServer   *server,
                    const char *status)
{
  g_debug ("port %u/%s: %s, identifier \"%s\"", sb_server_get_port (server),
           proto_name (sb_server_get_use_udp (server)), status, sb_server_get_identifier (server));
  flush_batch (self, server);
  emit (self, "ServerStatusChanged",
        g_variant_new ("(qss)", sb_server_get_port (server), status,
                       sb_server_get_identifier (server)), 0);
}

static void
emit_client_status (SbDaemon   *self,
                    SbServer   *server,
                    SbClient   *client,
                    const char *status)
{
  g_debug ("handle %u: %s, port %u/%s, peer %s port %u", sb_client_get_handle (client),
           status, sb_server_get_port (server), proto_name (sb_server_get_use_udp (server)),
           sb_client_get_address (client), sb_client_get_port (client));
  flush_batch (self, server);
  emit (self, "ServerConnectionStatusChanged",
        g_variant_new ("(uqsss)", sb_client_get_handle (client), sb_server_get_port (server),
                       status, sb_client_get_address (client), sb_server_get_identifier (server)),
        0);
}

static void
on_client_online (SbServer *server,
                  SbClient *client,
                  gpointer  user_data)
{
  SbDaemon *self = user_data;

  g_hash_table_insert (self->clients, GUINT_TO_POINTER (sb_client_get_handle (client)), client);
  emit_client_status (self, server, client, "ONLINE");
}

static void
on_client_data (SbServer     *server,
                SbClient     *client,
                const guint8 *data,
                gsize         len,
                gpointer      user_data)
{
  SbDaemon *self = user_data;
  SbBatch *batch = g_hash_table_lookup (self->batches, server);
  GVariant *fields[5];

  sb_statistics.frames_in++;
  sb_statistics.bytes_in += len;
  if (G_UNLIKELY (self->log_frames))
    sb_log_frame (sb_client_get_handle (client), "in", data, len);
  if (batch != NULL) {
    add_to_batch (self, server, batch, client, data, len);
    return;
  }
  sb_client_frame_fields (client, data, len, fields);
  fields[4] = sb_server_get_identifier_variant (server);
  emit (self, "ServerDataIn", g_variant_new_tuple (fields, G_N_ELEMENTS (fields)), len);
}

static void
on_client_offline (SbServer *server,
                   SbClient *client,
                   gpointer  user_data)
{
  SbDaemon *self = user_data;

  g_hash_table_remove (self->clients, GUINT_TO_POINTER (sb_client_get_handle (client)));
  emit_client_status (self, server, client, "OFFLINE");
}

static const SbServerEvents sb_daemon_events = {
  on_client_online,
  on_client_data,
  on_client_offline,
};

/* ---- servers and the state file ------------------------------------------ */

static void
save_state (SbDaemon *self)
{
  g_autoptr(GPtrArray) configs = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  GHashTableIter iter;
  gpointer server;

  if (self->state_path == NULL)
    return;
  g_hash_table_iter_init (&iter, self->servers);
  while (g_hash_table_iter_next (&iter, NULL, &server))
    g_ptr_array_add (configs, (gpointer) sb_server_get_config (server));
  for (guint i = 0; i < self->dormant->len; i++)
    g_ptr_array_add (configs, self->dormant->pdata[i]);
  if (!sb_state_save (self->state_path, configs, &error))
    g_warning ("cannot write the state file: %s", error->message);
}

static SbServer *
start_server (SbDaemon              *self,
              const SbServerConfig  *config,
              GError               **error)
{
  g_autoptr(SbServer) server = sb_server_new (config, &sb_daemon_events, self);

  if (!sb_server_start (server, error))
    return NULL;
  sb_server_set_paused (server, sb_backlog_is_congested (self->backlog));
  g_hash_table_insert (self->servers,
                       server_key (sb_server_get_port (server), sb_server_get_use_udp (server)),
                       g_object_ref (server));
  if (config->batch)
    g_hash_table_insert (self->batches, server, sb_batch_new ());
  emit_server_status (self, server, "ONLINE");
  return server;
}

/* Clients first, each with its OFFLINE, then the server's OFFLINE. */
static void
destroy_server (SbDaemon *self,
                SbServer *server)
{
  /* The table may hold the last reference. */
  g_autoptr(SbServer) doomed = g_object_ref (server);

  g_hash_table_remove (self->servers,
                       server_key (sb_server_get_port (doomed), sb_server_get_use_udp (doomed)));
  sb_server_stop (doomed);
  emit_server_status (self, doomed, "OFFLINE");
  g_hash_table_remove (self->batches, doomed);
}

static gboolean
drop_dormant (SbDaemon *self,
              guint16   port,
              gboolean  any_protocol,
              gboolean  use_udp,
              guint32   owner_uid)
{
  gboolean dropped = FALSE;

  for (guint i = self->dormant->len; i-- > 0;) {
    SbServerConfig *config = self->dormant->pdata[i];

    if ((port == 0 || config->port == port) &&
        (any_protocol || config->use_udp == use_udp) &&
        (owner_uid == G_MAXUINT32 || config->owner_uid == owner_uid)) {
      g_ptr_array_remove_index (self->dormant, i);
      dropped = TRUE;
    }
  }
  return dropped;
}

static GPtrArray *
servers_where (SbDaemon *self,
               guint16   port,
               guint32   owner_uid)
{
  GPtrArray *found = g_ptr_array_new_with_free_func (g_object_unref);
  GHashTableIter iter;
  gpointer server;

  g_hash_table_iter_init (&iter, self->servers);
  while (g_hash_table_iter_next (&iter, NULL, &server)) {
    if ((port == 0 || sb_server_get_port (server) == port) &&
        (owner_uid == G_MAXUINT32 || sb_server_get_config (server)->owner_uid == owner_uid))
      g_ptr_array_add (found, g_object_ref (server));
  }
  return found;
}

/* A bus that does not keep up pauses every server: signals are not
 * attributable to one server once queued. */
static void
on_congestion (gboolean congested,
               gpointer user_data)
{
  SbDaemon *self = user_data;
  GHashTableIter iter;
  gpointer server;

  g_hash_table_iter_init (&iter, self->servers);
  while (g_hash_table_iter_next (&iter, NULL, &server))
    sb_server_set_paused (server, congested);
}

/* ---- exit-with-caller ------------------------------------------------------ */

static void
on_caller_vanished (SbCallers  *callers,
                    const char *name,
                    gpointer    user_data)
{
  SbDaemon *self = user_data;
  g_autoptr(GPtrArray) all = servers_where (self, 0, G_MAXUINT32);

  for (guint i = 0; i < all->len; i++) {
    SbServer *server = all->pdata[i];

    if (g_strcmp0 (sb_server_get_creator (server), name) == 0) {
      g_debug ("port %u/%s: its creator %s left", sb_server_get_port (server),
               proto_name (sb_server_get_use_udp (server)), name);
      destroy_server (self, server);
    }
  }
}

/* ---- method plumbing --------------------------------------------------------- */

typedef struct
{
  SbDaemon              *self;
  GDBusMethodInvocation *invocation;
  SbMethod               method;
} SbCall;

static void
on_caller_known (guint32       uid,
                 const GError *error,
                 gpointer      user_data)
{
  g_autofree SbCall *call = user_data;
  g_autoptr(SbDaemon) self = call->self;

  if (error != NULL) {
    g_dbus_method_invocation_return_error (call->invocation, SB_ERROR, SB_ERROR_FAILED,
                                           "cannot tell the caller's Unix user: %s",
                                           error->message);
    return;
  }
  call->method (self, call->invocation, uid);
}

/* Every method needs to know the caller's Unix user before it acts. */
static gboolean
with_caller (SbSockbridge1         *iface,
             GDBusMethodInvocation *invocation,
             SbMethod               method)
{
  SbDaemon *self = SB_DAEMON (iface);
  SbCall *call = g_new (SbCall, 1);

  call->self = g_object_ref (self);
  call->invocation = invocation;
  call->method = method;
  sb_callers_run (self->callers, g_dbus_method_invocation_get_sender (invocation),
                  on_caller_known, call);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static GVariant *
parameters (GDBusMethodInvocation *invocation)
{
  return g_dbus_method_invocation_get_parameters (invocation);
}

/* ---- CreateServer ------------------------------------------------------------- */

static gboolean
check_port_free (SbDaemon              *self,
                 const SbServerConfig  *config,
                 const char            *sender,
                 SbServer             **existing,
                 GError               **error)
{
  SbServer *server;

  *existing = NULL;
  if (config->port != 0 && config->port < 1024 && config->owner_uid != 0) {
    g_set_error (error, SB_ERROR, SB_ERROR_PERMISSION_DENIED,
                 "port %u is privileged (below 1024); only root may serve it", config->port);
    return FALSE;
  }
  server = g_hash_table_lookup (self->servers, server_key (config->port, config->use_udp));
  if (server == NULL || config->port == 0)
    return TRUE;
  if (sb_server_get_config (server)->owner_uid != config->owner_uid) {
    g_set_error (error, SB_ERROR, SB_ERROR_ADDRESS_IN_USE,
                 "port %u/%s is already served by sockbridge for another user",
                 config->port, proto_name (config->use_udp));
    return FALSE;
  }
  if (!sb_server_config_same_settings (sb_server_get_config (server), config)) {
    g_set_error (error, SB_ERROR, SB_ERROR_ADDRESS_IN_USE,
                 "port %u/%s is already served by sockbridge with other settings "
                 "(identifier \"%s\"); destroy it first",
                 config->port, proto_name (config->use_udp), sb_server_get_identifier (server));
    return FALSE;
  }
  /* Its life is tied to another connection: handing it over would hand
   * out a port that closes when someone else leaves. */
  if (config->exit_with_caller && g_strcmp0 (sb_server_get_creator (server), sender) != 0) {
    g_set_error (error, SB_ERROR, SB_ERROR_ADDRESS_IN_USE,
                 "port %u/%s is already served by sockbridge for another D-Bus connection "
                 "(exit-with-caller ties it to %s)",
                 config->port, proto_name (config->use_udp), sb_server_get_creator (server));
    return FALSE;
  }
  *existing = server;
  return TRUE;
}

/* The inline PEM text (and passwords) of persistent TLS servers, all of
 * which the state file holds. */
static gsize
inline_pem_size (SbDaemon *self)
{
  GHashTableIter iter;
  gpointer server;
  gsize size = 0;

  g_hash_table_iter_init (&iter, self->servers);
  while (g_hash_table_iter_next (&iter, NULL, &server)) {
    const SbServerConfig *config = sb_server_get_config (server);

    if (!config->exit_with_caller)
      size += sb_tls_config_inline_size (config->tls);
  }
  for (guint i = 0; i < self->dormant->len; i++)
    size += sb_tls_config_inline_size (((SbServerConfig *) self->dormant->pdata[i])->tls);
  return size;
}

/* A state file over SB_STATE_MAX_BYTES is refused at start-up, every
 * server with it: the room for inline PEM is bounded well below. */
static gboolean
check_inline_pem_room (SbDaemon              *self,
                       const SbServerConfig  *config,
                       GError               **error)
{
  gsize size = sb_tls_config_inline_size (config->tls);

  if (size == 0 || config->exit_with_caller ||
      size + inline_pem_size (self) <= SB_TLS_MAX_INLINE_TOTAL)
    return TRUE;
  g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
               "the state file would hold more than %d bytes of inline PEM text: give the "
               "certificates and keys as file paths", SB_TLS_MAX_INLINE_TOTAL);
  return FALSE;
}

static SbServer *
create_server (SbDaemon               *self,
               SbServerConfig         *config,
               GDBusMethodInvocation  *invocation,
               GError                **error)
{
  const char *sender = g_dbus_method_invocation_get_sender (invocation);
  SbServer *server;

  if (!check_port_free (self, config, sender, &server, error))
    return NULL;
  if (server != NULL)
    return server;
  if (!check_inline_pem_room (self, config, error))
    return NULL;
  if (g_hash_table_size (self->servers) >= SB_MAX_SERVERS) {
    g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
                 "sockbridged already runs %d servers, its limit", SB_MAX_SERVERS);
    return NULL;
  }
  server = start_server (self, config, error);
  if (server == NULL)
    return NULL;
  if (config->exit_with_caller) {
    sb_server_set_creator (server, sender);
    return server;
  }
  drop_dormant (self, sb_server_get_port (server), FALSE, config->use_udp, G_MAXUINT32);
  save_state (self);
  return server;
}

/* The end of every CreateServer* method: the server of @config, owned by
 * @uid, and its bound port as the answer; or the error, which @error
 * already holds when the arguments gave no @config. */
static void
create_and_reply (SbDaemon              *self,
                  GDBusMethodInvocation *invocation,
                  SbServerConfig        *config,
                  guint32                uid,
                  GError               **error)
{
  SbServer *server = NULL;

  if (config != NULL) {
    config->owner_uid = uid;
    server = create_server (self, config, invocation, error);
  }
  if (server == NULL) {
    g_dbus_method_invocation_return_gerror (invocation, *error);
    return;
  }
  g_dbus_method_invocation_return_value (invocation,
                                         g_variant_new ("(q)", sb_server_get_port (server)));
}

static void
method_create_server (SbDaemon              *self,
                      GDBusMethodInvocation *invocation,
                      guint32                uid)
{
  GVariant *args = parameters (invocation);
  g_autoptr(GVariant) options = NULL;
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(GError) error = NULL;
  const char *delimiter, *identifier;
  guint16 port;
  gboolean use_udp;

  if (g_variant_n_children (args) == 5)
    g_variant_get (args, "(q&sb&s@a{sv})", &port, &delimiter, &use_udp, &identifier, &options);
  else
    g_variant_get (args, "(q&sb&s)", &port, &delimiter, &use_udp, &identifier);

  config = sb_server_config_new_from_args (port, delimiter, use_udp, identifier, options, &error);
  create_and_reply (self, invocation, config, uid, &error);
}

static gboolean
handle_create_server (SbSockbridge1         *iface,
                      GDBusMethodInvocation *invocation,
                      guint16                port,
                      const char            *delimiter,
                      gboolean               use_udp,
                      const char            *identifier)
{
  return with_caller (iface, invocation, method_create_server);
}

static gboolean
handle_create_server_with_options (SbSockbridge1         *iface,
                                   GDBusMethodInvocation *invocation,
                                   guint16                port,
                                   const char            *delimiter,
                                   gboolean               use_udp,
                                   const char            *identifier,
                                   GVariant              *options)
{
  return with_caller (iface, invocation, method_create_server);
}

/* ---- DestroyServer --------------------------------------------------------------- */

/* TRUE when one of them was in the state file. */
static gboolean
destroy_all (SbDaemon  *self,
             GPtrArray *servers)
{
  gboolean persistent = FALSE;

  for (guint i = 0; i < servers->len; i++) {
    persistent |= !sb_server_get_config (servers->pdata[i])->exit_with_caller;
    destroy_server (self, servers->pdata[i]);
  }
  return persistent;
}

static void
method_destroy_server (SbDaemon              *self,
                       GDBusMethodInvocation *invocation,
                       guint32                uid)
{
  g_autoptr(GPtrArray) servers = NULL;
  gboolean dropped;
  guint16 port;

  g_variant_get (parameters (invocation), "(q)", &port);
  servers = servers_where (self, port, port == 0 ? uid : G_MAXUINT32);
  for (guint i = 0; i < servers->len; i++) {
    if (!may_touch (uid, servers->pdata[i])) {
      g_dbus_method_invocation_return_error (invocation, SB_ERROR, SB_ERROR_PERMISSION_DENIED,
                                             "port %u is served for another user", port);
      return;
    }
  }
  dropped = drop_dormant (self, port, TRUE, FALSE, uid == 0 && port != 0 ? G_MAXUINT32 : uid);
  if (!dropped && servers->len == 0 && port != 0) {
    g_dbus_method_invocation_return_error (invocation, SB_ERROR, SB_ERROR_NOT_FOUND,
                                           "no server on port %u", port);
    return;
  }
  /* One write of the state file, whatever both steps changed. */
  if (destroy_all (self, servers) || dropped)
    save_state (self);
  g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_destroy_server (SbSockbridge1         *iface,
                       GDBusMethodInvocation *invocation,
                       guint16                port)
{
  return with_caller (iface, invocation, method_destroy_server);
}

/* ---- ServerSend, ServerCloseClient ------------------------------------------------ */

static SbClient *
find_client (SbDaemon  *self,
             guint32    handle,
             guint32    uid,
             GError   **error)
{
  SbClient *client = g_hash_table_lookup (self->clients, GUINT_TO_POINTER (handle));

  if (client == NULL) {
    g_set_error (error, SB_ERROR, SB_ERROR_NOT_FOUND,
                 "no connection or UDP peer has handle %u", handle);
    return NULL;
  }
  if (!may_touch (uid, sb_client_get_server (client))) {
    g_set_error (error, SB_ERROR, SB_ERROR_PERMISSION_DENIED,
                 "handle %u belongs to another user's server", handle);
    return NULL;
  }
  return client;
}

static void
method_server_send (SbDaemon              *self,
                    GDBusMethodInvocation *invocation,
                    guint32                uid)
{
  g_autoptr(GVariant) data = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  SbClient *client;
  guint32 handle;

  g_variant_get (parameters (invocation), "(u@ay)", &handle, &data);
  client = find_client (self, handle, uid, &error);
  bytes = g_variant_get_data_as_bytes (data);
  if (client == NULL || !sb_client_send (client, bytes, &error)) {
    g_dbus_method_invocation_return_gerror (invocation, error);
    return;
  }
  sb_statistics.bytes_out += g_bytes_get_size (bytes);
  if (G_UNLIKELY (self->log_frames))
    sb_log_frame (handle, "out", g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_server_send (SbSockbridge1         *iface,
                    GDBusMethodInvocation *invocation,
                    guint                  handle,
                    GVariant              *data)
{
  return with_caller (iface, invocation, method_server_send);
}

static void
method_server_close_client (SbDaemon              *self,
                            GDBusMethodInvocation *invocation,
                            guint32                uid)
{
  g_autoptr(GError) error = NULL;
  SbClient *client;
  guint32 handle;

  g_variant_get (parameters (invocation), "(u)", &handle);
  client = find_client (self, handle, uid, &error);
  if (client == NULL) {
    g_dbus_method_invocation_return_gerror (invocation, error);
    return;
  }
  sb_client_close (client);
  g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_server_close_client (SbSockbridge1         *iface,
                            GDBusMethodInvocation *invocation,
                            guint                  handle)
{
  return with_caller (iface, invocation, method_server_close_client);
}

/* ---- PortInUse ------------------------------------------------------------------- */

/* Binds the port as a server would, on all interfaces: only another socket
 * holding it makes that fail. */
static gboolean
port_taken_elsewhere (guint16  port,
                      gboolean use_udp)
{
  GSocketType type = use_udp ? G_SOCKET_TYPE_DATAGRAM : G_SOCKET_TYPE_STREAM;
  GSocketFamily family = G_SOCKET_FAMILY_IPV6;
  g_autoptr(GSocket) socket = g_socket_new (family, type, G_SOCKET_PROTOCOL_DEFAULT, NULL);
  g_autoptr(GInetAddress) any = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GError) error = NULL;

  if (socket == NULL) {
    family = G_SOCKET_FAMILY_IPV4;
    socket = g_socket_new (family, type, G_SOCKET_PROTOCOL_DEFAULT, &error);
    if (socket == NULL)
      return FALSE;
  }
  any = g_inet_address_new_any (family);
  address = g_inet_socket_address_new (any, port);
  return !g_socket_bind (socket, address, !use_udp, &error) &&
         g_error_matches (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
}

static void
method_port_in_use (SbDaemon              *self,
                    GDBusMethodInvocation *invocation,
                    guint32                uid)
{
  guint16 port;
  gboolean use_udp, in_use;

  g_variant_get (parameters (invocation), "(qb)", &port, &use_udp);
  if (port == 0) {
    g_dbus_method_invocation_return_error (invocation, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                                           "port must be from 1 to 65535, not 0");
    return;
  }
  in_use = g_hash_table_contains (self->servers, server_key (port, use_udp)) ||
           port_taken_elsewhere (port, use_udp);
  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(b)", in_use));
}

static gboolean
handle_port_in_use (SbSockbridge1         *iface,
                    GDBusMethodInvocation *invocation,
                    guint16                port,
                    gboolean               use_udp)
{
  return with_caller (iface, invocation, method_port_in_use);
}

/* ---- ListServers, ListConnections ------------------------------------------------ */

static gint
compare_servers (gconstpointer a,
                 gconstpointer b)
{
  SbServer *sa = *(SbServer **) a, *sb = *(SbServer **) b;
  gint by_port = (gint) sb_server_get_port (sa) - (gint) sb_server_get_port (sb);

  return by_port != 0 ? by_port : sb_server_get_use_udp (sa) - sb_server_get_use_udp (sb);
}

static void
method_list_servers (SbDaemon              *self,
                     GDBusMethodInvocation *invocation,
                     guint32                uid)
{
  g_autoptr(GPtrArray) servers = servers_where (self, 0, uid == 0 ? G_MAXUINT32 : uid);
  GVariantBuilder builder;

  g_ptr_array_sort (servers, compare_servers);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(qbsayu)"));
  for (guint i = 0; i < servers->len; i++) {
    SbServer *server = servers->pdata[i];
    const SbServerConfig *config = sb_server_get_config (server);
    gsize len;
    gconstpointer delimiter = g_bytes_get_data (config->delimiter, &len);

    g_variant_builder_add (&builder, "(qbs@ayu)", config->port, config->use_udp,
                           config->identifier,
                           g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, delimiter, len, 1),
                           sb_server_get_n_clients (server));
  }
  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a(qbsayu))", &builder));
}

static gboolean
handle_list_servers (SbSockbridge1         *iface,
                     GDBusMethodInvocation *invocation)
{
  return with_caller (iface, invocation, method_list_servers);
}

static gint
compare_handles (gconstpointer a,
                 gconstpointer b)
{
  guint32 ha = sb_client_get_handle (*(SbClient **) a);
  guint32 hb = sb_client_get_handle (*(SbClient **) b);

  return ha < hb ? -1 : ha > hb;
}

static void
method_list_connections (SbDaemon              *self,
                         GDBusMethodInvocation *invocation,
                         guint32                uid)
{
  g_autoptr(GPtrArray) clients = g_ptr_array_new ();
  GVariantBuilder builder;
  GHashTableIter iter;
  gpointer client;

  g_hash_table_iter_init (&iter, self->clients);
  while (g_hash_table_iter_next (&iter, NULL, &client)) {
    if (may_touch (uid, sb_client_get_server (client)))
      g_ptr_array_add (clients, client);
  }
  g_ptr_array_sort (clients, compare_handles);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(uqbssq)"));
  for (guint i = 0; i < clients->len; i++) {
    SbServer *server = sb_client_get_server (clients->pdata[i]);

    g_variant_builder_add (&builder, "(uqbssq)", sb_client_get_handle (clients->pdata[i]),
                           sb_server_get_port (server), sb_server_get_use_udp (server),
                           sb_server_get_identifier (server),
                           sb_client_get_address (clients->pdata[i]),
                           sb_client_get_port (clients->pdata[i]));
  }
  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a(uqbssq))", &builder));
}

static gboolean
handle_list_connections (SbSockbridge1         *iface,
                         GDBusMethodInvocation *invocation)
{
  return with_caller (iface, invocation, method_list_connections);
}

/* ---- GetStatistics ----------------------------------------------------------------- */

static void
method_get_statistics (SbDaemon              *self,
                       GDBusMethodInvocation *invocation,
                       guint32                uid)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{st}"));
  g_variant_builder_add (&builder, "{st}", "connections-accepted", sb_statistics.connections_accepted);
  g_variant_builder_add (&builder, "{st}", "connections-refused", sb_statistics.connections_refused);
  g_variant_builder_add (&builder, "{st}", "udp-peers-evicted", sb_statistics.udp_peers_evicted);
  g_variant_builder_add (&builder, "{st}", "udp-datagrams-dropped", sb_statistics.udp_datagrams_dropped);
  g_variant_builder_add (&builder, "{st}", "frames-in", sb_statistics.frames_in);
  g_variant_builder_add (&builder, "{st}", "bytes-in", sb_statistics.bytes_in);
  g_variant_builder_add (&builder, "{st}", "bytes-out", sb_statistics.bytes_out);
  g_variant_builder_add (&builder, "{st}", "clients", (guint64) g_hash_table_size (self->clients));
  g_variant_builder_add (&builder, "{st}", "servers", (guint64) g_hash_table_size (self->servers));
  g_variant_builder_add (&builder, "{st}", "bus-backlog-bytes", sb_backlog_get_pending (self->backlog));
  g_variant_builder_add (&builder, "{st}", "bus-stalls", sb_backlog_get_stalls (self->backlog));
  g_variant_builder_add (&builder, "{st}", "connections-denied", sb_statistics.connections_denied);
  g_variant_builder_add (&builder, "{st}", "udp-datagrams-denied", sb_statistics.udp_datagrams_denied);
  sb_tls_add_statistics (&builder);
  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a{st})", &builder));
}

static gboolean
handle_get_statistics (SbSockbridge1         *iface,
                       GDBusMethodInvocation *invocation)
{
  return with_caller (iface, invocation, method_get_statistics);
}

/* ---- CreateTLSServer ------------------------------------------------------------- */

/* DriverWorks' arguments make a config as CreateServerWithOptions'
 * tls-* options would. */
static SbServerConfig *
config_from_tls_arguments (GVariant  *args,
                           GError   **error)
{
  const char *delimiter, *cipher_list, *certificate, *private_key, *password, *chain, *identifier;
  g_autoptr(SbServerConfig) config = NULL;
  guint32 options, verify_mode;
  guint16 port;

  g_variant_get (args, "(q&suu&s&s&s&s&s&s)", &port, &delimiter, &options, &verify_mode,
                 &cipher_list, &certificate, &private_key, &password, &chain, &identifier);
  config = sb_server_config_new_from_args (port, delimiter, FALSE, identifier, NULL, error);
  if (config == NULL)
    return NULL;
  config->tls = sb_tls_config_new_from_arguments (options, verify_mode, cipher_list, certificate,
                                                  private_key, password, chain, error);
  if (config->tls == NULL || !sb_tls_config_check (config->tls, FALSE, error))
    return NULL;
  return g_steal_pointer (&config);
}

static void
method_create_tls_server (SbDaemon              *self,
                          GDBusMethodInvocation *invocation,
                          guint32                uid)
{
  g_autoptr(SbServerConfig) config = NULL;
  g_autoptr(GError) error = NULL;

  config = config_from_tls_arguments (parameters (invocation), &error);
  create_and_reply (self, invocation, config, uid, &error);
}

static gboolean
handle_create_tls_server (SbSockbridge1         *iface,
                          GDBusMethodInvocation *invocation,
                          guint16                port,
                          const char            *delimiter,
                          guint                  options,
                          guint                  verify_mode,
                          const char            *cipher_list,
                          const char            *certificate,
                          const char            *private_key,
                          const char            *password,
                          const char            *chain,
                          const char            *identifier)
{
  return with_caller (iface, invocation, method_create_tls_server);
}

/* ---- GetConnectionInfo ------------------------------------------------------------- */

static GTlsConnection *
tls_of_client (SbClient *client)
{
  return SB_IS_TCP_CONNECTION (client) ? sb_tcp_connection_get_tls (SB_TCP_CONNECTION (client))
                                       : NULL;
}

static GVariant *
describe_client (SbClient *client)
{
  SbServer *server = sb_client_get_server (client);
  GTlsConnection *tls = tls_of_client (client);
  const char *protocol = tls != NULL ? "tls" : sb_server_get_use_udp (server) ? "udp" : "tcp";
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&builder, "{sv}", "address",
                         g_variant_new_string (sb_client_get_address (client)));
  g_variant_builder_add (&builder, "{sv}", "remote-port",
                         g_variant_new_uint16 (sb_client_get_port (client)));
  g_variant_builder_add (&builder, "{sv}", "server-port",
                         g_variant_new_uint16 (sb_server_get_port (server)));
  g_variant_builder_add (&builder, "{sv}", "identifier",
                         sb_server_get_identifier_variant (server));
  g_variant_builder_add (&builder, "{sv}", "protocol", g_variant_new_string (protocol));
  if (tls != NULL)
    sb_tls_describe (tls, &builder);
  return g_variant_builder_end (&builder);
}

static void
method_get_connection_info (SbDaemon              *self,
                            GDBusMethodInvocation *invocation,
                            guint32                uid)
{
  g_autoptr(GError) error = NULL;
  SbClient *client;
  guint32 handle;

  g_variant_get (parameters (invocation), "(u)", &handle);
  client = find_client (self, handle, uid, &error);
  if (client == NULL) {
    g_dbus_method_invocation_return_gerror (invocation, error);
    return;
  }
  g_dbus_method_invocation_return_value (invocation,
                                         g_variant_new ("(@a{sv})", describe_client (client)));
}

static gboolean
handle_get_connection_info (SbSockbridge1         *iface,
                            GDBusMethodInvocation *invocation,
                            guint                  handle)
{
  return with_caller (iface, invocation, method_get_connection_info);
}

/* ---- restore ----------------------------------------------------------------------- */

/* TRUE when @config is bound now, or can never be: FALSE keeps it dormant
 * for another try. */
static gboolean
restore_one (SbDaemon             *self,
             const SbServerConfig *config,
             gboolean              last_try)
{
  g_autoptr(GError) error = NULL;

  if (g_hash_table_contains (self->servers, server_key (config->port, config->use_udp)))
    return TRUE;
  /* Callers may have filled the daemon while a restore was retried. */
  if (g_hash_table_size (self->servers) >= SB_MAX_SERVERS) {
    g_debug ("not restoring the server on port %u/%s: at the server limit",
             config->port, proto_name (config->use_udp));
    return TRUE;
  }
  if (start_server (self, config, &error) != NULL)
    return TRUE;
  if (!last_try && g_error_matches (error, SB_ERROR, SB_ERROR_ADDRESS_IN_USE))
    return FALSE;
  g_warning ("cannot restore the server on port %u/%s: %s; it stays in the state file "
             "for the next start", config->port, proto_name (config->use_udp), error->message);
  return FALSE;
}

static gboolean
restore_dormant (gpointer user_data)
{
  SbDaemon *self = user_data;
  gboolean last_try = ++self->restore_attempts >= SB_RESTORE_ATTEMPTS;

  for (guint i = self->dormant->len; i-- > 0;) {
    if (restore_one (self, self->dormant->pdata[i], last_try))
      g_ptr_array_remove_index (self->dormant, i);
  }
  if (self->dormant->len > 0 && !last_try)
    return G_SOURCE_CONTINUE;
  self->restore_id = 0;
  return G_SOURCE_REMOVE;
}

void
sb_daemon_restore (SbDaemon *self)
{
  g_autoptr(GPtrArray) configs = NULL;

  if (self->state_path == NULL)
    return;
  configs = sb_state_load (self->state_path);
  if (configs->len > SB_MAX_SERVERS) {
    g_warning ("the state file names %u servers; restoring the first %d, the limit",
               configs->len, SB_MAX_SERVERS);
    g_ptr_array_set_size (configs, SB_MAX_SERVERS);
  }
  g_ptr_array_extend_and_steal (self->dormant, g_steal_pointer (&configs));
  if (restore_dormant (self) == G_SOURCE_CONTINUE)
    self->restore_id = g_timeout_add (SB_RESTORE_INTERVAL_MS, restore_dormant, self);
}

void
sb_daemon_shutdown (SbDaemon *self)
{
  g_autoptr(GPtrArray) all = servers_where (self, 0, G_MAXUINT32);

  g_clear_handle_id (&self->restore_id, g_source_remove);
  for (guint i = 0; i < all->len; i++)
    destroy_server (self, all->pdata[i]);
}

/* ---- object ------------------------------------------------------------------------ */

static void
sb_daemon_dispose (GObject *object)
{
  SbDaemon *self = SB_DAEMON (object);

  g_clear_handle_id (&self->restore_id, g_source_remove);
  if (self->callers != NULL)
    g_signal_handlers_disconnect_by_data (self->callers, self);
  g_clear_object (&self->callers);
  g_clear_object (&self->backlog);
  sb_clear_source (&self->batch_source);
  g_clear_pointer (&self->batches, g_hash_table_unref);
  g_clear_pointer (&self->clients, g_hash_table_unref);
  g_clear_pointer (&self->servers, g_hash_table_unref);
  g_clear_pointer (&self->dormant, g_ptr_array_unref);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (sb_daemon_parent_class)->dispose (object);
}

static void
sb_daemon_finalize (GObject *object)
{
  g_free (SB_DAEMON (object)->state_path);
  G_OBJECT_CLASS (sb_daemon_parent_class)->finalize (object);
}

/* Methods added after the first interface; their handlers are at the end. */
static gboolean handle_get_server_options (SbSockbridge1         *iface,
                                           GDBusMethodInvocation *invocation,
                                           guint16                port,
                                           gboolean               use_udp);
static gboolean handle_server_send_to      (SbSockbridge1         *iface,
                                           GDBusMethodInvocation *invocation,
                                           guint16                port,
                                           GVariant              *data,
                                           const char            *address,
                                           guint16                remote_port);

static void
sb_daemon_iface_init (SbSockbridge1Iface *iface)
{
  iface->handle_create_server = handle_create_server;
  iface->handle_create_server_with_options = handle_create_server_with_options;
  iface->handle_destroy_server = handle_destroy_server;
  iface->handle_server_send = handle_server_send;
  iface->handle_server_close_client = handle_server_close_client;
  iface->handle_port_in_use = handle_port_in_use;
  iface->handle_list_servers = handle_list_servers;
  iface->handle_list_connections = handle_list_connections;
  iface->handle_get_statistics = handle_get_statistics;
  iface->handle_get_server_options = handle_get_server_options;
  iface->handle_server_send_to = handle_server_send_to;
  iface->handle_create_tls_server = handle_create_tls_server;
  iface->handle_get_connection_info = handle_get_connection_info;
}

static void
sb_daemon_class_init (SbDaemonClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = sb_daemon_dispose;
  object_class->finalize = sb_daemon_finalize;
}

static void
sb_daemon_init (SbDaemon *self)
{
  self->servers = g_hash_table_new_full (NULL, NULL, NULL, g_object_unref);
  self->clients = g_hash_table_new (NULL, NULL);
  self->batches = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) sb_batch_free);
  self->dormant = g_ptr_array_new_with_free_func ((GDestroyNotify) sb_server_config_free);
  sb_sockbridge1_set_version (SB_SOCKBRIDGE1 (self), VERSION);
}

SbDaemon *
sb_daemon_new (GDBusConnection *connection,
               const char      *state_path)
{
  SbDaemon *self = g_object_new (SB_TYPE_DAEMON, NULL);

  self->connection = g_object_ref (connection);
  self->state_path = g_strdup (state_path);
  self->log_frames = sb_log_debug_enabled ();
  self->callers = sb_callers_new (connection);
  self->backlog = sb_backlog_new (connection, on_congestion, self);
  g_signal_connect (self->callers, "vanished", G_CALLBACK (on_caller_vanished), self);
  return self;
}

gboolean
sb_daemon_export (SbDaemon  *self,
                  GError   **error)
{
  return g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self), self->connection,
                                           SB_OBJECT_PATH, error);
}

/* ---- GetServerOptions --------------------------------------------------------------- */

/* The server a caller names by port and protocol, when it may touch it. */
static SbServer *
find_server (SbDaemon  *self,
             guint16    port,
             gboolean   use_udp,
             guint32    uid,
             GError   **error)
{
  SbServer *server;

  if (port == 0) {
    g_set_error_literal (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                         "port must be from 1 to 65535, not 0");
    return NULL;
  }
  server = g_hash_table_lookup (self->servers, server_key (port, use_udp));
  if (server == NULL) {
    g_set_error (error, SB_ERROR, SB_ERROR_NOT_FOUND, "no %s server on port %u",
                 use_udp ? "UDP" : "TCP", port);
    return NULL;
  }
  if (!may_touch (uid, server)) {
    g_set_error (error, SB_ERROR, SB_ERROR_PERMISSION_DENIED,
                 "port %u/%s is served for another user", port, proto_name (use_udp));
    return NULL;
  }
  return server;
}

static void
method_get_server_options (SbDaemon              *self,
                           GDBusMethodInvocation *invocation,
                           guint32                uid)
{
  g_autoptr(GError) error = NULL;
  SbServer *server;
  guint16 port;
  gboolean use_udp;

  g_variant_get (parameters (invocation), "(qb)", &port, &use_udp);
  server = find_server (self, port, use_udp, uid, &error);
  if (server == NULL) {
    g_dbus_method_invocation_return_gerror (invocation, error);
    return;
  }
  g_dbus_method_invocation_return_value (
      invocation, g_variant_new ("(@a{sv})", sb_server_config_to_options (sb_server_get_config (server))));
}

static gboolean
handle_get_server_options (SbSockbridge1         *iface,
                           GDBusMethodInvocation *invocation,
                           guint16                port,
                           gboolean               use_udp)
{
  return with_caller (iface, invocation, method_get_server_options);
}

/* ---- ServerSendTo ------------------------------------------------------------------- */

/* Numeric only, as bind-address: a name would need a resolver, and a
 * DriverWorks driver sends to addresses it already knows. An IPv6
 * address may name its interface ("fe80::1%eth0"). */
static GSocketAddress *
parse_destination (const char  *address,
                   guint16      remote_port,
                   GError     **error)
{
  GSocketAddress *to;

  if (remote_port == 0) {
    g_set_error_literal (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                         "remote_port must be from 1 to 65535, not 0");
    return NULL;
  }
  to = g_inet_socket_address_new_from_string (address, remote_port);
  if (to == NULL)
    g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
                 "address must be a numeric IPv4 or IPv6 address, not '%s'", address);
  return to;
}

static void
method_server_send_to (SbDaemon              *self,
                       GDBusMethodInvocation *invocation,
                       guint32                uid)
{
  g_autoptr(GVariant) data = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GSocketAddress) to = NULL;
  g_autoptr(GError) error = NULL;
  SbServer *server = NULL;
  const char *address;
  guint16 port, remote_port;

  g_variant_get (parameters (invocation), "(q@ay&sq)", &port, &data, &address, &remote_port);
  bytes = g_variant_get_data_as_bytes (data);
  to = parse_destination (address, remote_port, &error);
  if (to != NULL)
    server = find_server (self, port, TRUE, uid, &error);
  if (server == NULL || !sb_udp_server_send_to (SB_UDP_SERVER (server), to, bytes, &error)) {
    g_dbus_method_invocation_return_gerror (invocation, error);
    return;
  }
  sb_statistics.bytes_out += g_bytes_get_size (bytes);
  if (G_UNLIKELY (self->log_frames)) {
    g_autofree char *destination = g_strdup_printf ("%s port %u", address, remote_port);

    sb_log_datagram (port, destination, g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  }
  g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_server_send_to (SbSockbridge1         *iface,
                       GDBusMethodInvocation *invocation,
                       guint16                port,
                       GVariant              *data,
                       const char            *address,
                       guint16                remote_port)
{
  return with_caller (iface, invocation, method_server_send_to);
}
