/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-tcp-connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "sb-error.h"
#include "sb-framer.h"
#include "sb-source.h"
#include "sb-poller.h"

/* A peer that vanished without a word (power cut, cable pulled) is found
 * by keepalive probes after about two minutes of silence, and one that
 * stops acknowledging what is sent to it after SB_USER_TIMEOUT_MS, instead
 * of the kernel's two hours and fifteen minutes. */
#define SB_KEEPALIVE_IDLE_S     60
#define SB_KEEPALIVE_INTERVAL_S 10
#define SB_KEEPALIVE_COUNT      6
#define SB_USER_TIMEOUT_MS      120000

/* How long ServerCloseClient waits for a client that does not read what
 * was queued for it before closing anyway. */
#define SB_CLOSE_TIMEOUT_S 5

struct _SbTcpConnection
{
  SbClient           parent_instance;

  GSocketConnection *connection;
  GSocket           *socket;
  GTlsConnection    *tls;           /* NULL for plain TCP */
  SbFramer          *framer;
  SbWatch           *watch;
  GSource           *close_timeout;
  GQueue             send_queue;    /* GBytes, oldest first */
  gsize              head_offset;   /* bytes of the head already sent */
  gsize              queued;        /* bytes not yet handed to the kernel */
  gboolean           paused;
  gboolean           closing;
  gboolean           closed;
};

G_DEFINE_FINAL_TYPE (SbTcpConnection, sb_tcp_connection, SB_TYPE_CLIENT)

/* One read buffer for every connection: the daemon is single-threaded and
 * the framer copies only what it must keep. */
static guint8 sb_read_buffer[64 * 1024];

static void sb_tcp_connection_finish (SbTcpConnection *self);

static void
drop_send_queue (SbTcpConnection *self)
{
  g_queue_clear_full (&self->send_queue, (GDestroyNotify) g_bytes_unref);
  self->head_offset = 0;
  self->queued = 0;
}

static void
sb_tcp_connection_finalize (GObject *object)
{
  SbTcpConnection *self = SB_TCP_CONNECTION (object);

  g_clear_pointer (&self->watch, sb_watch_free);
  sb_clear_source (&self->close_timeout);
  drop_send_queue (self);
  g_clear_pointer (&self->framer, sb_framer_free);
  g_clear_object (&self->tls);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (sb_tcp_connection_parent_class)->finalize (object);
}

static void
on_frame (const guint8 *data,
          gsize         len,
          gboolean      complete,
          gpointer      user_data)
{
  SbClient *client = user_data;

  sb_server_client_frame (sb_client_get_server (client), client, data, len, complete);
}

/* Reading while not paused nor closing; writing while anything is queued. */
static void
update_events (SbTcpConnection *self)
{
  GIOCondition events = 0;

  if (self->watch == NULL)
    return;
  if (!self->paused && !self->closing)
    events |= G_IO_IN;
  if (!g_queue_is_empty (&self->send_queue))
    events |= G_IO_OUT;
  sb_watch_set_events (self->watch, events);
}

/* Through GIO's TLS stream when there is one. GnuTLS takes from the
 * socket exactly the records it decrypts, and a record fits the buffer,
 * so what remains to read is still in the kernel, where the poller sees
 * it. */
static gssize
receive (SbTcpConnection  *self,
         GError          **error)
{
  GInputStream *input;

  if (self->tls == NULL)
    return g_socket_receive_with_blocking (self->socket, (char *) sb_read_buffer,
                                           sizeof sb_read_buffer, FALSE, NULL, error);
  input = g_io_stream_get_input_stream (G_IO_STREAM (self->tls));
  return g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (input),
                                                   sb_read_buffer, sizeof sb_read_buffer,
                                                   NULL, error);
}

/* GnuTLS needs the same bytes again after it would have blocked: the
 * queue's head stays as it is until it was taken. */
static gssize
send_some (SbTcpConnection  *self,
           const guint8     *data,
           gsize             len,
           GError          **error)
{
  GOutputStream *output;

  if (self->tls == NULL)
    return g_socket_send_with_blocking (self->socket, (const char *) data, len, FALSE,
                                        NULL, error);
  output = g_io_stream_get_output_stream (G_IO_STREAM (self->tls));
  return g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (output),
                                                     data, len, NULL, error);
}

static void
read_once (SbTcpConnection *self)
{
  g_autoptr(GError) error = NULL;
  gssize n;

  n = receive (self, &error);
  if (n > 0) {
    sb_framer_feed (self->framer, sb_read_buffer, n);
    return;
  }
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return;
  if (error != NULL)
    g_debug ("handle %u: %s", sb_client_get_handle (SB_CLIENT (self)), error->message);
  sb_tcp_connection_finish (self);
}

static void flush_send_queue (SbTcpConnection *self);

/* A hang-up is reported even while reading is paused; what the peer sent
 * before it is still read and delivered, then end of file closes. */
static void
on_ready (SbWatch      *watch,
          GIOCondition  condition,
          gpointer      user_data)
{
  g_autoptr(SbTcpConnection) self = g_object_ref (user_data);

  if (condition & G_IO_OUT)
    flush_send_queue (self);
  if (self->closed || !(condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)))
    return;
  if (self->closing)
    sb_tcp_connection_finish (self);
  else
    read_once (self);
}

/* Hands as much of the queue to the kernel as it takes. FALSE when the
 * connection failed. */
static gboolean
write_queue (SbTcpConnection *self)
{
  while (!g_queue_is_empty (&self->send_queue)) {
    g_autoptr(GError) error = NULL;
    GBytes *head = g_queue_peek_head (&self->send_queue);
    gsize size;
    const guint8 *data = g_bytes_get_data (head, &size);
    gssize n;

    n = send_some (self, data + self->head_offset, size - self->head_offset, &error);
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
      return TRUE;
    if (n < 0) {
      g_debug ("handle %u: %s", sb_client_get_handle (SB_CLIENT (self)), error->message);
      return FALSE;
    }
    self->head_offset += n;
    self->queued -= n;
    if (self->head_offset == size) {
      g_bytes_unref (g_queue_pop_head (&self->send_queue));
      self->head_offset = 0;
    }
  }
  return TRUE;
}

/* Writes what it can, then waits for room or, when closing and drained,
 * closes. */
static void
flush_send_queue (SbTcpConnection *self)
{
  if (!write_queue (self)) {
    sb_tcp_connection_finish (self);
    return;
  }
  update_events (self);
  if (self->closing && g_queue_is_empty (&self->send_queue))
    sb_tcp_connection_finish (self);
}

/* A message over the bound would never fit, however fast the client
 * reads: saying it is not reading would send the caller looking for the
 * wrong fault. */
static gboolean
check_queue_room (SbTcpConnection  *self,
                  gsize             len,
                  GError          **error)
{
  guint32 handle = sb_client_get_handle (SB_CLIENT (self));

  if (len > SB_SEND_QUEUE_MAX) {
    g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
                 "cannot queue %" G_GSIZE_FORMAT " bytes for connection %u: the message "
                 "alone is over the send queue's bound of %d bytes; split it",
                 len, handle, SB_SEND_QUEUE_MAX);
    return FALSE;
  }
  if (len > SB_SEND_QUEUE_MAX - self->queued) {
    g_set_error (error, SB_ERROR, SB_ERROR_LIMIT_EXCEEDED,
                 "cannot queue %" G_GSIZE_FORMAT " bytes for connection %u: %" G_GSIZE_FORMAT
                 " bytes are still queued and the limit is %d (the client is not reading)",
                 len, handle, self->queued, SB_SEND_QUEUE_MAX);
    return FALSE;
  }
  return TRUE;
}

static gboolean
sb_tcp_connection_send (SbClient  *client,
                        GBytes    *data,
                        GError   **error)
{
  g_autoptr(SbTcpConnection) self = g_object_ref (SB_TCP_CONNECTION (client));
  gsize len = g_bytes_get_size (data);

  if (self->closing || self->closed) {
    g_set_error (error, SB_ERROR, SB_ERROR_NOT_FOUND,
                 "connection %u is closing", sb_client_get_handle (client));
    return FALSE;
  }
  if (!check_queue_room (self, len, error))
    return FALSE;
  if (len == 0)
    return TRUE;

  g_queue_push_tail (&self->send_queue, g_bytes_ref (data));
  self->queued += len;
  /* Already waiting for room: the data goes out after what is queued. */
  if (g_queue_get_length (&self->send_queue) == 1)
    flush_send_queue (self);
  return TRUE;
}

static gboolean
on_close_timeout (gpointer user_data)
{
  SbTcpConnection *self = user_data;

  g_debug ("handle %u: closing with %" G_GSIZE_FORMAT " bytes unsent",
           sb_client_get_handle (SB_CLIENT (self)), self->queued);
  sb_tcp_connection_finish (self);
  return G_SOURCE_REMOVE;
}

static void
sb_tcp_connection_close (SbClient *client)
{
  g_autoptr(SbTcpConnection) self = g_object_ref (SB_TCP_CONNECTION (client));

  if (self->closing || self->closed)
    return;
  self->closing = TRUE;
  update_events (self);
  if (g_queue_is_empty (&self->send_queue)) {
    sb_tcp_connection_finish (self);
    return;
  }
  self->close_timeout = g_timeout_source_new_seconds (SB_CLOSE_TIMEOUT_S);
  g_source_set_callback (self->close_timeout, on_close_timeout, self, NULL);
  g_source_attach (self->close_timeout, NULL);
}

/* TLS's close_notify, when it cannot block: everything queued was taken
 * (GnuTLS holds no half-sent record) and the socket has room for the
 * alert. Otherwise the connection just closes, as plain TCP does. */
static void
say_goodbye (SbTcpConnection *self)
{
  if (self->tls == NULL || self->queued > 0 ||
      !(g_socket_condition_check (self->socket, G_IO_OUT) & G_IO_OUT))
    return;
  g_output_stream_close (g_io_stream_get_output_stream (G_IO_STREAM (self->tls)), NULL, NULL);
}

/* The single way out: what was read is delivered, then the socket closes,
 * then the server reports OFFLINE. */
static void
sb_tcp_connection_finish (SbTcpConnection *self)
{
  if (self->closed)
    return;
  self->closed = TRUE;
  g_clear_pointer (&self->watch, sb_watch_free);
  sb_clear_source (&self->close_timeout);
  say_goodbye (self);
  drop_send_queue (self);
  sb_framer_flush (self->framer);
  g_socket_close (self->socket, NULL);
  /* Last: the server may drop its last reference to us here. */
  sb_server_client_offline (sb_client_get_server (SB_CLIENT (self)), SB_CLIENT (self));
}

static void
sb_tcp_connection_disconnect (SbClient *client)
{
  sb_tcp_connection_finish (SB_TCP_CONNECTION (client));
}

static void
sb_tcp_connection_set_paused (SbClient *client,
                              gboolean  paused)
{
  SbTcpConnection *self = SB_TCP_CONNECTION (client);

  self->paused = paused;
  update_events (self);
}

static void
sb_tcp_connection_class_init (SbTcpConnectionClass *klass)
{
  SbClientClass *client_class = SB_CLIENT_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = sb_tcp_connection_finalize;
  client_class->send = sb_tcp_connection_send;
  client_class->close = sb_tcp_connection_close;
  client_class->disconnect = sb_tcp_connection_disconnect;
  client_class->set_paused = sb_tcp_connection_set_paused;
}

static void
sb_tcp_connection_init (SbTcpConnection *self)
{
  g_queue_init (&self->send_queue);
}

static void
set_liveness_checks (GSocket *socket)
{
  g_socket_set_keepalive (socket, TRUE);
  g_socket_set_option (socket, IPPROTO_TCP, TCP_KEEPIDLE, SB_KEEPALIVE_IDLE_S, NULL);
  g_socket_set_option (socket, IPPROTO_TCP, TCP_KEEPINTVL, SB_KEEPALIVE_INTERVAL_S, NULL);
  g_socket_set_option (socket, IPPROTO_TCP, TCP_KEEPCNT, SB_KEEPALIVE_COUNT, NULL);
  g_socket_set_option (socket, IPPROTO_TCP, TCP_USER_TIMEOUT, SB_USER_TIMEOUT_MS, NULL);
}

SbTcpConnection *
sb_tcp_connection_new (SbServer           *server,
                       GSocketConnection  *connection,
                       GError            **error)
{
  const SbServerConfig *config = sb_server_get_config (server);
  g_autoptr(SbTcpConnection) self = NULL;
  g_autoptr(GSocketAddress) remote = NULL;
  gsize delimiter_len;
  const guint8 *delimiter = g_bytes_get_data (config->delimiter, &delimiter_len);

  remote = g_socket_connection_get_remote_address (connection, error);
  if (remote == NULL)
    return NULL;

  self = g_object_new (SB_TYPE_TCP_CONNECTION, NULL);
  self->connection = g_object_ref (connection);
  self->socket = g_socket_connection_get_socket (connection);
  set_liveness_checks (self->socket);
  sb_client_setup (SB_CLIENT (self), server, remote);
  self->framer = sb_framer_new (delimiter, delimiter_len, config->max_message_bytes,
                                config->flush_timeout_ms, on_frame, self);
  return g_steal_pointer (&self);
}

void
sb_tcp_connection_start (SbTcpConnection *self)
{
  if (self->closed)
    return;
  self->watch = sb_watch_new (g_socket_get_fd (self->socket), 0, on_ready, self);
  update_events (self);
}

SbTcpConnection *
sb_tcp_connection_new_tls (SbServer           *server,
                           GSocketConnection  *connection,
                           GTlsConnection     *tls,
                           GError            **error)
{
  SbTcpConnection *self = sb_tcp_connection_new (server, connection, error);

  if (self != NULL)
    self->tls = g_object_ref (tls);
  return self;
}

GTlsConnection *
sb_tcp_connection_get_tls (SbTcpConnection *self)
{
  g_return_val_if_fail (SB_IS_TCP_CONNECTION (self), NULL);

  return self->tls;
}
