/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-tcp-server.h"

#include "sb-statistics.h"
#include "sb-tcp-connection.h"
#include "sb-tls.h"

/* Deep enough for a burst of devices reconnecting at once; the kernel caps
 * it at net.core.somaxconn. */
#define SB_LISTEN_BACKLOG 1024

struct _SbTcpServer
{
  SbServer        parent_instance;

  GSocketService *service;
  SbTls          *tls;         /* NULL: plain TCP */
};

G_DEFINE_FINAL_TYPE (SbTcpServer, sb_tcp_server, SB_TYPE_SERVER)

static void
refuse (SbTcpServer       *self,
        GSocketConnection *connection)
{
  g_socket_close (g_socket_connection_get_socket (connection), NULL);
  sb_statistics_count (&sb_statistics.connections_refused,
                       "port %u/tcp: connection refused at a connection limit "
                       "(max-connections %u, or the daemon-wide cap)",
                       sb_server_get_port (SB_SERVER (self)),
                       sb_server_get_config (SB_SERVER (self))->max_connections);
}

/* A peer allow-from does not name is closed before it becomes a client:
 * no handle, no signal. */
static gboolean
admitted (SbTcpServer       *self,
          GSocketConnection *connection)
{
  g_autoptr(GSocketAddress) remote = NULL;

  if (sb_server_get_config (SB_SERVER (self))->allow_from == NULL)
    return TRUE;
  remote = g_socket_connection_get_remote_address (connection, NULL);
  if (remote != NULL && sb_server_admits (SB_SERVER (self), remote))
    return TRUE;
  g_socket_close (g_socket_connection_get_socket (connection), NULL);
  return FALSE;
}

static gboolean
on_incoming (GSocketService    *service,
             GSocketConnection *connection,
             GObject           *source_object,
             gpointer           user_data)
{
  SbTcpServer *self = user_data;
  g_autoptr(SbTcpConnection) client = NULL;
  g_autoptr(GError) error = NULL;

  if (!admitted (self, connection))
    return TRUE;
  if (sb_server_is_full (SB_SERVER (self))) {
    refuse (self, connection);
    return TRUE;
  }
  if (self->tls != NULL) {
    sb_tls_accept (self->tls, connection);
    return TRUE;
  }
  client = sb_tcp_connection_new (SB_SERVER (self), connection, &error);
  if (client == NULL) {
    g_debug ("port %u/tcp: dropping a connection: %s",
             sb_server_get_port (SB_SERVER (self)), error->message);
    return TRUE;
  }
  sb_statistics.connections_accepted++;
  sb_server_client_online (SB_SERVER (self), SB_CLIENT (client));
  sb_tcp_connection_start (client);
  return TRUE;
}

/* Returns the bound port, 0 on failure. */
static guint16
add_listener (GSocketListener       *listener,
              const SbServerConfig  *config,
              GError               **error)
{
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GSocketAddress) effective = NULL;

  if (config->bind_address == NULL && config->port == 0)
    return g_socket_listener_add_any_inet_port (listener, NULL, error);
  if (config->bind_address == NULL)
    return g_socket_listener_add_inet_port (listener, config->port, NULL, error) ? config->port : 0;

  address = g_inet_socket_address_new_from_string (config->bind_address, config->port);
  if (!g_socket_listener_add_address (listener, address, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_TCP, NULL, &effective, error))
    return 0;
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
}

static gboolean
sb_tcp_server_start (SbServer  *server,
                     GError   **error)
{
  SbTcpServer *self = SB_TCP_SERVER (server);
  g_autoptr(GSocketService) service = g_socket_service_new ();
  g_autoptr(GError) io_error = NULL;
  g_autoptr(SbTls) tls = NULL;
  guint16 port;

  /* Credentials first: a server that cannot serve TLS never binds. */
  if (sb_server_get_config (server)->tls != NULL && (tls = sb_tls_new (server, error)) == NULL)
    return FALSE;
  g_socket_listener_set_backlog (G_SOCKET_LISTENER (service), SB_LISTEN_BACKLOG);
  port = add_listener (G_SOCKET_LISTENER (service), sb_server_get_config (server), &io_error);
  if (port == 0) {
    sb_server_set_error_from_io (error, server, io_error);
    return FALSE;
  }
  sb_server_set_bound_port (server, port);
  g_signal_connect (service, "incoming", G_CALLBACK (on_incoming), self);
  g_socket_service_start (service);
  self->service = g_steal_pointer (&service);
  self->tls = g_steal_pointer (&tls);
  return TRUE;
}

static void
sb_tcp_server_stop (SbServer *server)
{
  SbTcpServer *self = SB_TCP_SERVER (server);

  if (self->service == NULL)
    return;
  g_signal_handlers_disconnect_by_data (self->service, self);
  g_socket_service_stop (self->service);
  g_socket_listener_close (G_SOCKET_LISTENER (self->service));
  g_clear_object (&self->service);
  g_clear_pointer (&self->tls, sb_tls_free);
}

static void
sb_tcp_server_dispose (GObject *object)
{
  sb_tcp_server_stop (SB_SERVER (object));
  G_OBJECT_CLASS (sb_tcp_server_parent_class)->dispose (object);
}

static void
sb_tcp_server_class_init (SbTcpServerClass *klass)
{
  SbServerClass *server_class = SB_SERVER_CLASS (klass);

  G_OBJECT_CLASS (klass)->dispose = sb_tcp_server_dispose;
  server_class->start = sb_tcp_server_start;
  server_class->stop = sb_tcp_server_stop;
}

static void
sb_tcp_server_init (SbTcpServer *self)
{
}
